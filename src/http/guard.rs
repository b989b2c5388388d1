//! What a request must pass before it is dispatched: the host it names
//! (`PROMSNMP_ALLOWED_HOSTS` closes DNS rebinding), and for a request that
//! changes state, where it comes from (no cross-site writes: a browser
//! page of another site cannot post to promsnmp) and what its body is (JSON
//! only: a cross-site form or `text/plain` post is refused before any
//! handler reads it). Also how large a body each method may carry.

use warp::http::Method;

use super::error::ApiError;
use super::Request;
use crate::hosts::{split_authority, AllowedHosts};

/// Health probes answer whatever host an orchestrator names.
fn is_health_probe(path: &str) -> bool {
    path == "/actuator/health" || path.starts_with("/actuator/health/")
}

/// The methods of promsnmp's state-changing routes (any other method is
/// answered 405 by dispatch, whatever its body).
pub fn is_write(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

/// The largest body a request of `method` may carry: reads none, any other
/// method (a write, or one dispatch refuses) `max_write`.
pub fn body_limit(method: &Method, max_write: usize) -> usize {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        0
    } else {
        max_write
    }
}

/// Every check, in order: host, then for writes origin and body type.
pub fn check(req: &Request, allowed: &AllowedHosts) -> Result<(), ApiError> {
    check_host(req, allowed)?;
    if is_write(&req.method) {
        check_origin(req, allowed)?;
        check_body_type(req)?;
    }
    Ok(())
}

/// With allowed hosts configured, `Host` must name one of them.
fn check_host(req: &Request, allowed: &AllowedHosts) -> Result<(), ApiError> {
    if allowed.is_empty() || is_health_probe(&req.path) {
        return Ok(());
    }
    let named = req.header("host").and_then(split_authority);
    match named {
        Some((host, port)) if allowed.allows(host, port) => Ok(()),
        _ => Err(ApiError::Forbidden(format!(
            "host {} is not one of PROMSNMP_ALLOWED_HOSTS",
            req.header("host").unwrap_or("(none)")
        ))),
    }
}

/// A browser says where a request comes from (`Origin`, `Sec-Fetch-Site`):
/// a write from another site is refused. Clients that are not browsers
/// (curl, scripts) send neither and pass.
fn check_origin(req: &Request, allowed: &AllowedHosts) -> Result<(), ApiError> {
    if req
        .header("sec-fetch-site")
        .is_some_and(|s| s.eq_ignore_ascii_case("cross-site"))
    {
        return Err(ApiError::Forbidden(
            "cross-site requests may not change state".into(),
        ));
    }
    let Some(origin) = req.header("origin") else {
        return Ok(());
    };
    let refuse = || {
        ApiError::Forbidden(format!(
            "origin {origin} may not change state here (only this host's own pages or PROMSNMP_ALLOWED_HOSTS)"
        ))
    };
    let (scheme, authority) = origin.split_once("://").ok_or_else(refuse)?;
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return Err(refuse()),
    };
    let (origin_host, origin_port) = split_authority(authority).ok_or_else(refuse)?;
    let origin_port = origin_port.unwrap_or(default_port);
    let same_as_host = req
        .header("host")
        .and_then(split_authority)
        .is_some_and(|(host, port)| {
            host.eq_ignore_ascii_case(origin_host) && port.unwrap_or(default_port) == origin_port
        });
    if same_as_host || allowed.allows(origin_host, Some(origin_port)) {
        Ok(())
    } else {
        Err(refuse())
    }
}

/// A write that carries a body says it is JSON; one without a body needs
/// no type (`curl -X POST …/-/reload`), but may not claim another one.
fn check_body_type(req: &Request) -> Result<(), ApiError> {
    match req.header("content-type") {
        Some(t) if is_json(t) => Ok(()),
        Some(t) => Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type {t} is not accepted: send application/json"
        ))),
        None if req.body.is_empty() => Ok(()),
        None => Err(ApiError::UnsupportedMediaType(
            "a request body needs Content-Type: application/json".into(),
        )),
    }
}

/// JSON, or a JSON merge patch (RFC 7396's own type); neither is a type a
/// cross-site form can send.
fn is_json(content_type: &str) -> bool {
    let media = content_type.split(';').next().unwrap_or("").trim();
    media.eq_ignore_ascii_case("application/json")
        || media.eq_ignore_ascii_case("application/merge-patch+json")
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use warp::http::HeaderMap;

    fn request(method: Method, path: &str, headers: &[(&str, &str)], body: &str) -> Request {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                warp::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        Request {
            method,
            path: path.into(),
            query: Vec::new(),
            headers: map,
            body: Bytes::from(body.to_string()),
        }
    }

    fn status(r: Result<(), ApiError>) -> u16 {
        r.map_or_else(|e| e.status().as_u16(), |()| 200)
    }

    #[test]
    fn cross_site_writes_are_refused() {
        let none = AllowedHosts::default();
        let host = ("Host", "127.0.0.1:8080");
        let json = ("Content-Type", "application/json");
        let post = |headers: &[(&str, &str)], body: &str| {
            status(check(
                &request(Method::POST, "/promsnmp/inventory", headers, body),
                &none,
            ))
        };
        assert_eq!(post(&[host, json], "{}"), 200);
        assert_eq!(
            post(
                &[host, ("Content-Type", "application/json; charset=utf-8")],
                "{}"
            ),
            200
        );
        assert_eq!(post(&[host, ("Content-Type", "text/plain")], "{}"), 415);
        assert_eq!(post(&[host], "{}"), 415);
        assert_eq!(post(&[host], ""), 200, "a bodiless POST needs no type");
        assert_eq!(
            post(&[host, json, ("Origin", "http://evil.example")], "{}"),
            403
        );
        assert_eq!(post(&[host, json, ("Origin", "null")], "{}"), 403);
        assert_eq!(
            post(&[host, json, ("Origin", "http://127.0.0.1:8081")], "{}"),
            403
        );
        assert_eq!(
            post(&[host, json, ("Origin", "http://127.0.0.1:8080")], "{}"),
            200
        );
        assert_eq!(
            post(&[("Host", "h"), json, ("Origin", "http://h")], "{}"),
            200
        );
        assert_eq!(
            post(&[("Host", "h"), json, ("Origin", "http://h:8080")], "{}"),
            403
        );
        assert_eq!(
            post(&[host, json, ("Sec-Fetch-Site", "cross-site")], "{}"),
            403
        );
        assert_eq!(
            post(&[host, json, ("Sec-Fetch-Site", "same-origin")], "{}"),
            200
        );
        // Reads are not writes.
        let get = request(
            Method::GET,
            "/promsnmp/inventory",
            &[host, ("Origin", "http://evil.example")],
            "",
        );
        assert_eq!(status(check(&get, &none)), 200);
        let delete = request(
            Method::DELETE,
            "/promsnmp/discovery",
            &[host, ("Origin", "http://evil.example")],
            "",
        );
        assert_eq!(status(check(&delete, &none)), 403);
    }

    #[test]
    fn allowed_hosts_close_dns_rebinding_but_not_health_probes() {
        let allowed = AllowedHosts::parse("promsnmp.example,admin.example").unwrap();
        let get = |path: &str, host: &str| {
            status(check(
                &request(Method::GET, path, &[("Host", host)], ""),
                &allowed,
            ))
        };
        assert_eq!(get("/promsnmp/inventory", "promsnmp.example:8080"), 200);
        assert_eq!(get("/promsnmp/inventory", "evil.example:8080"), 403);
        assert_eq!(get("/actuator/health/readiness", "10.1.2.3:8080"), 200);
        let no_host = request(Method::GET, "/targets", &[], "");
        assert_eq!(status(check(&no_host, &allowed)), 403);
        // A listed origin may write to another listed host.
        let post = request(
            Method::POST,
            "/-/reload",
            &[
                ("Host", "promsnmp.example:8080"),
                ("Origin", "https://admin.example"),
            ],
            "",
        );
        assert_eq!(status(check(&post, &allowed)), 200);
    }
}
