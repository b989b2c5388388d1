//! Rendered `/snmp` bodies of each device's latest poll, per format and
//! encoding: a poll is rendered (and compressed) once, however often it is
//! scraped until the next one replaces it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::negotiation::gzip_bytes;
use crate::polled::PolledDevice;
use crate::render::{render, Format, RenderOptions};

pub struct RenderCache {
    /// By device id, plus the module selection when a scrape names one.
    entries: Mutex<HashMap<String, DeviceBodies>>,
    /// Bound on entries held.
    capacity: usize,
}

/// The bodies of one poll, by [`body_slot`].
struct DeviceBodies {
    /// The poll these bytes were rendered from (compared by pointer).
    polled: Arc<PolledDevice>,
    bodies: [Option<Bytes>; 6],
}

fn body_slot(format: Format, gzip: bool) -> usize {
    let format = match format {
        Format::Text => 0,
        Format::OpenMetrics => 1,
        Format::Protobuf => 2,
    };
    format * 2 + usize::from(gzip)
}

impl RenderCache {
    pub fn new(capacity: usize) -> RenderCache {
        RenderCache {
            entries: Default::default(),
            capacity: capacity.max(1),
        }
    }

    /// The body of `polled` (one device, no device labels, only `modules`
    /// when given) in `format`, gzip-compressed when `gzip`. `key` names the
    /// device and selection.
    pub fn single_device(
        &self,
        key: &str,
        polled: &Arc<PolledDevice>,
        modules: Option<&[String]>,
        format: Format,
        gzip: bool,
    ) -> Bytes {
        let slot = body_slot(format, gzip);
        if let Some(cached) = self.entries.lock().expect("render cache").get(key) {
            if let (true, Some(body)) = (Arc::ptr_eq(&cached.polled, polled), &cached.bodies[slot])
            {
                return body.clone();
            }
        }
        let mut body = Vec::with_capacity(64 * 1024);
        render(
            &[&**polled],
            format,
            RenderOptions {
                device_label: false,
                modules,
            },
            &mut body,
        );
        let body = Bytes::from(if gzip { gzip_bytes(&body) } else { body });
        let mut entries = self.entries.lock().expect("render cache");
        if entries.len() >= self.capacity && !entries.contains_key(key) {
            entries.clear(); // rare: more devices than the bound; start over
        }
        let cached = entries
            .entry(key.to_string())
            .or_insert_with(|| DeviceBodies {
                polled: polled.clone(),
                bodies: Default::default(),
            });
        if !Arc::ptr_eq(&cached.polled, polled) {
            if cached.polled.sample.polled_at_ms > polled.sample.polled_at_ms {
                return body; // rendered from a poll already replaced
            }
            // A newer poll: its bodies replace every body of the old one.
            cached.polled = polled.clone();
            cached.bodies = Default::default();
        }
        cached.bodies[slot] = Some(body.clone());
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poll_is_rendered_once_per_format_and_encoding() {
        let poll = |uptime: u32, at_ms: i64| {
            Arc::new(PolledDevice::new(
                crate::sample::Sample {
                    device_id: "d".into(),
                    device_name: "d".into(),
                    target: "127.0.0.1:161".into(),
                    polled_at_ms: at_ms,
                    poll_duration_seconds: at_ms as f64,
                    sys_uptime_ticks: Some(uptime),
                    modules: vec![],
                },
                &Default::default(),
            ))
        };
        let cache = RenderCache::new(10);
        let first = poll(100, 1);
        let text = cache.single_device("d", &first, None, Format::Text, false);
        let again = cache.single_device("d", &first, None, Format::Text, false);
        assert_eq!(text.as_ptr(), again.as_ptr(), "served from the cache");
        let packed = cache.single_device("d", &first, None, Format::Text, true);
        assert_ne!(packed, text, "gzip is its own body");
        let newer = poll(200, 2);
        let fresh = cache.single_device("d", &newer, None, Format::Text, false);
        assert_ne!(fresh, text, "a new poll is rendered again");
        // A render of the replaced poll does not evict the newer one.
        cache.single_device("d", &first, None, Format::OpenMetrics, false);
        let still = cache.single_device("d", &newer, None, Format::Text, false);
        assert_eq!(still.as_ptr(), fresh.as_ptr());
    }
}
