//! A cached poll as a fleet shares it through Redis: `PolledDevice::from_wire`
//! (format line, then JSON with numbered label sets). Another replica (or
//! anything that can write to Redis) wrote it, so it is read defensively.
//! What reads back is rendered in every format and must write back to the
//! same text (common/mod.rs `check_polled`).
#![no_main]

#[path = "common/mod.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use promsnmp::polled::{PolledDevice, POLL_FORMAT};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The format line is fixed; let the fuzzer spend its bytes on the JSON.
    let with_line;
    let text = if text.starts_with(POLL_FORMAT) {
        text
    } else {
        with_line = format!("{POLL_FORMAT}{text}");
        &with_line
    };
    if let Ok(polled) = PolledDevice::from_wire(text) {
        common::check_polled(&polled, None);
    }
});
