//! The OpenAPI 3 description of the whole HTTP API (`openapi.yaml`, kept
//! beside the handlers), served as JSON at `/v3/api-docs` (the Java
//! PromSNMP's springdoc path) and as a readable page at `/swagger-ui.html`
//! (`api_docs.html`, no external assets).

use std::sync::OnceLock;

use warp::http::StatusCode;

use super::error::{text, Response};

const DOCUMENT: &str = include_str!("openapi.yaml");
const PAGE: &str = include_str!("api_docs.html");

/// The document as JSON, with this binary's version.
pub fn document() -> &'static [u8] {
    static JSON: OnceLock<Vec<u8>> = OnceLock::new();
    JSON.get_or_init(|| {
        // The YAML is part of the binary and checked by the tests below.
        let mut doc: serde_json::Value =
            serde_yaml_ng::from_str(DOCUMENT).expect("openapi.yaml is valid YAML");
        doc["info"]["version"] = serde_json::json!(crate::identity::VERSION);
        serde_json::to_vec(&doc).expect("JSON")
    })
}

pub fn json() -> Response {
    text(StatusCode::OK, "application/json", document().to_vec())
}

pub fn page() -> Response {
    text(
        StatusCode::OK,
        "text/html; charset=utf-8",
        PAGE.as_bytes().to_vec(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Route templates the dispatcher counts requests by (`"/…"` literals
    /// of `mod.rs`).
    fn routed() -> std::collections::BTreeSet<String> {
        include_str!("mod.rs")
            .split('"')
            .skip(1)
            .step_by(2)
            .filter(|s| s.starts_with('/') && s.len() > 1 && !s.contains(' '))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn every_route_is_documented_and_nothing_else() {
        let doc: serde_json::Value = serde_json::from_slice(document()).unwrap();
        assert_eq!(doc["openapi"], "3.0.3");
        assert_eq!(doc["info"]["version"], crate::identity::VERSION);
        let documented: std::collections::BTreeSet<String> =
            doc["paths"].as_object().unwrap().keys().cloned().collect();
        assert_eq!(routed(), documented);
    }

    #[test]
    fn every_reference_resolves() {
        let doc: serde_json::Value = serde_json::from_slice(document()).unwrap();
        let text = doc.to_string();
        for piece in text.split("\"$ref\":\"").skip(1) {
            let target = piece.split('"').next().unwrap();
            let pointer = target.trim_start_matches('#');
            assert!(doc.pointer(pointer).is_some(), "{target} does not resolve");
        }
    }
}
