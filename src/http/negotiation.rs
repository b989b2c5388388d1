//! Content negotiation of scrape responses: the exposition format from the
//! `Accept` header (as Prometheus negotiates) and gzip from `Accept-Encoding`.

use crate::render::Format;

/// Picks the format from an HTTP Accept header, as Prometheus negotiates: protobuf when
/// `application/vnd.google.protobuf` with `proto=io.prometheus.client.MetricFamily` and
/// `encoding=delimited` is acceptable (q > 0), else OpenMetrics when
/// `application/openmetrics-text` is acceptable, else Text. The highest q-value wins;
/// ties go protobuf > OpenMetrics > text. A `*/*` range stands for `default`, as does a
/// missing or empty header. A header naming nothing acceptable gives Text.
pub fn negotiate(accept: Option<&str>, default: Format) -> Format {
    let Some(accept) = accept.map(str::trim).filter(|a| !a.is_empty()) else {
        return default;
    };
    let mut best: Option<(f32, Format)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim();
        let mut q = 1.0f32;
        let mut proto_family = false;
        let mut delimited = false;
        for param in parts {
            let Some((key, value)) = param.split_once('=') else {
                continue;
            };
            let (key, value) = (key.trim(), value.trim().trim_matches('"'));
            if key.eq_ignore_ascii_case("q") {
                // An unparseable q-value makes the range unacceptable.
                q = value
                    .parse::<f32>()
                    .ok()
                    .filter(|q| q.is_finite())
                    .unwrap_or(0.0);
            } else if key.eq_ignore_ascii_case("proto") {
                proto_family = value == "io.prometheus.client.MetricFamily";
            } else if key.eq_ignore_ascii_case("encoding") {
                delimited = value.eq_ignore_ascii_case("delimited");
            }
        }
        let format = if media.eq_ignore_ascii_case("application/vnd.google.protobuf") {
            if !(proto_family && delimited) {
                continue;
            }
            Format::Protobuf
        } else if media.eq_ignore_ascii_case("application/openmetrics-text") {
            Format::OpenMetrics
        } else if media.eq_ignore_ascii_case("text/plain") || media.eq_ignore_ascii_case("text/*") {
            Format::Text
        } else if media == "*/*" {
            default
        } else {
            continue;
        };
        if q <= 0.0 {
            continue;
        }
        let better = match best {
            None => true,
            Some((best_q, best_format)) => {
                q > best_q || (q == best_q && preference(format) > preference(best_format))
            }
        };
        if better {
            best = Some((q, format));
        }
    }
    best.map_or(Format::Text, |(_, format)| format)
}

/// Tie-break between equal q-values.
fn preference(format: Format) -> u8 {
    match format {
        Format::Text => 0,
        Format::OpenMetrics => 1,
        Format::Protobuf => 2,
    }
}

/// gzip at a fast level: bodies are compressed once per poll, served many times.
pub fn gzip_bytes(body: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    encoder.write_all(body).expect("writing to a Vec");
    encoder.finish().expect("writing to a Vec")
}

/// Whether an `Accept-Encoding` header accepts gzip (and does not refuse it with `q=0`).
pub fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    accept_encoding.is_some_and(|header| {
        header.split(',').any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                let p = p.trim();
                p.strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f64>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            coding.eq_ignore_ascii_case("gzip") && !refused
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        use Format::*;
        let prometheus_native = "application/vnd.google.protobuf;\
            proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,\
            text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
        assert_eq!(negotiate(Some(prometheus_native), Text), Protobuf);
        let prometheus_default = "application/openmetrics-text;version=1.0.0,\
            application/openmetrics-text;version=0.0.1;q=0.75,\
            text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(negotiate(Some(prometheus_default), Text), OpenMetrics);
        assert_eq!(negotiate(Some("text/plain"), OpenMetrics), Text);
        assert_eq!(negotiate(None, OpenMetrics), OpenMetrics);
        assert_eq!(negotiate(None, Text), Text);
        assert_eq!(negotiate(Some("  "), Protobuf), Protobuf);
        assert_eq!(negotiate(Some("*/*"), OpenMetrics), OpenMetrics);
        // Protobuf needs both parameters, and a positive q.
        let no_params = "application/vnd.google.protobuf,text/plain;q=0.1";
        assert_eq!(negotiate(Some(no_params), OpenMetrics), Text);
        let refused = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;\
            encoding=delimited;q=0,application/openmetrics-text;q=0.1";
        assert_eq!(negotiate(Some(refused), Text), OpenMetrics);
        // Highest q wins; ties prefer protobuf, then OpenMetrics.
        let text_first = "text/plain;q=0.9, application/openmetrics-text; version=1.0.0; q=0.5";
        assert_eq!(negotiate(Some(text_first), OpenMetrics), Text);
        assert_eq!(
            negotiate(Some("text/plain,application/openmetrics-text"), Text),
            OpenMetrics
        );
        assert_eq!(
            negotiate(Some("text/plain;q=0.5,*/*;q=0.9"), Protobuf),
            Protobuf
        );
        assert_eq!(negotiate(Some("application/json"), OpenMetrics), Text);
    }

    #[test]
    fn gzip_negotiation() {
        assert!(accepts_gzip(Some("gzip")));
        assert!(accepts_gzip(Some("deflate, GZIP;q=0.5")));
        assert!(!accepts_gzip(Some("gzip;q=0")));
        assert!(!accepts_gzip(Some("identity")));
        assert!(!accepts_gzip(None));
    }

    #[test]
    fn gzip_round_trip() {
        let body = b"ifHCInOctets{ifIndex=\"1\"} 42\n".repeat(100);
        let packed = gzip_bytes(&body);
        assert!(packed.len() < body.len() / 5);
        let mut out = Vec::new();
        use std::io::Read;
        flate2::read::GzDecoder::new(&packed[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, body);
    }

    #[test]
    fn content_types() {
        assert_eq!(
            Format::Text.content_type(),
            "text/plain; version=0.0.4; charset=utf-8"
        );
        assert_eq!(
            Format::OpenMetrics.content_type(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
        assert_eq!(
            Format::Protobuf.content_type(),
            "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; \
             encoding=delimited"
        );
    }
}
