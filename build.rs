//! Records which commit and compiler built the binary, for `--version`, the
//! start-up log, `promsnmp_build_info` and `/actuator/info` (src/identity.rs).
//! A build without the repository (the container image copies no `.git`)
//! takes the commit from `PROMSNMP_GIT_COMMIT`, else says `unknown`.

use std::process::Command;

fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PROMSNMP_GIT_COMMIT");
    let commit = std::env::var("PROMSNMP_GIT_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| output("git", &["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    // A new commit or checkout moves HEAD's reflog: build again then.
    if let Some(dir) = output("git", &["rev-parse", "--absolute-git-dir"]) {
        for file in ["HEAD", "logs/HEAD"] {
            let path = std::path::Path::new(&dir).join(file);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = output(&rustc, &["--version"])
        .and_then(|v| v.split_whitespace().nth(1).map(str::to_string))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=PROMSNMP_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=PROMSNMP_RUSTC_VERSION={rustc_version}");
}
