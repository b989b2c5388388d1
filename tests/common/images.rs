//! Images for the engine tests, made without a registry: a Debian base from
//! `debootstrap --variant=minbase bookworm` (with the packages of the
//! stand-ins) imported with `docker import`; from it the stand-ins of
//! `tests/engine/standins.Dockerfile` (Redis, HAProxy, Prometheus, an SNMP
//! agent, a Rust build image holding this machine's toolchain, a distroless
//! runtime); and promsnmp itself from the repository's own `Dockerfile`,
//! its two base images passed as build arguments.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::engine::Engine;
use super::{repo_file, require_program, run_bounded};

/// Debian packages in the base tree: what the stand-ins run and the Rust
/// build links with.
const BASE_PACKAGES: &str =
    "redis-server,redis-tools,haproxy,prometheus,snmpd,gcc,libc6-dev,ca-certificates";
pub const BASE_IMAGE: &str = "promsnmp-test/debian:bookworm";

/// Tags of the images the deployment runs.
pub struct Images {
    pub promsnmp: String,
    pub redis: String,
    pub haproxy: String,
    pub prometheus: String,
    pub snmpd: String,
    pub base: String,
    /// The stand-ins of promsnmp's two base images.
    rust: String,
    runtime: String,
}

/// Where debootstrap downloads from: `PROMSNMP_DEBIAN_MIRROR`, else the
/// first Debian archive apt is configured with here, else deb.debian.org.
fn debian_mirror() -> String {
    if let Ok(m) = std::env::var("PROMSNMP_DEBIAN_MIRROR") {
        return m;
    }
    let deb822 = fs::read_to_string("/etc/apt/sources.list.d/debian.sources").unwrap_or_default();
    let from_deb822 = deb822.split("\n\n").find_map(|stanza| {
        let field = |name: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
        };
        let suites = field("Suites:")?;
        suites
            .split_whitespace()
            .any(|s| s == "bookworm")
            .then(|| field("URIs:"))
            .flatten()
            .and_then(|u| u.split_whitespace().next().map(str::to_string))
    });
    let from_list = || {
        fs::read_to_string("/etc/apt/sources.list")
            .unwrap_or_default()
            .lines()
            .map(str::split_whitespace)
            .find_map(|mut f| match (f.next(), f.next(), f.next()) {
                (Some("deb"), Some(uri), Some("bookworm")) => Some(uri.to_string()),
                _ => None,
            })
    };
    from_deb822
        .or_else(from_list)
        .unwrap_or_else(|| "http://deb.debian.org/debian".to_string())
}

/// Hard-links `from` to `to` (same file system), else copies it.
fn link_or_copy(from: &Path, to: &Path) {
    let cp = |flags: &str| {
        run_bounded(
            Command::new("cp").arg(flags).arg(from).arg(to),
            Duration::from_secs(300),
        )
        .is_ok_and(|o| o.status.success())
    };
    if !cp("-al") {
        let _ = fs::remove_dir_all(to);
        assert!(
            cp("-a"),
            "cannot copy {} to {}",
            from.display(),
            to.display()
        );
    }
}

/// The Rust sysroot of the toolchain running these tests.
fn rust_sysroot() -> PathBuf {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = run_bounded(
        Command::new(&rustc).args(["--print", "sysroot"]),
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("cannot run `{rustc} --print sysroot`: {e}"));
    assert!(out.status.success(), "`{rustc} --print sysroot` failed");
    PathBuf::from(out.stdout.trim())
}

/// Cargo's home: its registry holds the crates of Cargo.lock (fetched by
/// the `cargo test` that runs this).
fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or("/root".into())).join(".cargo")
        })
}

impl Images {
    /// Builds every image on `engine`, printing how long each step took.
    pub fn build(engine: &Engine) -> Images {
        let debootstrap = require_program("debootstrap", "debootstrap");
        let started = Instant::now();

        // 1. The base: debootstrap, then docker import.
        let tree = engine.dir().join("tree");
        let mirror = debian_mirror();
        engine.run(
            Command::new(&debootstrap)
                .arg("--variant=minbase")
                .arg(format!("--include={BASE_PACKAGES}"))
                .arg("bookworm")
                .arg(&tree)
                .arg(&mirror),
            Duration::from_secs(900),
            &format!("debootstrap bookworm from {mirror}"),
        );
        let archives = tree.join("var/cache/apt/archives");
        for deb in fs::read_dir(&archives).into_iter().flatten().flatten() {
            if deb.path().extension().is_some_and(|e| e == "deb") {
                let _ = fs::remove_file(deb.path());
            }
        }
        println!(
            "debootstrap bookworm (minbase + {BASE_PACKAGES}) from {mirror}: {:.0?}",
            started.elapsed()
        );
        let step = Instant::now();
        let mut import = Command::new("bash");
        import
            .args([
                "-o",
                "pipefail",
                "-c",
                r#"tar -C "$1" -c . | "$2" import - "$3""#,
                "import",
            ])
            .arg(&tree)
            .arg(engine.docker_path())
            .arg(BASE_IMAGE)
            .env("DOCKER_HOST", engine.host());
        engine.run(
            &mut import,
            Duration::from_secs(300),
            "docker import of the base tree",
        );
        let _ = fs::remove_dir_all(&tree);
        println!("docker import {BASE_IMAGE}: {:.0?}", step.elapsed());

        // 2. The stand-ins, from one context: the Dockerfile's files, this
        // machine's Rust toolchain and crate cache.
        let step = Instant::now();
        let context = engine.dir().join("standins");
        fs::create_dir_all(context.join("cargo/registry")).expect("context dir");
        for entry in fs::read_dir(repo_file("tests/engine")).expect("tests/engine") {
            let entry = entry.expect("entry");
            fs::copy(entry.path(), context.join(entry.file_name())).expect("copy");
        }
        let sysroot = rust_sysroot();
        fs::create_dir_all(context.join("rust")).expect("rust dir");
        for part in ["bin", "lib"] {
            link_or_copy(&sysroot.join(part), &context.join("rust").join(part));
        }
        let registry = cargo_home().join("registry");
        for part in ["cache", "index"] {
            assert!(
                registry.join(part).is_dir(),
                "no crate {part} in {}: run `cargo fetch` first",
                registry.display()
            );
            link_or_copy(
                &registry.join(part),
                &context.join("cargo/registry").join(part),
            );
        }
        let standin = |target: &str| {
            let tag = format!("promsnmp-test/{target}");
            engine.run(
                engine
                    .docker_command()
                    .args(["build", "-q", "--target", target, "-t", &tag, "-f"])
                    .arg(context.join("standins.Dockerfile"))
                    .arg(&context),
                Duration::from_secs(600),
                &format!("docker build --target {target}"),
            );
            tag
        };
        let images = Images {
            redis: standin("redis"),
            haproxy: standin("haproxy"),
            prometheus: standin("prometheus"),
            snmpd: standin("snmpd"),
            promsnmp: "promsnmp:latest".into(),
            base: BASE_IMAGE.into(),
            rust: standin("rust"),
            runtime: standin("distroless-cc"),
        };
        let _ = fs::remove_dir_all(&context);
        println!("stand-in images: {:.0?}", step.elapsed());

        // 3. promsnmp from the repository's Dockerfile.
        let step = Instant::now();
        images.build_promsnmp(engine, &images.promsnmp, &[]);
        println!(
            "promsnmp image from ./Dockerfile (release build): {:.0?}; all images: {:.0?}",
            step.elapsed(),
            started.elapsed()
        );
        images
    }

    /// `docker build` of the repository's Dockerfile with the stand-in
    /// base images, tagged `tag`, with `extra` arguments (`--label`, …).
    pub fn build_promsnmp(&self, engine: &Engine, tag: &str, extra: &[&str]) {
        // As the README builds it: the image names its commit.
        let commit = std::process::Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .current_dir(repo_file("."))
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
            .unwrap_or_default();
        engine.run(
            engine
                .docker_command()
                .args(["build", "-q"])
                .args(["--build-arg", &format!("BUILD_IMAGE={}", self.rust)])
                .args(["--build-arg", &format!("RUNTIME_IMAGE={}", self.runtime)])
                .args(["--build-arg", &format!("PROMSNMP_GIT_COMMIT={commit}")])
                .args(["-t", tag])
                .args(extra)
                .arg(repo_file(".")),
            Duration::from_secs(1500),
            "docker build of ./Dockerfile",
        );
    }
}
