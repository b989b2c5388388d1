//! Host names and authorities (`host[:port]`, `[v6]:port`) as requests
//! name them, and the hosts an operator allows (`PROMSNMP_ALLOWED_HOSTS`).

/// Host names (optionally with a port) a request may name in `Host`.
/// Empty: any host.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AllowedHosts(Vec<HostPattern>);

/// `name` (any port) or `name:port`, lower case.
#[derive(Debug, Clone, PartialEq)]
struct HostPattern {
    host: String,
    port: Option<u16>,
}

impl AllowedHosts {
    /// Parses `PROMSNMP_ALLOWED_HOSTS`: comma-separated `host` or
    /// `host:port` (IPv6 in brackets). Errors name the bad entry.
    pub fn parse(list: &str) -> Result<AllowedHosts, String> {
        let mut patterns = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (host, port) = split_authority(entry)
                .ok_or_else(|| format!("`{entry}` is not a host name or host:port"))?;
            let valid_char = |c: char| c.is_ascii_alphanumeric() || "-._:[]".contains(c);
            if host.is_empty() || !host.chars().all(valid_char) {
                return Err(format!(
                    "`{entry}` is not a host name or host:port (no scheme, path or spaces)"
                ));
            }
            patterns.push(HostPattern {
                host: host.to_ascii_lowercase(),
                port,
            });
        }
        Ok(AllowedHosts(patterns))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn allows(&self, host: &str, port: Option<u16>) -> bool {
        self.0
            .iter()
            .any(|p| p.host.eq_ignore_ascii_case(host) && (p.port.is_none() || p.port == port))
    }
}

/// The list as configured (normalised), comma-separated; empty for any host.
impl std::fmt::Display for AllowedHosts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            match p.port {
                Some(port) => write!(f, "{sep}{}:{port}", p.host)?,
                None => write!(f, "{sep}{}", p.host)?,
            }
        }
        Ok(())
    }
}

/// Splits `host[:port]` (`[v6]:port` too); `None` when the port is not a
/// number or the text has characters no authority has.
pub fn split_authority(text: &str) -> Option<(&str, Option<u16>)> {
    if text.contains(['/', ' ', '@', '?', '#']) {
        return None;
    }
    if let Some(rest) = text.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((&text[..v6.len() + 2], port));
    }
    match text.rsplit_once(':') {
        Some((host, port)) => Some((host, Some(port.parse().ok()?))),
        None => Some((text, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_hosts_parse_and_refuse_urls() {
        let a = AllowedHosts::parse(" Promsnmp.example , 10.0.0.5:8080,[::1]:8080,").unwrap();
        assert!(a.allows("promsnmp.example", Some(9000)));
        assert!(a.allows("10.0.0.5", Some(8080)));
        assert!(!a.allows("10.0.0.5", Some(8081)));
        assert!(a.allows("[::1]", Some(8080)));
        assert!(AllowedHosts::parse("").unwrap().is_empty());
        for bad in ["http://x", "x/y", "x:port", "a b", "[::1", "x:99999"] {
            assert!(AllowedHosts::parse(bad).is_err(), "{bad}");
        }
    }
}
