//! Log lines on standard error: text, with colours only when standard error
//! is a terminal (no escape codes in files or `docker logs`), or JSON, one
//! object per line with `timestamp`, `level`, `target`, `message` and the
//! event's fields (`PROMSNMP_LOG_FORMAT=json`).

use std::io::IsTerminal;

use crate::config::LogFormat;

/// Installs the process-wide subscriber. `filter` was checked by
/// [`crate::config`]; a second call (tests) leaves the first in place.
pub fn init(format: LogFormat, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::builder()
        .parse(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
}
