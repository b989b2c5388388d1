//! Integration-test harness for promsnmp.
//!
//! Starts external processes (net-snmp `snmpd`, `prometheus`, the `promsnmp`
//! binary under test), builds network-namespace "devices" with many
//! interfaces, and offers a tiny blocking HTTP/1.1 client.
//!
//! Rules kept everywhere: all traffic goes to 127.0.0.0/8 only (and, in the
//! engine test, to the containers of the Docker engine it started); every wait is
//! bounded in iterations and time; every child process is killed (SIGTERM,
//! then SIGKILL after a grace period) and reaped on drop; all files live in
//! `tempfile` directories. Do not keep fixtures in `static`s: statics are never
//! dropped, so their processes would outlive the test binary.
#![allow(dead_code)]

mod deploy;
pub mod engine;
pub mod fleet;
pub mod images;
mod parity;
pub mod pki;
pub mod snmpsim;
#[allow(unused_imports)]
pub use deploy::*;
#[allow(unused_imports)]
pub use parity::*;

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Programs, ports, waiting
// ---------------------------------------------------------------------------

/// Finds `name` on PATH (plus the sbin directories, which a non-login PATH may
/// lack) or panics naming the Debian package that provides it.
pub fn require_program(name: &str, debian_pkg: &str) -> PathBuf {
    find_program(name).unwrap_or_else(|| {
        panic!("required program `{name}` not found on PATH (Debian package `{debian_pkg}`)")
    })
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
    ];
    std::env::split_paths(&path)
        .chain(extra.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| {
            fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("cannot bind a TCP socket on 127.0.0.1:0")
        .port()
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
/// One v2c device of the inventory JSON: `name`, community `public` at
/// 127.0.0.1:`port`.
pub fn community_device(name: &str, port: u16, timeout_ms: u64, retries: u32) -> String {
    format!(
        r#"{{"sysName":"{name}","agents":[{{"type":"snmp-community","endpoint":{{"address":"127.0.0.1","port":{port}}},"version":1,"timeout":{timeout_ms},"retries":{retries},"readCommunity":"public"}}]}}"#
    )
}

/// An inventory document holding `devices` (JSON objects).
pub fn inventory_doc(devices: &[String]) -> String {
    format!(r#"{{"devices":[{}]}}"#, devices.join(","))
}

/// Sends `sig` to a process the test started (and has not reaped).
pub fn send_signal(pid: u32, sig: i32) {
    // SAFETY: plain kill(2) on a child process this test started.
    let rc = unsafe { libc::kill(pid as i32, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
}

pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("cannot bind a UDP socket on 127.0.0.1:0")
        .port()
}

/// Polls `f` every `every` until it returns `Some` or `timeout` passes (then
/// panics with `what`). Bounded both in time and in the number of attempts.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    let every_ms = every.as_millis().max(1);
    let max_attempts = (timeout.as_millis() / every_ms + 2).min(1_000_000);
    let mut attempts = 0u128;
    loop {
        attempts += 1;
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() >= timeout || attempts >= max_attempts {
            panic!(
                "timed out after {:?} ({attempts} attempts) waiting for {what}",
                start.elapsed()
            );
        }
        thread::sleep(every);
    }
}

/// Last `lines` lines of a (log) file, lossily decoded; never panics.
pub fn file_tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

// ---------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------

/// A child process whose stdout+stderr go to a log file; SIGTERM, then SIGKILL
/// after 3 s, and reaped on drop.
pub struct ProcGuard {
    child: Child,
    name: String,
    log: PathBuf,
    status: Option<ExitStatus>,
}

impl ProcGuard {
    pub fn spawn(mut cmd: Command, name: &str, log: &Path) -> ProcGuard {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("cannot open log file {}: {e}", log.display()));
        let err = out.try_clone().expect("cannot clone log file handle");
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        ProcGuard {
            child,
            name: name.to_string(),
            log: log.to_path_buf(),
            status: None,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Ok(Some(s)) = self.child.try_wait() {
                self.status = Some(s);
            }
        }
        self.status
    }

    fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        for _ in 0..1_000_000 {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Sends `sig` unless the child was already reaped (an unreaped child
    /// keeps its pid, so this never hits an unrelated process).
    fn signal(&mut self, sig: libc::c_int) {
        if self.try_wait().is_none() {
            // SAFETY: plain kill(2) on our own unreaped child.
            unsafe {
                libc::kill(self.child.id() as libc::pid_t, sig);
            }
        }
    }

    fn stop_quietly(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.signal(libc::SIGTERM);
        if let Some(s) = self.wait_timeout(grace) {
            return Some(s);
        }
        self.signal(libc::SIGKILL);
        self.wait_timeout(Duration::from_secs(10))
    }

    fn stop(&mut self, grace: Duration) -> ExitStatus {
        let (name, pid) = (self.name.clone(), self.pid());
        self.stop_quietly(grace)
            .unwrap_or_else(|| panic!("{name} (pid {pid}) did not exit even after SIGKILL"))
    }

    fn kill(&mut self) -> ExitStatus {
        self.stop(Duration::ZERO)
    }

    pub fn log_tail(&self) -> String {
        file_tail(&self.log, 60)
    }
}

impl Drop for ProcGuard {
    fn drop(&mut self) {
        if self.stop_quietly(Duration::from_secs(3)).is_none() {
            eprintln!(
                "warning: {} (pid {}) could not be reaped",
                self.name,
                self.pid()
            );
        }
    }
}

pub struct CmdOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs a short-lived command with piped output, killing it after `timeout`.
/// The command runs in a process group of its own, killed whole: a
/// grandchild (debootstrap's dpkg, a pipeline's other side) holding the
/// pipes would otherwise keep the output readers waiting.
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> Result<CmdOutput, String> {
    use std::os::unix::process::CommandExt;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    let mut so = child.stdout.take().expect("piped stdout");
    let mut se = child.stderr.take().expect("piped stderr");
    let t_out = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let t_err = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let mut status = None;
    for _ in 0..10_000_000 {
        match child.try_wait() {
            Ok(Some(s)) => {
                status = Some(s);
                break;
            }
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
            _ => break,
        }
    }
    let timed_out = status.is_none();
    if timed_out {
        // SAFETY: kill(2) of the process group this child leads.
        unsafe {
            libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL);
        }
        status = child.wait().ok();
    }
    let stdout = String::from_utf8_lossy(&t_out.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&t_err.join().unwrap_or_default()).into_owned();
    match status {
        Some(status) if !timed_out => Ok(CmdOutput {
            status,
            stdout,
            stderr,
        }),
        _ => Err(format!(
            "{cmd:?} did not finish within {timeout:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
        )),
    }
}

// ---------------------------------------------------------------------------
// net-snmp client tools
// ---------------------------------------------------------------------------

/// Keeps net-snmp tools away from system MIBs, config and /var/lib/snmp.
fn snmp_env(cmd: &mut Command, dir: &Path) {
    cmd.env("MIBS", "")
        .env("SNMPCONFPATH", dir)
        .env("SNMP_PERSISTENT_DIR", dir.join("persist"));
}

/// Like [`snmp_cmd`] but returns the error text (stderr) instead of panicking.
/// `-On` is added when absent. Bounded to 60 s.
pub fn try_snmp_cmd(program: &str, args: &[&str]) -> Result<Vec<(String, String, String)>, String> {
    let exe = require_program(program, "snmp");
    let dir = tempfile::Builder::new()
        .prefix("psnmp-snmpclient")
        .tempdir()
        .map_err(|e| format!("tempdir: {e}"))?;
    let mut cmd = Command::new(exe);
    snmp_env(&mut cmd, dir.path());
    if !args.contains(&"-On") {
        cmd.arg("-On");
    }
    cmd.args(args);
    let out = run_bounded(&mut cmd, Duration::from_secs(60))?;
    if !out.status.success() {
        return Err(format!(
            "`{program} {}` failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            out.stderr,
            out.stdout
        ));
    }
    let mut rows = parse_snmp_output(&out.stdout);
    if program.ends_with("walk") {
        rows.retain(|(_, t, _)| {
            !matches!(
                t.as_str(),
                "NoSuchObject" | "NoSuchInstance" | "EndOfMibView"
            )
        });
    }
    Ok(rows)
}

/// Runs a net-snmp tool (snmpget, snmpbulkwalk, ...) with `args` (`-On` added
/// when absent) and parses its output; panics with stderr on failure.
pub fn snmp_cmd(program: &str, args: &[&str]) -> Vec<(String, String, String)> {
    try_snmp_cmd(program, args).unwrap_or_else(|e| panic!("{e}"))
}

/// `snmpbulkwalk -v2c -c <community> -On -Cr25 <addr> <oid>`, parsed.
pub fn snmpbulkwalk(addr: &str, community: &str, oid: &str) -> Vec<(String, String, String)> {
    snmp_cmd(
        "snmpbulkwalk",
        &["-v2c", "-c", community, "-On", "-Cr25", addr, oid],
    )
}

/// `snmpget -v2c` of one numeric object (Counter32/64, Gauge32, INTEGER,
/// Timeticks) as u64.
pub fn snmp_get_u64(addr: &str, community: &str, oid: &str) -> u64 {
    let rows = snmp_cmd("snmpget", &["-v2c", "-c", community, addr, oid]);
    match rows.as_slice() {
        [(_, ty, v)] => v
            .parse()
            .unwrap_or_else(|_| panic!("snmpget {addr} {oid}: {ty} value `{v}` is not a u64")),
        _ => panic!("snmpget {addr} {oid}: expected one varbind, got {rows:?}"),
    }
}

/// Parses net-snmp `-On` output into (oid without leading dot, type, value).
/// STRING values are unquoted/unescaped, Hex-STRING keeps hex text (single
/// spaces), Timeticks `(123) 0:00:01.23` becomes `123`, an untyped bare number
/// (`-Ot`) is reported as Timeticks, an untyped `""` as an empty STRING, and
/// the no-value exceptions as NoSuchObject / NoSuchInstance / EndOfMibView.
/// Lines that don't start a new varbind continue the previous value.
pub fn parse_snmp_output(out: &str) -> Vec<(String, String, String)> {
    let mut raw: Vec<(String, String)> = Vec::new();
    for line in out.lines() {
        let starts_var = line.split_once(" = ").and_then(|(oid, val)| {
            let oid = oid.trim();
            let digits = oid.trim_start_matches('.');
            let is_oid = !digits.is_empty()
                && digits.starts_with(|c: char| c.is_ascii_digit())
                && digits.chars().all(|c| c.is_ascii_digit() || c == '.');
            is_oid.then(|| (digits.to_string(), val.to_string()))
        });
        match (starts_var, raw.last_mut()) {
            (Some(var), _) => raw.push(var),
            (None, Some(last)) => {
                last.1.push('\n');
                last.1.push_str(line);
            }
            (None, None) => {}
        }
    }
    raw.into_iter()
        .map(|(oid, val)| {
            let (ty, v) = parse_snmp_value(&val);
            (oid, ty, v)
        })
        .collect()
}

fn unquote_snmp(s: &str) -> String {
    let s = s.trim_end_matches(['\r', '\n']);
    let inner = if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') {
        &s[1..s.len() - 1]
    } else {
        s
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n @ ('"' | '\\')) => out.push(n),
                Some(n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn parse_snmp_value(raw: &str) -> (String, String) {
    let t = raw.trim();
    if t.starts_with('"') {
        return ("STRING".into(), unquote_snmp(t));
    }
    if t.starts_with("No Such Object") {
        return ("NoSuchObject".into(), String::new());
    }
    if t.starts_with("No Such Instance") {
        return ("NoSuchInstance".into(), String::new());
    }
    if t.starts_with("No more variables left") {
        return ("EndOfMibView".into(), String::new());
    }
    if !t.is_empty() && t.chars().all(|c| c.is_ascii_digit()) {
        return ("Timeticks".into(), t.into());
    }
    let Some((ty, val)) = t.split_once(':') else {
        return (String::new(), t.into());
    };
    let val = val.trim();
    let v = match ty {
        "STRING" => unquote_snmp(val),
        "Hex-STRING" => val.split_whitespace().collect::<Vec<_>>().join(" "),
        "Timeticks" => val
            .strip_prefix('(')
            .and_then(|r| r.split_once(')'))
            .map(|(n, _)| n.to_string())
            .unwrap_or_else(|| val.to_string()),
        "INTEGER" => match val.rsplit_once('(') {
            // enum labels only appear when MIBs are loaded: `up(1)`
            Some((_, n)) if val.ends_with(')') => n.trim_end_matches(')').to_string(),
            _ => val.to_string(),
        },
        _ => val.to_string(),
    };
    (ty.to_string(), v)
}

// ---------------------------------------------------------------------------
// snmpd
// ---------------------------------------------------------------------------

/// An SNMPv3 user. Protocol names as net-snmp spells them:
/// auth MD5|SHA|SHA-224|SHA-256|SHA-384|SHA-512, priv DES|AES|AES-192|AES-256
/// (passwords need at least 8 characters).
#[derive(Clone, Debug, Default)]
pub struct V3User {
    pub name: String,
    pub auth: Option<(String, String)>,
    pub privacy: Option<(String, String)>,
}

impl V3User {
    pub fn no_auth(name: &str) -> V3User {
        V3User {
            name: name.into(),
            auth: None,
            privacy: None,
        }
    }

    pub fn auth(name: &str, proto: &str, pass: &str) -> V3User {
        V3User {
            name: name.into(),
            auth: Some((proto.into(), pass.into())),
            privacy: None,
        }
    }

    pub fn auth_priv(
        name: &str,
        auth: &str,
        auth_pass: &str,
        privacy: &str,
        priv_pass: &str,
    ) -> V3User {
        V3User {
            name: name.into(),
            auth: Some((auth.into(), auth_pass.into())),
            privacy: Some((privacy.into(), priv_pass.into())),
        }
    }

    /// noauth | auth | priv (the `rouser` level).
    pub fn level(&self) -> &'static str {
        match (&self.auth, &self.privacy) {
            (None, _) => "noauth",
            (Some(_), None) => "auth",
            (Some(_), Some(_)) => "priv",
        }
    }

    /// Command-line security arguments for snmpget/snmpbulkwalk:
    /// `-v3 -l <level> -u <name> [-a A -A pass [-x P -X pass]]`.
    pub fn snmp_args(&self) -> Vec<String> {
        let level = match self.level() {
            "noauth" => "noAuthNoPriv",
            "auth" => "authNoPriv",
            _ => "authPriv",
        };
        let mut a: Vec<String> = ["-v3", "-l", level, "-u", &self.name]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if let Some((p, pass)) = &self.auth {
            a.extend(["-a".into(), p.clone(), "-A".into(), pass.clone()]);
        }
        if let (Some(_), Some((p, pass))) = (&self.auth, &self.privacy) {
            a.extend(["-x".into(), p.clone(), "-X".into(), pass.clone()]);
        }
        a
    }
}

#[derive(Clone, Debug)]
pub struct SnmpdConfig {
    pub community: String,
    pub users: Vec<V3User>,
    pub sys_name: String,
    pub sys_contact: String,
    pub sys_location: String,
    /// Extra snmpd.conf lines (e.g. `maxGetbulkResponses 7`).
    pub extra_config: Vec<String>,
}

impl Default for SnmpdConfig {
    fn default() -> Self {
        SnmpdConfig {
            community: "public".into(),
            users: Vec::new(),
            sys_name: "testdev".into(),
            sys_contact: "noc@example.org".into(),
            sys_location: "rack 1".into(),
            extra_config: Vec::new(),
        }
    }
}

fn check_token(what: &str, s: &str) {
    assert!(
        !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c == '#'),
        "snmpd config: {what} `{s}` must be non-empty without whitespace or `#`"
    );
}

fn snmpd_conf(cfg: &SnmpdConfig, agent_addr: &str) -> String {
    check_token("community", &cfg.community);
    for v in [&cfg.sys_name, &cfg.sys_contact, &cfg.sys_location] {
        assert!(
            !v.contains('\n'),
            "snmpd config: value `{v}` contains a newline"
        );
    }
    let mut c = format!(
        "agentAddress {agent_addr}\n\
         view all included .1\n\
         rocommunity {} 127.0.0.1 -V all\n\
         sysName {}\n\
         sysContact {}\n\
         sysLocation {}\n",
        cfg.community, cfg.sys_name, cfg.sys_contact, cfg.sys_location
    );
    for line in &cfg.extra_config {
        c += line;
        c.push('\n');
    }
    for u in &cfg.users {
        check_token("user name", &u.name);
        let mut line = format!("createUser {}", u.name);
        if let Some((proto, pass)) = &u.auth {
            check_token("auth protocol", proto);
            check_token("auth password", pass);
            assert!(
                pass.len() >= 8,
                "user {}: auth password needs >= 8 chars",
                u.name
            );
            line += &format!(" {proto} {pass}");
            if let Some((proto, pass)) = &u.privacy {
                check_token("priv protocol", proto);
                check_token("priv password", pass);
                assert!(
                    pass.len() >= 8,
                    "user {}: priv password needs >= 8 chars",
                    u.name
                );
                line += &format!(" {proto} {pass}");
            }
        } else {
            assert!(
                u.privacy.is_none(),
                "user {}: privacy requires auth",
                u.name
            );
        }
        c += &format!("{line}\nrouser {} {} -V all\n", u.name, u.level());
    }
    c
}

/// Probe used while waiting for an agent: a v2c GET of sysName.0.
fn snmp_probe(addr: &str, community: &str) -> Result<(), String> {
    let rows = try_snmp_cmd(
        "snmpget",
        &[
            "-v2c",
            "-c",
            community,
            "-r0",
            "-t0.5",
            addr,
            "1.3.6.1.2.1.1.5.0",
        ],
    )?;
    match rows.first() {
        Some((_, t, _)) if t == "STRING" => Ok(()),
        _ => Err(format!("unexpected answer {rows:?}")),
    }
}

/// Waits until `addr` answers a v2c GET, or panics with `proc`'s log tail.
/// Returns false (without panicking) if the process exited and its log says the
/// address was taken, so the caller can retry with another port.
fn wait_agent(proc_: &mut ProcGuard, addr: &str, community: &str, timeout: Duration) -> bool {
    let start = Instant::now();
    let mut last_err = String::new();
    for _ in 0..10_000 {
        if let Some(status) = proc_.try_wait() {
            let tail = proc_.log_tail();
            if tail.contains("Error opening specified endpoint") {
                return false;
            }
            panic!(
                "{} exited during startup ({status}); log tail:\n{tail}",
                proc_.name
            );
        }
        match snmp_probe(addr, community) {
            Ok(()) => return true,
            Err(e) => last_err = e,
        }
        if start.elapsed() >= timeout {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "{} did not answer on {addr} within {timeout:?}; last error: {last_err}\nlog tail:\n{}",
        proc_.name,
        proc_.log_tail()
    );
}

fn snmpd_command(snmpd: &Path, dir: &Path, conf: &Path) -> Command {
    let persist = dir.join("persist");
    fs::create_dir_all(&persist).expect("create snmpd persistent dir");
    let mut cmd = Command::new(snmpd);
    cmd.env("MIBS", "")
        .env("SNMPCONFPATH", dir)
        .env("SNMP_PERSISTENT_DIR", &persist)
        .arg("-f")
        .arg("-Lf")
        .arg(dir.join("snmpd.log"))
        .arg("-C")
        .arg("-c")
        .arg(conf)
        .arg("-p")
        .arg(dir.join("snmpd.pid"));
    cmd
}

/// net-snmp agent on udp:127.0.0.1:<port>, killed on drop.
pub struct Snmpd {
    child: ProcGuard,
    pub port: u16,
    community: String,
    dir: tempfile::TempDir,
}

impl Snmpd {
    /// Starts snmpd with a generated config in a private temp dir and waits
    /// (bounded 10 s) until a v2c GET of sysName.0 answers. The listen address
    /// comes from `agentAddress` in the config only (giving it on the command
    /// line as well makes snmpd bind twice and fail).
    pub fn start(cfg: &SnmpdConfig) -> Snmpd {
        let exe = require_program("snmpd", "snmpd");
        require_program("snmpget", "snmp");
        for attempt in 1..=3 {
            let dir = tempfile::Builder::new()
                .prefix("psnmp-snmpd")
                .tempdir()
                .expect("tempdir");
            let port = free_udp_port();
            let conf = dir.path().join("snmpd.conf");
            fs::write(&conf, snmpd_conf(cfg, &format!("udp:127.0.0.1:{port}")))
                .expect("write snmpd.conf");
            let cmd = snmpd_command(&exe, dir.path(), &conf);
            let mut child = ProcGuard::spawn(cmd, "snmpd", &dir.path().join("snmpd.log"));
            let addr = format!("127.0.0.1:{port}");
            if wait_agent(&mut child, &addr, &cfg.community, Duration::from_secs(10)) {
                return Snmpd {
                    child,
                    port,
                    community: cfg.community.clone(),
                    dir,
                };
            }
            eprintln!("snmpd could not bind {addr} (attempt {attempt}), retrying");
        }
        panic!("snmpd could not bind a free UDP port in 3 attempts");
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    pub fn log(&self) -> String {
        file_tail(&self.dir.path().join("snmpd.log"), usize::MAX)
    }
}

// ---------------------------------------------------------------------------
// Network-namespace device
// ---------------------------------------------------------------------------

static NETNS_COUNTER: AtomicUsize = AtomicUsize::new(0);
const RELAY_MAX_PEERS: usize = 1024;
const RELAY_IDLE: Duration = Duration::from_secs(300);

fn netns_path(ns: &str) -> PathBuf {
    ["/run/netns", "/var/run/netns"]
        .iter()
        .map(|b| Path::new(b).join(ns))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("network namespace file for `{ns}` not found in /run/netns"))
}

/// Moves the *calling thread* into the network namespace at `path`.
fn enter_netns(path: &Path) -> io::Result<()> {
    let f = File::open(path)?;
    // SAFETY: setns(2) with a valid fd; affects only the calling thread.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn ip_cmd(args: &[&str]) -> Result<CmdOutput, String> {
    let ip = require_program("ip", "iproute2");
    let out = run_bounded(Command::new(ip).args(args), Duration::from_secs(60))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "`ip {}` failed ({}): {}{}",
            args.join(" "),
            out.status,
            out.stderr,
            out.stdout
        ))
    }
}

fn netns_names() -> Vec<String> {
    ip_cmd(&["netns", "list"])
        .map(|o| {
            o.stdout
                .lines()
                .filter_map(|l| l.split_whitespace().next().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Kills whatever still runs in `ns` and deletes it (best effort).
fn destroy_netns(ns: &str) {
    if let Ok(out) = ip_cmd(&["netns", "pids", ns]) {
        for pid in out
            .stdout
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            if pid > 1 {
                // SAFETY: kill(2); the pid was reported as living in our namespace.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }
    if let Err(e) = ip_cmd(&["netns", "del", ns]) {
        eprintln!("warning: {e}");
    }
}

/// Removes `psnmp-<pid>-N` namespaces left by test processes that died.
fn cleanup_stale_netns() {
    for ns in netns_names() {
        let Some(rest) = ns.strip_prefix("psnmp-") else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            destroy_netns(&ns);
        }
    }
}

/// UDP relay: host socket <-> `target` inside a network namespace, one
/// namespace-side socket per client peer, all served by one poll(2) thread.
struct UdpRelay {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Answers dropped for their length.
    dropped: Arc<AtomicUsize>,
}

struct RelayPeer {
    sock: UdpSocket,
    last: Instant,
}

impl UdpRelay {
    /// Relays `host` to `target`, from inside the namespace at `ns_path`
    /// when given; answers longer than `max_answer_bytes` are dropped.
    fn start(
        host: UdpSocket,
        ns_path: Option<PathBuf>,
        target: SocketAddr,
        max_answer_bytes: usize,
    ) -> io::Result<UdpRelay> {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel::<io::Result<()>>();
        let stop2 = stop.clone();
        let dropped = Arc::new(AtomicUsize::new(0));
        let dropped2 = dropped.clone();
        let thread = thread::Builder::new()
            .name("udp-relay".into())
            .spawn(move || {
                let r = match &ns_path {
                    Some(path) => enter_netns(path),
                    None => Ok(()),
                }
                .and_then(|_| host.set_nonblocking(true));
                let ok = r.is_ok();
                let _ = tx.send(r);
                if ok {
                    relay_loop(&host, target, max_answer_bytes, &dropped2, &stop2);
                }
            })?;
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => Ok(UdpRelay {
                stop,
                thread: Some(thread),
                dropped,
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                stop.store(true, Ordering::SeqCst);
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "relay thread did not start",
                ))
            }
        }
    }
}

/// A network path to an agent on 127.0.0.1 that loses every answer longer
/// than a limit, as a path whose firewall drops IP fragments loses every
/// answer larger than one frame. Requests pass; the relay stops on drop.
pub struct LossyPath {
    _relay: UdpRelay,
    pub port: u16,
    answers_dropped: Arc<AtomicUsize>,
}

impl LossyPath {
    pub fn start(agent_port: u16, max_answer_bytes: usize) -> LossyPath {
        let host = UdpSocket::bind("127.0.0.1:0").expect("bind relay socket");
        let port = host.local_addr().expect("relay addr").port();
        let target = SocketAddr::from(([127, 0, 0, 1], agent_port));
        let relay = UdpRelay::start(host, None, target, max_answer_bytes)
            .unwrap_or_else(|e| panic!("cannot start the UDP relay to {target}: {e}"));
        LossyPath {
            answers_dropped: relay.dropped.clone(),
            _relay: relay,
            port,
        }
    }

    /// Answers lost so far.
    pub fn answers_dropped(&self) -> usize {
        self.answers_dropped.load(Ordering::SeqCst)
    }
}

fn relay_loop(
    host: &UdpSocket,
    target: SocketAddr,
    max_answer_bytes: usize,
    dropped: &AtomicUsize,
    stop: &AtomicBool,
) {
    let mut peers: HashMap<SocketAddr, RelayPeer> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::SeqCst) {
        let keys: Vec<SocketAddr> = peers.keys().copied().collect();
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(keys.len() + 1);
        fds.push(libc::pollfd {
            fd: host.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        for k in &keys {
            fds.push(libc::pollfd {
                fd: peers[k].sock.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        // SAFETY: fds is a valid, correctly sized array of pollfd.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 200) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            break;
        }
        let now = Instant::now();
        // replies from the namespace back to their clients
        for (i, key) in keys.iter().enumerate() {
            if fds[i + 1].revents == 0 {
                continue;
            }
            if let Some(p) = peers.get_mut(key) {
                for _ in 0..256 {
                    match p.sock.recv(&mut buf) {
                        Ok(len) if len > max_answer_bytes => {
                            dropped.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(len) => {
                            p.last = now;
                            let _ = host.send_to(&buf[..len], key);
                        }
                        // WouldBlock ends the batch; other errors (e.g. a queued
                        // ICMP port unreachable) are consumed and ignored.
                        Err(_) => break,
                    }
                }
            }
        }
        // requests from host clients into the namespace
        if fds[0].revents != 0 {
            for _ in 0..256 {
                let (len, from) = match host.recv_from(&mut buf) {
                    Ok(x) => x,
                    Err(_) => break,
                };
                if !peers.contains_key(&from) {
                    if peers.len() >= RELAY_MAX_PEERS {
                        if let Some(oldest) =
                            peers.iter().min_by_key(|(_, p)| p.last).map(|(k, _)| *k)
                        {
                            peers.remove(&oldest);
                        }
                    }
                    let sock = match UdpSocket::bind("127.0.0.1:0")
                        .and_then(|s| s.connect(target).map(|_| s))
                        .and_then(|s| s.set_nonblocking(true).map(|_| s))
                    {
                        Ok(s) => s,
                        Err(e) => {
                            eprintln!("netns relay: cannot open namespace socket: {e}");
                            continue;
                        }
                    };
                    peers.insert(from, RelayPeer { sock, last: now });
                }
                if let Some(p) = peers.get_mut(&from) {
                    p.last = now;
                    let _ = p.sock.send(&buf[..len]);
                }
            }
        }
        peers.retain(|_, p| now.duration_since(p.last) < RELAY_IDLE);
    }
}

impl Drop for UdpRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A device with many interfaces: a network namespace with `pairs` veth pairs
/// (`v0`/`v0b`, ...; no addresses, IPv6 disabled) plus `lo`, running its own
/// snmpd on the namespace's udp:127.0.0.1:161, reachable from the host through
/// a UDP relay on 127.0.0.1:`port`. Needs root.
pub struct NetnsDevice {
    snmpd: Option<ProcGuard>,
    relay: Option<UdpRelay>,
    ns: String,
    pub port: u16,
    /// Interfaces in the namespace: 2 * pairs + 1 (lo).
    pub interfaces: usize,
    dir: tempfile::TempDir,
}

impl NetnsDevice {
    pub fn start(pairs: usize, cfg: &SnmpdConfig) -> NetnsDevice {
        let snmpd = require_program("snmpd", "snmpd");
        require_program("ip", "iproute2");
        require_program("snmpget", "snmp");
        cleanup_stale_netns();
        let ns = format!(
            "psnmp-{}-{}",
            std::process::id(),
            NETNS_COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        if let Err(e) = ip_cmd(&["netns", "add", &ns]) {
            panic!("cannot create network namespace (root required): {e}");
        }
        let dir = tempfile::Builder::new()
            .prefix("psnmp-netns")
            .tempdir()
            .expect("tempdir");
        // From here on, Drop cleans up the namespace even if startup panics.
        let mut dev = NetnsDevice {
            snmpd: None,
            relay: None,
            ns,
            port: 0,
            interfaces: 2 * pairs + 1,
            dir,
        };
        let path = netns_path(&dev.ns);

        // No IPv6 (no link-local addresses, no DAD/RS chatter) on the veths.
        let p2 = path.clone();
        let v6 = thread::spawn(move || -> io::Result<()> {
            enter_netns(&p2)?;
            for which in ["all", "default"] {
                let f = format!("/proc/sys/net/ipv6/conf/{which}/disable_ipv6");
                if Path::new(&f).exists() {
                    fs::write(&f, "1")?;
                }
            }
            Ok(())
        });
        if let Ok(Err(e)) = v6.join() {
            eprintln!("warning: cannot disable IPv6 in {}: {e}", dev.ns);
        }

        let mut batch = String::from("link set lo up\n");
        for i in 0..pairs {
            batch += &format!(
                "link add v{i} type veth peer name v{i}b\nlink set v{i} up\nlink set v{i}b up\n"
            );
        }
        let batch_file = dev.dir.path().join("links.batch");
        fs::write(&batch_file, batch).expect("write ip batch file");
        if let Err(e) = ip_cmd(&[
            "-n",
            &dev.ns,
            "-batch",
            batch_file.to_str().expect("utf-8 path"),
        ]) {
            panic!("creating {pairs} veth pairs in {} failed: {e}", dev.ns);
        }

        let host = UdpSocket::bind("127.0.0.1:0").expect("bind relay socket");
        dev.port = host.local_addr().expect("relay addr").port();
        let target: SocketAddr = "127.0.0.1:161".parse().expect("addr");
        dev.relay = Some(
            UdpRelay::start(host, Some(path), target, usize::MAX)
                .unwrap_or_else(|e| panic!("cannot start UDP relay into {}: {e}", dev.ns)),
        );

        let conf = dev.dir.path().join("snmpd.conf");
        fs::write(&conf, snmpd_conf(cfg, "udp:127.0.0.1:161")).expect("write snmpd.conf");
        let inner = snmpd_command(&snmpd, dev.dir.path(), &conf);
        let ip = require_program("ip", "iproute2");
        let mut cmd = Command::new(ip);
        cmd.args(["netns", "exec", &dev.ns])
            .arg(inner.get_program())
            .args(inner.get_args());
        for (k, v) in inner.get_envs() {
            if let Some(v) = v {
                cmd.env(k, v);
            }
        }
        let mut child = ProcGuard::spawn(cmd, "snmpd (netns)", &dev.dir.path().join("snmpd.log"));
        let addr = dev.addr();
        let ok = wait_agent(&mut child, &addr, &cfg.community, Duration::from_secs(20));
        dev.snmpd = Some(child);
        assert!(ok, "snmpd in {} could not bind udp:127.0.0.1:161", dev.ns);
        dev
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Name of the network namespace (`psnmp-<pid>-<n>`).
    pub fn namespace(&self) -> &str {
        &self.ns
    }

    pub fn snmpd_pid(&self) -> Option<u32> {
        self.snmpd.as_ref().map(|c| c.pid())
    }
}

impl Drop for NetnsDevice {
    fn drop(&mut self) {
        drop(self.snmpd.take());
        drop(self.relay.take());
        destroy_netns(&self.ns);
    }
}

// ---------------------------------------------------------------------------
// HTTP client
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response (status {}) is not JSON: {e}\nbody:\n{}",
                self.status,
                self.text()
            )
        })
    }

    /// First header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn bad_data(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn read_http_line(r: &mut impl BufRead) -> io::Result<String> {
    let mut line = Vec::new();
    r.by_ref().take(64 * 1024).read_until(b'\n', &mut line)?;
    if !line.ends_with(b"\n") {
        return Err(bad_data("truncated or overlong HTTP line"));
    }
    Ok(String::from_utf8_lossy(&line)
        .trim_end_matches(['\r', '\n'])
        .to_string())
}

fn read_http_headers(r: &mut impl BufRead) -> io::Result<Vec<(String, String)>> {
    let mut headers = Vec::new();
    for _ in 0..1000 {
        let line = read_http_line(r)?;
        if line.is_empty() {
            return Ok(headers);
        }
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| bad_data(format!("bad header line `{line}`")))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    Err(bad_data("too many headers"))
}

fn read_chunked(r: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    for _ in 0..10_000_000 {
        let line = read_http_line(r)?;
        let size_hex = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| bad_data(format!("bad chunk size `{line}`")))?;
        if size == 0 {
            read_http_headers(r)?; // trailers
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..])?;
        if !read_http_line(r)?.is_empty() {
            return Err(bad_data("missing CRLF after chunk"));
        }
    }
    Err(bad_data("too many chunks"))
}

pub fn http_request_timeout(
    addr: &str,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> io::Result<HttpResponse> {
    let sa = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("cannot resolve {addr}")))?;
    let mut stream = TcpStream::connect_timeout(&sa, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let has = |n: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
    let mut req = format!("{method} {path_and_query} HTTP/1.1\r\n");
    if !has("host") {
        req += &format!("Host: {addr}\r\n");
    }
    if !has("connection") {
        req += "Connection: close\r\n";
    }
    if !has("user-agent") {
        req += "User-Agent: promsnmp-tests\r\n";
    }
    let wants_len = !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH");
    if wants_len && !has("content-length") && !has("transfer-encoding") {
        req += &format!("Content-Length: {}\r\n", body.len());
    }
    for (k, v) in headers {
        req += &format!("{k}: {v}\r\n");
    }
    req += "\r\n";
    let mut msg = req.into_bytes();
    msg.extend_from_slice(body);
    stream.write_all(&msg)?;
    stream.flush()?;

    let mut r = BufReader::new(stream);
    for _ in 0..10 {
        let status_line = read_http_line(&mut r)?;
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        if !version.starts_with("HTTP/") {
            return Err(bad_data(format!("bad status line `{status_line}`")));
        }
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad_data(format!("bad status line `{status_line}`")))?;
        let headers = read_http_headers(&mut r)?;
        if (100..200).contains(&status) {
            continue; // interim response (100 Continue)
        }
        let mut resp = HttpResponse {
            status,
            headers,
            body: Vec::new(),
        };
        let chunked = resp
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        if method == "HEAD" || status == 204 || status == 304 {
        } else if chunked {
            resp.body = read_chunked(&mut r)?;
        } else if let Some(cl) = resp.header("content-length") {
            let n: usize = cl
                .trim()
                .parse()
                .map_err(|_| bad_data(format!("bad Content-Length `{cl}`")))?;
            resp.body = vec![0; n];
            r.read_exact(&mut resp.body)?;
        } else {
            r.read_to_end(&mut resp.body)?;
        }
        return Ok(resp);
    }
    Err(bad_data("too many interim responses"))
}

/// Like [`http_request`] but returns connection/protocol errors.
pub fn try_http_request(
    addr: &str,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<HttpResponse> {
    http_request_timeout(
        addr,
        method,
        path_and_query,
        headers,
        body,
        Duration::from_secs(10),
    )
}

/// Blocking HTTP/1.1 request (Connection: close, 10 s timeouts); panics on
/// connection or protocol errors (not on HTTP error statuses).
pub fn http_request(
    addr: &str,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    try_http_request(addr, method, path_and_query, headers, body)
        .unwrap_or_else(|e| panic!("HTTP {method} http://{addr}{path_and_query} failed: {e}"))
}

/// An `Authorization: Basic` header value.
pub fn basic_auth(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

pub fn http_get(addr: &str, path: &str) -> HttpResponse {
    http_request(addr, "GET", path, &[], &[])
}

pub fn http_post_json(addr: &str, path: &str, json: &str) -> HttpResponse {
    http_request(
        addr,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        json.as_bytes(),
    )
}

/// A request with extra headers and a JSON body (none when empty).
pub fn http_json(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> HttpResponse {
    let mut all = headers.to_vec();
    if !body.is_empty() {
        all.push(("Content-Type", "application/json"));
    }
    http_request(addr, method, path, &all, body.as_bytes())
}

/// Percent-encodes everything except RFC 3986 unreserved characters.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out += &format!("%{b:02X}");
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Prometheus
// ---------------------------------------------------------------------------

/// What [`Prometheus::start_with`] starts.
#[derive(Default)]
pub struct PrometheusSetup<'a> {
    pub config_yaml: &'a str,
    pub extra_args: &'a [&'a str],
    /// (path relative to the temp dir, contents)
    pub files: Vec<(String, Vec<u8>)>,
}

/// A Prometheus server on 127.0.0.1:`port`, killed on drop.
pub struct Prometheus {
    child: ProcGuard,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Writes `config_yaml` (every `__PROMETHEUS_ADDR__` replaced by this
    /// server's own `127.0.0.1:PORT`) and starts prometheus with TSDB in the
    /// temp dir, native histograms on, plus `extra_args`; waits (bounded 30 s)
    /// for `/-/ready` == 200.
    pub fn start(config_yaml: &str, extra_args: &[&str]) -> Prometheus {
        Prometheus::start_with(&PrometheusSetup {
            config_yaml,
            extra_args,
            ..Default::default()
        })
    }

    /// [`Prometheus::start`] with more: the config goes to
    /// `<dir>/prometheus/prometheus.yml`, `files` (relative paths) are written
    /// under `<dir>` first (so `../alerts/x.yml` in the config finds
    /// `<dir>/alerts/x.yml`).
    pub fn start_with(setup: &PrometheusSetup) -> Prometheus {
        let exe = require_program("prometheus", "prometheus");
        for attempt in 1..=3 {
            let dir = tempfile::Builder::new()
                .prefix("psnmp-prometheus")
                .tempdir()
                .expect("tempdir");
            let port = free_tcp_port();
            let addr = format!("127.0.0.1:{port}");
            for (path, contents) in &setup.files {
                let path = dir.path().join(path);
                fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
                fs::write(&path, contents).expect("write a prometheus file");
            }
            fs::create_dir_all(dir.path().join("prometheus")).expect("mkdir");
            let conf = dir.path().join("prometheus").join("prometheus.yml");
            fs::write(
                &conf,
                setup.config_yaml.replace("__PROMETHEUS_ADDR__", &addr),
            )
            .expect("write prometheus.yml");
            let args = [
                format!("--config.file={}", conf.display()),
                format!("--storage.tsdb.path={}", dir.path().join("data").display()),
                format!("--web.listen-address={addr}"),
                "--enable-feature=native-histograms".to_string(),
            ];
            let mut cmd = Command::new(&exe);
            cmd.current_dir(dir.path())
                .args(&args)
                .args(setup.extra_args);
            let log = dir.path().join("prometheus.log");
            let mut child = ProcGuard::spawn(cmd, "prometheus", &log);
            let start = Instant::now();
            let mut retry = false;
            for _ in 0..1000 {
                if let Some(status) = child.try_wait() {
                    let tail = child.log_tail();
                    if tail.contains("address already in use") {
                        retry = true;
                        break;
                    }
                    panic!("prometheus exited during startup ({status}); log tail:\n{tail}");
                }
                let ready = http_request_timeout(
                    &addr,
                    "GET",
                    "/-/ready",
                    &[],
                    &[],
                    Duration::from_secs(2),
                );
                if matches!(ready, Ok(ref r) if r.status == 200) {
                    return Prometheus { child, port, dir };
                }
                if start.elapsed() >= Duration::from_secs(30) {
                    panic!(
                        "prometheus not ready on {addr} within 30 s; log tail:\n{}",
                        child.log_tail()
                    );
                }
                thread::sleep(Duration::from_millis(100));
            }
            if !retry {
                panic!(
                    "prometheus startup loop exhausted; log tail:\n{}",
                    child.log_tail()
                );
            }
            eprintln!("prometheus could not bind {addr} (attempt {attempt}), retrying");
        }
        panic!("prometheus could not bind a free port in 3 attempts");
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        file_tail(&self.dir.path().join("prometheus.log"), usize::MAX)
    }

    /// Instant query; returns the whole parsed body (`{"status":"success","data":...}`).
    pub fn query(&self, promql: &str) -> serde_json::Value {
        prometheus_query(&self.addr(), promql)
    }

    pub fn targets(&self) -> serde_json::Value {
        let r = http_get(&self.addr(), "/api/v1/targets");
        assert_eq!(r.status, 200, "GET /api/v1/targets: {}", r.text());
        r.json()
    }
}

/// Instant query of the Prometheus at `addr`, asserting success; the whole
/// parsed body (`{"status":"success","data":...}`).
pub fn prometheus_query(addr: &str, promql: &str) -> serde_json::Value {
    let r = http_get(addr, &format!("/api/v1/query?query={}", urlencode(promql)));
    let ok = r.status == 200
        && serde_json::from_slice::<serde_json::Value>(&r.body)
            .map(|v| v["status"] == "success")
            .unwrap_or(false);
    assert!(
        ok,
        "prometheus query `{promql}` failed ({}): {}",
        r.status,
        r.text()
    );
    r.json()
}

/// `(labels, value)` of each series of an instant vector query.
pub fn prometheus_vector(addr: &str, promql: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    let body = prometheus_query(addr, promql);
    vector_series(&body).unwrap_or_else(|| panic!("`{promql}`: not a vector: {body}"))
}

/// [`prometheus_vector`] for waits: `None` while Prometheus does not answer
/// (starting, restarting) or the query fails.
pub fn try_prometheus_vector(
    addr: &str,
    promql: &str,
) -> Option<Vec<(BTreeMap<String, String>, f64)>> {
    let r = try_http_request(
        addr,
        "GET",
        &format!("/api/v1/query?query={}", urlencode(promql)),
        &[],
        &[],
    )
    .ok()?;
    let body: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
    (r.status == 200 && body["status"] == "success")
        .then(|| vector_series(&body))
        .flatten()
}

fn vector_series(body: &serde_json::Value) -> Option<Vec<(BTreeMap<String, String>, f64)>> {
    let series = body["data"]["result"].as_array()?;
    Some(
        series
            .iter()
            .map(|s| {
                let labels = s["metric"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                            .collect()
                    })
                    .unwrap_or_default();
                let value = s["value"][1]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(f64::NAN);
                (labels, value)
            })
            .collect(),
    )
}

/// Value per `instance` label of an instant vector query.
pub fn prometheus_per_instance(addr: &str, promql: &str) -> BTreeMap<String, f64> {
    by_instance(prometheus_vector(addr, promql))
}

/// [`prometheus_per_instance`] for waits (see [`try_prometheus_vector`]).
pub fn try_prometheus_per_instance(addr: &str, promql: &str) -> Option<BTreeMap<String, f64>> {
    try_prometheus_vector(addr, promql).map(by_instance)
}

fn by_instance(series: Vec<(BTreeMap<String, String>, f64)>) -> BTreeMap<String, f64> {
    series
        .into_iter()
        .map(|(labels, v)| (labels.get("instance").cloned().unwrap_or_default(), v))
        .collect()
}

/// Failed scrapes of each target of `job` over the last `window_s` seconds.
pub fn prometheus_failed_scrapes(addr: &str, job: &str, window_s: u64) -> BTreeMap<String, f64> {
    prometheus_per_instance(
        addr,
        &format!(
            "count_over_time(up{{job=\"{job}\"}}[{window_s}s]) - sum_over_time(up{{job=\"{job}\"}}[{window_s}s])"
        ),
    )
}

/// Column of a server's status in HAProxy's stats CSV.
const HAPROXY_CSV_STATUS: usize = 17;

/// HAProxy's stats CSV at `stats_addr`: how many servers of `backend` are UP
/// (0 while HAProxy does not answer, e.g. starting).
pub fn haproxy_servers_up(stats_addr: &str, backend: &str) -> usize {
    let Ok(r) = try_http_request(stats_addr, "GET", "/stats;csv", &[], &[]) else {
        return 0;
    };
    if r.status != 200 {
        return 0;
    }
    r.text()
        .lines()
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| {
            f.len() > HAPROXY_CSV_STATUS
                && f[0] == backend
                && f[1] != "BACKEND"
                && f[1] != "FRONTEND"
        })
        .filter(|f| f[HAPROXY_CSV_STATUS] == "UP")
        .count()
}

// ---------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------

/// Default bound of [`Redis::cmd`] / [`Redis::try_cmd`].
pub const REDIS_CMD_TIMEOUT: Duration = Duration::from_secs(5);

/// A `redis-server` on 127.0.0.1:`port()` in a private temp dir, without
/// persistence (`--save "" --appendonly no`), so every (re)start begins
/// empty. SIGKILLed and reaped on drop (also when paused).
pub struct Redis {
    exe: PathBuf,
    child: Option<ProcGuard>,
    port: u16,
    paused: bool,
    dir: tempfile::TempDir,
    /// Further `redis-server` arguments of every run (TLS, ACL, debug).
    extra_args: Vec<String>,
}

impl Redis {
    /// Starts redis-server on a free port and waits (bounded 10 s) until a
    /// raw TCP `PING` answers `+PONG`. Retries on another port if the chosen
    /// one was taken meanwhile.
    pub fn start() -> Redis {
        Redis::start_with(&[])
    }

    /// Like [`Redis::start`] with further `redis-server` arguments (kept for
    /// restarts).
    pub fn start_with(extra_args: &[&str]) -> Redis {
        let exe = require_program("redis-server", "redis-server");
        let dir = tempfile::Builder::new()
            .prefix("psnmp-redis")
            .tempdir()
            .expect("tempdir");
        let mut redis = Redis {
            exe,
            child: None,
            port: 0,
            paused: false,
            dir,
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
        };
        for attempt in 1..=3 {
            redis.port = free_tcp_port();
            match redis.spawn_and_wait(Duration::from_secs(10), false) {
                Ok(()) => return redis,
                Err(msg) if msg.contains("Address already in use") && attempt < 3 => {
                    eprintln!(
                        "redis-server could not bind port {} (attempt {attempt}), retrying",
                        redis.port
                    );
                }
                Err(msg) => panic!("{msg}"),
            }
        }
        unreachable!()
    }

    /// Spawns redis-server on `self.port` (the previous run must be reaped)
    /// and waits until it answers PING; on failure the child is killed and
    /// reaped and the error carries the log tail.
    fn spawn_and_wait(&mut self, timeout: Duration, keep_data: bool) -> Result<(), String> {
        assert!(self.child.is_none(), "redis-server is already running");
        let dir = self.dir.path();
        // No persistence is configured: nothing is loaded unless a `SAVE`
        // wrote it and the caller wants it back.
        if !keep_data {
            let _ = fs::remove_file(dir.join("dump.rdb"));
        }
        let _ = fs::remove_dir_all(dir.join("appendonlydir"));
        let log = self.log_path();
        let mut cmd = Command::new(&self.exe);
        cmd.current_dir(dir)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--protected-mode", "no"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(&log)
            .args(&self.extra_args);
        let mut child = ProcGuard::spawn(cmd, "redis-server", &log);
        let addr = self.addr();
        let start = Instant::now();
        let mut last = String::new();
        for _ in 0..10_000 {
            if let Some(status) = child.try_wait() {
                return Err(format!(
                    "redis-server on {addr} exited during startup ({status}); log tail:\n{}",
                    child.log_tail()
                ));
            }
            match redis_request(&addr, &["PING"], Duration::from_millis(500)) {
                Ok(reply) if reply == "PONG" => {
                    self.child = Some(child);
                    self.paused = false;
                    return Ok(());
                }
                Ok(reply) => last = format!("reply `{reply}`"),
                Err(e) => last = e.to_string(),
            }
            if start.elapsed() >= timeout {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        kill_and_reap(&mut child);
        Err(format!(
            "redis-server did not answer PING on {addr} within {timeout:?} (last: {last}); log tail:\n{}",
            child.log_tail()
        ))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `redis://127.0.0.1:PORT/`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.pid())
    }

    /// The folder of its data and log (certificates may go here too).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The whole log (redis log file plus stdout/stderr) of all runs.
    pub fn log(&self) -> String {
        file_tail(&self.log_path(), usize::MAX)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// True while the process exists (paused or not) and has not exited.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().is_none())
    }

    pub fn is_paused(&self) -> bool {
        self.paused && self.child.is_some()
    }

    /// SIGKILL and reap (a no-op if not running).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_and_reap(&mut child);
        }
        self.paused = false;
    }

    /// Stops it if still running, then starts it again on the same port with
    /// empty data and waits (bounded 10 s) until it answers PING. Retries
    /// for a few seconds if the port is still (or meanwhile) taken.
    pub fn restart(&mut self) {
        self.restart_with(false);
    }

    /// SIGKILL, then starts it again on the same port from what its last
    /// `SAVE` wrote: Redis back in time, as after a crash between snapshots.
    pub fn restart_from_last_save(&mut self) {
        assert!(
            self.dir.path().join("dump.rdb").exists(),
            "no SAVE wrote dump.rdb in {}",
            self.dir.path().display()
        );
        self.restart_with(true);
    }

    fn restart_with(&mut self, keep_data: bool) {
        self.stop();
        let mut last = String::new();
        for attempt in 1..=5 {
            match self.spawn_and_wait(Duration::from_secs(10), keep_data) {
                Ok(()) => return,
                Err(msg) if msg.contains("Address already in use") => {
                    eprintln!(
                        "redis-server restart: port {} in use (attempt {attempt})",
                        self.port
                    );
                    last = msg;
                    thread::sleep(Duration::from_millis(500));
                }
                Err(msg) => panic!("redis-server restart failed: {msg}"),
            }
        }
        panic!(
            "redis-server restart: port {} stayed in use: {last}",
            self.port
        );
    }

    /// SIGSTOP: the process stays alive, connections are accepted by the
    /// kernel but nothing is answered.
    pub fn pause(&mut self) {
        self.send_signal(libc::SIGSTOP, "pause");
        self.paused = true;
    }

    /// SIGCONT after [`Redis::pause`].
    pub fn resume(&mut self) {
        self.send_signal(libc::SIGCONT, "resume");
        self.paused = false;
    }

    fn send_signal(&mut self, sig: libc::c_int, what: &str) {
        if !self.is_running() {
            panic!(
                "cannot {what} redis-server on port {}: it is not running",
                self.port
            );
        }
        if let Some(child) = self.child.as_mut() {
            child.signal(sig);
        }
    }

    /// Runs one command (bounded [`REDIS_CMD_TIMEOUT`]); see [`Redis::try_cmd_timeout`].
    pub fn try_cmd(&self, args: &[&str]) -> io::Result<String> {
        self.try_cmd_timeout(args, REDIS_CMD_TIMEOUT)
    }

    /// Sends `args` as one RESP command on a fresh TCP connection and reads one
    /// reply within `timeout` overall. Rendering: simple string, error and
    /// integer as their text (an error as e.g. `ERR unknown command ...`),
    /// bulk string as its content (lossy UTF-8), a null as `(nil)`, an array
    /// as its rendered elements joined with `\n`.
    pub fn try_cmd_timeout(&self, args: &[&str], timeout: Duration) -> io::Result<String> {
        redis_request(&self.addr(), args, timeout)
    }

    /// Like [`Redis::try_cmd`] but panics (with the log tail) on connection or
    /// protocol errors and timeouts. Redis error replies are returned as text.
    pub fn cmd(&self, args: &[&str]) -> String {
        self.try_cmd(args).unwrap_or_else(|e| {
            panic!(
                "redis command {args:?} on {} failed: {e}; log tail:\n{}",
                self.addr(),
                file_tail(&self.log_path(), 30)
            )
        })
    }
}

/// `redis-sentinel` on 127.0.0.1 watching the primary on `primary_port` as
/// `name`, alone (quorum 1) and quick (down after 1 s), so a failover takes
/// seconds. Killed when dropped.
pub struct Sentinel {
    _child: ProcGuard,
    port: u16,
    name: String,
    _dir: tempfile::TempDir,
}

impl Sentinel {
    /// Starts it and waits (bounded 10 s) until it names the primary.
    pub fn start(name: &str, primary_port: u16) -> Sentinel {
        let exe = require_program("redis-sentinel", "redis-sentinel");
        let dir = tempfile::Builder::new()
            .prefix("psnmp-sentinel")
            .tempdir()
            .expect("tempdir");
        let port = free_tcp_port();
        let conf = dir.path().join("sentinel.conf");
        let log = dir.path().join("sentinel.log");
        fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\nprotected-mode no\ndaemonize no\ndir {}\nlogfile {}\n\
                 sentinel monitor {name} 127.0.0.1 {primary_port} 1\n\
                 sentinel down-after-milliseconds {name} 1000\n\
                 sentinel failover-timeout {name} 5000\n\
                 sentinel parallel-syncs {name} 1\n",
                dir.path().display(),
                log.display()
            ),
        )
        .expect("write sentinel.conf");
        let mut cmd = Command::new(exe);
        cmd.arg(&conf).current_dir(dir.path());
        let child = ProcGuard::spawn(cmd, "redis-sentinel", &log);
        let sentinel = Sentinel {
            _child: child,
            port,
            name: name.to_string(),
            _dir: dir,
        };
        wait_for(
            "the Sentinel to name the primary",
            Duration::from_secs(10),
            Duration::from_millis(100),
            || (sentinel.primary_port() == Some(primary_port)).then_some(()),
        );
        sentinel
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of the primary the Sentinel names now.
    pub fn primary_port(&self) -> Option<u16> {
        let addr = format!("127.0.0.1:{}", self.port);
        let reply = redis_request(
            &addr,
            &["SENTINEL", "get-master-addr-by-name", &self.name],
            Duration::from_secs(2),
        )
        .ok()?;
        reply.lines().nth(1)?.trim().parse().ok()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGKILL also ends a stopped (paused) process.
            child.signal(libc::SIGKILL);
            if child.wait_timeout(Duration::from_secs(10)).is_none() {
                eprintln!(
                    "warning: redis-server (pid {}) could not be reaped",
                    child.pid()
                );
            }
        }
    }
}

/// SIGKILL and reap (bounded 10 s); panics if the process survives.
fn kill_and_reap(child: &mut ProcGuard) {
    child.signal(libc::SIGKILL);
    if child.wait_timeout(Duration::from_secs(10)).is_none() {
        panic!(
            "{} (pid {}) did not exit after SIGKILL",
            child.name,
            child.pid()
        );
    }
}

/// Remaining time until `deadline`, or a TimedOut error when none is left.
fn time_left(deadline: Instant, what: &str) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("timed out {what}"),
        ));
    }
    Ok(left)
}

/// One RESP request/reply on a fresh connection, bounded by `timeout` overall.
fn redis_request(addr: &str, args: &[&str], timeout: Duration) -> io::Result<String> {
    let deadline = Instant::now() + timeout;
    let sa = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("cannot resolve {addr}")))?;
    let stream = TcpStream::connect_timeout(&sa, time_left(deadline, "connecting")?)?;
    let mut msg = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        msg.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        msg.extend_from_slice(a.as_bytes());
        msg.extend_from_slice(b"\r\n");
    }
    stream.set_write_timeout(Some(time_left(deadline, "sending")?))?;
    (&stream).write_all(&msg)?;
    let mut r = BufReader::new(stream);
    read_resp(&mut r, deadline, 0)
}

/// Applies the remaining time as the socket read timeout; a read that times
/// out becomes a TimedOut error.
fn resp_read<T>(
    r: &mut BufReader<TcpStream>,
    deadline: Instant,
    f: impl FnOnce(&mut BufReader<TcpStream>) -> io::Result<T>,
) -> io::Result<T> {
    r.get_ref()
        .set_read_timeout(Some(time_left(deadline, "waiting for the reply")?))?;
    f(r).map_err(|e| match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            io::Error::new(io::ErrorKind::TimedOut, "timed out waiting for the reply")
        }
        _ => e,
    })
}

fn read_resp_line(r: &mut BufReader<TcpStream>, deadline: Instant) -> io::Result<String> {
    let mut line = Vec::new();
    // A slow server may deliver a line in pieces; each piece gets the time left.
    for _ in 0..1_000_000 {
        let n = resp_read(r, deadline, |r| {
            r.by_ref()
                .take((64 * 1024usize).saturating_sub(line.len()) as u64)
                .read_until(b'\n', &mut line)
        })?;
        if line.ends_with(b"\n") {
            return Ok(String::from_utf8_lossy(&line)
                .trim_end_matches(['\r', '\n'])
                .to_string());
        }
        if n == 0 {
            return Err(bad_data(if line.len() >= 64 * 1024 {
                "overlong RESP line"
            } else {
                "connection closed before a complete reply"
            }));
        }
    }
    Err(bad_data("RESP line arrives too slowly"))
}

fn read_resp(r: &mut BufReader<TcpStream>, deadline: Instant, depth: usize) -> io::Result<String> {
    if depth > 32 {
        return Err(bad_data("RESP reply nested too deeply"));
    }
    let line = read_resp_line(r, deadline)?;
    let (kind, rest) = line.split_at(line.chars().next().map_or(0, char::len_utf8));
    let len = || -> io::Result<i64> {
        rest.parse()
            .map_err(|_| bad_data(format!("bad RESP length in `{line}`")))
    };
    match kind {
        "+" | "-" | ":" => Ok(rest.to_string()),
        "$" => {
            let n = len()?;
            if n < 0 {
                return Ok("(nil)".into());
            }
            let n = usize::try_from(n).map_err(|_| bad_data("bulk string too long"))?;
            if n > 512 * 1024 * 1024 {
                return Err(bad_data(format!("bulk string of {n} bytes")));
            }
            let mut buf = vec![0u8; n + 2];
            let mut got = 0;
            for _ in 0..1_000_000 {
                if got == buf.len() {
                    break;
                }
                let k = resp_read(r, deadline, |r| r.read(&mut buf[got..]))?;
                if k == 0 {
                    return Err(bad_data("connection closed inside a bulk string"));
                }
                got += k;
            }
            if got != buf.len() || !buf.ends_with(b"\r\n") {
                return Err(bad_data("bulk string without trailing CRLF"));
            }
            buf.truncate(n);
            Ok(String::from_utf8_lossy(&buf).into_owned())
        }
        "*" => {
            let n = len()?;
            if n < 0 {
                return Ok("(nil)".into());
            }
            if n > 10_000_000 {
                return Err(bad_data(format!("array of {n} elements")));
            }
            let mut items = Vec::new();
            for _ in 0..n {
                items.push(read_resp(r, deadline, depth + 1)?);
            }
            Ok(items.join("\n"))
        }
        _ => Err(bad_data(format!("unexpected RESP reply line `{line}`"))),
    }
}

// ---------------------------------------------------------------------------
// promsnmp under test
// ---------------------------------------------------------------------------

/// Path of the binary under test: `$PROMSNMP_BIN`, else Cargo's
/// `CARGO_BIN_EXE_promsnmp`.
pub fn promsnmp_bin() -> PathBuf {
    let p: PathBuf = match std::env::var_os("PROMSNMP_BIN") {
        Some(p) => p.into(),
        None => match option_env!("CARGO_BIN_EXE_promsnmp") {
            Some(p) => p.into(),
            None => panic!(
                "promsnmp binary unknown: set PROMSNMP_BIN or run as an integration test of the promsnmp crate"
            ),
        },
    };
    assert!(
        p.is_file(),
        "promsnmp binary {} does not exist",
        p.display()
    );
    p
}

fn env_get<'a>(env: &[(&str, &'a str)], key: &str) -> Option<&'a str> {
    env.iter().rev().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// The promsnmp binary running as a child process in its own temp dir.
pub struct Promsnmp {
    child: ProcGuard,
    /// Where it listens: PROMSNMP_BIND_ADDRESS when that names one address
    /// (another 127.x address in the fleet tests), else 127.0.0.1.
    pub host: String,
    pub port: u16,
    /// Holds the inventory file and the logs; the process runs with it as cwd.
    pub dir: tempfile::TempDir,
    inventory: PathBuf,
    /// What the start waits for (200).
    health_path: String,
}

impl Promsnmp {
    /// Fresh temp dir; see [`Promsnmp::start_in`].
    pub fn start(env: &[(&str, &str)]) -> Promsnmp {
        let dir = tempfile::Builder::new()
            .prefix("psnmp-promsnmp")
            .tempdir()
            .expect("tempdir");
        Promsnmp::start_in(dir, env)
    }

    /// Starts in an existing dir (restart tests) and waits (bounded 20 s) for
    /// GET /actuator/health == 200. Retries on another port if the chosen
    /// free port was taken meanwhile (only when `env` has no SERVER_PORT).
    pub fn start_in(dir: tempfile::TempDir, env: &[(&str, &str)]) -> Promsnmp {
        let mut dir = Some(dir);
        for attempt in 1..=3 {
            let mut p = Promsnmp::spawn_in(dir.take().expect("dir"), env);
            match p.wait_healthy_inner(Duration::from_secs(20)) {
                Ok(()) => return p,
                Err(msg) => {
                    let in_use = msg.contains("in use") || msg.contains("AddrInUse");
                    if in_use && env_get(env, "SERVER_PORT").is_none() && attempt < 3 {
                        eprintln!("promsnmp port clash (attempt {attempt}), retrying");
                        dir = Some(p.into_dir());
                        continue;
                    }
                    panic!("{msg}");
                }
            }
        }
        unreachable!()
    }

    /// Starts without waiting for health. SERVER_PORT (free port),
    /// PROM_INV_FILE (<dir>/inventory.json) and RUST_LOG (info) are set unless
    /// `env` sets them. stdout+stderr go to <dir>/promsnmp.log (a previous log
    /// is renamed promsnmp.log.1, .2, ...).
    pub fn spawn_in(dir: tempfile::TempDir, env: &[(&str, &str)]) -> Promsnmp {
        let bin = promsnmp_bin();
        // An unparsable SERVER_PORT (config-error tests) is passed through
        // as is; `port` is then 0 and the health wait reports the failure.
        let port = match env_get(env, "SERVER_PORT") {
            Some(p) => p.parse().unwrap_or(0),
            None => free_tcp_port(),
        };
        let inventory = match env_get(env, "PROM_INV_FILE") {
            Some(p) => dir.path().join(p), // relative paths are relative to the cwd (dir)
            None => dir.path().join("inventory.json"),
        };
        let log = dir.path().join("promsnmp.log");
        if log.exists() {
            let n = (1..10_000)
                .find(|n| !dir.path().join(format!("promsnmp.log.{n}")).exists())
                .expect("too many old logs");
            fs::rename(&log, dir.path().join(format!("promsnmp.log.{n}"))).expect("rotate log");
        }
        let mut cmd = Command::new(bin);
        cmd.current_dir(dir.path())
            .env("SERVER_PORT", port.to_string())
            .env("PROM_INV_FILE", &inventory)
            .env("RUST_LOG", "info");
        for (k, v) in env {
            if *k != "PROM_INV_FILE" {
                cmd.env(k, v);
            }
        }
        let child = ProcGuard::spawn(cmd, "promsnmp", &log);
        let host = match env_get(env, "PROMSNMP_BIND_ADDRESS") {
            Some(a) if a != "0.0.0.0" && !a.is_empty() => a.to_string(),
            _ => "127.0.0.1".to_string(),
        };
        Promsnmp {
            child,
            host,
            port,
            dir,
            inventory,
            // With users, the aggregate health needs credentials; readiness does not.
            health_path: if env_get(env, "PROMSNMP_WEB_CONFIG_FILE").is_some() {
                "/actuator/health/readiness".into()
            } else {
                "/actuator/health".into()
            },
        }
    }

    fn wait_healthy_inner(&mut self, timeout: Duration) -> Result<(), String> {
        let addr = self.addr();
        let start = Instant::now();
        let mut last = String::new();
        for _ in 0..10_000 {
            if let Some(status) = self.child.try_wait() {
                return Err(format!(
                    "promsnmp exited during startup ({status}); log tail:\n{}",
                    self.child.log_tail()
                ));
            }
            match http_request_timeout(
                &addr,
                "GET",
                &self.health_path,
                &[],
                &[],
                Duration::from_secs(2),
            ) {
                Ok(r) if r.status == 200 => return Ok(()),
                Ok(r) => last = format!("status {}: {}", r.status, r.text()),
                Err(e) => last = e.to_string(),
            }
            if start.elapsed() >= timeout {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "promsnmp not healthy on {addr} within {timeout:?} (last: {last}); log tail:\n{}",
            self.child.log_tail()
        ))
    }

    /// Waits (bounded 20 s) for GET /actuator/health == 200; panics with the log tail.
    pub fn wait_healthy(&mut self) {
        if let Err(msg) = self.wait_healthy_inner(Duration::from_secs(20)) {
            panic!("{msg}");
        }
    }

    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    pub fn inventory_path(&self) -> PathBuf {
        self.inventory.clone()
    }

    /// The current run's log (stdout+stderr).
    pub fn log(&self) -> String {
        file_tail(&self.dir.path().join("promsnmp.log"), usize::MAX)
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Exit status if the process has exited (non-blocking).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait()
    }

    /// SIGTERM, wait up to 15 s, then SIGKILL; returns the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        self.child.stop(Duration::from_secs(15))
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        self.child.kill();
    }

    /// Stops the process (SIGTERM, bounded) and hands back its directory.
    pub fn into_dir(self) -> tempfile::TempDir {
        let Promsnmp { mut child, dir, .. } = self;
        child.stop(Duration::from_secs(15));
        drop(child);
        dir
    }
}

/// Waits (bounded 20 s) until exactly one of the fleet replicas at `addrs`
/// leads: then the fleet's inventory is in Redis and writes go through.
pub fn wait_for_fleet_leader(addrs: &[String], headers: &[(&str, &str)]) {
    wait_for(
        "exactly one leader in the fleet",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || {
            let leaders = addrs
                .iter()
                .filter(|addr| {
                    try_http_request(addr, "GET", "/actuator/health", headers, &[])
                        .ok()
                        .and_then(|r| serde_json::from_slice::<serde_json::Value>(&r.body).ok())
                        .is_some_and(|v| v["components"]["redis"]["details"]["role"] == "leader")
                })
                .count();
            (leaders == 1).then_some(())
        },
    );
}

/// Runs the binary once (cwd: a temp dir; SERVER_PORT/PROM_INV_FILE/RUST_LOG
/// defaulted as in [`Promsnmp::spawn_in`]) and returns its exit status and
/// combined stdout+stderr. Panics if it runs longer than 20 s.
pub fn run_promsnmp_once(args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String) {
    let bin = promsnmp_bin();
    let dir = tempfile::Builder::new()
        .prefix("psnmp-once")
        .tempdir()
        .expect("tempdir");
    let log = dir.path().join("output.log");
    let mut cmd = Command::new(bin);
    cmd.current_dir(dir.path())
        .args(args)
        .env("SERVER_PORT", free_tcp_port().to_string())
        .env("PROM_INV_FILE", dir.path().join("inventory.json"))
        .env("RUST_LOG", "info")
        .envs(env.iter().copied());
    let mut child = ProcGuard::spawn(cmd, "promsnmp (once)", &log);
    match child.wait_timeout(Duration::from_secs(20)) {
        Some(status) => (status, file_tail(&log, usize::MAX)),
        None => {
            child.kill();
            panic!(
                "promsnmp {args:?} did not exit within 20 s; output:\n{}",
                file_tail(&log, 60)
            );
        }
    }
}

// ---------------------------------------------------------------------------
// HAProxy
// ---------------------------------------------------------------------------

/// `haproxy` in the foreground (`-db`) with a config file in a temp dir;
/// its log (the config sends it to stdout) goes to `<dir>/haproxy.log`.
pub struct Haproxy {
    child: ProcGuard,
    dir: tempfile::TempDir,
}

impl Haproxy {
    /// Checks the config (`haproxy -c`), starts it and waits (bounded 10 s)
    /// until `wait_addr` accepts connections.
    pub fn start(config: &str, wait_addr: &str) -> Haproxy {
        let exe = require_program("haproxy", "haproxy");
        let dir = tempfile::Builder::new()
            .prefix("psnmp-haproxy")
            .tempdir()
            .expect("tempdir");
        let cfg = dir.path().join("haproxy.cfg");
        fs::write(&cfg, config).expect("write haproxy.cfg");
        let check = run_bounded(
            Command::new(&exe).arg("-c").arg("-f").arg(&cfg),
            Duration::from_secs(20),
        )
        .expect("haproxy -c");
        assert!(
            check.status.success(),
            "haproxy -c refused the config:\n{}{}",
            check.stdout,
            check.stderr
        );
        let mut cmd = Command::new(&exe);
        cmd.current_dir(dir.path()).arg("-db").arg("-f").arg(&cfg);
        let log = dir.path().join("haproxy.log");
        let mut child = ProcGuard::spawn(cmd, "haproxy", &log);
        let start = Instant::now();
        for _ in 0..1000 {
            if let Some(status) = child.try_wait() {
                panic!(
                    "haproxy exited during startup ({status}); log tail:\n{}",
                    child.log_tail()
                );
            }
            if TcpStream::connect_timeout(
                &wait_addr.parse().expect("an ip:port"),
                Duration::from_secs(1),
            )
            .is_ok()
            {
                return Haproxy { child, dir };
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "haproxy not listening on {wait_addr} within 10 s; log tail:\n{}",
                child.log_tail()
            );
            thread::sleep(Duration::from_millis(50));
        }
        panic!("haproxy startup loop exhausted");
    }

    pub fn log(&self) -> String {
        file_tail(&self.dir.path().join("haproxy.log"), usize::MAX)
    }
}

// ---------------------------------------------------------------------------
// The exporter's own metrics
// ---------------------------------------------------------------------------

/// The value of `series` (a metric name with its labels exactly as exposed)
/// in `/actuator/prometheus` of the replica at `addr`, if present.
pub fn try_self_metric(addr: &str, series: &str) -> Option<f64> {
    let body = http_get(addr, "/actuator/prometheus").text();
    body.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// [`try_self_metric`], panicking when the series is missing.
pub fn self_metric(addr: &str, series: &str) -> f64 {
    try_self_metric(addr, series)
        .unwrap_or_else(|| panic!("no series `{series}` in /actuator/prometheus of {addr}"))
}

/// `/actuator/health` as JSON, whatever its status code (`None`: no answer).
pub fn health(addr: &str) -> Option<serde_json::Value> {
    let r = try_http_request(addr, "GET", "/actuator/health", &[], &[]).ok()?;
    serde_json::from_slice(&r.body).ok()
}

/// A fleet replica's role as its health shows it (`leader`, `follower`).
pub fn role(addr: &str) -> Option<String> {
    health(addr)?["components"]["redis"]["details"]["role"]
        .as_str()
        .map(str::to_string)
}

/// `promsnmp_replica_polls_total` summed over `addrs`.
pub fn polls_total(addrs: &[String]) -> f64 {
    addrs
        .iter()
        .map(|a| self_metric_sum(a, "promsnmp_replica_polls_total"))
        .sum()
}

/// The sum over every label set of metric `name` in `/actuator/prometheus`.
pub fn self_metric_sum(addr: &str, name: &str) -> f64 {
    let body = http_get(addr, "/actuator/prometheus").text();
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let metric = series.split('{').next()?;
            (metric == name).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// The directory holding snmp_exporter's generated module files used as
/// real-world input (`snmp.yml`, `snmp-v0.21.yml`): `PROMSNMP_REFERENCE_MODULES`,
/// else `../shared/snmp_exporter` beside the repository. Panics naming both
/// when the files are not there.
pub fn reference_modules_dir() -> PathBuf {
    let dir = std::env::var_os("PROMSNMP_REFERENCE_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("shared")
                .join("snmp_exporter")
        });
    for file in ["snmp.yml", "snmp-v0.21.yml"] {
        assert!(
            dir.join(file).is_file(),
            "snmp_exporter's reference module file {} is missing (set PROMSNMP_REFERENCE_MODULES to the directory holding snmp.yml and snmp-v0.21.yml)",
            dir.join(file).display()
        );
    }
    dir
}

/// Parses Prometheus text into `(name, labels, value)` per sample line.
pub fn parse_text(body: &str) -> Vec<(String, BTreeMap<String, String>, String)> {
    let mut out = Vec::new();
    for line in body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let (series, value) = line.rsplit_once(' ').expect("sample line has a value");
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), BTreeMap::new()),
            Some((name, rest)) => {
                let rest = rest.strip_suffix('}').expect("closing brace");
                (name.to_string(), parse_labels(rest))
            }
        };
        out.push((name, labels, value.to_string()));
    }
    out
}

pub fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if name.is_empty() {
            break;
        }
        assert_eq!(chars.next(), Some('"'));
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(o) => value.push(o),
                    None => break,
                },
                '"' => break,
                c => value.push(c),
            }
        }
        labels.insert(name.trim_start_matches(',').to_string(), value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    labels
}
