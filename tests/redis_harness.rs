//! Self-tests of the Redis helper of the integration-test harness
//! (tests/common); they don't need the promsnmp binary. Run with
//! `cargo test --test redis_harness`.

mod common;

use common::*;
use std::io;
use std::time::{Duration, Instant};

#[test]
fn redis_start_cmd_pause_restart() {
    let mut redis = Redis::start();
    let port = redis.port();
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{port}/"));
    assert!(redis.is_running());

    // round trips and reply rendering
    assert_eq!(redis.cmd(&["PING"]), "PONG");
    let key = "promsnmp:{0123456789:0123456789}:epoch";
    assert_eq!(redis.cmd(&["GET", key]), "(nil)");
    assert_eq!(redis.cmd(&["SET", key, "line one\r\nline two"]), "OK");
    assert_eq!(redis.cmd(&["GET", key]), "line one\r\nline two");
    assert_eq!(redis.cmd(&["INCR", "counter"]), "1");
    assert_eq!(redis.cmd(&["HSET", "h", "version", "7", "x", ""]), "2");
    assert_eq!(redis.cmd(&["HGET", "h", "version"]), "7");
    assert_eq!(redis.cmd(&["HGET", "h", "x"]), "");
    assert_eq!(redis.cmd(&["RPUSH", "l", "a", "b", "c"]), "3");
    assert_eq!(redis.cmd(&["LRANGE", "l", "0", "-1"]), "a\nb\nc");
    assert!(redis.cmd(&["NOSUCHCOMMAND"]).starts_with("ERR "));

    // paused: the kernel accepts the connection but nothing answers
    redis.pause();
    assert!(redis.is_running() && redis.is_paused());
    let t = Instant::now();
    let err = redis
        .try_cmd_timeout(&["GET", key], Duration::from_millis(500))
        .expect_err("a paused redis must not answer");
    assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    redis.resume();
    assert!(!redis.is_paused());
    assert_eq!(redis.cmd(&["GET", key]), "line one\r\nline two");

    // stopped: refused; restarted on the same port: answers, data gone
    redis.stop();
    assert!(!redis.is_running());
    assert!(redis.try_cmd(&["PING"]).is_err());
    redis.restart();
    assert!(redis.is_running());
    assert_eq!(redis.port(), port);
    assert_eq!(redis.cmd(&["GET", key]), "(nil)");
    assert_eq!(redis.cmd(&["DBSIZE"]), "0");
    assert_eq!(redis.cmd(&["CONFIG", "GET", "save"]), "save\n");
    assert_eq!(
        redis.cmd(&["CONFIG", "GET", "appendonly"]),
        "appendonly\nno"
    );
}

#[test]
fn redis_drop_kills_paused_server() {
    let mut redis = Redis::start();
    let pid = redis.pid().expect("pid");
    redis.pause();
    drop(redis);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "redis-server pid {pid} still exists after drop"
    );
}
