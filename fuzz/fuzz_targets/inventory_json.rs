//! Inventory documents as the admin API and the inventory file receive
//! them (the Java PromSNMP's JSON shape): `POST /promsnmp/inventory`
//! (`Inventory::from_import_json`), the file's contents (`Inventory::from_json`)
//! and a discovery request body (`DiscoverySeed::from_json`). What validates
//! must also survive what follows: export and re-import, device lookup by
//! target, module-name checks, and the SNMP session settings of each agent.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use promsnmp::inventory::{DiscoverySeed, Inventory};
use promsnmp::modules::ModuleSet;
use promsnmp::snmp::AgentParams;

fn modules() -> &'static ModuleSet {
    static SET: OnceLock<ModuleSet> = OnceLock::new();
    SET.get_or_init(ModuleSet::builtin)
}

fn exercise(inv: &Inventory) {
    // An export must import again, and then export the same bytes.
    let exported = inv.to_json();
    let again = Inventory::from_json(&exported)
        .unwrap_or_else(|e| panic!("an exported inventory does not import: {e:?}"));
    assert_eq!(
        String::from_utf8_lossy(&again.to_json()),
        String::from_utf8_lossy(&exported),
        "export → import → export changed the document"
    );
    let (imported, seeds_given) = Inventory::from_import_json(&exported)
        .unwrap_or_else(|e| panic!("an exported inventory is not a valid import: {e:?}"));
    assert!(seeds_given);
    assert_eq!(imported.devices.len(), inv.devices.len());
    let _ = modules().check_inventory(inv);
    let _ = modules().unknown_in(inv);
    for device in &inv.devices {
        let agent = device.poll_agent().expect("a valid device has an agent");
        let _ = AgentParams::from_agent(agent, 25);
        let _ = agent.engine_id_bytes();
        let target = agent.endpoint.target();
        let _ = device.matches_target(&target);
        let _ = inv.find_device(&target);
        let _ = inv.find_device(&device.sys_name);
        if let Some(names) = &device.modules {
            let _ = modules().resolve(Some(names.as_slice()));
        }
    }
    for seed in &inv.discovery_seeds {
        let agent = seed.agent_for("192.0.2.1".parse().unwrap(), seed.port);
        let _ = AgentParams::from_agent(&agent, 25);
        // A stored seed is also a valid discovery request body.
        let body = serde_json::to_vec(seed).expect("a seed serialises");
        DiscoverySeed::from_json(&body)
            .unwrap_or_else(|e| panic!("a stored seed is not a valid request body: {e:?}"));
    }
}

/// `FUZZ_DEBUG=1`: say why inputs were refused.
fn debug() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("FUZZ_DEBUG").is_some())
}

fuzz_target!(|data: &[u8]| {
    match Inventory::from_import_json(data) {
        Ok((inv, _)) => exercise(&inv),
        Err(e) if debug() => eprintln!("import refused: {e:?}"),
        Err(_) => {}
    }
    if let Ok(inv) = Inventory::from_json(data) {
        exercise(&inv);
    }
    match DiscoverySeed::from_json(data) {
        Ok(seed) => {
            let mut inv = Inventory::default();
            inv.upsert_seed(seed);
            exercise(&inv);
        }
        Err(e) if debug() => eprintln!("seed refused: {e:?}"),
        Err(_) => {}
    }
});
