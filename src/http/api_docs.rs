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

/// The methods the document gives `path` (a `{…}` template segment matches
/// any one segment), as an `Allow` header value; `HEAD` goes with `GET`.
pub fn allowed_methods(path: &str) -> Option<String> {
    static TEMPLATES: OnceLock<Vec<(Vec<String>, String)>> = OnceLock::new();
    let templates = TEMPLATES.get_or_init(|| {
        let doc: serde_json::Value = serde_json::from_slice(document()).unwrap_or_default();
        let paths = doc["paths"].as_object().cloned().unwrap_or_default();
        paths
            .into_iter()
            .map(|(template, item)| {
                let mut methods: Vec<&str> = ["get", "put", "post", "patch", "delete"]
                    .into_iter()
                    .filter(|m| item.get(*m).is_some())
                    .collect();
                if methods.contains(&"get") {
                    methods.insert(1, "head");
                }
                let segments = template.split('/').map(str::to_string).collect();
                (segments, methods.join(", ").to_uppercase())
            })
            .collect()
    });
    let segments: Vec<&str> = path.split('/').collect();
    templates
        .iter()
        .find(|(template, _)| {
            template.len() == segments.len()
                && template
                    .iter()
                    .zip(&segments)
                    .all(|(t, s)| t == s || (t.starts_with('{') && t.ends_with('}')))
        })
        .map(|(_, methods)| methods.clone())
}

pub fn json() -> Response {
    text(StatusCode::OK, "application/json", document().to_vec())
}

pub fn page() -> Response {
    super::console::asset_response("text/html; charset=utf-8", PAGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Route templates the dispatcher counts requests by (`"/…"` literals
    /// of `mod.rs` and `inventory_api.rs`).
    fn routed() -> std::collections::BTreeSet<String> {
        [include_str!("mod.rs"), include_str!("inventory_api.rs")]
            .concat()
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
        let mut routed = routed();
        // The console's route is "/", which the scan skips (mod.rs also
        // names the empty path "/").
        routed.insert("/".into());
        assert_eq!(routed, documented);
    }

    #[test]
    fn allow_lists_the_methods_of_the_path() {
        assert_eq!(allowed_methods("/targets").as_deref(), Some("GET, HEAD"));
        assert_eq!(
            allowed_methods("/promsnmp/inventory/devices/sw-1").as_deref(),
            Some("GET, HEAD, PUT, PATCH, DELETE")
        );
        assert_eq!(
            allowed_methods("/promsnmp/evictCache").as_deref(),
            Some("POST")
        );
        assert_eq!(allowed_methods("/nowhere"), None);
    }

    /// A comma in an unquoted flow-mapping value splits it into keys with no
    /// value (`{description: a, b}` has a key `b`): none of those.
    #[test]
    fn no_value_was_split_by_the_yaml_syntax() {
        fn walk(v: &serde_json::Value, path: &str) {
            match v {
                serde_json::Value::Object(fields) => {
                    for (key, value) in fields {
                        assert!(
                            !(value.is_null() && key.contains(' ')),
                            "{path}/{key}: a split value"
                        );
                        walk(value, &format!("{path}/{key}"));
                    }
                }
                serde_json::Value::Array(items) => items.iter().for_each(|i| walk(i, path)),
                _ => {}
            }
        }
        walk(&serde_json::from_slice(document()).unwrap(), "");
    }

    #[test]
    fn operation_ids_are_unique() {
        let doc: serde_json::Value = serde_json::from_slice(document()).unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for item in doc["paths"].as_object().unwrap().values() {
            for op in item.as_object().unwrap().values() {
                if let Some(id) = op["operationId"].as_str() {
                    assert!(seen.insert(id.to_string()), "operationId {id} twice");
                }
            }
        }
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
