//! Every Lua script of `lua/` against a real `redis-server`, refusal paths
//! included. The scripts are the ones compiled into promsnmp
//! (`fleet::store::Scripts`), run by SHA the way the replicas run them.

mod common;

use std::time::Duration;

use common::Redis;
use promsnmp::fleet::store::{Keys, Scripts};
use redis::aio::MultiplexedConnection;
use redis::Script;

struct Lab {
    _redis: Redis,
    conn: MultiplexedConnection,
    scripts: Scripts,
    keys: Keys,
}

async fn lab() -> Lab {
    let redis = Redis::start();
    let client = redis::Client::open(redis.url()).unwrap();
    let conn = tokio::time::timeout(
        Duration::from_secs(5),
        client.get_multiplexed_async_connection(),
    )
    .await
    .expect("connect within 5 s")
    .expect("connect");
    Lab {
        _redis: redis,
        conn,
        scripts: Scripts::default(),
        keys: Keys::new("t1:s1"),
    }
}

impl Lab {
    async fn run<T: redis::FromRedisValue>(
        &mut self,
        script: fn(&Scripts) -> &Script,
        keys: &[String],
        args: &[&str],
    ) -> T {
        let mut invocation = script(&self.scripts).prepare_invoke();
        for k in keys {
            invocation.key(k);
        }
        for a in args {
            invocation.arg(*a);
        }
        tokio::time::timeout(
            Duration::from_secs(5),
            invocation.invoke_async(&mut self.conn),
        )
        .await
        .expect("script answered within 5 s")
        .expect("script ran")
    }

    /// This Redis server's `run_id` (what the inventory scripts record).
    async fn run_id(&mut self) -> String {
        let info: String = self.cmd(&["INFO", "server"]).await;
        info.lines()
            .find_map(|l| l.strip_prefix("run_id:"))
            .expect("INFO server has run_id")
            .trim()
            .to_string()
    }

    async fn cmd<T: redis::FromRedisValue>(&mut self, args: &[&str]) -> T {
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query_async(&mut self.conn).await.expect("command")
    }

    fn lease_keys(&self) -> Vec<String> {
        vec![self.keys.leader(), self.keys.epoch()]
    }

    fn inventory_keys(&self) -> Vec<String> {
        vec![self.keys.inventory(), self.keys.leader(), self.keys.epoch()]
    }
}

#[tokio::test]
async fn lease_acquire_renew_release_and_refusals() {
    let mut lab = lab().await;
    let keys = lab.lease_keys();
    let acquire: fn(&Scripts) -> &Script = |s| &s.lease_acquire;
    let renew: fn(&Scripts) -> &Script = |s| &s.lease_renew;
    let release: fn(&Scripts) -> &Script = |s| &s.lease_release;

    assert_eq!(lab.run::<i64>(acquire, &keys, &["a", "3000", "0"]).await, 1);
    // Held: another replica gets minus the current epoch.
    assert_eq!(
        lab.run::<i64>(acquire, &keys, &["b", "3000", "0"]).await,
        -1
    );
    let ttl: i64 = lab.cmd(&["PTTL", &keys[0]]).await;
    assert!((1..=3000).contains(&ttl), "lease has a TTL: {ttl}");

    // Renewal: wrong owner, wrong epoch refused; right one extends.
    assert_eq!(lab.run::<i64>(renew, &keys, &["b", "1", "3000"]).await, 0);
    assert_eq!(lab.run::<i64>(renew, &keys, &["a", "2", "3000"]).await, 0);
    assert_eq!(lab.run::<i64>(renew, &keys, &["a", "1", "60000"]).await, 1);
    let ttl: i64 = lab.cmd(&["PTTL", &keys[0]]).await;
    assert!(ttl > 3000, "renewal extended the lease: {ttl}");

    // Release: only by the holder with its epoch.
    assert_eq!(lab.run::<i64>(release, &keys, &["b", "1"]).await, 0);
    assert_eq!(lab.run::<i64>(release, &keys, &["a", "0"]).await, 0);
    assert_eq!(lab.run::<i64>(release, &keys, &["a", "1"]).await, 1);
    let holder: Option<String> = lab.cmd(&["GET", &keys[0]]).await;
    assert_eq!(holder, None);

    // Every acquisition bumps the epoch, also by the same replica.
    assert_eq!(lab.run::<i64>(acquire, &keys, &["b", "3000", "0"]).await, 2);
    assert_eq!(lab.run::<i64>(acquire, &keys, &["b", "3000", "0"]).await, 3);
    // An expired lease can be taken by another replica.
    assert_eq!(lab.run::<i64>(acquire, &keys, &["c", "50", "0"]).await, -3);
    let _: () = lab.cmd(&["PEXPIRE", &keys[0], "1"]).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(lab.run::<i64>(acquire, &keys, &["c", "3000", "0"]).await, 4);

    // Redis lost its data: the epoch continues above the floor (the file's).
    let _: () = lab.cmd(&["FLUSHALL"]).await;
    assert_eq!(
        lab.run::<i64>(acquire, &keys, &["a", "3000", "9"]).await,
        10
    );
    let epoch: i64 = lab.cmd(&["GET", &keys[1]]).await;
    assert_eq!(epoch, 10);
}

#[tokio::test]
async fn heartbeat_lists_live_members_only() {
    let mut lab = lab().await;
    let keys = |lab: &Lab, id: &str| {
        vec![
            lab.keys.members(),
            lab.keys.member(id),
            lab.keys.epoch(),
            lab.keys.epochs(),
        ]
    };
    let heartbeat: fn(&Scripts) -> &Script = |s| &s.heartbeat;
    // {policy, epoch, put back, replicas, members...}
    type Beat = (String, u64, u8, u64, Vec<String>);
    let split = |reply: Vec<redis::Value>| -> Beat {
        let mut values = reply.into_iter();
        let mut next = || values.next().unwrap();
        let policy: String = redis::from_redis_value(next()).unwrap();
        let epoch: u64 = redis::from_redis_value(next()).unwrap();
        let restored: u8 = redis::from_redis_value(next()).unwrap();
        let replicas: u64 = redis::from_redis_value(next()).unwrap();
        let members = values
            .map(|v| redis::from_redis_value(v).unwrap())
            .collect();
        (policy, epoch, restored, replicas, members)
    };
    let k = keys(&lab, "a");
    let beat = split(lab.run(heartbeat, &k, &["a", "300", "{}", "0"]).await);
    assert_eq!(beat, ("noeviction".into(), 0, 0, 0, vec!["a".to_string()]));
    let k = keys(&lab, "b");
    let beat = split(
        lab.run(heartbeat, &k, &["b", "300", "{\"v\":1}", "0"])
            .await,
    );
    assert_eq!(beat.4.len(), 2);
    let info: String = lab.cmd(&["GET", &lab.keys.member("b")]).await;
    assert_eq!(info, "{\"v\":1}");
    tokio::time::sleep(Duration::from_millis(400)).await;
    // `a` and `b` were silent longer than the ttl: only `c` remains.
    let k = keys(&lab, "c");
    let beat = split(lab.run(heartbeat, &k, &["c", "300", "{}", "0"]).await);
    assert_eq!(beat.4, vec!["c"]);

    // An epoch counter Redis lost is put back from the highest epoch the
    // replica has seen, and never lowered.
    let epoch_key = lab.keys.epoch();
    let _: () = lab.cmd(&["SET", &epoch_key, "3"]).await;
    let beat = split(lab.run(heartbeat, &k, &["c", "300", "{}", "7"]).await);
    assert_eq!((beat.1, beat.2), (7, 1));
    let beat = split(lab.run(heartbeat, &k, &["c", "300", "{}", "5"]).await);
    assert_eq!((beat.1, beat.2), (7, 0));
    let stored: u64 = lab.cmd(&["GET", &epoch_key]).await;
    assert_eq!(stored, 7);
    // Lost again: a member that has seen less puts it back from what the
    // other live members have seen.
    let _: () = lab.cmd(&["DEL", &epoch_key]).await;
    let kd = keys(&lab, "d");
    let beat = split(lab.run(heartbeat, &kd, &["d", "300", "{}", "2"]).await);
    assert_eq!((beat.1, beat.2), (7, 1));
    // The next acquisition goes above it, even with a floor of 0.
    let acquire: fn(&Scripts) -> &Script = |s| &s.lease_acquire;
    let lease = lab.lease_keys();
    assert_eq!(
        lab.run::<i64>(acquire, &lease, &["c", "3000", "0"]).await,
        8
    );

    // The policy is Redis' own.
    let _: () = lab
        .cmd(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"])
        .await;
    let beat = split(lab.run(heartbeat, &k, &["c", "300", "{}", "8"]).await);
    assert_eq!(beat.0, "allkeys-lru");
}

#[tokio::test]
async fn inventory_update_and_restore_are_fenced_and_versioned() {
    let mut lab = lab().await;
    let keys = lab.inventory_keys();
    let update: fn(&Scripts) -> &Script = |s| &s.inventory_update;
    let restore: fn(&Scripts) -> &Script = |s| &s.inventory_restore;
    let acquire: fn(&Scripts) -> &Script = |s| &s.lease_acquire;
    let channel = lab.keys.events();

    // No inventory yet: an update is refused, restore needs the lease.
    assert_eq!(
        lab.run::<i64>(update, &keys, &["inc", "1", "data", &channel, "", "a"])
            .await,
        -2
    );
    assert_eq!(
        lab.run::<i64>(restore, &keys, &["a", "1", "inc", "data0", &channel])
            .await,
        -1,
        "restore without the lease is refused"
    );
    let lease = lab.lease_keys();
    assert_eq!(
        lab.run::<i64>(acquire, &lease, &["a", "60000", "0"]).await,
        1
    );
    assert_eq!(
        lab.run::<i64>(restore, &keys, &["a", "2", "inc", "data0", &channel])
            .await,
        -1,
        "restore with a wrong epoch is refused"
    );
    assert_eq!(
        lab.run::<i64>(restore, &keys, &["a", "1", "inc", "data0", &channel])
            .await,
        1
    );
    assert_eq!(
        lab.run::<i64>(restore, &keys, &["a", "1", "other", "dataX", &channel])
            .await,
        0,
        "an existing inventory is never replaced by a restore"
    );

    // An API change (no epoch) from any replica: compare-and-set on the version.
    assert_eq!(
        lab.run::<i64>(update, &keys, &["inc", "1", "data1", &channel, "", "b"])
            .await,
        2
    );
    assert_eq!(
        lab.run::<i64>(update, &keys, &["inc", "1", "stale", &channel, "", "b"])
            .await,
        0,
        "a change computed from version 1 is refused at version 2"
    );
    assert_eq!(
        lab.run::<i64>(update, &keys, &["other", "2", "stale", &channel, "", "b"])
            .await,
        0,
        "another incarnation is refused"
    );
    // Leader-only writes: the current leader's epoch passes, a stale one does not.
    assert_eq!(
        lab.run::<i64>(update, &keys, &["inc", "2", "data3", &channel, "1", "a"])
            .await,
        3
    );
    assert_eq!(
        lab.run::<i64>(update, &keys, &["inc", "3", "x", &channel, "1", "b"])
            .await,
        -1,
        "right epoch, wrong replica"
    );
    let _: () = lab.cmd(&["DEL", &lease[0]]).await;
    assert_eq!(
        lab.run::<i64>(acquire, &lease, &["b", "60000", "0"]).await,
        2
    );
    assert_eq!(
        lab.run::<i64>(update, &keys, &["inc", "3", "x", &channel, "1", "a"])
            .await,
        -1,
        "the old leader's epoch is stale"
    );
    let (version, data): (u64, String) = lab.cmd(&["HMGET", &keys[0], "version", "data"]).await;
    assert_eq!(
        (version, data.as_str()),
        (3, "data3"),
        "refusals changed nothing"
    );

    // An inventory this server did not write (reloaded at a restart, or a
    // promoted replica's) takes no change until the leader replaces exactly
    // the version it found, under its epoch, with a new incarnation.
    let _: () = lab
        .cmd(&["HSET", &keys[0], "server", "another-server"])
        .await;
    assert_eq!(
        lab.run::<i64>(update, &keys, &["inc", "3", "y", &channel, "", "b"])
            .await,
        -3,
        "no change builds on a reloaded inventory"
    );
    assert_eq!(
        lab.run::<i64>(
            restore,
            &keys,
            &["b", "2", "inc2", "file", &channel, "inc", "2"]
        )
        .await,
        0,
        "a version Redis no longer holds is not replaced"
    );
    assert_eq!(
        lab.run::<i64>(
            restore,
            &keys,
            &["a", "1", "inc2", "file", &channel, "inc", "3"]
        )
        .await,
        -1,
        "a stale epoch replaces nothing"
    );
    assert_eq!(
        lab.run::<i64>(
            restore,
            &keys,
            &["b", "2", "inc2", "file", &channel, "inc", "3"]
        )
        .await,
        1
    );
    let (incarnation, version, data): (String, u64, String) = lab
        .cmd(&["HMGET", &keys[0], "incarnation", "version", "data"])
        .await;
    assert_eq!(
        (incarnation.as_str(), version, data.as_str()),
        ("inc2", 1, "file")
    );
    assert_eq!(
        lab.run::<i64>(update, &keys, &["inc2", "1", "z", &channel, "", "b"])
            .await,
        2,
        "changes build on what the leader put back"
    );
}

#[tokio::test]
async fn update_publishes_the_new_version() {
    let mut lab = lab().await;
    let url = lab._redis.url();
    let channel = lab.keys.events();
    let client = redis::Client::open(url).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe(&channel).await.unwrap();
    // As an earlier version wrote it: no run id, taken as it is.
    let _: () = lab
        .cmd(&[
            "HSET",
            &lab.keys.inventory(),
            "incarnation",
            "inc",
            "version",
            "4",
            "data",
            "d",
        ])
        .await;
    let keys = lab.inventory_keys();
    let update: fn(&Scripts) -> &Script = |s| &s.inventory_update;
    assert_eq!(
        lab.run::<i64>(update, &keys, &["inc", "4", "d5", &channel, "", "a"])
            .await,
        5
    );
    use futures_util::StreamExt;
    let message = tokio::time::timeout(Duration::from_secs(5), pubsub.on_message().next())
        .await
        .expect("event within 5 s")
        .expect("a message");
    assert_eq!(message.get_payload::<String>().unwrap(), "inc:5");
    let server: String = lab.cmd(&["HGET", &lab.keys.inventory(), "server"]).await;
    assert_eq!(server, lab.run_id().await, "the change recorded its server");
}

#[tokio::test]
async fn poll_claim_record_fail_and_cache_get() {
    let mut lab = lab().await;
    let k = lab.keys.clone();
    let claim_keys = vec![k.claim("d1"), k.lock("d1")];
    let record_keys = vec![k.history("d1"), k.cache("d1"), k.lock("d1"), k.failed("d1")];
    let fail_keys = vec![k.lock("d1"), k.failed("d1")];
    let get_keys = vec![k.cache("d1"), k.failed("d1"), k.lock("d1")];
    let claim: fn(&Scripts) -> &Script = |s| &s.poll_claim;
    let record: fn(&Scripts) -> &Script = |s| &s.poll_record;
    let fail: fn(&Scripts) -> &Script = |s| &s.poll_fail;
    let get: fn(&Scripts) -> &Script = |s| &s.cache_get;

    // One round claim per round; the lock keeps everyone else out meanwhile.
    assert_eq!(
        lab.run::<i64>(claim, &claim_keys, &["a", "60000", "5000"])
            .await,
        1
    );
    assert_eq!(
        lab.run::<i64>(claim, &claim_keys, &["b", "60000", "5000"])
            .await,
        0
    );
    assert_eq!(
        lab.run::<i64>(claim, &claim_keys, &["b", "0", "5000"])
            .await,
        0,
        "a scrape poll waits while a walk is in progress"
    );
    type Entry = (i64, u64, i64, String, String, i64);
    let (_, generation, _, _, _, locked): Entry = lab.run(get, &get_keys, &[""]).await;
    assert_eq!(
        (generation, locked),
        (0, 1),
        "nothing cached, walk in progress"
    );

    // Recording: compare-and-set on the history generation.
    assert_eq!(
        lab.run::<u64>(
            record,
            &record_keys,
            &["a", "1", "h", "p", "60000", "86400000"]
        )
        .await,
        0,
        "wrong generation refused"
    );
    assert_eq!(
        lab.run::<u64>(
            record,
            &record_keys,
            &["a", "0", "h1", "p1", "60000", "86400000"]
        )
        .await,
        1
    );
    let (_, generation, age, data, failure, locked): Entry = lab.run(get, &get_keys, &[""]).await;
    assert_eq!(
        (generation, data.as_str(), failure.as_str(), locked),
        (1, "p1", "", 0)
    );
    assert!((0..1_000_000).contains(&age), "age {age} µs");
    let stored_us: String = lab.cmd(&["HGET", &k.cache("d1"), "stored_us"]).await;
    assert!(
        stored_us.len() >= 16 && stored_us.parse::<u64>().is_ok(),
        "microseconds stored exactly, not as a rounded float: {stored_us}"
    );
    let (_, _, _, data, _, _): Entry = lab.run(get, &get_keys, &["1"]).await;
    assert_eq!(
        data, "",
        "a caller holding generation 1 is not sent the data again"
    );
    let ttl: i64 = lab.cmd(&["PTTL", &k.cache("d1")]).await;
    assert!((1..=60000).contains(&ttl), "cached result expires: {ttl}");
    let history_ttl: i64 = lab.cmd(&["PTTL", &k.history("d1")]).await;
    assert!(
        history_ttl > 60_000,
        "history outlives the cached result: {history_ttl}"
    );

    // The round claim still holds after the walk (the answer says for how
    // many more ms); a scrape poll may take the lock.
    let left = lab
        .run::<i64>(claim, &claim_keys, &["b", "60000", "5000"])
        .await;
    assert!((-60000..=-50000).contains(&left), "{left}");
    assert_eq!(
        lab.run::<i64>(claim, &claim_keys, &["b", "0", "5000"])
            .await,
        1
    );
    // Failure: shared, and releases only the caller's own lock.
    assert_eq!(
        lab.run::<i64>(fail, &fail_keys, &["a", "timeout", "5000"])
            .await,
        1
    );
    let (now, _, _, _, failure, locked): Entry = lab.run(get, &get_keys, &["1"]).await;
    assert_eq!(locked, 1, "a's failure does not release b's lock");
    let (at, message) = failure.split_once('|').expect("failure mark");
    assert_eq!(message, "timeout");
    assert!(at.parse::<i64>().unwrap() <= now);
    assert_eq!(
        lab.run::<i64>(fail, &fail_keys, &["b", "timeout", "5000"])
            .await,
        1
    );
    let (_, _, _, _, _, locked): Entry = lab.run(get, &get_keys, &["1"]).await;
    assert_eq!(locked, 0);
    // A successful record clears the failure mark.
    assert_eq!(
        lab.run::<u64>(
            record,
            &record_keys,
            &["b", "1", "h2", "p2", "60000", "86400000"]
        )
        .await,
        2
    );
    let (_, generation, _, data, failure, _): Entry = lab.run(get, &get_keys, &["1"]).await;
    assert_eq!((generation, data.as_str(), failure.as_str()), (2, "p2", ""));
}
