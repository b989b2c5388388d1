//! What an agent sends back, after SNMP decoding: varbinds (OID + value of
//! any type) for the built-in modules (system, if_mib) and a module of our
//! own that uses every value type, index type, lookup, extract, date
//! pattern, display hint and a filter (common/mod.rs). The OIDs are built
//! from the modules' own columns plus a fuzzed index suffix, so the index
//! decoders (lengths, addresses, implied strings) see hostile indexes.
//! Decoded as a poll does (`modules::decode::decode_module` after the
//! module's filters), then the interface history, the renderers and the
//! cache wire format run on the sample.
#![no_main]

#[path = "common/mod.rs"]
mod common;

use std::sync::OnceLock;

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;

fn bases() -> &'static [Vec<u64>] {
    static B: OnceLock<Vec<Vec<u64>>> = OnceLock::new();
    B.get_or_init(|| common::interesting_oids(common::modules()))
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(uptime) = u.arbitrary::<Option<u32>>() else {
        return;
    };
    let Ok(varbinds) = common::varbinds(&mut u, bases()) else {
        return;
    };
    common::pipeline(common::modules(), &varbinds, uptime, Some(true));
});
