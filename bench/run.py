#!/usr/bin/python3
"""Benchmark harness for promsnmp (standalone mode). See bench/README.md.

Starts everything itself on 127.0.0.1 plus one network namespace it creates
(snmpd agents, a UDP relay, promsnmp, prometheus-snmp-exporter), measures,
prints one Markdown table per section and writes them to BENCHMARKS.md.
Needs root (ip netns). Python 3 standard library only.
"""

import argparse
import contextlib
import ctypes
import datetime
import heapq
import http.client
import json
import os
import platform
import pwd
import re
import selectors
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMUNITY = "public"
NETNS_PAIRS = 100  # veth pairs in the namespace: 2 * 100 + lo = 201 interfaces
V3_USER, V3_AUTH, V3_PRIV = "benchuser", "authpass123", "privpass123"

SYS_UPTIME = "1.3.6.1.2.1.1.3"
SNMP_IN_PKTS = "1.3.6.1.2.1.11.1.0"
# The 13 IF-MIB columns promsnmp polls (and the if_bench module walks).
LABEL_COLUMNS = {  # label name -> column
    "ifDescr": "1.3.6.1.2.1.2.2.1.2",
    "ifName": "1.3.6.1.2.1.31.1.1.1.1",
    "ifAlias": "1.3.6.1.2.1.31.1.1.1.18",
}
GAUGE_COLUMNS = {"ifSpeed": "1.3.6.1.2.1.2.2.1.5", "ifHighSpeed": "1.3.6.1.2.1.31.1.1.1.15"}
COUNTER_COLUMNS = {
    name: f"1.3.6.1.2.1.31.1.1.1.{n}"
    for n, name in enumerate(
        ["ifHCInOctets", "ifHCInUcastPkts", "ifHCInMulticastPkts", "ifHCInBroadcastPkts",
         "ifHCOutOctets", "ifHCOutUcastPkts", "ifHCOutMulticastPkts", "ifHCOutBroadcastPkts"],
        start=6)
}
COLUMNS = list(LABEL_COLUMNS.values()) + list(GAUGE_COLUMNS.values()) + list(COUNTER_COLUMNS.values())

PROGRAMS = {  # program -> Debian package
    "snmpd": "snmpd",
    "snmpget": "snmp",
    "prometheus-snmp-exporter": "prometheus-snmp-exporter",
    "wrk": "wrk",
    "ip": "iproute2",
}


class BenchError(Exception):
    pass


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def program(name):
    path = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin:/usr/bin:/bin")
    if not path:
        raise BenchError(f"`{name}` not found: install the Debian package `{PROGRAMS[name]}`")
    return path


def run(cmd, timeout=60, check=True, **kw):
    """Runs a command (bounded); returns stdout. Raises BenchError on failure."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired:
        raise BenchError(f"`{shlex.join(cmd)}` did not finish within {timeout} s")
    if check and p.returncode != 0:
        raise BenchError(f"`{shlex.join(cmd)}` failed ({p.returncode}): {p.stderr.strip()}")
    return p.stdout


def free_port(kind=socket.SOCK_STREAM):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def file_tail(path, lines=20):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def median(xs):
    return statistics.median(xs) if xs else float("nan")


# ---------------------------------------------------------------------------
# Processes: every one is registered with the ExitStack and stopped at the end
# ---------------------------------------------------------------------------

def start_process(stack, name, cmd, logfile, env=None, cwd=None):
    out = open(logfile, "ab")
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=env, cwd=cwd, start_new_session=True)
    out.close()
    proc.bench_name, proc.bench_log = name, logfile
    stack.callback(stop_process, proc)
    return proc


def stop_process(proc):
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def check_alive(proc):
    if proc.poll() is not None:
        raise BenchError(f"{proc.bench_name} exited ({proc.returncode}); log tail:\n{file_tail(proc.bench_log)}")


def wait_until(what, proc, probe, timeout):
    """Calls probe() until it returns a true value (bounded); returns that value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        check_alive(proc)
        try:
            result = probe()
            if result:
                return result
        except Exception as e:  # noqa: BLE001 - any failure means "not yet"
            last = e
        time.sleep(0.1)
    raise BenchError(f"{what} not ready within {timeout} s (last error: {last}); "
                     f"log tail:\n{file_tail(proc.bench_log)}")


def cpu_ms(pid):
    """CPU time of a (single-threaded) process so far, from schedstat (ns)."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0]) / 1e6


def vm_status(pid):
    """VmRSS and VmHWM of a process, in MiB."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024
    return fields


# ---------------------------------------------------------------------------
# A minimal SNMP v2c client (BER): GET and GETBULK
# ---------------------------------------------------------------------------

def ber_len(n):
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def tlv(tag, content):
    return bytes([tag]) + ber_len(len(content)) + content


def ber_int(v):
    return tlv(0x02, v.to_bytes(v.bit_length() // 8 + 1, "big", signed=True))


def ber_oid(oid):
    parts = [int(x) for x in oid.split(".")]
    body = bytearray([40 * parts[0] + parts[1]])
    for p in parts[2:]:
        chunk = [p & 0x7F]
        p >>= 7
        while p:
            chunk.append(0x80 | (p & 0x7F))
            p >>= 7
        body += bytes(reversed(chunk))
    return tlv(0x06, bytes(body))


def ber_read(data, pos):
    """(tag, content start, content end) of the TLV at pos."""
    tag, n = data[pos], data[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(data[pos:pos + k], "big")
        pos += k
    if pos + n > len(data):
        raise BenchError("truncated SNMP message")
    return tag, pos, pos + n


def decode_oid(b):
    parts = [b[0] // 40, b[0] % 40]
    v = 0
    for byte in b[1:]:
        v = (v << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(v)
            v = 0
    return ".".join(map(str, parts))


def oid_key(oid):
    return tuple(int(x) for x in oid.split("."))


def in_subtree(oid, prefix):
    return oid.startswith(prefix + ".")


END_OF_MIB_VIEW = 0x82


class SnmpClient:
    """One UDP socket to one agent; counts the requests it sends. No retries."""

    def __init__(self, addr, community=COMMUNITY, timeout=5.0):
        host, port = addr.rsplit(":", 1)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.connect((host, int(port)))
        self.sock.settimeout(timeout)
        self.community = community.encode()
        self.request_id = 1000
        self.requests = 0

    def close(self):
        self.sock.close()

    def request(self, pdu_tag, a, b, oids):
        """Sends one PDU; returns [(oid, value tag, value bytes)] of the response."""
        self.request_id += 1
        varbinds = b"".join(tlv(0x30, ber_oid(o) + b"\x05\x00") for o in oids)
        pdu = tlv(pdu_tag, ber_int(self.request_id) + ber_int(a) + ber_int(b) + tlv(0x30, varbinds))
        self.sock.send(tlv(0x30, ber_int(1) + tlv(0x04, self.community) + pdu))
        self.requests += 1
        for _ in range(100):  # skip stale answers to earlier requests (bounded)
            try:
                data = self.sock.recv(65535)
            except OSError as e:  # timeout, ICMP port unreachable
                raise BenchError(f"no SNMP answer from {self.sock.getpeername()}: {e}")
            try:
                result = self._parse(data)
            except (IndexError, ValueError) as e:
                raise BenchError(f"malformed SNMP response: {e}")
            if result is not None:
                return result
        raise BenchError("no matching SNMP response")

    def _parse(self, data):
        """Varbinds of a response to the current request, else None."""
        _, pos, _ = ber_read(data, 0)  # message
        for _ in range(2):  # version, community
            _, _, pos = ber_read(data, pos)
        tag, pos, _ = ber_read(data, pos)  # PDU
        fields = []
        for _ in range(3):  # request-id, error-status, error-index
            _, s, pos = ber_read(data, pos)
            fields.append(int.from_bytes(data[s:pos], "big", signed=True))
        if tag != 0xA2 or fields[0] != self.request_id:
            return None
        if fields[1] != 0:
            raise BenchError(f"SNMP error status {fields[1]} (index {fields[2]})")
        _, pos, end = ber_read(data, pos)  # varbind list
        result = []
        while pos < end:
            _, s, pos = ber_read(data, pos)  # varbind
            _, os_, oe = ber_read(data, s)
            vtag, vs, ve = ber_read(data, oe)
            result.append((decode_oid(data[os_:oe]), vtag, data[vs:ve]))
        return result

    def get(self, oids):
        return self.request(0xA0, 0, 0, oids)

    def getbulk(self, non_repeaters, max_repetitions, oids):
        return self.request(0xA5, non_repeaters, max_repetitions, oids)


def bulk_rows(client, max_repetitions):
    """The agent's floor: sysUpTime as non-repeater plus the 13 columns in
    GETBULK requests issued back to back until every column is past its end.
    Returns the number of rows of each column."""
    current = list(COLUMNS)  # position of each still-active column
    active = list(range(len(COLUMNS)))
    rows = [0] * len(COLUMNS)
    first = True
    for _ in range(10000):
        if not active:
            return rows
        nonrep = 1 if first else 0
        oids = ([SYS_UPTIME] if first else []) + [current[j] for j in active]
        varbinds = client.getbulk(nonrep, max_repetitions, oids)[nonrep:]
        first = False
        if not varbinds:
            raise BenchError("empty GETBULK response")
        done = set()
        for i, (oid, vtag, _) in enumerate(varbinds):
            j = active[i % len(active)]
            if j in done:
                continue
            if vtag == END_OF_MIB_VIEW or not in_subtree(oid, COLUMNS[j]):
                done.add(j)
            else:
                rows[j] += 1
                current[j] = oid
        active = [j for j in active if j not in done]
    raise BenchError("bulk walk did not end within 10000 requests")


def probe_max_repetitions(addr):
    """How many rows of the 13 columns one GETBULK returns at most: ask for
    far more than any agent gives and count what comes back."""
    client = SnmpClient(addr)
    try:
        varbinds = client.getbulk(1, 10000, [SYS_UPTIME] + COLUMNS)
    finally:
        client.close()
    return max(1, (len(varbinds) - 1) // len(COLUMNS))


# ---------------------------------------------------------------------------
# UDP relay with a fixed added delay, optionally into a network namespace
# ---------------------------------------------------------------------------

CLONE_NEWNET = 0x40000000


def enter_netns(ns):
    """Moves the calling thread into network namespace ns (setns(2))."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into {ns}: {os.strerror(err)}")
    finally:
        os.close(fd)


def in_netns(ns, fn):
    """Runs fn() in a thread that entered namespace ns; returns its result."""
    result = {}

    def body():
        try:
            enter_netns(ns)
            result["value"] = fn()
        except Exception as e:  # noqa: BLE001 - re-raised in the caller
            result["error"] = e

    t = threading.Thread(target=body, daemon=True)
    t.start()
    t.join(30)
    if "error" in result:
        raise result["error"]
    if t.is_alive():
        raise BenchError(f"operation in namespace {ns} did not finish")
    return result.get("value")


class UdpRelay:
    """Listens on 127.0.0.1:<port> and forwards every datagram to target (an
    address inside namespace ns if given), one target-side socket per client,
    holding each datagram delay_ms / 2 in each direction: a round trip gains
    delay_ms. One thread; sub-millisecond timer precision (select(2))."""

    MAX_PEERS = 500
    PEER_IDLE = 30.0

    def __init__(self, target, ns=None):
        self.target, self.ns = target, ns
        self.delay_ms = 0.0
        self.host = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.host.bind(("127.0.0.1", 0))
        self.host.setblocking(False)
        self.port = self.host.getsockname()[1]
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.error = None
        self.thread = threading.Thread(target=self._run, name=f"relay-{self.port}", daemon=True)
        self.thread.start()
        if not self.ready.wait(10) or self.error:
            self.close()
            raise BenchError(f"UDP relay to {target} did not start: {self.error}")

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.host.close()

    def _run(self):
        try:
            if self.ns:
                enter_netns(self.ns)
        except OSError as e:
            self.error = e
            self.ready.set()
            return
        self.ready.set()
        sel = selectors.SelectSelector()  # microsecond timeouts (epoll rounds to ms)
        sel.register(self.host, selectors.EVENT_READ, None)
        peers = {}  # client address -> [target-side socket, last use]
        queue = []  # heap of (due, seq, socket, datagram, destination or None)
        seq = 0
        last_sweep = time.monotonic()
        try:
            while not self.stop.is_set():
                timeout = 0.2 if not queue else max(0.0, queue[0][0] - time.monotonic())
                for key, _ in sel.select(timeout):
                    for _ in range(256):  # drain, bounded
                        try:
                            data, src = key.fileobj.recvfrom(65535)
                        except OSError:  # EAGAIN, or a queued ICMP error
                            break
                        now = time.monotonic()
                        due = now + self.delay_ms / 2000.0
                        if key.data is None:  # a client's request -> target
                            peer = peers.get(src)
                            if peer is None:
                                peer = self._new_peer(sel, peers, src, now)
                            peer[1] = now
                            heapq.heappush(queue, (due, seq, peer[0], data, None))
                        else:  # the target's answer -> its client
                            peers[key.data][1] = now
                            heapq.heappush(queue, (due, seq, self.host, data, key.data))
                        seq += 1
                now = time.monotonic()
                while queue and queue[0][0] <= now:
                    _, _, sock, data, dest = heapq.heappop(queue)
                    try:
                        sock.send(data) if dest is None else sock.sendto(data, dest)
                    except OSError:
                        pass
                if now - last_sweep > 1.0:
                    last_sweep = now
                    for src in [s for s, p in peers.items() if now - p[1] > self.PEER_IDLE]:
                        self._drop_peer(sel, peers, src)
        finally:
            for src in list(peers):
                self._drop_peer(sel, peers, src)
            sel.close()

    def _new_peer(self, sel, peers, src, now):
        if len(peers) >= self.MAX_PEERS:
            self._drop_peer(sel, peers, min(peers, key=lambda s: peers[s][1]))
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # in the namespace if entered
        s.bind(("127.0.0.1", 0))
        s.connect(self.target)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, src)
        peers[src] = [s, now]
        return peers[src]

    def _drop_peer(self, sel, peers, src):
        s = peers.pop(src)[0]
        sel.unregister(s)
        s.close()


# ---------------------------------------------------------------------------
# SNMP agents
# ---------------------------------------------------------------------------

def snmpd_conf(agent_address, with_v3_user):
    conf = (f"agentAddress {agent_address}\n"
            "view all included .1\n"
            f"rocommunity {COMMUNITY} 127.0.0.1 -V all\n"
            "sysName bench\nsysContact bench@example.org\nsysLocation bench\n")
    if with_v3_user:
        conf += (f"createUser {V3_USER} SHA-256 {V3_AUTH} AES {V3_PRIV}\n"
                 f"rouser {V3_USER} priv -V all\n")
    return conf


def snmpd_command(workdir, agent_address, with_v3_user):
    os.makedirs(os.path.join(workdir, "persist"), exist_ok=True)
    conf = os.path.join(workdir, "snmpd.conf")
    with open(conf, "w") as f:
        f.write(snmpd_conf(agent_address, with_v3_user))
    env = dict(os.environ, MIBS="", SNMPCONFPATH=workdir,
               SNMP_PERSISTENT_DIR=os.path.join(workdir, "persist"))
    cmd = [program("snmpd"), "-f", "-Lf", os.path.join(workdir, "snmpd.log"), "-C", "-c", conf,
           "-p", os.path.join(workdir, "snmpd.pid")]
    return cmd, env


def snmpget_value(addr, oid, timeout=2):
    out = run([program("snmpget"), "-v2c", "-c", COMMUNITY, "-r0", f"-t{timeout}", "-Oqv", addr, oid],
              timeout=timeout + 10, env=dict(os.environ, MIBS=""))
    return out.strip()


def snmp_in_pkts(addr):
    return int(snmpget_value(addr, SNMP_IN_PKTS))


def start_host_snmpd(stack, workdir):
    """snmpd on 127.0.0.1 with the host's interfaces. The same agent listens
    on three ports: one per promsnmp device (v2c; v3 without and with a
    stored engineId), since /snmp?target=ip:port must name one device."""
    os.makedirs(workdir)
    ports = [free_port(socket.SOCK_DGRAM) for _ in range(3)]
    cmd, env = snmpd_command(workdir, ",".join(f"udp:127.0.0.1:{p}" for p in ports), True)
    proc = start_process(stack, "snmpd", cmd, os.path.join(workdir, "snmpd.out"), env=env)
    addr = f"127.0.0.1:{ports[0]}"
    wait_until(f"snmpd on {addr}", proc, lambda: snmpget_value(addr, "1.3.6.1.2.1.1.5.0", 1), 20)
    return proc, ports


def start_netns_device(stack, workdir):
    """A namespace with NETNS_PAIRS veth pairs (no addresses, no IPv6) and lo,
    its own snmpd on the namespace's 127.0.0.1:161, and a UDP relay from the
    host's 127.0.0.1 into it. Returns (snmpd process, relay)."""
    os.makedirs(workdir)
    ip = program("ip")
    ns = f"promsnmp-bench-{os.getpid()}"
    run([ip, "netns", "add", ns])
    stack.callback(delete_netns, ns)

    def no_ipv6():
        for which in ("all", "default"):
            path = f"/proc/sys/net/ipv6/conf/{which}/disable_ipv6"
            if os.path.exists(path):
                with open(path, "w") as f:
                    f.write("1")
    in_netns(ns, no_ipv6)

    batch = os.path.join(workdir, "links.batch")
    with open(batch, "w") as f:
        f.write("link set lo up\n")
        for i in range(NETNS_PAIRS):
            f.write(f"link add v{i} type veth peer name v{i}b\nlink set v{i} up\nlink set v{i}b up\n")
    run([ip, "-n", ns, "-batch", batch], timeout=120)

    cmd, env = snmpd_command(workdir, "udp:127.0.0.1:161", False)
    proc = start_process(stack, "snmpd (namespace)", [ip, "netns", "exec", ns] + cmd,
                         os.path.join(workdir, "snmpd.out"), env=env)
    relay = UdpRelay(("127.0.0.1", 161), ns=ns)
    stack.callback(relay.close)
    addr = f"127.0.0.1:{relay.port}"
    wait_until(f"snmpd in namespace {ns}", proc, lambda: snmpget_value(addr, "1.3.6.1.2.1.1.5.0", 1), 30)
    return proc, relay


def delete_netns(ns):
    ip = program("ip")
    left = run([ip, "netns", "pids", ns], check=False).split()
    if left:
        log(f"warning: processes {left} still in namespace {ns}")
    run([ip, "netns", "del", ns], check=False)


def remove_stale_namespaces():
    """Deletes empty promsnmp-bench-<pid> namespaces of earlier runs that died."""
    ip = program("ip")
    for line in run([ip, "netns", "list"], check=False).splitlines():
        ns = line.split()[0] if line.split() else ""
        m = re.fullmatch(r"promsnmp-bench-(\d+)", ns)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            if run([ip, "netns", "pids", ns], check=False).split():
                log(f"warning: stale namespace {ns} still has processes; left alone")
            else:
                log(f"removing stale namespace {ns}")
                run([ip, "netns", "del", ns], check=False)


# ---------------------------------------------------------------------------
# HTTP and the exporters
# ---------------------------------------------------------------------------

def http_request(port, method, path, headers=None, body=None, timeout=120):
    """Returns (status, headers (lower-case names), body bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def http_ok(port, path, headers=None):
    status, _, body = http_request(port, "GET", path, headers)
    if status != 200:
        raise BenchError(f"GET {path} on port {port}: {status} {body[:300]!r}")
    return body


def series_labels(text, metric):
    """Label dicts of every sample of `metric` in Prometheus text format."""
    out = []
    for m in re.finditer(rf"^{metric}\{{([^}}]*)\}}", text, re.M):
        out.append(dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(1))))
    return out


def build_promsnmp():
    """cargo build --release (as the invoking user under sudo, so target/
    keeps its owner); returns the path of target/release/promsnmp."""
    kw, env = {}, dict(os.environ)
    cargo = shutil.which("cargo")
    uid = os.environ.get("SUDO_UID")
    if os.geteuid() == 0 and uid and uid != "0":
        user = pwd.getpwuid(int(uid))
        kw = {"user": user.pw_uid, "group": user.pw_gid}
        env.update(HOME=user.pw_dir, USER=user.pw_name, LOGNAME=user.pw_name)
        cargo = cargo or shutil.which("cargo", path=os.path.join(user.pw_dir, ".cargo", "bin"))
    cargo = cargo or shutil.which("cargo", path=os.path.expanduser("~/.cargo/bin"))
    if not cargo:
        raise BenchError("`cargo` not found (install Rust: https://rustup.rs)")
    log("cargo build --release")
    try:
        p = subprocess.run([cargo, "build", "--release"], cwd=REPO, env=env, timeout=1800, **kw)
    except subprocess.TimeoutExpired:
        raise BenchError("cargo build --release did not finish within 30 min")
    if p.returncode != 0:
        raise BenchError("cargo build --release failed")
    binary = os.path.join(REPO, "target", "release", "promsnmp")
    if not os.path.isfile(binary):
        raise BenchError(f"{binary} missing after the build")
    return binary


def start_promsnmp(stack, binary, workdir):
    os.makedirs(workdir)
    # A private copy: a rebuild of target/ during the run cannot swap it.
    exe = os.path.join(workdir, "promsnmp")
    shutil.copy2(binary, exe)
    port = free_port()
    env = dict(os.environ, SERVER_PORT=str(port), PROMSNMP_BIND_ADDRESS="127.0.0.1",
               PROM_INV_FILE=os.path.join(workdir, "inventory.json"),
               PROM_ENCRYPT_KEY="bench-key-16byte", DISCOVERY_CRON="-",
               COLLECTION_INTERVAL="86400000",  # no background poll during the runs
               RUST_LOG="warn")
    proc = start_process(stack, "promsnmp", [exe], os.path.join(workdir, "promsnmp.log"),
                         env=env, cwd=workdir)
    wait_until("promsnmp", proc, lambda: http_request(port, "GET", "/actuator/health", timeout=2)[0] == 200, 30)
    return proc, port


def community_agent(port):
    return {"type": "snmp-community", "endpoint": {"address": "127.0.0.1", "port": port},
            "version": 1, "timeout": 2000, "retries": 1, "readCommunity": COMMUNITY}


def v3_agent(port, engine_id=None):
    agent = {"type": "snmp-user", "endpoint": {"address": "127.0.0.1", "port": port},
            "version": 3, "timeout": 2000, "retries": 1, "securityName": V3_USER,
            "securityLevel": 3, "authProtocol": "SHA256", "authPassphrase": V3_AUTH,
            "privProtocol": "AES128", "privPassphrase": V3_PRIV}
    if engine_id:
        agent["engineId"] = engine_id
    return agent


def snmp_engine_id(addr):
    """snmpEngineID.0 of the agent, as hex."""
    client = SnmpClient(addr)
    try:
        return client.get(["1.3.6.1.6.3.10.2.1.1.0"])[0][2].hex()
    finally:
        client.close()


def post_inventory(port, devices):
    doc = {"devices": [{"sysName": name, "agents": [agent]} for name, agent in devices]}
    status, _, body = http_request(port, "POST", "/promsnmp/inventory",
                                   {"Content-Type": "application/json"}, json.dumps(doc).encode())
    if status != 200:
        raise BenchError(f"POST /promsnmp/inventory: {status} {body[:500]!r}")


def wait_background_polls(port, n_devices, timeout=20):
    """promsnmp polls newly added devices once in the background; waits until
    every device has been polled so no poll runs during the measurements."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = http_ok(port, "/actuator/prometheus").decode()
        polled = {m.group(1) for m in
                  re.finditer(r'^promsnmp_snmp_poll_duration_seconds_count\{[^}]*device="([^"]*)"', text, re.M)}
        if len(polled) >= n_devices:
            time.sleep(1)
            return
        time.sleep(0.25)
    log("note: not every device showed a background poll; continuing")


def snmp_exporter_config():
    """Module if_bench in the snmp_exporter 0.21 format: the same 13 columns
    and sysUpTime, v2c, max_repetitions 50, labels as in if_mib."""
    lookups = "".join(
        f"    - labels: [ifIndex]\n      labelname: {name}\n      oid: {oid}\n      type: DisplayString\n"
        for name, oid in LABEL_COLUMNS.items())
    metrics = (f"  - name: sysUpTime\n    oid: {SYS_UPTIME}\n    type: gauge\n"
               "    help: The time since the agent started, hundredths of a second\n")
    for name, oid in list(GAUGE_COLUMNS.items()) + list(COUNTER_COLUMNS.items()):
        kind = "gauge" if name in GAUGE_COLUMNS else "counter"
        metrics += (f"  - name: {name}\n    oid: {oid}\n    type: {kind}\n    help: {name}\n"
                    "    indexes:\n    - labelname: ifIndex\n      type: gauge\n"
                    f"    lookups:\n{lookups}")
    walk = "".join(f"  - {oid}\n" for oid in COLUMNS)
    return ("if_bench:\n  version: 2\n  max_repetitions: 50\n  retries: 3\n  timeout: 5s\n"
            f"  auth:\n    community: {COMMUNITY}\n  get:\n  - {SYS_UPTIME}.0\n"
            f"  walk:\n{walk}  metrics:\n{metrics}")


def start_snmp_exporter(stack, workdir):
    os.makedirs(workdir)
    conf = os.path.join(workdir, "snmp.yml")
    with open(conf, "w") as f:
        f.write(snmp_exporter_config())
    port = free_port()
    proc = start_process(stack, "snmp_exporter",
                         [program("prometheus-snmp-exporter"), f"--config.file={conf}",
                          f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                         os.path.join(workdir, "snmp_exporter.log"))
    wait_until("snmp_exporter", proc, lambda: http_request(port, "GET", "/", timeout=2)[0] == 200, 20)
    return proc, port


# ---------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------

class Contender:
    """Something that fetches a device's data once: scrape() returns the
    number of interfaces it got."""

    def __init__(self, name, scrape):
        self.name, self.scrape = name, scrape


def promsnmp_live(port, target):
    def scrape():
        text = http_ok(port, f"/snmp?target={target}&live=true").decode()
        return len(series_labels(text, "ifHCInOctets"))
    return Contender("promsnmp", scrape)


def snmp_exporter_walk(port, target):
    def scrape():
        text = http_ok(port, f"/snmp?target={target}&module=if_bench").decode()
        return len(series_labels(text, "ifHCInOctets"))
    return Contender("snmp_exporter", scrape)


def agent_floor(addr, max_repetitions):
    def scrape():
        client = SnmpClient(addr)
        try:
            rows = bulk_rows(client, max_repetitions)
        finally:
            client.close()
        if len(set(rows)) != 1:
            raise BenchError(f"columns of unequal length: {rows}")
        return rows[0]
    return Contender("agent floor", scrape)


def compare(addr, agent_pid, contenders, interfaces, runs, warmup):
    """Runs the contenders in turn (the order rotating each round), warmup +
    runs rounds. Per scrape: wall time; the agent's CPU time (snmpd's
    schedstat before and after); its requests: snmpInPkts, read with snmpget
    after every scrape, difference - 1 (the snmpget itself).
    Returns {name: {"ms", "cpu", "req": medians, "req_range": (min, max)}}."""
    times = {c.name: [] for c in contenders}
    cpu = {c.name: [] for c in contenders}
    reqs = {c.name: [] for c in contenders}
    before = snmp_in_pkts(addr)
    for rnd in range(warmup + runs):
        k = rnd % len(contenders)
        for c in contenders[k:] + contenders[:k]:
            cpu0 = cpu_ms(agent_pid)
            t0 = time.perf_counter()
            got = c.scrape()
            elapsed = time.perf_counter() - t0
            cpu1 = cpu_ms(agent_pid)
            after = snmp_in_pkts(addr)
            if got != interfaces:
                raise BenchError(f"{c.name} on {addr} returned {got} interfaces, expected {interfaces}")
            if rnd >= warmup:
                times[c.name].append(elapsed * 1000)
                cpu[c.name].append(cpu1 - cpu0)
                reqs[c.name].append(after - before - 1)
            before = after
    return {c.name: {"ms": median(times[c.name]), "cpu": median(cpu[c.name]), "req": median(reqs[c.name]),
                     "req_range": (min(reqs[c.name]), max(reqs[c.name]))} for c in contenders}


WRK_RE = {
    "rps": re.compile(r"^Requests/sec:\s+([\d.]+)", re.M),
    "p50": re.compile(r"^\s+50%\s+([\d.]+)(us|ms|s)\s*$", re.M),
    "p99": re.compile(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", re.M),
    "requests": re.compile(r"^\s+(\d+) requests in", re.M),
    "non2xx": re.compile(r"Non-2xx or 3xx responses:\s+(\d+)"),
    "errors": re.compile(r"Socket errors:.*"),
}


def wrk(url, threads, connections, seconds, headers=()):
    cmd = [program("wrk"), f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency",
           "--timeout", "10s"]
    for h in headers:
        cmd += ["-H", h]
    out = run(cmd + [url], timeout=seconds + 60)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    try:
        rps = float(WRK_RE["rps"].search(out).group(1))
        p50, p99 = (float(m.group(1)) * scale[m.group(2)]
                    for m in (WRK_RE["p50"].search(out), WRK_RE["p99"].search(out)))
        requests = int(WRK_RE["requests"].search(out).group(1))
    except AttributeError:
        raise BenchError(f"cannot parse wrk output:\n{out}")
    bad = WRK_RE["non2xx"].search(out)
    if bad or WRK_RE["errors"].search(out):
        raise BenchError(f"wrk saw failed requests against {url}:\n{out}")
    return {"rps": rps, "p50": p50, "p99": p99, "requests": requests}


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def ms(x):
    return f"{x:.2f}" if x < 100 else f"{x:.0f}"


def ratio(a, b):
    return f"{a / b:.2f}" if b else "n/a"


def reqs(r):
    lo, hi = r["req_range"]
    return f"{r['req']:g}" if lo == hi else f"{r['req']:g} ({lo}–{hi})"


def machine_info(snmp_exporter_version):
    cpu = ""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.*)$", f.read(), re.M)
            cpu = m.group(1) if m else ""
    git = ["git", "-C", REPO, "-c", f"safe.directory={REPO}"]
    commit = run(git + ["rev-parse", "--short", "HEAD"], check=False).strip() or "unknown"
    dirty = run(git + ["status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"], check=False).strip()
    with open(os.path.join(REPO, "Cargo.toml")) as f:
        version = re.search(r'^version\s*=\s*"([^"]+)"', f.read(), re.M).group(1)
    with open(os.path.join(REPO, "README.md")) as f:
        defaults = re.findall(r"^\| `(PROMSNMP_SNMP_\w+)` \| `([^`]*)` \|", f.read(), re.M)
    snmpd = run([program("snmpd"), "-v"], check=False)
    snmpd_version = (re.search(r"NET-SNMP version:\s*(\S+)", snmpd) or [None, "?"])[1]
    return {
        "nproc": run(["nproc"], check=False).strip() or str(os.cpu_count()),
        "cpu": cpu,
        "kernel": platform.release(),
        "promsnmp": f"{version} (git {commit}{', uncommitted changes in src/' if dirty else ''})",
        "snmp_exporter": snmp_exporter_version,
        "snmpd": f"net-snmp {snmpd_version}",
        "promsnmp_settings": ", ".join(f"`{k}` {v}" for k, v in defaults) or "see README.md",
    }


def command_line():
    args = " ".join(shlex.quote(a) for a in sys.argv[1:])
    cmd = "python3 bench/run.py" + (f" {args}" if args else "")
    return cmd


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description="promsnmp benchmark harness (needs root for ip netns)")
    ap.add_argument("--runs", type=int, default=15, help="timed scrapes per figure (default 15)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed scrapes first (default 2)")
    ap.add_argument("--wrk-seconds", type=int, default=10, help="wrk duration against promsnmp (default 10)")
    ap.add_argument("--wrk-repeats", type=int, default=3, help="wrk runs per figure (default 3)")
    ap.add_argument("--output", default=os.path.join(REPO, "BENCHMARKS.md"), help="report file")
    args = ap.parse_args()
    if not (1 <= args.runs <= 1000 and 0 <= args.warmup <= 100 and 1 <= args.wrk_seconds <= 600
            and 1 <= args.wrk_repeats <= 20):
        ap.error("--runs 1-1000, --warmup 0-100, --wrk-seconds 1-600, --wrk-repeats 1-20")
    if os.geteuid() != 0:
        raise BenchError("root needed for `ip netns`: run `sudo python3 bench/run.py`")
    for name in PROGRAMS:
        program(name)

    # SIGTERM/SIGHUP end the run like Ctrl-C does: through the finally below.
    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    started = time.monotonic()
    binary = build_promsnmp()
    remove_stale_namespaces()
    workdir = tempfile.mkdtemp(prefix="promsnmp-bench-")
    ok = False
    stack = contextlib.ExitStack()
    try:
        report = measure(stack, args, binary, workdir)
        ok = True
    finally:
        # Cleanup (every step bounded) is not interrupted by a second Ctrl-C.
        handlers = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        log("stopping everything that was started")
        stack.close()
        for s, h in handlers.items():
            signal.signal(s, h)
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"logs kept in {workdir}")
    elapsed = time.monotonic() - started
    report += f"\nThe whole run (build included) took {elapsed:.0f} s.\n"
    print(report)
    with open(args.output, "w") as f:
        f.write(report)
    uid, gid = os.environ.get("SUDO_UID"), os.environ.get("SUDO_GID")
    if uid and gid:
        with contextlib.suppress(OSError):
            os.chown(args.output, int(uid), int(gid))
    log(f"written to {args.output} ({elapsed:.0f} s)")


def measure(stack, args, binary, workdir):
    R, W = args.runs, args.warmup
    log("starting snmpd (host), the namespace device, promsnmp, snmp_exporter")
    host_snmpd, (few_port, few_v3_port, few_v3e_port) = start_host_snmpd(stack, os.path.join(workdir, "snmpd-host"))
    few_addr = f"127.0.0.1:{few_port}"
    ns_snmpd, many_relay = start_netns_device(stack, os.path.join(workdir, "snmpd-netns"))
    many_addr = f"127.0.0.1:{many_relay.port}"
    few_relay = UdpRelay(("127.0.0.1", few_port))  # the host agent behind a delay (section 2)
    stack.callback(few_relay.close)
    few_relay_addr = f"127.0.0.1:{few_relay.port}"

    promsnmp, p_port = start_promsnmp(stack, binary, os.path.join(workdir, "promsnmp"))
    devices = [("few", community_agent(few_port)), ("few-v3", v3_agent(few_v3_port)),
               ("few-v3-engine", v3_agent(few_v3e_port, snmp_engine_id(f"127.0.0.1:{few_port}"))),
               ("few-relay", community_agent(few_relay.port)), ("many", community_agent(many_relay.port))]
    post_inventory(p_port, devices)
    wait_background_polls(p_port, len(devices))
    exporter, e_port = start_snmp_exporter(stack, os.path.join(workdir, "snmp_exporter"))
    version = subprocess.run([program("prometheus-snmp-exporter"), "--version"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, timeout=10).stdout.split("\n")[0]
    exporter_version = version.replace("snmp_exporter, version ", "") or "?"

    # Interface counts (the floor client walks every column) and the largest
    # number of rows one GETBULK returns.
    dev = {}
    for name, addr in (("few", few_addr), ("many", many_addr)):
        maxrep = probe_max_repetitions(addr)
        interfaces = agent_floor(addr, maxrep).scrape()
        dev[name] = {"addr": addr, "interfaces": interfaces, "maxrep": maxrep,
                     "pid": (host_snmpd if name == "few" else ns_snmpd).pid}
    log(f"interfaces: few={dev['few']['interfaces']} many={dev['many']['interfaces']}; "
        f"rows per GETBULK: {dev['many']['maxrep']}")
    # Both exporters must return every interface, with the if_mib labels.
    for name in ("few", "many"):
        d = dev[name]
        for what, port, path in (("promsnmp", p_port, f"/snmp?target={d['addr']}&live=true"),
                                 ("snmp_exporter", e_port, f"/snmp?target={d['addr']}&module=if_bench")):
            series = series_labels(http_ok(port, path).decode(), "ifHCInOctets")
            if len(series) != d["interfaces"] or any(
                    not {"ifIndex", "ifName", "ifDescr", "ifAlias"} <= set(s) for s in series):
                raise BenchError(f"{what} returned {len(series)} ifHCInOctets series for {name} "
                                 f"(expected {d['interfaces']} with ifIndex/ifName/ifDescr/ifAlias)")

    # 1 (and 3): live scrapes of the same device, and the agent's floor, interleaved.
    log(f"1. live scrapes, {W} warm-ups + {R} runs per device")
    live = {}
    for name in ("few", "many"):
        d = dev[name]
        live[name] = compare(d["addr"], d["pid"], [promsnmp_live(p_port, d["addr"]),
                                         snmp_exporter_walk(e_port, d["addr"]),
                                         agent_floor(d["addr"], d["maxrep"])],
                             d["interfaces"], R, W)

    # 2: through the relay with an added round-trip delay.
    log("2. added latency 0/5/20 ms")
    latency = []
    for name, relay, addr in (("few", few_relay, few_relay_addr), ("many", many_relay, many_addr)):
        d = dev[name]
        for delay in (0, 5, 20):
            relay.delay_ms = delay
            try:
                res = compare(addr, d["pid"], [promsnmp_live(p_port, addr), snmp_exporter_walk(e_port, addr),
                                     agent_floor(addr, d["maxrep"])], d["interfaces"], R, W)
            finally:
                relay.delay_ms = 0
            latency.append((name, delay, res))

    # 4: cached scrapes under load.
    log("4. wrk against cached promsnmp scrapes and snmp_exporter")
    many = dev["many"]
    cached_path = f"/snmp?target={many['addr']}"
    http_ok(p_port, cached_path)  # make sure the cache is filled
    sizes = {}
    for label, headers in (("plain", {}), ("gzip", {"Accept-Encoding": "gzip"})):
        status, hdrs, body = http_request(p_port, "GET", cached_path, headers)
        if status != 200 or (label == "gzip") != (hdrs.get("content-encoding") == "gzip"):
            raise BenchError(f"cached scrape ({label}): status {status}, content-encoding "
                             f"{hdrs.get('content-encoding')}")
        sizes[label] = len(body)
    sizes["exporter"] = len(http_ok(e_port, f"/snmp?target={many['addr']}&module=if_bench"))
    wrk_cases = [
        ("promsnmp, cached", f"http://127.0.0.1:{p_port}{cached_path}", (), 2, 16, args.wrk_seconds, sizes["plain"]),
        ("promsnmp, cached, gzip", f"http://127.0.0.1:{p_port}{cached_path}", ("Accept-Encoding: gzip",), 2, 16,
         args.wrk_seconds, sizes["gzip"]),
        ("snmp_exporter (walks every time)", f"http://127.0.0.1:{e_port}/snmp?target={many['addr']}&module=if_bench",
         (), 2, 2, min(5, args.wrk_seconds), sizes["exporter"]),
    ]
    wrk_results = {case[0]: [] for case in wrk_cases}
    wrk_snmp = {case[0]: 0 for case in wrk_cases}
    for _ in range(args.wrk_repeats):
        for name, url, headers, t, c, secs, _size in wrk_cases:
            before = snmp_in_pkts(many["addr"])
            wrk_results[name].append(wrk(url, t, c, secs, headers))
            wrk_snmp[name] += snmp_in_pkts(many["addr"]) - before - 1

    # 5: v3 authPriv against v2c, same agent, promsnmp live scrapes.
    log("5. SNMPv3 authPriv vs v2c")
    few = dev["few"]
    v2 = Contender("v2c", promsnmp_live(p_port, few["addr"]).scrape)
    v3 = Contender("v3", promsnmp_live(p_port, f"127.0.0.1:{few_v3_port}").scrape)
    v3e = Contender("v3, engineId stored", promsnmp_live(p_port, f"127.0.0.1:{few_v3e_port}").scrape)
    v3res = compare(few["addr"], few["pid"], [v2, v3, v3e], few["interfaces"], R, W)

    # 6: memory after all the runs.
    mem = {"promsnmp": vm_status(promsnmp.pid), "snmp_exporter": vm_status(exporter.pid)}
    for p in (host_snmpd, ns_snmpd, promsnmp, exporter):
        check_alive(p)

    info = machine_info(exporter_version)
    return render(args, info, dev, devices, live, latency, wrk_cases, wrk_results, wrk_snmp, v3res, mem)


def render(args, info, dev, devices, live, latency, wrk_cases, wrk_results, wrk_snmp, v3res, mem):
    R, W = args.runs, args.warmup
    few, many = dev["few"], dev["many"]
    label = {"few": f"snmpd on 127.0.0.1 ({few['interfaces']} interfaces)",
             "many": f"namespace, 100 veth pairs ({many['interfaces']} interfaces), via relay"}
    out = ["# promsnmp benchmarks", ""]
    out += [f"Measured {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC with",
            "", "```sh", f"sudo {command_line()}        # or, as root: {command_line()}", "```", "",
            f"Machine: {info['nproc']} CPUs ({info['cpu']}), Linux {info['kernel']}. "
            f"promsnmp {info['promsnmp']} (`cargo build --release`), "
            f"snmp_exporter {info['snmp_exporter']}, agent {info['snmpd']}. "
            f"promsnmp runs with its default settings ({info['promsnmp_settings']}).", "",
            f"Everything runs on this machine: the agents are net-snmp `snmpd` on 127.0.0.1 "
            f"and in a network namespace it creates, reached through a UDP relay "
            f"(a Python thread in the harness) on 127.0.0.1. Each time is the median of {R} runs "
            f"after {W} warm-ups; contenders of one table row are run in turn (order rotating) "
            f"in the same loop, so each ratio compares like with like. SNMP requests are the "
            f"agent's own `snmpInPkts` counter (read with `snmpget` after every scrape, minus "
            f"that `snmpget`); agent CPU is snmpd's own CPU time per scrape. snmp_exporter uses the hand-written module `if_bench`: the same "
            f"13 IF-MIB columns plus sysUpTime, v2c, max_repetitions 50, labels "
            f"ifIndex/ifName/ifDescr/ifAlias as in `if_mib`.", ""]

    out += ["## 1. Live scrape, same device", "",
            "promsnmp `GET /snmp?target=<ip:port>&live=true` (cache bypassed) against "
            "snmp_exporter `GET /snmp?target=<ip:port>&module=if_bench`.", ""]
    rows = []
    for name in ("few", "many"):
        p, e = live[name]["promsnmp"], live[name]["snmp_exporter"]
        rows.append([label[name], ms(p["ms"]), ms(e["ms"]), ratio(p["ms"], e["ms"]), reqs(p), reqs(e),
                     ms(p["cpu"]), ms(e["cpu"]), ratio(p["cpu"], e["cpu"])])
    out += [table(["device", "promsnmp ms", "snmp_exporter ms", "ratio promsnmp / snmp_exporter",
                   "promsnmp SNMP requests", "snmp_exporter SNMP requests",
                   "agent CPU ms, promsnmp", "agent CPU ms, snmp_exporter", "agent CPU ratio"], rows), ""]

    out += ["## 2. Added network latency", "",
            "The same scrapes through the harness' UDP relay, which holds every datagram for "
            "half the added delay in each direction (the round trip gains 5 or 20 ms; `netem` is "
            "not available). Both devices go through a relay here, so the 0 ms rows include "
            "the relay's own cost. The agent floor is the client of section 3.", ""]
    rows = []
    for name, delay, res in latency:
        p, e, f = res["promsnmp"], res["snmp_exporter"], res["agent floor"]
        rows.append([label[name].replace(", via relay", ""), f"+{delay} ms", ms(p["ms"]), ms(e["ms"]),
                     ratio(p["ms"], e["ms"]), ms(f["ms"]), ratio(p["ms"], f["ms"])])
    out += [table(["device", "added RTT", "promsnmp ms", "snmp_exporter ms",
                   "ratio promsnmp / snmp_exporter", "agent floor ms", "ratio promsnmp / floor"], rows), ""]

    out += ["## 3. The agent's floor", "",
            "The fewest requests the agent accepts for the same data: the harness' own SNMP "
            "v2c client sends sysUpTime as non-repeater plus the 13 columns in one GETBULK "
            "and continues, back to back, with every column not yet past its end. The "
            "max-repetitions asked for is the largest number of rows snmpd returns for 13 "
            "columns (net-snmp caps a response at `maxGetbulkResponses` = 100 varbinds by default). "
            "Measured in the same loop as section 1. The floor client sends one request at a "
            "time; promsnmp continues a long table with several sessions at once, so its wall "
            "time can be below the floor's. What the agent itself spends is its CPU time "
            "(`/proc/<snmpd>/schedstat`; snmpd is single-threaded).", ""]
    rows = []
    for name in ("few", "many"):
        p, f = live[name]["promsnmp"], live[name]["agent floor"]
        rows.append([label[name], dev[name]["maxrep"], reqs(f), ms(f["ms"]), ms(f["cpu"]), reqs(p),
                     ms(p["ms"]), ms(p["cpu"]), ratio(p["ms"], f["ms"]), ratio(p["cpu"], f["cpu"])])
    out += [table(["device", "max-repetitions", "floor SNMP requests", "floor ms (one at a time)",
                   "floor agent CPU ms", "promsnmp SNMP requests", "promsnmp ms", "promsnmp agent CPU ms",
                   "ratio promsnmp / floor, ms", "ratio promsnmp / floor, agent CPU"], rows), ""]

    cached = sum(n for name, n in wrk_snmp.items() if name.startswith("promsnmp"))
    cache_note = ("the agent saw no SNMP request during those runs" if cached == 0 else
                  f"yet the agent saw {cached} SNMP requests during those runs")
    out += ["## 4. Cached scrapes under load", "",
            f"`wrk --latency` against `/snmp?target=<{many['interfaces']}-interface device>`; promsnmp "
            f"serves it from its cache ({cache_note}). snmp_exporter has no cache and walks the "
            f"device for every request, so it gets a short, low-concurrency run. Median of "
            f"{args.wrk_repeats} wrk runs each, taken in turn.", ""]
    rows = []
    for name, _url, headers, t, c, secs, size in wrk_cases:
        rs = wrk_results[name]
        rows.append([name, f"`wrk -t{t} -c{c} -d{secs}s`" + (" + `Accept-Encoding: gzip`" if headers else ""),
                     f"{median([r['rps'] for r in rs]):.0f}", ms(median([r["p50"] for r in rs])),
                     ms(median([r["p99"] for r in rs])), f"{size / 1024:.1f}", wrk_snmp[name]])
    out += [table(["target", "load", "requests/s", "p50 ms", "p99 ms", "response KiB",
                   "SNMP requests during all runs"], rows), ""]

    out += ["## 5. SNMPv3 cost", "",
            f"promsnmp live scrapes of the {few['interfaces']}-interface agent, v2c against "
            "v3 authPriv (user `benchuser`, SHA-256 / AES-128), the same snmpd on other ports: "
            "one v3 device posted without `engineId`, one with the agent's `engineId` stored "
            "(as discovery records it).", ""]
    base = v3res["v2c"]
    rows = [[f"{label['few']}, {name}", ms(r["ms"]), ratio(r["ms"], base["ms"]), reqs(r), ms(r["cpu"])]
            for name, r in v3res.items()]
    out += [table(["device, agent", "ms", "ratio to v2c", "SNMP requests", "agent CPU ms"], rows), ""]

    out += ["## 6. Memory", "",
            f"Resident memory after all the runs above (promsnmp holds {len(devices)} devices; "
            "`VmRSS` and peak `VmHWM` from `/proc/<pid>/status`).", ""]
    out += [table(["process", "VmRSS MiB", "VmHWM MiB"],
                  [[n, f"{m['VmRSS']:.1f}", f"{m['VmHWM']:.1f}"] for n, m in mem.items()]), ""]
    return "\n".join(out)


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        log(f"error: {e}")
        sys.exit(1)
    except KeyboardInterrupt as e:
        log(f"interrupted ({str(e) or 'Ctrl-C'}); everything started was stopped")
        sys.exit(130)
