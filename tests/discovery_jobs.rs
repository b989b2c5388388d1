//! Discovery that explains itself, against a real snmpd: every probed
//! address ends as found, no answer (what a wrong v2c community looks
//! like), refused by the agent with the reason its SNMPv3 report gives
//! (unknown user, wrong digest; a request it could not decrypt), or unresolved; the
//! counts add up; and in a fleet (two replicas, a real redis-server) a job
//! started on one replica is listed and followed through the other.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

const QUIET: [(&str, &str); 2] = [("DISCOVERY_CRON", "-"), ("COLLECTION_INTERVAL", "600000")];

fn agent() -> Snmpd {
    Snmpd::start(&SnmpdConfig {
        users: vec![V3User::auth_priv(
            "monitor",
            "SHA",
            "auth-pass-123",
            "AES",
            "priv-pass-123",
        )],
        ..Default::default()
    })
}

fn port_of(snmpd: &Snmpd) -> u16 {
    snmpd.addr().rsplit(':').next().unwrap().parse().unwrap()
}

fn v2c(id: &str, port: u16, community: &str) -> Value {
    json!({"id": id, "potentialTargets": ["127.0.0.1"], "port": port, "version": "v2c",
           "agentType": "snmp-community", "readCommunity": community, "timeout": 500, "retries": 0})
}

fn v3(id: &str, port: u16, user: &str, auth: &str, privacy: &str) -> Value {
    json!({"id": id, "potentialTargets": ["127.0.0.1"], "port": port, "version": "v3",
           "agentType": "snmp-user", "securityName": user, "securityLevel": 3,
           "authProtocol": "SHA", "authPassphrase": auth, "privProtocol": "AES",
           "privPassphrase": privacy, "timeout": 500, "retries": 0})
}

/// Starts the job on `start_on` and waits (bounded 30 s) until `read_on`
/// says it ended.
fn run_job(start_on: &str, read_on: &str, seed: &Value) -> Value {
    let r = http_post_json(start_on, "/promsnmp/discovery", &seed.to_string());
    assert_eq!(r.status, 202, "{}", r.text());
    let id = seed["id"].as_str().unwrap();
    wait_for(
        &format!("job {id} to finish, read on {read_on}"),
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let r = http_get(read_on, &format!("/promsnmp/discovery/{id}"));
            (r.status == 200)
                .then(|| r.json())
                .filter(|v| v["progress"]["state"] == "finished")
                .map(|v| v["progress"].clone())
        },
    )
}

/// The one address's outcome of a one-address job, after checking the counts.
fn only_outcome(progress: &Value) -> (String, String) {
    assert_eq!(progress["total"], 1, "{progress}");
    assert_eq!(progress["probed"], 1, "{progress}");
    let counted: u64 = ["found", "noAnswer", "refused", "unresolved"]
        .iter()
        .map(|k| progress[k].as_u64().unwrap())
        .sum();
    assert_eq!(counted, 1, "counts add up to the probed: {progress}");
    let outcomes = progress["outcomes"].as_array().unwrap();
    assert_eq!(outcomes.len(), 1, "{progress}");
    (
        outcomes[0]["outcome"].as_str().unwrap().to_string(),
        outcomes[0]["detail"].as_str().unwrap_or("").to_string(),
    )
}

#[test]
fn each_address_says_how_it_ended() {
    let snmpd = agent();
    let port = port_of(&snmpd);
    let p = Promsnmp::start(&QUIET);
    let addr = p.addr();

    let found = run_job(&addr, &addr, &v2c("right-community", port, "public"));
    assert_eq!(only_outcome(&found).0, "found");
    assert_eq!(found["outcomes"][0]["sysName"], "testdev");

    let (outcome, detail) = only_outcome(&run_job(
        &addr,
        &addr,
        &v2c("wrong-community", port, "privat"),
    ));
    assert_eq!(outcome, "noAnswer");
    assert!(detail.contains("community is wrong"), "{detail}");

    for (id, user, auth, privacy, reason) in [
        (
            "unknown-user",
            "nobody",
            "auth-pass-123",
            "priv-pass-123",
            "unknown user",
        ),
        (
            "wrong-auth",
            "monitor",
            "not-the-pass",
            "priv-pass-123",
            "wrong digest",
        ),
        (
            "wrong-priv",
            "monitor",
            "auth-pass-123",
            "not-the-pass",
            "privacy passphrase",
        ),
    ] {
        let (outcome, detail) =
            only_outcome(&run_job(&addr, &addr, &v3(id, port, user, auth, privacy)));
        assert_eq!(outcome, "refused", "{id}: {detail}");
        assert!(
            detail.contains(reason),
            "{id}: `{reason}` not in `{detail}`"
        );
    }
    let right = run_job(
        &addr,
        &addr,
        &v3(
            "right-v3",
            port,
            "monitor",
            "auth-pass-123",
            "priv-pass-123",
        ),
    );
    assert_eq!(only_outcome(&right).0, "found");

    // A name that does not resolve.
    let mut unresolved = v2c("no-such-name", port, "public");
    unresolved["potentialTargets"] = json!(["no-such-host.invalid"]);
    let (outcome, _) = only_outcome(&run_job(&addr, &addr, &unresolved));
    assert_eq!(outcome, "unresolved");

    // The list: newest first, every job, counts without the per-address lists.
    let jobs = http_get(&addr, "/promsnmp/discovery/jobs").json();
    let ids: Vec<&str> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    for id in [
        "right-community",
        "wrong-community",
        "unknown-user",
        "wrong-auth",
        "wrong-priv",
        "right-v3",
        "no-such-name",
    ] {
        assert!(ids.contains(&id), "{id} not listed: {ids:?}");
    }
    assert!(jobs[0].get("outcomes").is_none(), "{}", jobs[0]);
    let r = http_get(&addr, "/promsnmp/discovery/jobs?limit=0");
    assert_eq!(r.status, 400, "{}", r.text());
    let two = http_get(&addr, "/promsnmp/discovery/jobs?limit=2").json();
    assert_eq!(two.as_array().unwrap().len(), 2);
}

#[test]
fn a_fleet_job_is_followed_through_any_replica() {
    let snmpd = agent();
    let port = port_of(&snmpd);
    let redis = Redis::start();
    let shared = tempfile::tempdir().unwrap();
    let file = shared.path().join("inventory.json");
    let url = redis.url();
    let replica = |id: &str| {
        let mut env = QUIET.to_vec();
        env.extend([
            ("REDIS_URL", url.as_str()),
            ("PROM_INV_FILE", file.to_str().unwrap()),
            ("PROMSNMP_BIND_ADDRESS", "127.0.0.1"),
            ("PROMSNMP_REPLICA_ID", id),
            ("PROMSNMP_LEASE_TTL_MS", "3000"),
            ("PROMSNMP_LEASE_RENEW_MS", "1000"),
        ]);
        Promsnmp::start(&env)
    };
    let a = replica("replica-a");
    let b = replica("replica-b");
    wait_for_fleet_leader(&[a.addr(), b.addr()], &[]);

    let progress = run_job(
        &a.addr(),
        &b.addr(),
        &v3(
            "fleet-wrong-auth",
            port,
            "monitor",
            "nope-nope",
            "priv-pass-123",
        ),
    );
    assert_eq!(progress["replica"], "replica-a", "{progress}");
    let (outcome, detail) = only_outcome(&progress);
    assert_eq!(outcome, "refused");
    assert!(detail.contains("wrong digest"), "{detail}");

    let progress = run_job(&b.addr(), &a.addr(), &v2c("fleet-found", port, "public"));
    assert_eq!(progress["replica"], "replica-b");
    assert_eq!(only_outcome(&progress).0, "found");
    for r in [&a, &b] {
        let jobs = http_get(&r.addr(), "/promsnmp/discovery/jobs").json();
        let listed: Vec<(String, String)> = jobs
            .as_array()
            .unwrap()
            .iter()
            .map(|j| {
                (
                    j["id"].as_str().unwrap().into(),
                    j["replica"].as_str().unwrap().into(),
                )
            })
            .collect();
        for job in [
            ("fleet-wrong-auth", "replica-a"),
            ("fleet-found", "replica-b"),
        ] {
            assert!(
                listed.contains(&(job.0.to_string(), job.1.to_string())),
                "{job:?} not listed on {}: {listed:?}",
                r.addr()
            );
        }
    }
    // The found device reached the fleet's inventory, seen by both.
    for r in [&a, &b] {
        wait_for(
            "the device on every replica",
            Duration::from_secs(10),
            Duration::from_millis(100),
            || {
                let inventory = http_get(&r.addr(), "/promsnmp/inventory").json();
                (inventory["devices"].as_array().map(Vec::len) == Some(1)).then_some(())
            },
        );
    }
}
