#!/usr/bin/python3
"""Resource-attack harness for promsnmp's HTTP side.

    python3 bench/attack.py --binary PATH [--label NAME] [--quick] [--json PATH]
    python3 bench/attack.py --before PATH --after PATH [--quick] [--json PATH]

Each attack starts a fresh promsnmp (and, where it needs devices, one net-snmp
snmpd on 127.0.0.1 serving them under several ports), runs the attack bounded
in time, measures, and stops everything (also on failure or Ctrl-C). All
traffic goes to 127.0.0.1. While an attack runs, promsnmp's VmRSS and open
descriptors are sampled every 0.5 s and GET /actuator/health is sent every
0.5 s (each probe on a new connection, 5 s client timeout).

The attacks (see ATTACKS; --attacks picks some):

 idle         2,000 TCP connections that send nothing, held 45 s; and one
              keep-alive client opened first, active again just before the
              cap is reached (is the longest-idle connection evicted first?)
 slowloris    200 connections sending one header byte every 5 s, 70 s
 bodies       32 GETs announcing and sending 30 MiB of body, then stalling, 30 s
 fds          promsnmp under `prlimit --nofile=1024:1024`, 20 devices polled
              every 5 s, 1,010 idle connections held 30 s
 storm        200 concurrent GET /snmp?target=…&live=true over 20 devices
 post-bodies  (extra) 32 POSTs of 30 MiB (under the 32 MiB write limit), the
              last byte never sent, 30 s
 slow-body    (extra) 600 POSTs whose body never arrives, 130 s
 busy-idle    (extra) 520 keep-alive connections each asking a live scrape of a
              device that never answers, then idle on the connection, 110 s

Health figures: median and max over every probe (a failed one counts with the
time it took to fail), failures (timeouts among them), the longest run of
failed probes. "closed by server": the connection read EOF or a reset.
promsnmp runs with the descriptor limit the harness was started with (the
harness raises its own soft limit to the hard one); attack 4 sets its own.

--quick shortens the holds for a smoke run. One table per binary, a side-by-side
table when two are given; --json writes every figure and the details.
Python 3 standard library only; needs snmpd, snmpget (Debian `snmpd`, `snmp`)
and prlimit (`util-linux`).
"""

import argparse
import collections
import contextlib
import errno
import hashlib
import http.client
import json
import os
import re
import resource
import selectors
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
import traceback

from harness import HarnessError, check_alive, file_tail, free_port, http_request, log, program as harness_program, \
    run, start_process, wait_until

COMMUNITY = "public"
SYS_NAME = "1.3.6.1.2.1.1.5.0"
SNMP_IN_PKTS = "1.3.6.1.2.1.11.1.0"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
MIB = 1024 * 1024
PROGRAMS = {"snmpd": "snmpd", "snmpget": "snmp", "prlimit": "util-linux"}
PROBE_INTERVAL = 0.5    # seconds between samples and between health probes
HEALTH_TIMEOUT = 5.0    # client timeout of a health probe
ENCRYPT_KEY = "attack-key-16byt"

FULL = dict(idle_conns=2000, idle_hold=45, idle_refresh_after=450,
            slow_conns=200, slow_every=5.0, slow_hold=70,
            body_conns=32, body_bytes=30 * MIB, body_hold=30,
            fd_limit=1024, fd_conns=1010, fd_hold=30, fd_devices=20, fd_interval_ms=5000,
            storm_devices=20, storm_requests=200,
            rudy_conns=600, rudy_hold=130,
            busy_conns=520, busy_hold=110, busy_device_timeout_ms=5000)
QUICK = dict(FULL, idle_hold=12, slow_hold=15, body_hold=10, fd_hold=12, rudy_hold=15, busy_hold=20)


def program(name):
    return harness_program(name, PROGRAMS[name])


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------

def median(xs):
    return statistics.median(xs) if xs else None


def vm_status(pid):
    """VmRSS and VmHWM in MiB (None when the process is gone)."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return out


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def nofile_of(pid):
    """The (soft, hard) descriptor limit of a running process, as text."""
    try:
        with open(f"/proc/{pid}/limits") as f:
            for line in f:
                if line.startswith("Max open files"):
                    parts = line.split()
                    return f"{parts[3]}:{parts[4]}"
    except OSError:
        pass
    return "?"


def metric_sum(text, name, labels=None):
    """Sum of every sample of `name` whose labels contain `labels` (a dict)."""
    total = 0.0
    for m in re.finditer(rf"^{re.escape(name)}(?:\{{([^}}]*)\}})? (\S+)", text, re.M):
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(1) or ""))
        if labels and any(got.get(k) != v for k, v in labels.items()):
            continue
        total += float(m.group(2))
    return total


def metric_by_label(text, name, label):
    """{label value: sample value} of `name`."""
    out = {}
    for m in re.finditer(rf"^{re.escape(name)}\{{([^}}]*)\}} (\S+)", text, re.M):
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(1)))
        if label in got:
            out[got[label]] = out.get(got[label], 0.0) + float(m.group(2))
    return out


def self_metrics(port, timeout=10):
    status, _, body = http_request(port, "GET", "/actuator/prometheus", timeout=timeout)
    if status != 200:
        raise HarnessError(f"/actuator/prometheus: {status}")
    return body.decode(errors="replace")


def try_self_metrics(port, attempts=5, timeout=10):
    """The self-metrics, retried (bounded); None if they never came."""
    for _ in range(attempts):
        with contextlib.suppress(Exception):
            return self_metrics(port, timeout)
        time.sleep(1)
    return None


def closed_reasons(text):
    return {k: int(v) for k, v in
            metric_by_label(text or "", "promsnmp_http_connections_closed_total", "reason").items()}


def log_offset(path):
    with contextlib.suppress(OSError):
        return os.path.getsize(path)
    return 0


def log_lines(path, offset=0):
    with contextlib.suppress(OSError):
        with open(path, errors="replace") as f:
            f.seek(offset)
            return [ANSI.sub("", line) for line in f]
    return []


def log_problems(lines):
    """WARN/ERROR lines counted by message (the no-authentication notice left out)."""
    problems = collections.Counter()
    for line in lines:
        if "no authentication:" in line:
            continue
        m = re.search(r"\b(WARN|ERROR)\s+\S+:\s+(.*?)(\s+\w+=|$)", line)
        if m:
            problems[f"{m.group(1)} {m.group(2)[:140]}"] += 1
    return dict(problems.most_common(12))


# ---------------------------------------------------------------------------
# Processes: snmpd and promsnmp
# ---------------------------------------------------------------------------

class Agent:
    """One snmpd on 127.0.0.1 listening on `n` UDP ports (one per device)."""

    def __init__(self, stack, workdir, n):
        os.makedirs(os.path.join(workdir, "persist"), exist_ok=True)
        self.ports = [free_port(socket.SOCK_DGRAM) for _ in range(n)]
        conf = os.path.join(workdir, "snmpd.conf")
        with open(conf, "w") as f:
            f.write(f"agentAddress {','.join(f'udp:127.0.0.1:{p}' for p in self.ports)}\n"
                    "view all included .1\n"
                    f"rocommunity {COMMUNITY} 127.0.0.1 -V all\n"
                    "sysName attack\nsysContact attack@example.org\nsysLocation attack\n")
        self.env = dict(os.environ, MIBS="", SNMPCONFPATH=workdir,
                        SNMP_PERSISTENT_DIR=os.path.join(workdir, "persist"))
        cmd = [program("snmpd"), "-f", "-Lf", os.path.join(workdir, "snmpd.log"), "-C", "-c", conf,
               "-p", os.path.join(workdir, "snmpd.pid")]
        self.proc = start_process(stack, "snmpd", cmd, os.path.join(workdir, "snmpd.out"), env=self.env)
        for p in (self.ports[0], self.ports[-1]):
            wait_until(f"snmpd on 127.0.0.1:{p}", self.proc, lambda p=p: self.get(p, SYS_NAME, 1), 20)

    def get(self, port, oid, timeout=2):
        out = run([program("snmpget"), "-v2c", "-c", COMMUNITY, "-r0", f"-t{timeout}", "-Oqv",
                   f"127.0.0.1:{port}", oid], timeout=timeout + 10, env=dict(os.environ, MIBS=""))
        return out.strip()

    def in_pkts(self):
        """snmpInPkts of the agent (every port): this snmpget's own request included."""
        return int(self.get(self.ports[0], SNMP_IN_PKTS))


def community_agent(port, timeout_ms=2000, retries=1):
    return {"type": "snmp-community", "endpoint": {"address": "127.0.0.1", "port": port},
            "version": 1, "timeout": timeout_ms, "retries": retries, "readCommunity": COMMUNITY}


class Promsnmp:
    """A promsnmp started from a private copy of the binary, under prlimit."""

    def __init__(self, stack, binary, workdir, nofile, extra_env=None):
        os.makedirs(workdir, exist_ok=True)
        self.exe = os.path.join(workdir, "promsnmp")
        shutil.copy2(binary, self.exe)
        self.port = free_port()
        self.logfile = os.path.join(workdir, "promsnmp.log")
        env = dict(os.environ, SERVER_PORT=str(self.port), PROMSNMP_BIND_ADDRESS="127.0.0.1",
                   PROM_INV_FILE=os.path.join(workdir, "inventory.json"), PROM_ENCRYPT_KEY=ENCRYPT_KEY,
                   DISCOVERY_CRON="-", COLLECTION_INTERVAL="86400000", RUST_LOG="info")
        env.update(extra_env or {})
        # prlimit sets the limit on itself and execs promsnmp: proc.pid is promsnmp.
        cmd = [program("prlimit"), f"--nofile={nofile[0]}:{nofile[1]}", self.exe]
        self.proc = start_process(stack, "promsnmp", cmd, self.logfile, env=env, cwd=workdir)
        wait_until("promsnmp", self.proc,
                   lambda: http_request(self.port, "GET", "/actuator/health", timeout=2)[0] == 200, 30)
        exe = os.path.realpath(os.readlink(f"/proc/{self.proc.pid}/exe"))
        if exe != os.path.realpath(self.exe):
            raise HarnessError(f"pid {self.proc.pid} runs {exe}, not {self.exe}")
        self.pid = self.proc.pid
        self.nofile = nofile_of(self.pid)
        self.cap = None
        for line in log_lines(self.logfile):
            m = re.search(r"max_connections=(\d+)", line)
            if m:
                self.cap = int(m.group(1))

    def alive(self):
        return self.proc.poll() is None

    def post_inventory(self, devices):
        """devices: [(sysName, agent)]."""
        doc = {"devices": [{"sysName": name, "agents": [agent]} for name, agent in devices]}
        status, _, body = http_request(self.port, "POST", "/promsnmp/inventory",
                                       {"Content-Type": "application/json"}, json.dumps(doc).encode(), timeout=30)
        if status != 200:
            raise HarnessError(f"POST /promsnmp/inventory: {status} {body[:300]!r}")

    def wait_polls(self, n, timeout=30):
        """Until promsnmp counted n polls (promsnmp_snmp_poll_duration_seconds_count) and none runs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            check_alive(self.proc)
            text = self_metrics(self.port)
            if (metric_sum(text, "promsnmp_snmp_poll_duration_seconds_count") >= n
                    and metric_sum(text, "promsnmp_polls_in_flight") == 0):
                return
            time.sleep(0.25)
        raise HarnessError(f"fewer than {n} polls within {timeout} s")


# ---------------------------------------------------------------------------
# Observation during an attack: samples and probes
# ---------------------------------------------------------------------------

class Prober:
    """Calls `fn()` every `interval` s, each call in its own thread (a slow call
    does not delay the next); records (start offset, elapsed, outcome)."""

    def __init__(self, fn, interval, t0):
        self.fn, self.interval, self.t0 = fn, interval, t0
        self.results = []
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.threads = []

    def start(self):
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _one(self):
        start = time.monotonic()
        try:
            outcome = self.fn()
        except TimeoutError:
            outcome = "timeout"
        except ConnectionRefusedError:
            outcome = "refused"
        except ConnectionResetError:
            outcome = "reset"
        except (OSError, http.client.HTTPException) as e:
            outcome = f"error {type(e).__name__}"
        with self.lock:
            self.results.append((start - self.t0, time.monotonic() - start, outcome))

    def _loop(self):
        next_t = time.monotonic()
        while not self.stop_event.is_set():
            self.threads = [t for t in self.threads if t.is_alive()]
            if len(self.threads) < 64:  # bounded: a probe times out after some seconds
                t = threading.Thread(target=self._one, daemon=True)
                t.start()
                self.threads.append(t)
            next_t += self.interval
            self.stop_event.wait(max(0.0, next_t - time.monotonic()))

    def stop(self, wait=15):
        self.stop_event.set()
        self.thread.join(5)
        deadline = time.monotonic() + wait
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        with self.lock:
            return sorted(self.results)


def health_probe(port):
    def probe():
        start = time.monotonic()
        status, _, _ = http_request(port, "GET", "/actuator/health", timeout=HEALTH_TIMEOUT)
        if time.monotonic() - start > HEALTH_TIMEOUT:
            return "timeout"
        return "ok" if status == 200 else f"HTTP {status}"
    return probe


def probe_summary(results, prefix):
    """Median and max latency over every probe (a failed one counts with the
    time it took to fail), failures (timeouts among them), longest outage."""
    lat = [r[1] * 1000 for r in results]
    failed = [r for r in results if r[2] != "ok"]
    outage, start = 0.0, None
    for t, elapsed, outcome in results:
        if outcome != "ok":
            start = t if start is None else start
        elif start is not None:
            outage, start = max(outage, t - start), None
    if start is not None and results:
        end = max(t + e for t, e, _ in results)
        outage = max(outage, end - start)
    outcomes = collections.Counter(r[2] for r in results)
    return {f"{prefix} probes": len(results),
            f"{prefix} outcomes": ", ".join(f"{k} {v}" for k, v in outcomes.most_common()) or "–",
            f"{prefix} median ms": median(lat),
            f"{prefix} max ms": max(lat) if lat else None,
            f"{prefix} failed": len(failed),
            f"{prefix} timeouts": outcomes.get("timeout", 0),
            f"{prefix} longest outage s": outage,
            f"{prefix} first failure at s": failed[0][0] if failed else None,
            f"{prefix} last failure at s": failed[-1][0] if failed else None}, dict(outcomes)


class Monitor:
    """VmRSS and descriptor samples of promsnmp and health probes, every 0.5 s."""

    def __init__(self, p):
        self.p = p
        self.t0 = time.monotonic()
        self.samples = []
        self.stop_event = threading.Event()
        self.health = Prober(health_probe(p.port), PROBE_INTERVAL, self.t0)

    def __enter__(self):
        self.start_rss = vm_status(self.p.pid).get("VmRSS")
        self.start_fds = fd_count(self.p.pid)
        self.sampler = threading.Thread(target=self._sample, daemon=True)
        self.sampler.start()
        self.health.start()
        return self

    def _sample(self):
        next_t = time.monotonic()
        while not self.stop_event.is_set():
            self.samples.append((time.monotonic() - self.t0, vm_status(self.p.pid).get("VmRSS"),
                                 fd_count(self.p.pid)))
            next_t += PROBE_INTERVAL
            self.stop_event.wait(max(0.0, next_t - time.monotonic()))

    def __exit__(self, *exc):
        self.stop_event.set()
        self.sampler.join(5)
        self.health_results = self.health.stop()
        return False

    def figures(self):
        rss = [s[1] for s in self.samples if s[1] is not None]
        fds = [s[2] for s in self.samples if s[2] is not None]
        health, outcomes = probe_summary(self.health_results, "health")
        figures = {"RSS at start MiB": self.start_rss, "RSS peak MiB (0.5 s samples)": max(rss) if rss else None,
                   "RSS high-water MiB (VmHWM)": vm_status(self.p.pid).get("VmHWM"),
                   "fds at start": self.start_fds, "fds peak": max(fds) if fds else None}
        figures.update(health)
        return figures, {"health outcomes": outcomes,
                         "samples (t, rss MiB, fds)": [(round(t, 2), r, f) for t, r, f in self.samples],
                         "health (t, s, outcome)": [(round(t, 2), round(e, 3), o) for t, e, o in
                                                    self.health_results]}


# ---------------------------------------------------------------------------
# Attack connections
# ---------------------------------------------------------------------------

class Conn:
    """One attack connection: when it opened, whether and how the server closed it,
    what the server sent."""

    def __init__(self, sock, opened):
        self.sock, self.opened = sock, opened
        self.closed_at = self.how = None
        self.received = bytearray()
        self.sent = 0
        self.next_send = None
        self.send_error = None
        self.responses = []  # (time, status) of complete responses (keep-alive attacks)
        self.first_data_at = None

    def status_line(self):
        if not self.received:
            return None
        return bytes(self.received.split(b"\r\n", 1)[0][:80]).decode(errors="replace")

    def on_data(self, data, now):
        if self.first_data_at is None:
            self.first_data_at = now
        if len(self.received) < 65536:
            self.received += data[:65536 - len(self.received)]

    def close_seen(self, now, how):
        if self.closed_at is None:
            self.closed_at, self.how = now, how


def open_conns(port, n, t0, first_bytes=None, time_budget=90.0, timeout=3.0, on_each=None):
    """Opens n connections (sequentially, each with a connect timeout), sends
    first_bytes on each; returns (conns, connect failures by error)."""
    conns, failures = [], collections.Counter()
    budget_end = time.monotonic() + time_budget
    for i in range(n):
        if time.monotonic() > budget_end:
            failures["not tried (time budget)"] += n - i
            break
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(("127.0.0.1", port))
            if first_bytes:
                s.sendall(first_bytes)
        except OSError as e:
            s.close()
            failures[errno.errorcode.get(e.errno, type(e).__name__) if e.errno else type(e).__name__] += 1
            continue
        s.setblocking(False)
        c = Conn(s, time.monotonic() - t0)
        conns.append(c)
        if on_each:
            on_each(i, c)
        if len(conns) % 100 == 0:  # closes while opening are seen when they happen
            poll_conns(conns, time.monotonic() - t0)
    return conns, failures


def close_all(conns):
    for c in conns:
        with contextlib.suppress(OSError):
            c.sock.close()


def poll_conns(conns, now):
    """Reads what is there without blocking; notes EOF and resets."""
    for c in conns:
        if c.closed_at is not None:
            continue
        for _ in range(64):  # bounded per call
            try:
                data = c.sock.recv(65536)
            except BlockingIOError:
                break
            except ConnectionResetError:
                c.close_seen(now, "reset")
                break
            except OSError as e:
                c.close_seen(now, errno.errorcode.get(e.errno, "error"))
                break
            if not data:
                c.close_seen(now, "eof")
                break
            c.on_data(data, now)


def conn_figures(conns, failures, prefix=""):
    closed = [c for c in conns if c.closed_at is not None]
    lifetimes = [c.closed_at - c.opened for c in closed]
    statuses = collections.Counter(c.status_line() or "(nothing)" for c in conns)
    figures = {f"{prefix}connections opened": len(conns),
               f"{prefix}connect failures": sum(failures.values()),
               f"{prefix}closed by server": len(closed),
               f"{prefix}still open at end": len(conns) - len(closed),
               f"{prefix}server sent (first line)": "; ".join(f"{k} ×{v}" for k, v in statuses.most_common(3)),
               f"{prefix}lifetime of closed ones, median s": median(lifetimes),
               f"{prefix}lifetime of closed ones, max s": max(lifetimes) if lifetimes else None}
    details = {"connect failures": dict(failures), "server answered (first line)": dict(statuses),
               "closed how": dict(collections.Counter(c.how for c in closed))}
    return figures, details


def hold(conns, t0, until, every=0.5, on_tick=None):
    """Watches the connections until monotonic time `until` (bounded)."""
    while True:
        now = time.monotonic() - t0
        poll_conns(conns, now)
        if on_tick:
            on_tick(now)
        remaining = until - time.monotonic()
        if remaining <= 0:
            return
        time.sleep(min(every, remaining))


def read_response(sock, timeout=5.0):
    """One HTTP response (Content-Length bodies) from a blocking socket; its status."""
    sock.settimeout(timeout)
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise ConnectionResetError("closed before the response head")
        buf += data
    head, body = buf.split(b"\r\n\r\n", 1)
    m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    need = int(m.group(1)) if m else 0
    while len(body) < need:
        data = sock.recv(65536)
        if not data:
            raise ConnectionResetError("closed in the response body")
        body += data
    return int(head.split(b" ", 2)[1])


def parse_responses(c, now):
    """Complete responses at the front of c.received (keep-alive); notes (now, status)."""
    while True:
        buf = bytes(c.received)
        if b"\r\n\r\n" not in buf:
            return
        head, rest = buf.split(b"\r\n\r\n", 1)
        m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        need = int(m.group(1)) if m else 0
        if len(rest) < need:
            return
        try:
            status = int(head.split(b" ", 2)[1])
        except (IndexError, ValueError):
            status = head[:40].decode(errors="replace")
        c.responses.append((now, status))
        c.received = bytearray(rest[need:])


# ---------------------------------------------------------------------------
# The attacks: each returns (figures dict, details dict)
# ---------------------------------------------------------------------------

def attack_idle(stack, binary, workdir, cfg, nofile):
    """Idle connections: open many that send nothing, hold, count those closed."""
    p = Promsnmp(stack, binary, workdir, nofile)
    n, hold_s = cfg["idle_conns"], cfg["idle_hold"]
    legit = {}
    with Monitor(p) as mon:
        t0 = mon.t0
        # A keep-alive client opened before the flood, active again just before
        # the cap is reached: with "the longest idle is evicted" it should outlive
        # the flood connections that were opened before its last request.
        ka = socket.create_connection(("127.0.0.1", p.port), timeout=5)
        stack.callback(ka.close)
        req = b"GET /actuator/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        ka.sendall(req)
        read_response(ka)
        ka_conn = Conn(ka, 0.0)
        flood = []
        refresh_at = cfg["idle_refresh_after"]

        def refresh(i, c):
            flood.append(c)
            if len(flood) == refresh_at:
                try:
                    ka.sendall(req)
                    legit["status"] = read_response(ka)
                    legit["active_at"] = time.monotonic() - t0
                except OSError as e:
                    legit["status"] = f"failed: {e}"
                ka.setblocking(False)
            elif len(flood) > refresh_at and ka_conn.closed_at is None:
                # Seen at once: which flood connections were still open then?
                poll_conns([ka_conn], time.monotonic() - t0)
                if ka_conn.closed_at is not None:
                    legit["closed when flood connection # opened"] = len(flood)
                    older = flood[:refresh_at - 1]
                    poll_conns(older, time.monotonic() - t0)
                    legit["flood connections idle longer than it, still open then"] = sum(
                        1 for o in older if o.closed_at is None)
        log(f"   idle: opening {n} connections")
        conns, failures = open_conns(p.port, n, t0, on_each=refresh)
        stack.callback(close_all, conns)
        opened_in = time.monotonic() - t0
        log(f"   idle: {len(conns)} open after {opened_in:.1f} s; holding {hold_s} s")
        ka.setblocking(False)
        hold(conns + [ka_conn], t0, t0 + opened_in + hold_s)
    close_all(conns + [ka_conn])
    metrics = try_self_metrics(p.port)
    figures, details = mon.figures()
    cf, cd = conn_figures(conns, failures)
    figures.update(cf)
    figures["time to open them s"] = opened_in
    figures[f"keep-alive client (opened first, request at flood conn #{refresh_at}): closed by server"] = (
        "yes" if ka_conn.closed_at is not None else "no")
    figures["keep-alive client closed at s"] = ka_conn.closed_at
    figures["… closed when flood conn # was opened"] = legit.get("closed when flood connection # opened")
    figures[f"… of flood conns #1-#{refresh_at - 1} (idle longer) still open then (0 if longest-idle first)"] = legit.get(
        "flood connections idle longer than it, still open then")
    details.update(cd, keepalive={**legit, "closed_at": ka_conn.closed_at, "how": ka_conn.how},
                   flood_closed_at_first_700=[None if c.closed_at is None else round(c.closed_at, 3)
                                              for c in conns[:700]],
                   flood_opened_at_first_700=[round(c.opened, 3) for c in conns[:700]],
                   server_closed_reasons=closed_reasons(metrics))
    return p, figures, details


def attack_slowloris(stack, binary, workdir, cfg, nofile):
    """Connections sending one header byte every few seconds."""
    p = Promsnmp(stack, binary, workdir, nofile)
    n, every, hold_s = cfg["slow_conns"], cfg["slow_every"], cfg["slow_hold"]
    with Monitor(p) as mon:
        t0 = mon.t0
        log(f"   slowloris: opening {n} connections")
        conns, failures = open_conns(p.port, n, t0, first_bytes=b"GET /targets HTTP/1.1\r\nX-a: ")
        stack.callback(close_all, conns)
        for c in conns:
            c.next_send = c.opened + every

        def drip(now):
            for c in conns:
                if c.closed_at is None and c.send_error is None and now >= c.next_send:
                    try:
                        c.sent += c.sock.send(b"a")
                    except BlockingIOError:
                        pass
                    except OSError as e:
                        c.send_error = errno.errorcode.get(e.errno, "error")
                        c.close_seen(now, f"send {c.send_error}")
                    c.next_send += every
        hold(conns, t0, t0 + hold_s, every=0.1, on_tick=drip)
    close_all(conns)
    metrics = try_self_metrics(p.port)
    figures, details = mon.figures()
    cf, cd = conn_figures(conns, failures)
    figures.update(cf)
    figures["header bytes dripped (total)"] = sum(c.sent for c in conns)
    details.update(cd, server_closed_reasons=closed_reasons(metrics))
    return p, figures, details


def body_attack(p, n, head, body_len, hold_s, label, stack):
    """n connections each sending `head` then body_len bytes as fast as the server
    reads them, then stalling until hold_s has passed. Returns (monitor, conns, failures)."""
    chunk = memoryview(b" " * (256 * 1024))
    with Monitor(p) as mon:
        t0 = mon.t0
        log(f"   {label}: opening {n} connections")
        conns, failures = open_conns(p.port, n, t0, first_bytes=head)
        stack.callback(close_all, conns)
        sel = selectors.DefaultSelector()
        stack.callback(sel.close)
        for c in conns:
            c.body_left = body_len
            c.body_done_at = None
            sel.register(c.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
        deadline = t0 + hold_s
        while time.monotonic() < deadline:  # all closed: still held, RSS watched
            for key, mask in sel.select(timeout=min(0.2, max(0.0, deadline - time.monotonic()))):
                c = key.data
                now = time.monotonic() - t0
                if mask & selectors.EVENT_READ:
                    poll_conns([c], now)
                    if c.closed_at is not None:
                        sel.unregister(c.sock)
                        continue
                if mask & selectors.EVENT_WRITE and c.body_left > 0:
                    try:
                        sent = c.sock.send(chunk[:min(len(chunk), c.body_left)])
                        c.sent += sent
                        c.body_left -= sent
                    except BlockingIOError:
                        pass
                    except OSError as e:
                        c.send_error = errno.errorcode.get(e.errno, "error")
                        c.body_left = 0
                    if c.body_left == 0:
                        c.body_done_at = now
                        sel.modify(c.sock, selectors.EVENT_READ, c)
        poll_conns(conns, time.monotonic() - t0)
    close_all(conns)
    return mon, conns, failures


def body_figures(p, mon, conns, failures, body_len):
    figures, details = mon.figures()
    cf, cd = conn_figures(conns, failures)
    figures.update(cf)
    figures["body bytes sent, total MiB"] = sum(c.sent for c in conns) / MIB
    figures["connections that sent the whole body"] = sum(1 for c in conns if c.sent >= body_len)
    answered = [c.first_data_at - c.opened for c in conns if c.first_data_at is not None]
    figures["answered (any bytes)"] = len(answered)
    figures["time to answer, median s"] = median(answered)
    details.update(cd, send_errors=dict(collections.Counter(c.send_error for c in conns if c.send_error)))
    return figures, details


def attack_bodies(stack, binary, workdir, cfg, nofile):
    """GETs announcing 30 MiB of body and sending it."""
    p = Promsnmp(stack, binary, workdir, nofile)
    n, size = cfg["body_conns"], cfg["body_bytes"]
    head = f"GET /targets HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {size}\r\n\r\n".encode()
    mon, conns, failures = body_attack(p, n, head, size, cfg["body_hold"], "bodies", stack)
    figures, details = body_figures(p, mon, conns, failures, size)
    return p, figures, details


def attack_post_bodies(stack, binary, workdir, cfg, nofile):
    """(extra) POSTs of 30 MiB, a size under the 32 MiB write limit, all but the
    last byte sent: the server has to buffer what it read."""
    p = Promsnmp(stack, binary, workdir, nofile)
    n, size = cfg["body_conns"], cfg["body_bytes"]
    head = (f"POST /promsnmp/inventory HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {size}\r\n\r\n").encode()
    mon, conns, failures = body_attack(p, n, head, size - 1, cfg["body_hold"], "post-bodies", stack)
    figures, details = body_figures(p, mon, conns, failures, size - 1)
    return p, figures, details


class SnmpProber:
    """GET /snmp?target=… every second (rotating over the targets), 10 s timeout."""

    def __init__(self, port, targets, t0):
        self.port, self.targets, self.i = port, targets, 0
        self.prober = Prober(self._probe, 1.0, t0)

    def _probe(self):
        target = self.targets[self.i % len(self.targets)]
        self.i += 1
        start = time.monotonic()
        status, _, _ = http_request(self.port, "GET", f"/snmp?target={target}", timeout=10)
        if time.monotonic() - start > 10:
            return "timeout"
        return "ok" if status == 200 else f"HTTP {status}"


def attack_fds(stack, binary, workdir, cfg, nofile):
    """Descriptor exhaustion: promsnmp under a 1024 descriptor limit with devices
    polled every 5 s, and more idle connections than it has descriptors."""
    agent = Agent(stack, os.path.join(workdir, "snmpd"), cfg["fd_devices"])
    limit = cfg["fd_limit"]
    p = Promsnmp(stack, binary, os.path.join(workdir, "promsnmp"), (limit, limit),
                 {"COLLECTION_INTERVAL": str(cfg["fd_interval_ms"])})
    devices = [(f"dev{i + 1:02d}", community_agent(port)) for i, port in enumerate(agent.ports)]
    p.post_inventory(devices)
    p.wait_polls(len(devices))
    before = self_metrics(p.port)
    offset = log_offset(p.logfile)
    n, hold_s = cfg["fd_conns"], cfg["fd_hold"]
    targets = [f"127.0.0.1:{port}" for port in agent.ports]
    with Monitor(p) as mon:
        t0 = mon.t0
        snmp = SnmpProber(p.port, targets, t0)
        snmp.prober.start()
        try:
            log(f"   fds: opening {n} idle connections (promsnmp nofile {p.nofile})")
            conns, failures = open_conns(p.port, n, t0)
            stack.callback(close_all, conns)
            opened_in = time.monotonic() - t0
            hold(conns, t0, t0 + opened_in + hold_s)
        finally:
            snmp_results = snmp.prober.stop()
    t_end = time.monotonic()
    close_all(conns)
    time.sleep(1)
    after = try_self_metrics(p.port)
    window = time.monotonic() - t0
    lines = log_lines(p.logfile, offset)
    figures, details = mon.figures()
    sf, soutcomes = probe_summary(snmp_results, "/snmp")
    figures.update(sf)
    cf, cd = conn_figures(conns, failures)
    figures.update(cf)
    figures["descriptor limit (soft:hard)"] = p.nofile
    figures["connection cap in force"] = p.cap if p.cap is not None else "none"
    figures['log lines "Too many open files"'] = sum("Too many open files" in line for line in lines)
    poll_name, err_name = "promsnmp_snmp_poll_duration_seconds_count", "promsnmp_snmp_poll_errors_total"
    if after is not None:
        figures["polls in the window"] = metric_sum(after, poll_name) - metric_sum(before, poll_name)
        figures["failed polls in the window"] = metric_sum(after, err_name) - metric_sum(before, err_name)
    else:
        figures["polls in the window"] = figures["failed polls in the window"] = "metrics unreachable"
    details.update(cd, snmp_outcomes=soutcomes, problems=log_problems(lines), hold_end_s=t_end - t0,
                   metrics_window_s=window,
                   server_closed_reasons=closed_reasons(after),
                   snmp_probes=[(round(t, 2), round(e, 3), o) for t, e, o in snmp_results])
    return p, figures, details


def attack_storm(stack, binary, workdir, cfg, nofile):
    """Many concurrent live scrapes over a few devices: how many walks they cost."""
    agent = Agent(stack, os.path.join(workdir, "snmpd"), cfg["storm_devices"])
    p = Promsnmp(stack, binary, os.path.join(workdir, "promsnmp"), nofile)
    devices = [(f"dev{i + 1:02d}", community_agent(port)) for i, port in enumerate(agent.ports)]
    p.post_inventory(devices)
    p.wait_polls(len(devices))
    time.sleep(1)
    targets = [f"127.0.0.1:{port}" for port in agent.ports]
    polls, reqs = "promsnmp_snmp_poll_duration_seconds_count", "promsnmp_snmp_requests_total"

    # One live scrape alone: what one walk costs (agent packets, promsnmp's count).
    m0, k0 = self_metrics(p.port), agent.in_pkts()
    status, _, body = http_request(p.port, "GET", f"/snmp?target={targets[0]}&live=true", timeout=60)
    if status != 200:
        raise HarnessError(f"single live scrape: {status} {body[:300]!r}")
    k1, m1 = agent.in_pkts(), self_metrics(p.port)
    pkts_per_walk = k1 - k0 - 1  # the second snmpget's own request
    one_walk_polls = metric_sum(m1, polls) - metric_sum(m0, polls)
    r0, r1 = metric_by_label(m0, reqs, "device"), metric_by_label(m1, reqs, "device")
    reqs_per_walk = sum(r1.values()) - sum(r0.values())
    if pkts_per_walk <= 0 or reqs_per_walk <= 0:
        raise HarnessError(f"calibration: {pkts_per_walk} packets, {reqs_per_walk} requests for one walk")

    n = cfg["storm_requests"]
    results = [None] * n
    barrier = threading.Barrier(n + 1, timeout=60)

    def one(i):
        target = targets[i % len(targets)]
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            results[i] = (None, "barrier")
            return
        start = time.monotonic()
        try:
            st, _, _ = http_request(p.port, "GET", f"/snmp?target={target}&live=true", timeout=120)
            results[i] = (time.monotonic() - start, st)
        except Exception as e:  # noqa: BLE001 - recorded
            results[i] = (time.monotonic() - start, type(e).__name__)

    m0, k0 = self_metrics(p.port), agent.in_pkts()
    with Monitor(p) as mon:
        threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
        for t in threads:
            t.start()
        log(f"   storm: {n} live scrapes over {len(targets)} devices")
        barrier.wait()
        started = time.monotonic()
        deadline = started + 180
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        storm_s = time.monotonic() - started
    time.sleep(0.5)
    k1, m1 = agent.in_pkts(), self_metrics(p.port)
    lat = [r[0] * 1000 for r in results if r and r[0] is not None]
    statuses = collections.Counter(str(r[1]) if r else "unfinished" for r in results)
    r0, r1 = metric_by_label(m0, reqs, "device"), metric_by_label(m1, reqs, "device")
    per_device = sorted((r1.get(d, 0) - r0.get(d, 0)) / (reqs_per_walk) for d in r1)
    figures, details = mon.figures()
    figures.update({
        "live scrapes": n, "answered 200": statuses.get("200", 0),
        "scrape latency p50 ms": median(lat), "scrape latency max ms": max(lat) if lat else None,
        "storm duration s": storm_s,
        "walks (promsnmp poll counter)": metric_sum(m1, polls) - metric_sum(m0, polls),
        "walks (agent snmpInPkts / packets per walk)": (k1 - k0 - 1) / pkts_per_walk,
        "walks per device min": per_device[0] if per_device else None,
        "walks per device median": median(per_device),
        "walks per device max": per_device[-1] if per_device else None,
        "agent packets per walk (one live scrape)": pkts_per_walk,
    })
    details.update(statuses=dict(statuses), one_walk_polls=one_walk_polls, reqs_per_walk=reqs_per_walk,
                   walks_per_device=per_device)
    return p, figures, details


def attack_slow_body(stack, binary, workdir, cfg, nofile):
    """(extra) POSTs whose head is complete and whose body never comes: each is
    a request in flight (not idle) until the body times out."""
    p = Promsnmp(stack, binary, workdir, nofile)
    n, hold_s = cfg["rudy_conns"], cfg["rudy_hold"]
    head = (b"POST /promsnmp/inventory HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1024\r\n\r\n{")
    with Monitor(p) as mon:
        t0 = mon.t0
        log(f"   slow-body: opening {n} connections")
        conns, failures = open_conns(p.port, n, t0, first_bytes=head)
        stack.callback(close_all, conns)
        hold(conns, t0, t0 + hold_s)
    close_all(conns)
    metrics = try_self_metrics(p.port)
    figures, details = mon.figures()
    cf, cd = conn_figures(conns, failures)
    figures.update(cf)
    details.update(cd, server_closed_reasons=closed_reasons(metrics))
    return p, figures, details


def attack_busy_idle(stack, binary, workdir, cfg, nofile):
    """(extra) Keep-alive connections, each asking one slow request (a live scrape
    of a device that never answers), then idle on the connection."""
    hole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # bound, never read: no answer, no ICMP
    hole.bind(("127.0.0.1", 0))
    stack.callback(hole.close)
    hole_port = hole.getsockname()[1]
    p = Promsnmp(stack, binary, workdir, nofile)
    p.post_inventory([("blackhole", community_agent(hole_port, cfg["busy_device_timeout_ms"], 0))])
    n, hold_s = cfg["busy_conns"], cfg["busy_hold"]
    req = (f"GET /snmp?target=127.0.0.1:{hole_port}&live=true HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").encode()
    with Monitor(p) as mon:
        t0 = mon.t0
        log(f"   busy-idle: opening {n} keep-alive connections, each with a live scrape of a silent device")
        conns, failures = open_conns(p.port, n, t0, first_bytes=req)
        stack.callback(close_all, conns)

        def parse(now):
            for c in conns:
                parse_responses(c, now)
        hold(conns, t0, t0 + hold_s, on_tick=parse)
    close_all(conns)
    metrics = try_self_metrics(p.port)
    figures, details = mon.figures()
    cf, cd = conn_figures(conns, failures)
    figures.update(cf)
    answered = [c.responses[0][0] for c in conns if c.responses]
    figures["scrapes answered"] = len(answered)
    first_wave = sorted(answered)[:min(len(answered), p.cap or len(answered))]
    figures["scrapes answered, first at s"] = min(answered) if answered else None
    figures["scrapes answered, last of the first wave at s"] = first_wave[-1] if first_wave else None
    oks = [t for t, _, o in mon.health_results if o == "ok"]
    after_wave = [t for t in oks if first_wave and t > first_wave[-1]]
    figures["first health ok after the first wave at s"] = after_wave[0] if after_wave else None
    details.update(cd, server_closed_reasons=closed_reasons(metrics),
                   response_statuses=dict(collections.Counter(s for c in conns for _, s in c.responses)),
                   answered_at=sorted(round(t, 2) for t in answered))
    return p, figures, details


ATTACKS = {  # name -> (function, title given the settings, extra?)
    "idle": (attack_idle, lambda c: f"1. idle: {c['idle_conns']} connections sending nothing, {c['idle_hold']} s", False),
    "slowloris": (attack_slowloris, lambda c: f"2. slowloris: {c['slow_conns']} connections, 1 header byte / "
                                              f"{c['slow_every']:.0f} s, {c['slow_hold']} s", False),
    "bodies": (attack_bodies, lambda c: f"3. big bodies: {c['body_conns']} GETs with {c['body_bytes'] // MIB} MiB, "
                                        f"{c['body_hold']} s", False),
    "fds": (attack_fds, lambda c: f"4. descriptors: nofile {c['fd_limit']}, {c['fd_devices']} devices every "
                                  f"{c['fd_interval_ms'] // 1000} s, {c['fd_conns']} idle connections, {c['fd_hold']} s", False),
    "storm": (attack_storm, lambda c: f"5. live storm: {c['storm_requests']} live scrapes over {c['storm_devices']} "
                                      f"devices", False),
    "post-bodies": (attack_post_bodies, lambda c: f"6. (extra) big POST bodies: {c['body_conns']} × "
                                                  f"{c['body_bytes'] // MIB} MiB, last byte withheld, {c['body_hold']} s", True),
    "slow-body": (attack_slow_body, lambda c: f"7. (extra) slow body: {c['rudy_conns']} POSTs whose body never "
                                              f"comes, {c['rudy_hold']} s", True),
    "busy-idle": (attack_busy_idle, lambda c: f"8. (extra) busy then idle: {c['busy_conns']} keep-alive live scrapes "
                                              f"of a silent device, then idle, {c['busy_hold']} s", True),
}


# ---------------------------------------------------------------------------
# Running and reporting
# ---------------------------------------------------------------------------

def ignoring_signals(fn):
    handlers = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        fn()
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)


def run_binary(label, binary, cfg, attacks, workdir, nofile):
    """Every chosen attack against one binary, each with fresh processes."""
    with open(binary, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    out = {"binary": binary, "sha256": digest,
           "nofile": f"{nofile[0]}:{nofile[1]}", "attacks": {}}
    started = time.monotonic()
    for name in attacks:
        fn, title, _ = ATTACKS[name]
        log(f"{label}: {title(cfg)}")
        wd = os.path.join(workdir, label, name)
        os.makedirs(wd)
        t = time.monotonic()
        load = os.getloadavg()[0]
        stack = contextlib.ExitStack()
        try:
            p, figures, details = fn(stack, binary, wd, cfg, nofile)
            figures["promsnmp alive at end"] = "yes" if p.alive() else f"NO (exit {p.proc.returncode})"
            figures["promsnmp connection cap"] = p.cap if p.cap is not None else "none"
            details["log problems"] = log_problems(log_lines(p.logfile))
            if not p.alive():
                details["log tail"] = file_tail(p.logfile, 30)
        except (HarnessError, OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
            log(f"{label}: {name} failed: {e}\n{traceback.format_exc()}")
            figures, details = {"harness error": f"{type(e).__name__}: {e}"[:300]}, {"traceback": traceback.format_exc()}
        finally:
            ignoring_signals(stack.close)
        figures["attack wall time s"] = time.monotonic() - t
        details["load average at start"] = load
        out["attacks"][name] = {"title": title(cfg), "figures": figures, "details": details}
        log(f"{label}: {name} done in {time.monotonic() - t:.0f} s")
    out["elapsed_s"] = time.monotonic() - started
    return out


def fmt(v):
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v.is_integer() and abs(v) < 1e9:
            return str(int(v))
        return f"{v:.2f}" if abs(v) < 10 else f"{v:.1f}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def table(runs, attacks):
    """One Markdown table: a row per figure, a column per run."""
    labels = list(runs)
    lines = ["| attack | figure | " + " | ".join(labels) + " |",
             "|---|---|" + "---:|" * len(labels)]
    for name in attacks:
        title = next((r["attacks"][name]["title"] for r in runs.values() if name in r["attacks"]), name)
        figures = []
        for r in runs.values():
            for k in r["attacks"].get(name, {}).get("figures", {}):
                if k not in figures:
                    figures.append(k)
        for i, k in enumerate(figures):
            cells = [fmt(r["attacks"].get(name, {}).get("figures", {}).get(k)) for r in runs.values()]
            lines.append(f"| {title if i == 0 else ''} | {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def raise_own_nofile(needed):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    original = (soft, hard)
    target_hard = hard if hard == resource.RLIM_INFINITY or hard >= needed else needed
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target_hard, target_hard))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        raise HarnessError(f"descriptor limit {soft} < {needed} needed by the harness (raise `ulimit -Hn`)")
    return original


def main():
    ap = argparse.ArgumentParser(description="promsnmp HTTP resource-attack harness (127.0.0.1 only)")
    ap.add_argument("--binary", metavar="PATH", help="one promsnmp binary")
    ap.add_argument("--label", default=None, help="its name in the tables (default: the file name)")
    ap.add_argument("--before", metavar="PATH", help="the binary before the change")
    ap.add_argument("--after", metavar="PATH", help="the binary after the change (run second)")
    ap.add_argument("--quick", action="store_true", help="short holds (smoke run)")
    ap.add_argument("--attacks", default=",".join(ATTACKS),
                    help=f"comma-separated, in order (default all: {','.join(ATTACKS)})")
    ap.add_argument("--fd-limit", type=int, default=FULL["fd_limit"],
                    help=f"attack 4: promsnmp's descriptor limit (default {FULL['fd_limit']})")
    ap.add_argument("--json", metavar="PATH", help="write every figure and detail here")
    ap.add_argument("--workdir", default=None, help="parent of the run's directory (default the temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep logs and inventories even when all went well")
    args = ap.parse_args()

    binaries = []
    if args.binary:
        binaries.append((args.label or os.path.basename(args.binary), args.binary))
    if args.before or args.after:
        if not (args.before and args.after):
            ap.error("--before and --after go together")
        binaries += [("BEFORE", args.before), ("AFTER", args.after)]
    if not binaries:
        ap.error("give --binary PATH, or --before PATH --after PATH")
    for _, path in binaries:
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            ap.error(f"{path}: not an executable file")
    attacks = [a.strip() for a in args.attacks.split(",") if a.strip()]
    unknown = [a for a in attacks if a not in ATTACKS]
    if unknown or not attacks:
        ap.error(f"--attacks: unknown {unknown}; known: {','.join(ATTACKS)}")
    if len({label for label, _ in binaries}) != len(binaries):
        ap.error("two binaries with one label: give --label")
    for name in PROGRAMS:
        program(name)
    cfg = dict(QUICK if args.quick else FULL)
    if not 64 <= args.fd_limit <= 65536:
        ap.error("--fd-limit 64-65536")
    cfg["fd_limit"] = args.fd_limit

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    needed = max(cfg["idle_conns"], cfg["fd_conns"], cfg["rudy_conns"], cfg["busy_conns"]) + 1024
    nofile = raise_own_nofile(needed)
    log(f"harness descriptor limit raised to {resource.getrlimit(resource.RLIMIT_NOFILE)}; promsnmp runs with "
        f"the limit the harness was started with, {nofile[0]}:{nofile[1]} (attack 4: its own)")
    started = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="promsnmp-attack-", dir=args.workdir)
    runs, ok = {}, False
    try:
        for label, path in binaries:
            runs[label] = run_binary(label, path, cfg, attacks, workdir, nofile)
            print(f"\n## {label}: {path} (sha256 {runs[label]['sha256']}, {runs[label]['elapsed_s']:.0f} s)\n",
                  flush=True)
            print(table({label: runs[label]}, attacks), flush=True)
        ok = not any("harness error" in a["figures"] for r in runs.values() for a in r["attacks"].values())
    finally:
        elapsed = time.monotonic() - started
        if runs and len(runs) > 1:
            print(f"\n## Side by side ({'quick' if args.quick else 'full'} run)\n")
            print(table(runs, attacks))
        print(f"\nTotal run time {elapsed:.0f} s.", flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"mode": "quick" if args.quick else "full", "settings": cfg, "attacks": attacks,
                           "total_elapsed_s": elapsed, "complete": ok, "runs": runs}, f, indent=1, default=str)
            log(f"written to {args.json}")
        if ok and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"logs kept in {workdir}")


if __name__ == "__main__":
    try:
        main()
    except HarnessError as e:
        log(f"error: {e}")
        sys.exit(1)
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)
