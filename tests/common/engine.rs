//! A real Docker engine for the deployment tests: Debian's `dockerd`
//! (package docker.io) started on its own socket, data root and exec root in
//! a temporary directory, its containers under their own cgroup parent. On
//! drop everything it made is removed and the host restored: containers,
//! swarm state, mounts, the `docker0` and network bridges, the iptables
//! chains and rules, the IP forwarding switch.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use super::{require_program, run_bounded, wait_for, CmdOutput, ProcGuard};

/// iptables tables dockerd writes to (filter, nat) or may (mangle, raw).
const IPTABLES_TABLES: [&str; 4] = ["filter", "nat", "mangle", "raw"];
/// Kernel switches dockerd turns on.
const SYSCTLS: [&str; 3] = [
    "/proc/sys/net/ipv4/ip_forward",
    "/proc/sys/net/bridge/bridge-nf-call-iptables",
    "/proc/sys/net/bridge/bridge-nf-call-ip6tables",
];

/// Directories dockerd and its containerd make whatever their roots:
/// plugins, the shims' sockets.
const RUN_DIRS: [&str; 2] = ["/run/docker", "/run/containerd"];
const SYSTEM_CONTAINERD: &str = "/run/containerd/containerd.sock";
/// Engines live in `/tmp/<ENGINE_PREFIX>…`, their containers' cgroups in
/// `/<ENGINE_PREFIX>-<pid>`.
const ENGINE_PREFIX: &str = "psn-engine";

/// Whether a process named `name` runs.
fn process_running(name: &str) -> bool {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .any(|p| fs::read_to_string(p.path().join("comm")).is_ok_and(|comm| comm.trim() == name))
}

/// What a test run that was killed (no drop ran) left: its processes,
/// mounts, directories, cgroups and bridges. Only called when no dockerd
/// runs, so the bridges are nobody's.
fn clean_after_killed_runs() {
    let stale: Vec<PathBuf> = fs::read_dir("/tmp")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(ENGINE_PREFIX))
        .map(|e| e.path())
        .collect();
    for dir in &stale {
        eprintln!(
            "removing what a killed engine test left in {}",
            dir.display()
        );
        kill_processes_mentioning(dir);
        unmount_under(dir);
        let _ = fs::remove_dir_all(dir);
    }
    for cgroup in cgroup_roots()
        .into_iter()
        .flat_map(|root| fs::read_dir(root).into_iter().flatten().flatten())
        .filter(|e| e.file_name().to_string_lossy().starts_with(ENGINE_PREFIX))
    {
        kill_cgroup(&cgroup.path());
    }
    for bridge in ["docker0", "docker_gwbridge"] {
        if link_names().contains(bridge) {
            let _ = run_bounded(
                Command::new("ip").args(["link", "delete", bridge]),
                Duration::from_secs(10),
            );
        }
    }
}

/// What the host looked like before the engine started.
struct HostState {
    /// Those of [`RUN_DIRS`] that existed.
    run_dirs: Vec<&'static str>,
    iptables: Vec<(String, String)>,
    links: BTreeSet<String>,
    sysctls: Vec<(String, String)>,
}

impl HostState {
    fn read(iptables_save: &Path) -> HostState {
        HostState {
            run_dirs: RUN_DIRS
                .into_iter()
                .filter(|d| Path::new(d).exists())
                .collect(),
            // Without a true picture of the tables the teardown could not
            // tell Docker's rules from the host's: refuse to start.
            iptables: IPTABLES_TABLES
                .iter()
                .map(|t| {
                    let dump = iptables_dump(iptables_save, t)
                        .unwrap_or_else(|e| panic!("cannot read the host's iptables: {e}"));
                    (t.to_string(), dump)
                })
                .collect(),
            links: link_names(),
            sysctls: SYSCTLS
                .iter()
                .filter_map(|p| Some((p.to_string(), fs::read_to_string(p).ok()?)))
                .collect(),
        }
    }
}

/// `iptables-save -t table` without its comment lines (they carry times)
/// and the packet counters.
fn iptables_dump(iptables_save: &Path, table: &str) -> Result<String, String> {
    let o = run_bounded(
        Command::new(iptables_save).args(["-t", table]),
        Duration::from_secs(20),
    )?;
    if !o.status.success() {
        return Err(format!(
            "iptables-save -t {table}: {}: {}",
            o.status, o.stderr
        ));
    }
    Ok(o.stdout
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            if l.starts_with(':') {
                // ":CHAIN POLICY [packets:bytes]"
                l.rsplit_once(' ').map(|(head, _)| head).unwrap_or(l)
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n"))
}

fn link_names() -> BTreeSet<String> {
    fs::read_dir("/sys/class/net")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

pub struct Engine {
    dir: tempfile::TempDir,
    dockerd: Option<ProcGuard>,
    docker: PathBuf,
    compose: PathBuf,
    cgroup_parent: String,
    iptables: PathBuf,
    iptables_save: PathBuf,
    iptables_restore: PathBuf,
    before: HostState,
}

impl Engine {
    /// Starts dockerd and waits (bounded) until it answers.
    pub fn start() -> Engine {
        // SAFETY: getuid(2) has no preconditions.
        assert_eq!(
            unsafe { libc::getuid() },
            0,
            "the Docker engine tests need root: dockerd changes iptables and creates bridges"
        );
        let dockerd = require_program("dockerd", "docker.io");
        // The client of the same package as the engine (another `docker` may
        // come first on PATH).
        let docker = dockerd
            .parent()
            .map(|sbin| sbin.with_file_name("bin").join("docker"))
            .filter(|p| p.exists())
            .unwrap_or_else(|| require_program("docker", "docker.io"));
        let compose = require_program("docker-compose", "docker-compose");
        let iptables = require_program("iptables", "iptables");
        let iptables_save = require_program("iptables-save", "iptables");
        let iptables_restore = require_program("iptables-restore", "iptables");
        require_program("ip", "iproute2");
        assert!(
            !process_running("dockerd"),
            "a dockerd runs on this machine: stop it first (service docker stop)"
        );
        // dockerd 20.10 uses a containerd it finds at the default socket
        // instead of its own: the engine would not be private then.
        assert!(
            !Path::new(SYSTEM_CONTAINERD).exists(),
            "{SYSTEM_CONTAINERD} exists: a containerd runs on this machine (service containerd stop)"
        );
        clean_after_killed_runs();
        let before = HostState::read(&iptables_save);
        for stale in ["docker0", "docker_gwbridge"] {
            assert!(
                !before.links.contains(stale),
                "a Docker bridge `{stale}` exists before the test: another Docker engine runs on this machine (stop it first)"
            );
        }
        // Short path: containerd's sockets live under the exec root and a
        // socket path has at most 107 bytes.
        let dir = tempfile::Builder::new()
            .prefix(ENGINE_PREFIX)
            .tempdir_in("/tmp")
            .expect("tempdir");
        let cgroup_parent = format!("/{ENGINE_PREFIX}-{}", std::process::id());
        let d = dir.path();
        let mut cmd = Command::new(&dockerd);
        cmd.arg(format!("--host=unix://{}/docker.sock", d.display()))
            .arg(format!("--data-root={}/root", d.display()))
            .arg(format!("--exec-root={}/exec", d.display()))
            .arg(format!("--pidfile={}/dockerd.pid", d.display()))
            .arg(format!("--cgroup-parent={cgroup_parent}"))
            // Redis and HAProxy want more descriptors than some defaults.
            .arg("--default-ulimit=nofile=20000:20000")
            // Published ports on this machine's loopback only.
            .arg("--ip=127.0.0.1")
            .arg("--log-level=warn")
            // Swarm tasks use the local images; no registry is asked.
            .env("DOCKER_SERVICE_PREFER_OFFLINE_IMAGE", "1");
        let log = d.join("dockerd.log");
        let mut engine = Engine {
            dockerd: Some(ProcGuard::spawn(cmd, "dockerd", &log)),
            dir,
            docker,
            compose,
            cgroup_parent,
            iptables,
            iptables_save,
            iptables_restore,
            before,
        };
        let started = Instant::now();
        wait_for(
            "dockerd to answer on its socket",
            Duration::from_secs(60),
            Duration::from_millis(250),
            || {
                if let Some(status) = engine.dockerd.as_mut().and_then(|p| p.try_wait()) {
                    panic!("dockerd exited with {status}:\n{}", engine.log_tail());
                }
                engine
                    .try_docker(&["version", "--format", "{{.Server.Version}}"])
                    .ok()
                    .filter(|o| o.status.success())
            },
        );
        println!(
            "dockerd {} ready after {:.1?} in {}",
            engine
                .docker(&["version", "--format", "{{.Server.Version}}"])
                .trim(),
            started.elapsed(),
            engine.dir.path().display()
        );
        engine
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn host(&self) -> String {
        format!("unix://{}/docker.sock", self.dir.path().display())
    }

    pub fn log_tail(&self) -> String {
        super::file_tail(&self.dir.path().join("dockerd.log"), 40)
    }

    /// A command of this engine's client (`docker` or `docker-compose`),
    /// pointed at its socket, with BuildKit.
    pub fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("DOCKER_HOST", self.host())
            .env("DOCKER_BUILDKIT", "1");
        cmd
    }

    /// The `docker` client used (the engine's own package's).
    pub fn docker_path(&self) -> &Path {
        &self.docker
    }

    pub fn docker_command(&self) -> Command {
        self.command(&self.docker)
    }

    pub fn compose_command(&self) -> Command {
        self.command(&self.compose)
    }

    pub fn try_docker(&self, args: &[&str]) -> Result<CmdOutput, String> {
        run_bounded(self.docker_command().args(args), Duration::from_secs(300))
    }

    /// Runs `docker args…`, asserting success; its standard output.
    pub fn docker(&self, args: &[&str]) -> String {
        checked(self.try_docker(args), &format!("docker {}", args.join(" ")))
    }

    /// Runs a prepared command (bounded by `timeout`), asserting success.
    pub fn run(&self, cmd: &mut Command, timeout: Duration, what: &str) -> String {
        checked(run_bounded(cmd, timeout), what)
    }

    /// Stops everything and restores the host; returns what could not be
    /// restored.
    fn tear_down(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        let bounded = |args: &[&str], secs: u64| {
            run_bounded(self.docker_command().args(args), Duration::from_secs(secs))
        };
        // Swarm first (its services would restart what is removed), then
        // every container at once: no stop grace periods to wait out.
        let _ = bounded(&["swarm", "leave", "--force"], 60);
        if let Ok(o) = bounded(&["ps", "-aq"], 30) {
            let ids: Vec<&str> = o.stdout.split_whitespace().collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f", "-v"];
                args.extend(ids);
                let _ = bounded(&args, 120);
            }
        }
        if let Some(mut dockerd) = self.dockerd.take() {
            if dockerd.stop_quietly(Duration::from_secs(30)).is_none() {
                problems.push("dockerd did not exit".into());
            }
        }
        let cgroups_left = remove_engine_cgroups(&self.cgroup_parent);
        if !cgroups_left.is_empty() {
            problems.push(format!("cgroups left: {cgroups_left:?}"));
        }
        kill_processes_mentioning(self.dir.path());
        unmount_under(self.dir.path());
        // Docker's links only: bridges of the engine's networks and the
        // host ends of containers' veth pairs.
        let dockers = |links: BTreeSet<String>| -> Vec<String> {
            links
                .difference(&self.before.links)
                .filter(|l| {
                    ["docker0", "docker_gwbridge"].contains(&l.as_str())
                        || l.starts_with("br-")
                        || l.starts_with("veth")
                })
                .cloned()
                .collect()
        };
        for link in dockers(link_names()) {
            let _ = run_bounded(
                Command::new("ip").args(["link", "delete", &link]),
                Duration::from_secs(10),
            );
        }
        let left = dockers(link_names());
        if !left.is_empty() {
            problems.push(format!("network links left: {left:?}"));
        }
        for (table, before) in &self.before.iptables {
            if iptables_dump(&self.iptables_save, table).as_ref() == Ok(before) {
                continue;
            }
            let restored = if before.trim().is_empty() {
                // The table was unused: empty it (rules, then chains).
                ["-F", "-X"].iter().try_for_each(|op| {
                    run_bounded(
                        Command::new(&self.iptables).args(["-w", "-t", table, op]),
                        Duration::from_secs(20),
                    )
                    .map(|_| ())
                })
            } else {
                restore_table(&self.iptables_restore, before)
            };
            let after = iptables_dump(&self.iptables_save, table).unwrap_or_else(|e| e);
            let unused = before.trim().is_empty()
                && after
                    .lines()
                    .all(|l| l.starts_with('*') || l.starts_with(':') || l == "COMMIT");
            if restored.is_err() || (after != *before && !unused) {
                problems.push(format!(
                    "iptables table {table} not restored ({restored:?}):\nbefore:\n{before}\nafter:\n{after}"
                ));
            }
        }
        for dir in RUN_DIRS {
            if !self.before.run_dirs.contains(&dir)
                && fs::remove_dir_all(dir).is_err()
                && Path::new(dir).exists()
            {
                problems.push(format!("{dir} left"));
            }
        }
        for (path, value) in &self.before.sysctls {
            if fs::read_to_string(path).ok().as_deref() != Some(value)
                && fs::write(path, value).is_err()
            {
                problems.push(format!("could not restore {path} to {}", value.trim()));
            }
        }
        problems
    }
}

fn checked(result: Result<CmdOutput, String>, what: &str) -> String {
    match result {
        Ok(o) if o.status.success() => o.stdout,
        Ok(o) => panic!(
            "`{what}` failed with {}:\nstdout:\n{}\nstderr:\n{}",
            o.status, o.stdout, o.stderr
        ),
        Err(e) => panic!("`{what}`: {e}"),
    }
}

fn restore_table(iptables_restore: &Path, dump: &str) -> Result<(), String> {
    use std::io::Write;
    let mut child = Command::new(iptables_restore)
        .arg("-w")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(format!("{dump}\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match child.try_wait() {
            Ok(Some(s)) if s.success() => return Ok(()),
            Ok(Some(s)) => return Err(format!("iptables-restore: {s}")),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("iptables-restore hung".into());
            }
        }
    }
}

/// Where a cgroup named by path lives: under each v1 controller, and at the
/// root of a v2 (unified) hierarchy.
fn cgroup_roots() -> Vec<PathBuf> {
    let base = Path::new("/sys/fs/cgroup");
    let mut roots = vec![base.to_path_buf()];
    if !base.join("cgroup.controllers").exists() {
        roots.extend(
            fs::read_dir(base)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.is_dir() && !p.join("cgroup.controllers").exists() || p.ends_with("unified")
                }),
        );
    }
    roots
}

/// SIGKILLs every process in the cgroup `dir` and below (containers dockerd
/// could not stop) and removes the cgroups.
fn kill_cgroup(dir: &Path) {
    let mut dirs = Vec::new();
    collect_dirs(dir, &mut dirs, 0);
    for d in &dirs {
        for pid in fs::read_to_string(d.join("cgroup.procs"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            // SAFETY: plain kill(2); these pids are in the engine's own cgroup.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
    thread::sleep(Duration::from_millis(200));
    // Deepest first: a cgroup is removed once its children are.
    for d in dirs.iter().rev() {
        let _ = fs::remove_dir(d);
    }
}

/// The engine's cgroup `parent` wherever it exists; returns those left.
fn remove_engine_cgroups(parent: &str) -> Vec<PathBuf> {
    let found: Vec<PathBuf> = cgroup_roots()
        .into_iter()
        .map(|root| root.join(parent.trim_start_matches('/')))
        .filter(|p| p.is_dir())
        .collect();
    for dir in &found {
        kill_cgroup(dir);
    }
    found.into_iter().filter(|p| p.exists()).collect()
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) {
    out.push(dir.to_path_buf());
    if depth > 8 {
        return;
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                collect_dirs(&e.path(), out, depth + 1);
            }
        }
    }
}

/// SIGKILLs containerd and shims left behind: their command lines name the
/// engine's directory.
fn kill_processes_mentioning(dir: &Path) {
    let needle = dir.display().to_string();
    let Ok(procs) = fs::read_dir("/proc") else {
        return;
    };
    let me = std::process::id() as i32;
    for p in procs.flatten() {
        let Ok(pid) = p.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = fs::read(p.path().join("cmdline")).unwrap_or_default();
        if pid != me && String::from_utf8_lossy(&cmdline).contains(&needle) {
            // SAFETY: plain kill(2) of a process of this engine.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
    thread::sleep(Duration::from_millis(200));
}

/// Unmounts (lazily, deepest first) everything mounted under `dir`:
/// overlay layers, network namespaces, shm.
fn unmount_under(dir: &Path) {
    let prefix = dir.display().to_string();
    let mounts: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&prefix))
        .collect();
    for m in mounts.iter().rev() {
        let _ = run_bounded(
            Command::new("umount").args(["-l", m]),
            Duration::from_secs(10),
        );
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let problems = self.tear_down();
        if problems.is_empty() {
            println!("Docker engine stopped; host restored");
        } else {
            eprintln!("warning: the Docker engine left traces: {problems:#?}");
            if !thread::panicking() {
                panic!("the Docker engine left traces: {problems:#?}");
            }
        }
    }
}
