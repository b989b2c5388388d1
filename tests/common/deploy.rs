//! The deployment files (`haproxy.cfg`, `compose/`, `alerts/`) as the tests
//! read them: paths, the dashboard's queries, and the edits an operator
//! makes (the web configuration's hashes).

use std::fs;
use std::path::PathBuf;

/// A file of the repository, by path relative to its root.
pub fn repo_file(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

pub fn read_repo_file(relative: &str) -> String {
    let path = repo_file(relative);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// `text` with `from` replaced by `to`, asserting `from` occurs.
pub fn substitute(text: &str, from: &str, to: &str, file: &str) -> String {
    assert!(text.contains(from), "{file} no longer contains `{from}`");
    text.replace(from, to)
}

/// `compose/web/web.yml.example` with real bcrypt hashes (cost 4) of the
/// two passwords in place of its placeholders, as an operator fills it in.
pub fn web_yml_from_example(prometheus_password: &str, operator_password: &str) -> String {
    let file = "compose/web/web.yml.example";
    let filled = substitute(
        &read_repo_file(file),
        "<bcrypt hash of the password in prometheus.password>",
        &bcrypt::hash(prometheus_password, 4).unwrap(),
        file,
    );
    substitute(
        &filled,
        "operator: <bcrypt hash>",
        &format!("operator: {}", bcrypt::hash(operator_password, 4).unwrap()),
        file,
    )
}

/// One query of a dashboard panel.
pub struct PanelQuery {
    pub panel: String,
    pub expr: String,
}

/// Every panel query of the dashboard (rows' nested panels included), with
/// Grafana's variables replaced so Prometheus can run them: `$device` and
/// `$interface` match everything, `$__rate_interval` 1m, `$__interval` 15s,
/// `$__range` 1h. Panics on an unknown variable.
pub fn dashboard_queries(dashboard: &serde_json::Value) -> Vec<PanelQuery> {
    let mut panels: Vec<&serde_json::Value> = Vec::new();
    for p in dashboard["panels"].as_array().expect("panels") {
        panels.push(p);
        if let Some(nested) = p["panels"].as_array() {
            panels.extend(nested);
        }
    }
    let mut out = Vec::new();
    for p in panels {
        let title = p["title"].as_str().unwrap_or("?").to_string();
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("panel `{title}`: a target without expr"));
            out.push(PanelQuery {
                panel: title.clone(),
                expr: substitute_grafana_variables(expr),
            });
        }
    }
    out
}

fn substitute_grafana_variables(expr: &str) -> String {
    let replaced = expr
        .replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "1h")
        .replace("$device", ".*")
        .replace("$interface", ".*");
    assert!(
        !replaced.contains('$'),
        "unknown Grafana variable in `{expr}`"
    );
    replaced
}
