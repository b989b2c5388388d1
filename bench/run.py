#!/usr/bin/python3
"""Benchmark harness for promsnmp (standalone and fleet). See bench/README.md.

Starts everything itself on 127.0.0.1 plus one network namespace it creates
(snmpd agents, a UDP relay, promsnmp, prometheus-snmp-exporter; for sections
7-9 the synthetic agents of bench/responder.py, redis-server, three promsnmp
replicas and haproxy, loaded by bench/loadgen.py; for section 10 a promsnmp
and a snmp_exporter reading modules of snmp_exporter's generated snmp.yml
from the reference directory), measures, prints one Markdown table per
section and writes them to BENCHMARKS.md. `--sections` picks some. Needs
root (ip netns). Python 3 standard library only.
"""

import argparse
import contextlib
import ctypes
import datetime
import heapq
import json
import os
import platform
import pwd
import re
import resource
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

from harness import (HarnessError, check_alive, free_port, http_request, log, program as harness_program,
                     run, start_process, wait_until)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMUNITY = "public"
NETNS_PAIRS = 100  # veth pairs in the namespace: 2 * 100 + lo = 201 interfaces
V3_USER, V3_AUTH, V3_PRIV = "benchuser", "authpass123", "privpass123"

SYS_UPTIME = "1.3.6.1.2.1.1.3"
SNMP_IN_PKTS = "1.3.6.1.2.1.11.1.0"
# promsnmp's default modules (`system`, `if_mib`), in snmp_exporter's format.
BUILTIN_MODULES = os.path.join(REPO, "src", "modules", "builtin.yml")
DEFAULT_MODULES = ("system", "if_mib")
IF_TABLES = ("1.3.6.1.2.1.2.2.1", "1.3.6.1.2.1.31.1.1.1")  # ifEntry, ifXEntry

PROGRAMS = {  # program -> Debian package
    "snmpd": "snmpd",
    "snmpget": "snmp",
    "prometheus-snmp-exporter": "prometheus-snmp-exporter",
    "wrk": "wrk",
    "ip": "iproute2",
    "redis-server": "redis-server",
    "haproxy": "haproxy",
}
SECTIONS = range(1, 11)
CORE_SECTIONS = {1, 2, 3, 4, 5, 6}  # one setup: snmpd, the namespace device, promsnmp, snmp_exporter
SECTION_PROGRAMS = {  # section -> programs it needs
    **{n: ("snmpd", "snmpget", "prometheus-snmp-exporter", "wrk", "ip") for n in CORE_SECTIONS},
    7: (),
    8: ("snmpd", "snmpget", "ip", "redis-server", "haproxy", "wrk"),
    9: ("redis-server",),
    10: ("snmpd", "snmpget", "prometheus-snmp-exporter", "ip"),
}
NETNS_SECTIONS = CORE_SECTIONS | {8, 10}  # sections that need the namespace device (root)


BenchError = HarnessError


def program(name):
    return harness_program(name, PROGRAMS[name])


def median(xs):
    return statistics.median(xs) if xs else float("nan")


# ---------------------------------------------------------------------------
# Processes: every one is registered with the ExitStack and stopped at the end
# ---------------------------------------------------------------------------

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


def decode_oid_parts(b):
    """BER OID content -> tuple of arcs."""
    parts = [b[0] // 40, b[0] % 40]
    v = 0
    for byte in b[1:]:
        v = (v << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(v)
            v = 0
    return tuple(parts)


def decode_oid(b):
    return ".".join(map(str, decode_oid_parts(b)))


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


class DefaultPlan:
    """What promsnmp's default modules read, from src/modules/builtin.yml as
    promsnmp plans it (src/modules/plan.rs): the metrics without index are
    scalars (read with GETNEXT, as non-repeaters), every indexed metric's and
    lookup's OID a column. `blocks`: each module's text."""

    def __init__(self, path=BUILTIN_MODULES):
        try:
            with open(path) as f:
                text = f.read()
        except OSError as e:
            raise BenchError(f"cannot read promsnmp's built-in modules {path}: {e}")
        self.blocks = module_blocks(text, DEFAULT_MODULES)
        scalars, columns = [], []
        for body in self.blocks.values():
            for item in split_metrics(body):
                oid = re.search(r"^      oid: (\S+)", "\n".join(item), re.M).group(1)
                indexed = any(line.startswith("      indexes:") for line in item)
                (columns if indexed else scalars).append(oid)
                columns += re.findall(r"^        oid: (\S+)", "\n".join(item), re.M)  # lookups
        self.scalars = sorted(set(scalars), key=oid_key)
        self.columns = sorted(set(columns), key=oid_key)
        self.if_columns = [c for c in self.columns if c.rsplit(".", 1)[0] in IF_TABLES]
        if SYS_UPTIME not in self.scalars or not self.if_columns:
            raise BenchError(f"{path}: no sysUpTime or no IF-MIB column in {DEFAULT_MODULES}")

    def describe(self):
        other = len(self.columns) - len(self.if_columns)
        return (f"the {len(self.scalars)} system scalars and {len(self.columns)} columns "
                f"({len(self.if_columns)} of IF-MIB, {other} of sysORTable)")


def split_metrics(body):
    """The items of a module's `metrics:` list (lines of each), from the
    generator's layout: `    metrics:` then `    - name:` items."""
    items, inside = [], False
    for line in body:
        if line.startswith("    metrics:"):
            inside = True
        elif inside and line.startswith("    - "):
            items.append([line])
        elif inside and re.match(r"    \S", line):
            inside = False  # the module's next key
        elif inside and items:
            items[-1].append(line)
    return items


def bulk_rows(client, max_varbinds, plan):
    """The agent's floor: the plan's scalars as non-repeaters plus its
    columns in GETBULK requests issued back to back, each continuing every
    column not yet past its end and asking for as many rows as the agent
    answers for that many columns (`max_varbinds` in all). Returns the number
    of rows of each column."""
    columns = plan.columns
    current = list(columns)  # position of each still-active column
    active = list(range(len(columns)))
    rows = [0] * len(columns)
    first = True
    for _ in range(10000):
        if not active:
            return dict(zip(columns, rows))
        nonrep = len(plan.scalars) if first else 0
        oids = (plan.scalars if first else []) + [current[j] for j in active]
        max_repetitions = max(1, (max_varbinds - nonrep) // len(active))
        varbinds = client.getbulk(nonrep, max_repetitions, oids)[nonrep:]
        first = False
        if not varbinds:
            raise BenchError("empty GETBULK response")
        done = set()
        for i, (oid, vtag, _) in enumerate(varbinds):
            j = active[i % len(active)]
            if j in done:
                continue
            if vtag == END_OF_MIB_VIEW or not in_subtree(oid, columns[j]):
                done.add(j)
            else:
                rows[j] += 1
                current[j] = oid
        active = [j for j in active if j not in done]
    raise BenchError("bulk walk did not end within 10000 requests")


def probe_max_varbinds(addr):
    """How many varbinds one GETBULK answer carries at most: ask for far more
    rows of the whole MIB than any agent gives and count what comes back."""
    client = SnmpClient(addr)
    try:
        varbinds = client.getbulk(0, 10000, ["1.3.6.1"])
    finally:
        client.close()
    return len(varbinds)


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

def http_ok(port, path, headers=None, timeout=120):
    status, _, body = http_request(port, "GET", path, headers, timeout=timeout)
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


PROMSNMP_EXTRA_ENV = {}  # --promsnmp-env: for every promsnmp the harness starts


def start_promsnmp(stack, binary, workdir, extra_env=None, name="promsnmp"):
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
    env.update(extra_env or {})
    env.update(PROMSNMP_EXTRA_ENV)
    proc = start_process(stack, name, [exe], os.path.join(workdir, "promsnmp.log"),
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
    """devices: (sysName, agent) or (sysName, agent, modules)."""
    doc = {"devices": [{"sysName": d[0], "agents": [d[1]], **({"modules": d[2]} if len(d) > 2 else {})}
                       for d in devices]}
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
                  re.finditer(r'^promsnmp_snmp_requests_total\{[^}]*device="([^"]*)"', text, re.M)}
        if len(polled) >= n_devices:
            time.sleep(1)
            return
        time.sleep(0.25)
    log("note: not every device showed a background poll; continuing")


def snmp_exporter_config(plan):
    """Module if_bench in the snmp_exporter 0.21 layout: promsnmp's built-in
    `system` and `if_mib` merged into one module (their metrics as written,
    so the same names, types and labels), walking the system group and
    exactly the IF-MIB columns promsnmp's default poll reads; v2c,
    max_repetitions 50 (promsnmp's default), retries 3, timeout 5s."""
    out = ["if_bench:", "  version: 2", "  max_repetitions: 50", "  retries: 3", "  timeout: 5s",
           "  auth:", f"    community: {COMMUNITY}", "  walk:", "  - 1.3.6.1.2.1.1"]
    out += [f"  - {c}" for c in plan.if_columns]
    out.append("  metrics:")
    for body in plan.blocks.values():
        for item in split_metrics(body):
            out += [line[2:] for line in item]
    return "\n".join(out) + "\n"


def start_snmp_exporter(stack, workdir, config):
    """snmp_exporter with `config` as its snmp.yml."""
    os.makedirs(workdir)
    conf = os.path.join(workdir, "snmp.yml")
    with open(conf, "w") as f:
        f.write(config)
    port = free_port()
    proc = start_process(stack, "snmp_exporter",
                         [program("prometheus-snmp-exporter"), f"--config.file={conf}",
                          f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                         os.path.join(workdir, "snmp_exporter.log"))
    wait_until("snmp_exporter", proc, lambda: http_request(port, "GET", "/", timeout=2)[0] == 200, 20)
    return proc, port


MODULES_SECTION_MODULES = ["system", "if_mib", "hrStorage", "ucd_memory", "ucd_system_stats"]


def reference_modules_file(directory):
    """snmp_exporter's current generated snmp.yml in the reference directory
    (--reference-modules); a clear error when it is not there."""
    path = os.path.join(directory, "snmp.yml")
    if not os.path.isfile(path):
        raise BenchError(f"section 10 needs snmp_exporter's generated snmp.yml (current layout, `auths:` + "
                         f"`modules:`), not found at {path}: give its directory with --reference-modules DIR "
                         f"(default ../shared/snmp_exporter relative to the repository root)")
    return path


def module_blocks(text, names):
    """The text of each named module of a generated snmp.yml in the current
    layout (`modules:` holding two-space-indented module names), as the
    generator writes it. Plain text, no YAML parser (standard library only)."""
    lines = text.splitlines()
    try:
        start = lines.index("modules:") + 1
    except ValueError:
        raise BenchError("no top-level `modules:` in the reference snmp.yml (not the current layout?)")
    blocks, current = {}, None
    for line in lines[start:]:
        if line and not line.startswith(" "):
            break  # the next top-level key
        m = re.fullmatch(r"  ([^\s#-][^:]*):\s*", line)  # a module name (may hold - or .)
        if m:
            current = m.group(1)
            blocks[current] = []
        elif current is not None:
            blocks[current].append(line)
    missing = [n for n in names if n not in blocks]
    if missing:
        raise BenchError(f"modules {missing} not in the reference snmp.yml")
    return {n: blocks[n] for n in names}


def snmp_exporter_021_modules(text, names):
    """The named modules in the layout snmp_exporter 0.21 reads: one top-level
    map of modules, each carrying `version: 2` and `auth: {community: public}`
    (what the current layout keeps apart in `auths:`)."""
    out = ["# Written by bench/run.py from snmp_exporter's current snmp.yml for snmp_exporter 0.21."]
    for name, body in module_blocks(text, names).items():
        if any(re.match(r"    (version|auth):", line) for line in body):
            raise BenchError(f"module {name} of the reference snmp.yml already has version/auth")
        out += [f"{name}:", "  version: 2", "  auth:", f"    community: {COMMUNITY}"]
        out += [line[2:] if line.startswith("  ") else line for line in body]
    return "\n".join(out) + "\n"


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


def agent_floor(addr, max_varbinds, plan):
    def scrape():
        client = SnmpClient(addr)
        try:
            rows = bulk_rows(client, max_varbinds, plan)
        finally:
            client.close()
        if_rows = {rows[c] for c in plan.if_columns}
        if len(if_rows) != 1:
            raise BenchError(f"IF-MIB columns of unequal length: {rows}")
        return if_rows.pop()
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


def sample_lines(text):
    """The sample lines of a Prometheus text exposition."""
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def device_samples(text):
    """Samples that come from the device's modules: neither exporter's own
    scrape metrics nor promsnmp's utilisation histogram."""
    return [line for line in sample_lines(text)
            if not line.startswith(("snmp_scrape_", "interface_utilization"))]


def compare_modules(addr, agent_pid, p_port, e_port, modules, runs, warmup):
    """Section 10: promsnmp's one live scrape of all `modules` against
    snmp_exporter's one scrape per module, in turn (the order rotating),
    warmup + runs rounds. Per scrape the wall time, the agent's CPU time and
    its requests (snmpInPkts after every scrape, minus that snmpget). Returns
    medians: whole sets, and snmp_exporter per module."""
    sets = {"promsnmp": {"ms": [], "cpu": [], "req": []}, "snmp_exporter": {"ms": [], "cpu": [], "req": []}}
    per_module = {m: {"ms": [], "cpu": [], "req": []} for m in modules}
    samples = {}
    before = snmp_in_pkts(addr)

    def one(path, port):
        nonlocal before
        cpu0 = cpu_ms(agent_pid)
        t0 = time.perf_counter()
        text = http_ok(port, path).decode()
        elapsed = (time.perf_counter() - t0) * 1000
        cpu = cpu_ms(agent_pid) - cpu0
        after = snmp_in_pkts(addr)
        req = after - before - 1
        before = after
        return text, elapsed, cpu, req

    joined = ",".join(modules)
    for rnd in range(warmup + runs):
        order = ["promsnmp", "snmp_exporter"]
        order = order[rnd % 2:] + order[:rnd % 2]
        for who in order:
            if who == "promsnmp":
                text, elapsed, cpu, req = one(f"/snmp?target={addr}&live=true&module={joined}", p_port)
                got = [(elapsed, cpu, req)]
                samples["promsnmp"] = len(device_samples(text))
            else:
                got, count = [], 0
                for m in modules:
                    text, elapsed, cpu, req = one(f"/snmp?target={addr}&module={m}", e_port)
                    got.append((elapsed, cpu, req))
                    count += len(device_samples(text))
                    if rnd >= warmup:
                        for k, v in zip(("ms", "cpu", "req"), (elapsed, cpu, req)):
                            per_module[m][k].append(v)
                samples["snmp_exporter"] = count
            if rnd >= warmup:
                for k, i in (("ms", 0), ("cpu", 1), ("req", 2)):
                    sets[who][k].append(sum(g[i] for g in got))
    med = lambda d: {k: median(v) for k, v in d.items()}  # noqa: E731
    return {"sets": {k: {**med(v), "req_range": (min(v["req"]), max(v["req"]))} for k, v in sets.items()},
            "per_module": {m: med(v) for m, v in per_module.items()}, "samples": samples}


def promsnmp_module_requests(addr, agent_addr, p_port, modules, runs=3):
    """promsnmp's requests and ms for each module alone, median of `runs` live
    scrapes of `addr`: an address of the same agent that is not in the
    inventory, polled (PROMSNMP_SCRAPE_UNLISTED_TARGETS) with exactly the
    module the scrape names. snmpInPkts is read at `agent_addr`."""
    out = {}
    for m in modules:
        reqs_, times = [], []
        for _ in range(runs):
            before = snmp_in_pkts(agent_addr)
            t0 = time.perf_counter()
            http_ok(p_port, f"/snmp?target={addr}&live=true&module={m}&auth=public_v2")
            times.append((time.perf_counter() - t0) * 1000)
            reqs_.append(snmp_in_pkts(agent_addr) - before - 1)
        out[m] = {"req": median(reqs_), "ms": median(times)}
    return out


def measure_modules(stack, args, binary, workdir, core):
    """Section 10: the five modules of a net-snmp host, promsnmp's one poll
    against snmp_exporter 0.21's one scrape per module."""
    modules = MODULES_SECTION_MODULES
    ref = reference_modules_file(args.reference_modules)
    with open(ref) as f:
        ref_text = f.read()
    wd = os.path.join(workdir, "modules")
    os.makedirs(wd)
    if core:
        few, many, relay = core["dev"]["few"], core["dev"]["many"], core["many_relay"]
        few = {"addr": few["addr"], "pid": few["pid"]}
        many = {"addr": many["addr"], "pid": many["pid"]}
        ports = core["host_ports"]
    else:
        host_snmpd, ports = start_host_snmpd(stack, os.path.join(wd, "snmpd-host"))
        ns_snmpd, relay = start_netns_device(stack, os.path.join(wd, "snmpd-netns"))
        few = {"addr": f"127.0.0.1:{ports[0]}", "pid": host_snmpd.pid}
        many = {"addr": f"127.0.0.1:{relay.port}", "pid": ns_snmpd.pid}
    # The same agents at addresses outside promsnmp's inventory, for polls of one module alone.
    few["alone"] = f"127.0.0.1:{ports[1]}"
    alone_relay = UdpRelay(("127.0.0.1", 161), ns=relay.ns)
    stack.callback(alone_relay.close)
    many["alone"] = f"127.0.0.1:{alone_relay.port}"
    proc, p_port = start_promsnmp(stack, binary, os.path.join(wd, "promsnmp"),
                                  {"PROMSNMP_MODULES_FILE": ref, "PROMSNMP_SCRAPE_UNLISTED_TARGETS": "true"},
                                  "promsnmp (modules)")
    idle = vm_status(proc.pid)
    devices = [(f"modules-{name}", community_agent(int(d["addr"].rsplit(":", 1)[1])), modules)
               for name, d in (("few", few), ("many", many))]
    post_inventory(p_port, devices)
    wait_background_polls(p_port, len(devices), 60)
    config = snmp_exporter_021_modules(ref_text, modules)
    exporter, e_port = start_snmp_exporter(stack, os.path.join(wd, "snmp_exporter"), config)
    # Both serve every module: a series of each from each exporter.
    probes = {"system": "sysUpTime", "if_mib": "ifHCInOctets", "hrStorage": "hrStorageUsed",
              "ucd_memory": "memTotalReal", "ucd_system_stats": "ssCpuRawUser"}
    for d in (few, many):
        ptext = http_ok(p_port, f"/snmp?target={d['addr']}&live=true&module={','.join(modules)}").decode()
        for m in modules:
            etext = http_ok(e_port, f"/snmp?target={d['addr']}&module={m}").decode()
            for who, text in (("promsnmp", ptext), ("snmp_exporter", etext)):
                if not re.search(rf"^{probes[m]}(\{{| )", text, re.M):
                    raise BenchError(f"{who} served no {probes[m]} (module {m}) for {d['addr']}")
    rows = []
    R, W = args.runs, args.warmup
    for name, d, delay, runs, warmup in (("few", few, None, R, W), ("many", many, 0, R, W),
                                         ("many", many, 20, min(R, 5), min(W, 1))):
        log(f"10. modules: {name}{'' if delay is None else f' +{delay} ms'}, {warmup} warm-ups + {runs} runs")
        if delay:
            relay.delay_ms = alone_relay.delay_ms = delay
        try:
            res = compare_modules(d["addr"], d["pid"], p_port, e_port, modules, runs, warmup)
            alone = promsnmp_module_requests(d["alone"], d["addr"], p_port, modules, 1 if delay else 3)
        finally:
            relay.delay_ms = alone_relay.delay_ms = 0
        rows.append({"device": name, "delay": delay, "runs": runs, "warmup": warmup, "res": res,
                     "promsnmp_alone": alone})
    for p in (proc, exporter):
        check_alive(p)
    _, problems = log_summary(os.path.join(wd, "promsnmp", "promsnmp.log"))
    return {"rows": rows, "modules": modules, "ref": ref, "problems": problems, "idle": idle,
            "mem": {"promsnmp": vm_status(proc.pid), "snmp_exporter": vm_status(exporter.pid)}}


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
# Sections 7-9: synthetic agents, a fleet behind HAProxy, a fixed-rate load
# ---------------------------------------------------------------------------

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
CLK_TCK = os.sysconf("SC_CLK_TCK")
REPLICAS = 3
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def proc_cpu_s(pid):
    """CPU time (user + system, every thread) of a process so far, seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def metric_sum(text, name):
    """Sum of every sample of `name` (any labels) in the Prometheus text format."""
    return sum(float(m.group(1)) for m in
               re.finditer(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)", text, re.M))


def self_metrics(port):
    return http_ok(port, "/actuator/prometheus", timeout=30).decode()


def log_size(path):
    with contextlib.suppress(OSError):
        return os.path.getsize(path)
    return 0


def log_summary(path, offset=0):
    """From a promsnmp log, from byte `offset` on: the collection rounds (ok,
    failed, elapsed ms) and the warnings and errors, counted by message."""
    rounds, problems = [], {}
    with contextlib.suppress(OSError):
        with open(path, errors="replace") as f:
            f.seek(offset)
            for line in f:
                line = ANSI.sub("", line)
                if "collection round finished" in line:
                    fields = dict(re.findall(r"(\w+)=(\d+)", line))
                    rounds.append(tuple(int(fields.get(k, 0)) for k in ("ok", "failed", "elapsed_ms")))
                elif "no authentication:" in line:
                    continue  # the start-up notice that promsnmp has no authentication
                elif re.search(r"\b(WARN|ERROR)\b", line):
                    m = re.search(r"\b(WARN|ERROR)\s+\S+:\s+(.*?)(\s+\w+=|$)", line)
                    key = m.group(1) + " " + m.group(2) if m else line.strip()[:120]
                    problems[key] = problems.get(key, 0) + 1
    return rounds, problems


RESPONDER_AGENTS_PER_PROCESS = 2500


class Responder:
    """bench/responder.py in `processes` processes (by default one per 2,500
    agents): many synthetic v2c agents, one UDP port each on 127.0.0.1,
    sysName dev-0000, dev-0001, …; each process serves a contiguous share."""

    def __init__(self, stack, workdir, count, processes=0):
        os.makedirs(workdir)
        self.workdir, self.count, self.dumps = workdir, count, 0
        processes = processes or -(-count // RESPONDER_AGENTS_PER_PROCESS)
        processes = max(1, min(processes, count))
        self.procs, self.controls, self.ports = [], [], []
        shares = [count // processes + (1 if k < count % processes else 0) for k in range(processes)]
        files, first = [], 0
        for k, share in enumerate(shares):
            ports_file = os.path.join(workdir, f"ports-{k}.json")
            cmd = [sys.executable, os.path.join(BENCH_DIR, "responder.py"), "--count", str(share),
                   "--first-index", str(first), "--ports-file", ports_file,
                   "--parent-pid", str(os.getpid()), "--max-seconds", "7200"]
            name = "SNMP responder" + (f" {k + 1}/{processes}" if processes > 1 else "")
            self.procs.append(start_process(stack, name, cmd, os.path.join(workdir, f"responder-{k}.log")))
            files.append(ports_file)
            first += share
        for proc, ports_file in zip(self.procs, files):
            def ports(ports_file=ports_file):
                with open(ports_file) as f:
                    return json.load(f)
            doc = wait_until(proc.harness_name, proc, ports, 120)
            self.ports += doc["ports"]
            self.controls.append(doc["control"])
        self.proc = self.procs[0]
        for i in sorted({0, count - 1}):
            client = SnmpClient(f"127.0.0.1:{self.ports[i]}")
            try:
                name = bytes(client.get(["1.3.6.1.2.1.1.5.0"])[0][2]).decode()
            finally:
                client.close()
            if name != f"dev-{i:04d}":
                raise BenchError(f"responder agent {i} says sysName {name!r}")

    def devices(self):
        return [(f"dev-{i:04d}", community_agent(port)) for i, port in enumerate(self.ports)]

    def cpu_s(self):
        """CPU seconds of each responder process so far."""
        return [proc_cpu_s(p.pid) for p in self.procs]

    def stats(self, since, polls_only=False):
        """Per agent (in index order): its port, total requests and retries,
        and the monotonic times of its polls (and, unless polls_only, of its
        requests) since `since`."""
        agents = []
        for proc, control in zip(self.procs, self.controls):
            check_alive(proc)
            self.dumps += 1
            path = os.path.join(self.workdir, f"stats-{self.dumps}.json")
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(60)
                s.sendto(f"dump {since!r} {path}{' polls' if polls_only else ''}".encode(), ("127.0.0.1", control))
                try:
                    s.recvfrom(100)
                except OSError as e:
                    raise BenchError(f"{proc.harness_name} did not answer on its control port: {e}")
            with open(path) as f:
                agents += json.load(f)["agents"]
            os.remove(path)
        return agents


def udp_receive_errors():
    """The host's UDP RcvbufErrors and InErrors so far (/proc/net/snmp):
    datagrams dropped because a socket's receive buffer was full."""
    with open("/proc/net/snmp") as f:
        lines = [line.split() for line in f if line.startswith("Udp:")]
    fields = dict(zip(lines[0][1:], map(int, lines[1][1:])))
    return fields.get("RcvbufErrors", 0), fields.get("InErrors", 0)


def wait_first_round(responder, since, timeout, procs):
    """Waits (bounded) until every agent has been polled since `since`.
    Returns (time of the last agent's first poll, agents never polled)."""
    deadline = time.monotonic() + timeout
    while True:
        for p in procs:
            check_alive(p)
        agents = responder.stats(since, polls_only=True)
        firsts = [a["poll_times"][0] for a in agents if a["poll_times"]]
        if len(firsts) == len(agents):
            return max(firsts), 0
        if time.monotonic() > deadline:
            log(f"warning: {len(agents) - len(firsts)} of {len(agents)} agents not polled within {timeout:.0f} s")
            return time.monotonic(), len(agents) - len(firsts)
        time.sleep(1)


def sleep_watching(seconds, procs):
    """Sleeps `seconds`, checking every second that the processes still run."""
    end = time.monotonic() + seconds
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return
        for p in procs:
            check_alive(p)
        time.sleep(min(1.0, left))


def analyse_polls(agents, t0, t1, interval, rounds):
    """Polls (the agents' own record) in the window [t0, t1) of `rounds`
    intervals: per device, per interval, and the gaps between polls."""
    per_device, per_bin, gaps = [], [], []
    missed = doubled = requests = polls = retries = 0
    for a in agents:
        times = sorted(a["poll_times"])
        window = [t for t in times if t0 <= t < t1]
        polls += len(window)
        per_device.append(len(window))
        requests += sum(1 for t in a["request_times"] if t0 <= t < t1)
        retries += sum(1 for t in a.get("retry_times", ()) if t0 <= t < t1)
        bins = [0] * rounds
        for t in window:
            bins[min(rounds - 1, int((t - t0) / interval))] += 1
        per_bin += bins
        # Gaps ending in the window, and the silence from the last poll to its end.
        dev_gaps = [b - a_ for a_, b in zip(times, times[1:]) if t0 <= b < t1]
        gaps += dev_gaps
        before_end = [t for t in times if t < t1]
        tail = t1 - before_end[-1] if before_end else float("inf")
        if not before_end or tail > 1.5 * interval or any(g > 1.5 * interval for g in dev_gaps):
            missed += 1
        if any(g < 0.5 * interval for g in dev_gaps):
            doubled += 1
    gaps.sort()
    return {
        "devices": len(agents), "polls": polls, "requests": requests, "retries": retries,
        "per_device": (min(per_device), max(per_device)) if per_device else (0, 0),
        "per_interval": (min(per_bin), max(per_bin)) if per_bin else (0, 0),
        "bins_empty": sum(1 for b in per_bin if b == 0), "bins_multi": sum(1 for b in per_bin if b > 1),
        "missed": missed, "doubled": doubled,
        "gap": (gaps[0], gaps[len(gaps) // 2], gaps[-1]) if gaps else (float("nan"),) * 3,
        "gap_p99": gaps[min(len(gaps) - 1, int(0.99 * len(gaps)))] if gaps else float("nan"),
    }


def scale_window(args, responder, since, members):
    """The measurement window of sections 7 and 9: `args.scale_rounds`
    intervals after the first full round. members: {name: (process, port or
    None)}. Returns per member the CPU seconds and polls of the window, the
    poll analysis, the responder processes' CPU seconds and the host's UDP
    receive errors over the window."""
    interval = args.scale_interval_ms / 1000

    def snapshot():
        snap = {}
        for name, (proc, port) in members.items():
            text = self_metrics(port) if port else ""
            snap[name] = {"cpu": proc_cpu_s(proc.pid), "polls": metric_sum(text, "promsnmp_replica_polls_total"),
                          "errors": metric_sum(text, "promsnmp_snmp_poll_errors_total"),
                          "snmp_requests": metric_sum(text, "promsnmp_snmp_requests_total"),
                          "poll_seconds": metric_sum(text, "promsnmp_snmp_poll_duration_seconds_sum"),
                          "timed_polls": metric_sum(text, "promsnmp_snmp_poll_duration_seconds_count")}
        return snap

    procs = [p for p, _ in members.values()] + responder.procs
    t0 = time.monotonic()
    before = snapshot()
    resp0, udp0 = responder.cpu_s(), udp_receive_errors()
    seconds = args.scale_rounds * interval
    log(f"   window: {args.scale_rounds} intervals ({seconds:.0f} s)")
    rss = {name: [] for name in members}  # VmRSS at the end of each interval
    for k in range(args.scale_rounds):
        sleep_watching(t0 + (k + 1) * interval - time.monotonic(), procs)
        for name, (proc, _) in members.items():
            rss[name].append(vm_status(proc.pid)["VmRSS"])
    t1 = time.monotonic()
    resp1, udp1 = responder.cpu_s(), udp_receive_errors()
    after = snapshot()
    analysis = analyse_polls(responder.stats(since), t0, t1, interval, args.scale_rounds)
    delta = {name: {k: after[name][k] - before[name][k] for k in before[name]} for name in members}
    return {"seconds": t1 - t0, "delta": delta, "polls": analysis, "rss": rss,
            "responder_cpu": [b - a for a, b in zip(resp0, resp1)],
            "udp_errors": tuple(b - a for a, b in zip(udp0, udp1))}


def measure_scale_single(stack, args, binary, workdir, responder):
    """Section 7: one promsnmp polling every responder device."""
    sub = contextlib.ExitStack()
    stack.callback(sub.close)
    interval = args.scale_interval_ms / 1000
    wd = os.path.join(workdir, "promsnmp-scale")
    proc, port = start_promsnmp(sub, binary, wd, {"COLLECTION_INTERVAL": str(args.scale_interval_ms),
                                                  "RUST_LOG": "info"}, "promsnmp (scale)")
    time.sleep(3)
    self_metrics(port)
    idle = vm_status(proc.pid)
    log(f"   promsnmp idle, empty inventory: VmRSS {idle['VmRSS']:.1f} MiB; posting {responder.count} devices")
    t_post = time.monotonic()
    post_inventory(port, responder.devices())
    log(f"   posted in {time.monotonic() - t_post:.1f} s; VmRSS {vm_status(proc.pid)['VmRSS']:.1f} MiB")
    first, never = wait_first_round(responder, t_post, 2 * interval + 60, [proc] + responder.procs)
    after_first = vm_status(proc.pid)
    log(f"   first round complete {first - t_post:.1f} s after the POST; VmRSS {after_first['VmRSS']:.1f} MiB")
    window = scale_window(args, responder, t_post, {"promsnmp": (proc, port)})
    mem = vm_status(proc.pid)
    log(f"   after the window: VmRSS {mem['VmRSS']:.1f} MiB, VmHWM {mem['VmHWM']:.1f} MiB "
        f"({(mem['VmRSS'] - idle['VmRSS']) * 1024 / responder.count:.1f} KiB per device)")
    rounds, problems = log_summary(os.path.join(wd, "promsnmp.log"))
    sub.close()
    return {"idle": idle, "mem": mem, "first_round_s": first - t_post, "never": never,
            "window": window, "rounds": rounds, "problems": problems, "after_first": after_first}


def redis_ping(port):
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(b"*1\r\n$4\r\nPING\r\n")
        return s.recv(64).startswith(b"+PONG")


class Fleet:
    """redis-server and REPLICAS promsnmp replicas sharing one inventory file."""

    def __init__(self, stack, binary, workdir, interval_ms):
        os.makedirs(workdir)
        rdir = os.path.join(workdir, "redis")
        os.makedirs(rdir)
        self.redis_port = free_port()
        self.redis = start_process(stack, "redis-server", [
            program("redis-server"), "--port", str(self.redis_port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", rdir], os.path.join(rdir, "redis.log"), cwd=rdir)
        wait_until("redis-server", self.redis, lambda: redis_ping(self.redis_port), 20)
        shared = os.path.join(workdir, "shared")
        os.makedirs(shared)
        self.replicas, self.logs = [], []
        for i in range(1, REPLICAS + 1):
            wd = os.path.join(workdir, f"replica-{i}")
            proc, port = start_promsnmp(stack, binary, wd, {
                "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/",
                "PROM_INV_FILE": os.path.join(shared, "promsnmp-inventory.json"),
                "COLLECTION_INTERVAL": str(interval_ms), "PROMSNMP_REPLICA_ID": f"replica-{i}",
                "RUST_LOG": "info"}, f"promsnmp replica-{i}")
            self.replicas.append((f"replica-{i}", proc, port))
            self.logs.append(os.path.join(wd, "promsnmp.log"))
        for name, proc, port in self.replicas:
            wait_until(f"{name} seeing {REPLICAS} fleet members", proc,
                       lambda port=port: metric_sum(self_metrics(port), "promsnmp_fleet_members") == REPLICAS, 40)
        self.ports = [port for _, _, port in self.replicas]

    def procs(self):
        return [self.redis] + [p for _, p, _ in self.replicas]

    def wait_devices(self, n, timeout=30):
        for name, proc, port in self.replicas:
            wait_until(f"{name} holding {n} devices", proc,
                       lambda port=port: metric_sum(self_metrics(port), "promsnmp_inventory_device_count") == n,
                       timeout)


def haproxy_config(frontend, stats, backends):
    servers = "".join(f"    server replica-{i} 127.0.0.1:{p} check inter 1s fall 2 rise 1\n"
                      for i, p in enumerate(backends, start=1))
    return ("global\n    maxconn 4096\n\n"
            "defaults\n    mode http\n    option http-keep-alive\n    timeout connect 2s\n"
            "    timeout client 30s\n    timeout server 30s\n    timeout http-keep-alive 30s\n"
            "    timeout check 2s\n\n"
            f"frontend promsnmp\n    bind 127.0.0.1:{frontend}\n    default_backend replicas\n\n"
            "backend replicas\n    balance roundrobin\n"
            "    option httpchk GET /actuator/health/readiness\n    http-check expect status 200\n"
            f"{servers}\n"
            f"listen stats\n    bind 127.0.0.1:{stats}\n    stats enable\n    stats uri /stats\n")


def haproxy_servers(stats_port):
    """The backend's servers from HAProxy's CSV stats: {name: row}."""
    lines = http_ok(stats_port, "/stats;csv", timeout=5).decode().splitlines()
    header = lines[0].lstrip("# ").split(",")
    rows = [dict(zip(header, line.split(","))) for line in lines[1:] if line]
    return {r["svname"]: r for r in rows
            if r.get("pxname") == "replicas" and r.get("svname") not in ("FRONTEND", "BACKEND")}


def start_haproxy(stack, workdir, backends):
    os.makedirs(workdir)
    port, stats = free_port(), free_port()
    cfg = os.path.join(workdir, "haproxy.cfg")
    with open(cfg, "w") as f:
        f.write(haproxy_config(port, stats, backends))
    haproxy = program("haproxy")
    run([haproxy, "-c", "-q", "-f", cfg], timeout=30)
    proc = start_process(stack, "haproxy", [haproxy, "-db", "-f", cfg], os.path.join(workdir, "haproxy.log"))
    wait_until("haproxy with every replica UP", proc,
               lambda: (lambda s: len(s) == len(backends) and all(r["status"] == "UP" for r in s.values()))(
                   haproxy_servers(stats)), 30)
    return proc, port, stats


def loadgen(port, path, seconds, connections, rate=None, headers=()):
    """bench/loadgen.py: open loop at `rate` requests/s, or closed loop (max)."""
    cmd = [sys.executable, os.path.join(BENCH_DIR, "loadgen.py"), "--port", str(port), "--path", path,
           "--seconds", str(seconds), "--connections", str(connections)]
    cmd += ["--max"] if rate is None else ["--rate", str(rate)]
    for h in headers:
        cmd += ["--header", h]
    out = run(cmd, timeout=seconds + 90)
    return json.loads(out.strip().splitlines()[-1])


def device_polls(fleet):
    """Polls of every device so far, summed over the replicas."""
    return sum(metric_sum(self_metrics(port), "promsnmp_snmp_poll_duration_seconds_count") for port in fleet.ports)


def measure_fleet_cached(args, fleet, haproxy_port, stats_port, relay, interfaces_expected, pids):
    """Section 8: cached scrapes of the namespace device through HAProxy."""
    offsets = [log_size(path) for path in fleet.logs]
    addr = f"127.0.0.1:{relay.port}"
    post_inventory(fleet.ports[0], [("many", community_agent(relay.port))])
    fleet.wait_devices(1)
    path = f"/snmp?target={addr}"

    def scraped():
        status, _, body = http_request(haproxy_port, "GET", path, timeout=30)
        return status == 200 and len(series_labels(body.decode(), "ifHCInOctets"))
    got = wait_until("a scrape through haproxy", fleet.replicas[0][1], scraped, 60)
    if got != interfaces_expected:
        raise BenchError(f"{got} interfaces through haproxy, expected {interfaces_expected}")
    for name, _, port in fleet.replicas:  # every replica serves the shared result
        n = len(series_labels(http_ok(port, path).decode(), "ifHCInOctets"))
        if n != interfaces_expected:
            raise BenchError(f"{name} returned {n} interfaces, expected {interfaces_expected}")
    sizes = {}
    for label, headers in (("plain", {}), ("gzip", {"Accept-Encoding": "gzip"})):
        status, hdrs, body = http_request(haproxy_port, "GET", path, headers)
        if status != 200 or (label == "gzip") != (hdrs.get("content-encoding") == "gzip"):
            raise BenchError(f"scrape through haproxy ({label}): status {status}, content-encoding "
                             f"{hdrs.get('content-encoding')}")
        sizes[label] = len(body)
    pkts0 = snmp_in_pkts(addr)
    served0 = {n: int(r.get("stot") or 0) for n, r in haproxy_servers(stats_port).items()}
    runs = []
    for label, headers in (("plain", ()), ("gzip", ("Accept-Encoding: gzip",))):
        want = "gzip" if headers else "identity"
        log(f"   {label}: generator max rate ({args.loadgen_max_seconds} s), then {args.rate}/s for {args.rate_seconds} s")
        top = loadgen(haproxy_port, path, args.loadgen_max_seconds, args.loadgen_connections, None, headers)
        cpu0 = {k: proc_cpu_s(pid) for k, pid in pids.items()}
        polls0 = device_polls(fleet)
        fixed = loadgen(haproxy_port, path, args.rate_seconds, args.loadgen_connections, args.rate, headers)
        cpu = {k: (proc_cpu_s(pid) - cpu0[k]) / args.rate_seconds for k, pid in pids.items()}
        fixed["device_polls"] = device_polls(fleet) - polls0
        for r in (top, fixed):
            if r["completed"] and r["encodings"] != [want]:
                raise BenchError(f"loadgen ({label}) got content-encodings {r['encodings']}, expected {want}")
        runs.append({"label": label, "size": sizes[label], "max": top, "fixed": fixed, "cpu": cpu})
    wrk_runs = []
    targets = (("through HAProxy", haproxy_port), ("replica-1 directly", fleet.ports[0]))
    for where, port in targets:
        for label, headers in (("plain", ()), ("gzip", ("Accept-Encoding: gzip",))):
            log(f"   wrk -t2 -c16 -d{args.wrk_seconds}s {where}, {label}")
            try:
                result = wrk(f"http://127.0.0.1:{port}{path}", 2, 16, args.wrk_seconds, headers)
            except BenchError as e:
                log(f"   wrk failed: {e}")
                result = {"error": str(e).splitlines()[0]}
            wrk_runs.append((where, label, result))
    served1 = {n: int(r.get("stot") or 0) for n, r in haproxy_servers(stats_port).items()}
    pkts1 = snmp_in_pkts(addr)
    problems = {name: log_summary(path, off)[1]
                for (name, _, _), path, off in zip(fleet.replicas, fleet.logs, offsets)}
    return {"addr": addr, "interfaces": interfaces_expected, "runs": runs, "wrk": wrk_runs, "problems": problems,
            "served": {n: served1[n] - served0.get(n, 0) for n in served1},
            "snmp_requests": pkts1 - pkts0 - 1}


def measure_scale_fleet(args, fleet, responder):
    """Section 9: the responder devices shared by the fleet."""
    interval = args.scale_interval_ms / 1000
    before = {name: vm_status(proc.pid) for name, proc, _ in fleet.replicas}
    before["redis-server"] = vm_status(fleet.redis.pid)
    offsets = [log_size(path) for path in fleet.logs]
    t_post = time.monotonic()
    post_inventory(fleet.ports[0], responder.devices())
    fleet.wait_devices(responder.count, 60)
    first, never = wait_first_round(responder, t_post, 2 * interval + 60, fleet.procs() + responder.procs)
    log(f"   first round complete {first - t_post:.1f} s after the POST")
    members = {name: (proc, port) for name, proc, port in fleet.replicas}
    members["redis-server"] = (fleet.redis, None)
    window = scale_window(args, responder, t_post, members)
    after = {name: vm_status(proc.pid) for name, proc, _ in fleet.replicas}
    after["redis-server"] = vm_status(fleet.redis.pid)
    roles = {}
    for name, _, port in fleet.replicas:
        text = self_metrics(port)
        roles[name] = {"leader": metric_sum(text, "promsnmp_leader") == 1,
                       "members": metric_sum(text, "promsnmp_fleet_members")}
    logs = {name: log_summary(path, off) for (name, _, _), path, off in zip(fleet.replicas, fleet.logs, offsets)}
    return {"first_round_s": first - t_post, "never": never, "window": window, "before": before,
            "after": after, "roles": roles, "logs": logs}


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


def machine_info(snmp_exporter_version, sections, binary=None):
    cpu = ""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.*)$", f.read(), re.M)
            cpu = m.group(1) if m else ""
    commit, dirty = BUILD_GIT or git_state()
    with open(os.path.join(REPO, "Cargo.toml")) as f:
        version = re.search(r'^version\s*=\s*"([^"]+)"', f.read(), re.M).group(1)
    with open(os.path.join(REPO, "README.md")) as f:
        defaults = re.findall(r"^\| `(PROMSNMP_SNMP_\w+)` \| `([^`]*)` \|", f.read(), re.M)
    def version_of(cmd, pattern):
        m = re.search(pattern, run(cmd, check=False))
        return m.group(1) if m else "?"
    others = []
    if sections & NETNS_SECTIONS:
        others.append("agent net-snmp " + version_of([program("snmpd"), "-v"], r"NET-SNMP version:\s*(\S+)"))
    if sections & (CORE_SECTIONS | {10}):
        others.append(f"snmp_exporter {snmp_exporter_version or exporter_version()}")
    if sections & {8, 9}:
        others.append("redis-server " + version_of([program("redis-server"), "--version"], r"v=(\S+)"))
    if 8 in sections:
        others.append("HAProxy " + version_of([program("haproxy"), "-v"], r"version (\S+)"))
        others.append("wrk " + version_of([program("wrk"), "-v"], r"wrk (\S+)"))
    others.append(f"Python {platform.python_version()}")
    return {
        "nproc": run(["nproc"], check=False).strip() or str(os.cpu_count()),
        "cpu": cpu,
        "kernel": platform.release(),
        "promsnmp": (f"binary `{binary}` (--binary)" if binary else
                     f"{version} (git {commit}{dirty})"),
        "others": ", ".join(others),
        "promsnmp_settings": ", ".join(f"`{k}` {v}" for k, v in defaults) or "see README.md",
    }


BUILD_GIT = None  # (commit, note on uncommitted sources) when the binary was built


def git_state():
    """The repository's HEAD (short), and a note if src/ or Cargo.* differ from it."""
    git = ["git", "-C", REPO, "-c", f"safe.directory={REPO}"]
    commit = run(git + ["rev-parse", "--short", "HEAD"], check=False).strip() or "unknown"
    dirty = run(git + ["status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"], check=False).strip()
    return commit, ", uncommitted changes in src/" if dirty else ""


def machine_busy_s():
    """CPU seconds the whole machine has been busy (/proc/stat: user, nice,
    system, irq, softirq, steal), and those of this process and its waited-for
    children (everything the harness started and stopped)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    busy = (fields[0] + fields[1] + fields[2] + fields[5] + fields[6] + fields[7]) / CLK_TCK
    own = sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                 resource.getrusage(resource.RUSAGE_CHILDREN)))
    return busy, own


def command_line():
    args = " ".join(shlex.quote(a) for a in sys.argv[1:])
    cmd = "python3 bench/run.py" + (f" {args}" if args else "")
    return cmd


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

def parse_sections(text):
    """"all" or a comma list of section numbers and ranges: 1,2,7 or 1-6,9."""
    if text.strip().lower() == "all":
        return set(SECTIONS)
    chosen = set()
    for part in text.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise argparse.ArgumentTypeError(f"bad section list {text!r} (e.g. 1,2,7 or 1-6,9 or all)")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if not (1 <= lo <= hi <= max(SECTIONS)):
            raise argparse.ArgumentTypeError(f"sections are 1-{max(SECTIONS)}")
        chosen.update(range(lo, hi + 1))
    return chosen


def main():
    ap = argparse.ArgumentParser(description="promsnmp benchmark harness (needs root for ip netns)")
    ap.add_argument("--sections", type=parse_sections, default=set(SECTIONS),
                    help="sections to run, e.g. 1,2,7 or 1-6,9 (default all)")
    ap.add_argument("--runs", type=int, default=15, help="timed scrapes per figure (default 15)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed scrapes first (default 2)")
    ap.add_argument("--wrk-seconds", type=int, default=10, help="wrk duration against promsnmp (default 10)")
    ap.add_argument("--wrk-repeats", type=int, default=3, help="wrk runs per figure (default 3)")
    ap.add_argument("--scale-devices", type=int, default=1000,
                    help="sections 7 and 9: synthetic devices (default 1000)")
    ap.add_argument("--scale-interval-ms", type=int, default=30000,
                    help="sections 7-9: COLLECTION_INTERVAL in ms (default 30000)")
    ap.add_argument("--scale-rounds", type=int, default=3,
                    help="sections 7 and 9: intervals measured after the first full round (default 3)")
    ap.add_argument("--responder-processes", type=int, default=0,
                    help="sections 7 and 9: processes serving the synthetic devices (default 0: one "
                         f"per {RESPONDER_AGENTS_PER_PROCESS} devices)")
    ap.add_argument("--rate", type=int, default=500, help="section 8: fixed request rate per second (default 500)")
    ap.add_argument("--rate-seconds", type=int, default=15, help="section 8: fixed-rate run length (default 15)")
    ap.add_argument("--loadgen-connections", type=int, default=32,
                    help="section 8: keep-alive connections of the load generator (default 32)")
    ap.add_argument("--loadgen-max-seconds", type=int, default=5,
                    help="section 8: the generator's closed-loop (max rate) run (default 5)")
    ap.add_argument("--reference-modules", default=os.path.join(os.path.dirname(REPO), "shared", "snmp_exporter"),
                    metavar="DIR", help="section 10: the directory holding snmp_exporter's generated snmp.yml "
                                        "(current layout; read there, never copied; default "
                                        "../shared/snmp_exporter relative to the repository root)")
    ap.add_argument("--binary", metavar="PATH",
                    help="run this promsnmp binary instead of building the repository's (to compare "
                         "versions; the report names it)")
    ap.add_argument("--promsnmp-env", action="append", default=[], metavar="NAME=VALUE",
                    help="an environment variable for every promsnmp started (repeatable; for "
                         "experiments, e.g. MALLOC_ARENA_MAX=2; the report names it)")
    ap.add_argument("--output", default=os.path.join(REPO, "BENCHMARKS.md"), help="report file")
    args = ap.parse_args()
    for item in args.promsnmp_env:
        name, eq, value = item.partition("=")
        if not eq or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            ap.error(f"--promsnmp-env {item!r}: expected NAME=VALUE")
        PROMSNMP_EXTRA_ENV[name] = value
    if args.binary and not (os.path.isfile(args.binary) and os.access(args.binary, os.X_OK)):
        ap.error(f"--binary {args.binary}: not an executable file")
    if not (1 <= args.runs <= 1000 and 0 <= args.warmup <= 100 and 1 <= args.wrk_seconds <= 600
            and 1 <= args.wrk_repeats <= 20):
        ap.error("--runs 1-1000, --warmup 0-100, --wrk-seconds 1-600, --wrk-repeats 1-20")
    if not (1 <= args.scale_devices <= 20000 and 1000 <= args.scale_interval_ms <= 600000
            and 1 <= args.scale_rounds <= 100 and 0 <= args.responder_processes <= 16):
        ap.error("--scale-devices 1-20000, --scale-interval-ms 1000-600000, --scale-rounds 1-100, "
                 "--responder-processes 0-16")
    if not (1 <= args.rate <= 20000 and 1 <= args.rate_seconds <= 600 and 1 <= args.loadgen_connections <= 512
            and 1 <= args.loadgen_max_seconds <= 600):
        ap.error("--rate 1-20000, --rate-seconds 1-600, --loadgen-connections 1-512, --loadgen-max-seconds 1-600")
    if os.geteuid() != 0 and args.sections & NETNS_SECTIONS:
        raise BenchError("root needed for `ip netns`: run `sudo python3 bench/run.py`")
    for n in sorted(args.sections):
        for name in SECTION_PROGRAMS[n]:
            program(name)
    if 10 in args.sections:
        reference_modules_file(args.reference_modules)

    # SIGTERM/SIGHUP end the run like Ctrl-C does: through the finally below.
    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    started = time.monotonic()
    busy0 = machine_busy_s()
    global BUILD_GIT
    before_build = git_state()
    binary = args.binary or build_promsnmp()
    after_build = git_state()
    # The sources the binary was built from (someone may commit meanwhile).
    BUILD_GIT = (before_build[0], "; the sources changed during the build" if before_build != after_build
                 else ", uncommitted changes in src/" if before_build[1] else "")
    if args.sections & NETNS_SECTIONS:
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
    busy1 = machine_busy_s()
    others = max(0.0, (busy1[0] - busy0[0]) - (busy1[1] - busy0[1]))
    report += (f"\nThe whole run (build included) took {elapsed:.0f} s. Other processes on the machine "
               f"(neither the harness nor anything it started) kept {others * 100 / elapsed:.0f} % of one "
               f"core busy on average meanwhile (`/proc/stat` busy time minus the harness' own and its "
               f"children's).\n")
    print(report)
    with open(args.output, "w") as f:
        f.write(report)
    uid, gid = os.environ.get("SUDO_UID"), os.environ.get("SUDO_GID")
    if uid and gid:
        with contextlib.suppress(OSError):
            os.chown(args.output, int(uid), int(gid))
    log(f"written to {args.output} ({elapsed:.0f} s)")


def measure(stack, args, binary, workdir):
    sections = args.sections
    timings = {}
    core = None
    if sections & CORE_SECTIONS:
        core = measure_core(stack, args, binary, workdir, timings)
    results = {}
    if 10 in sections:
        t = time.monotonic()
        log("10. modules: promsnmp's one poll against snmp_exporter's one scrape per module")
        results[10] = measure_modules(stack, args, binary, workdir, core)
        timings[10] = time.monotonic() - t
    responder = None
    if sections & {7, 9}:
        t = time.monotonic()
        log(f"starting the SNMP responder ({args.scale_devices} agents)")
        responder = Responder(stack, os.path.join(workdir, "responder"), args.scale_devices,
                              args.responder_processes)
        timings["responder"] = time.monotonic() - t
    if 7 in sections:
        t = time.monotonic()
        log(f"7. one promsnmp polling {args.scale_devices} devices every {args.scale_interval_ms / 1000:g} s")
        results[7] = measure_scale_single(stack, args, binary, workdir, responder)
        timings[7] = time.monotonic() - t
    fleet = None
    if 8 in sections:
        t = time.monotonic()
        log(f"8. redis-server, {REPLICAS} promsnmp replicas, haproxy; fixed-rate cached scrapes")
        if core:
            relay = core["many_relay"]
        else:
            _, relay = start_netns_device(stack, os.path.join(workdir, "snmpd-netns"))
        fleet = Fleet(stack, binary, os.path.join(workdir, "fleet"), args.scale_interval_ms)
        hap, hport, hstats = start_haproxy(stack, os.path.join(workdir, "haproxy"), fleet.ports)
        pids = {"haproxy": hap.pid, "redis-server": fleet.redis.pid}
        for name, proc, _ in fleet.replicas:
            pids[name] = proc.pid
        results[8] = measure_fleet_cached(args, fleet, hport, hstats, relay, 2 * NETNS_PAIRS + 1, pids)
        for p in fleet.procs() + [hap]:
            check_alive(p)
        timings[8] = time.monotonic() - t
    if 9 in sections:
        t = time.monotonic()
        log(f"9. the fleet polling {args.scale_devices} devices every {args.scale_interval_ms / 1000:g} s")
        if fleet is None:
            fleet = Fleet(stack, binary, os.path.join(workdir, "fleet"), args.scale_interval_ms)
        results[9] = measure_scale_fleet(args, fleet, responder)
        timings[9] = time.monotonic() - t
    if responder:
        for p in responder.procs:
            check_alive(p)
    info = machine_info(core["exporter_version"] if core else None, sections, args.binary)
    return render(args, info, core, results, timings)


def measure_core(stack, args, binary, workdir, timings):
    """Sections 1-6 (those chosen): the standalone comparison."""
    sections = args.sections
    R, W = args.runs, args.warmup
    t = time.monotonic()
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
    plan = DefaultPlan()
    exporter, e_port = start_snmp_exporter(stack, os.path.join(workdir, "snmp_exporter"), snmp_exporter_config(plan))

    # Interface counts (the floor client walks every column) and the largest
    # number of rows one GETBULK returns.
    dev = {}
    for name, addr in (("few", few_addr), ("many", many_addr)):
        maxvb = probe_max_varbinds(addr)
        interfaces = agent_floor(addr, maxvb, plan).scrape()
        dev[name] = {"addr": addr, "interfaces": interfaces, "maxvb": maxvb,
                     "pid": (host_snmpd if name == "few" else ns_snmpd).pid}
    log(f"interfaces: few={dev['few']['interfaces']} many={dev['many']['interfaces']}; "
        f"varbinds per GETBULK answer at most: {dev['many']['maxvb']}")
    # Both exporters must return every interface, with the if_mib labels.
    for name in ("few", "many"):
        d = dev[name]
        for what, port, path in (("promsnmp", p_port, f"/snmp?target={d['addr']}&live=true"),
                                 ("snmp_exporter", e_port, f"/snmp?target={d['addr']}&module=if_bench")):
            text = http_ok(port, path).decode()
            d.setdefault("samples", {})[what] = len(device_samples(text))
            series = series_labels(text, "ifHCInOctets")
            if len(series) != d["interfaces"] or any(
                    not {"ifIndex", "ifName", "ifDescr", "ifAlias"} <= set(s) for s in series):
                raise BenchError(f"{what} returned {len(series)} ifHCInOctets series for {name} "
                                 f"(expected {d['interfaces']} with ifIndex/ifName/ifDescr/ifAlias)")
    timings["setup"] = time.monotonic() - t
    out = {"dev": dev, "devices": devices, "many_relay": many_relay, "exporter_version": exporter_version(),
           "plan": plan,
           "host_ports": (few_port, few_v3_port, few_v3e_port)}

    # 1 (and 3): live scrapes of the same device, and the agent's floor, interleaved.
    if sections & {1, 3}:
        t = time.monotonic()
        log(f"1. live scrapes, {W} warm-ups + {R} runs per device")
        live = {}
        for name in ("few", "many"):
            d = dev[name]
            live[name] = compare(d["addr"], d["pid"], [promsnmp_live(p_port, d["addr"]),
                                             snmp_exporter_walk(e_port, d["addr"]),
                                             agent_floor(d["addr"], d["maxvb"], plan)],
                                 d["interfaces"], R, W)
        out["live"] = live
        timings[1] = timings[3] = time.monotonic() - t

    # 2: through the relay with an added round-trip delay.
    if 2 in sections:
        t = time.monotonic()
        log("2. added latency 0/5/20 ms")
        latency = []
        for name, relay, addr in (("few", few_relay, few_relay_addr), ("many", many_relay, many_addr)):
            d = dev[name]
            for delay in (0, 5, 20):
                relay.delay_ms = delay
                try:
                    res = compare(addr, d["pid"], [promsnmp_live(p_port, addr), snmp_exporter_walk(e_port, addr),
                                         agent_floor(addr, d["maxvb"], plan)], d["interfaces"], R, W)
                finally:
                    relay.delay_ms = 0
                latency.append((name, delay, res))
        out["latency"] = latency
        timings[2] = time.monotonic() - t

    # 4: cached scrapes under load.
    if 4 in sections:
        t = time.monotonic()
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
            ("promsnmp, cached", f"http://127.0.0.1:{p_port}{cached_path}", (), 2, 16, args.wrk_seconds,
             sizes["plain"]),
            ("promsnmp, cached, gzip", f"http://127.0.0.1:{p_port}{cached_path}", ("Accept-Encoding: gzip",), 2, 16,
             args.wrk_seconds, sizes["gzip"]),
            ("snmp_exporter (walks every time)",
             f"http://127.0.0.1:{e_port}/snmp?target={many['addr']}&module=if_bench",
             (), 2, 2, min(5, args.wrk_seconds), sizes["exporter"]),
        ]
        wrk_results = {case[0]: [] for case in wrk_cases}
        wrk_snmp = {case[0]: 0 for case in wrk_cases}
        for _ in range(args.wrk_repeats):
            for name, url, headers, t_, c, secs, _size in wrk_cases:
                before = snmp_in_pkts(many["addr"])
                wrk_results[name].append(wrk(url, t_, c, secs, headers))
                wrk_snmp[name] += snmp_in_pkts(many["addr"]) - before - 1
        out.update(wrk_cases=wrk_cases, wrk_results=wrk_results, wrk_snmp=wrk_snmp)
        timings[4] = time.monotonic() - t

    # 5: v3 authPriv against v2c, same agent, promsnmp live scrapes.
    if 5 in sections:
        t = time.monotonic()
        log("5. SNMPv3 authPriv vs v2c")
        few = dev["few"]
        v2 = Contender("v2c", promsnmp_live(p_port, few["addr"]).scrape)
        v3 = Contender("v3", promsnmp_live(p_port, f"127.0.0.1:{few_v3_port}").scrape)
        v3e = Contender("v3, engineId stored", promsnmp_live(p_port, f"127.0.0.1:{few_v3e_port}").scrape)
        out["v3res"] = compare(few["addr"], few["pid"], [v2, v3, v3e], few["interfaces"], R, W)
        timings[5] = time.monotonic() - t

    # 6: memory after all the runs.
    if 6 in sections:
        out["mem"] = {"promsnmp": vm_status(promsnmp.pid), "snmp_exporter": vm_status(exporter.pid)}
        timings[6] = 0.0
    for p in (host_snmpd, ns_snmpd, promsnmp, exporter):
        check_alive(p)
    return out


def exporter_version():
    if not shutil.which("prometheus-snmp-exporter"):
        return "?"
    version = subprocess.run([program("prometheus-snmp-exporter"), "--version"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, timeout=10).stdout.split("\n")[0]
    return version.replace("snmp_exporter, version ", "") or "?"


def took(timings, n, note=""):
    secs = timings.get(n)
    return [] if secs is None else [f"This section took {secs:.0f} s{note}.", ""]


def render(args, info, core, results, timings):
    sections = args.sections
    out = ["# promsnmp benchmarks", ""]
    out += [f"Measured {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC with",
            "", "```sh", f"sudo {command_line()}        # or, as root: {command_line()}", "```", "",
            f"Machine: {info['nproc']} CPUs ({info['cpu']}), Linux {info['kernel']}. "
            f"promsnmp {info['promsnmp']}" + ("" if args.binary else " (`cargo build --release`)")
            + f", {info['others']}. "
            f"promsnmp runs with its default settings ({info['promsnmp_settings']}) unless a "
            f"section says otherwise"
            + (" and with " + ", ".join(f"`{k}={v}`" for k, v in PROMSNMP_EXTRA_ENV.items()) + " in its environment"
               if PROMSNMP_EXTRA_ENV else "")
            + f". Sections run: {', '.join(map(str, sorted(sections)))}.", ""]
    if core:
        out += render_core(args, core, timings)
    if 7 in results:
        out += render_scale_single(args, results[7], timings)
    if 8 in results:
        out += render_fleet_cached(args, results[8], timings)
    if 9 in results:
        out += render_scale_fleet(args, results[9], timings)
    if 10 in results:  # measured right after sections 1-6 (the same agents), reported last
        out += render_modules(args, results[10], timings)
    return "\n".join(out)


def render_core(args, core, timings):
    R, W = args.runs, args.warmup
    sections = args.sections
    dev, devices = core["dev"], core["devices"]
    few, many = dev["few"], dev["many"]
    label = {"few": f"snmpd on 127.0.0.1 ({few['interfaces']} interfaces)",
             "many": f"namespace, 100 veth pairs ({many['interfaces']} interfaces), via relay"}
    out = [f"Sections 1-6: the agents are net-snmp `snmpd` on 127.0.0.1 "
           f"and in a network namespace the harness creates, reached through a UDP relay "
           f"(a Python thread in the harness) on 127.0.0.1. Each time is the median of {R} runs "
           f"after {W} warm-ups; contenders of one table row are run in turn (order rotating) "
           f"in the same loop, so each ratio compares like with like. SNMP requests are the "
           f"agent's own `snmpInPkts` counter (read with `snmpget` after every scrape, minus "
           f"that `snmpget`); agent CPU is snmpd's own CPU time per scrape. promsnmp polls its "
           f"default modules `system` and `if_mib` (src/modules/builtin.yml): "
           f"{core['plan'].describe()}. snmp_exporter uses the module `if_bench` the harness writes "
           f"from the same file: those two modules' metrics as written (the same names, types and "
           f"labels) in one module, walking the system group and the {len(core['plan'].if_columns)} "
           f"IF-MIB columns, v2c, max_repetitions 50. Setting these up took "
           f"{timings.get('setup', 0):.0f} s.", ""]
    live = core.get("live")
    if 1 in sections:
        samples = "; ".join(f"{label[n]}: promsnmp {dev[n]['samples']['promsnmp']}, snmp_exporter "
                            f"{dev[n]['samples']['snmp_exporter']}" for n in ("few", "many"))
        out += ["## 1. Live scrape, same device", "",
                "promsnmp `GET /snmp?target=<ip:port>&live=true` (cache bypassed) against "
                "snmp_exporter `GET /snmp?target=<ip:port>&module=if_bench`. Samples each serves "
                "from the modules (without `snmp_scrape_*` and promsnmp's `interface_utilization` "
                f"histogram): {samples}.", ""]
        rows = []
        for name in ("few", "many"):
            p, e = live[name]["promsnmp"], live[name]["snmp_exporter"]
            rows.append([label[name], ms(p["ms"]), ms(e["ms"]), ratio(p["ms"], e["ms"]), reqs(p), reqs(e),
                         ms(p["cpu"]), ms(e["cpu"]), ratio(p["cpu"], e["cpu"])])
        out += [table(["device", "promsnmp ms", "snmp_exporter ms", "ratio promsnmp / snmp_exporter",
                       "promsnmp SNMP requests", "snmp_exporter SNMP requests",
                       "agent CPU ms, promsnmp", "agent CPU ms, snmp_exporter", "agent CPU ratio"], rows), ""]
        out += took(timings, 1, " (with section 3, measured in the same loop)")

    if 2 in sections:
        out += ["## 2. Added network latency", "",
                "The same scrapes through the harness' UDP relay, which holds every datagram for "
                "half the added delay in each direction (the round trip gains 5 or 20 ms; `netem` is "
                "not available). Both devices go through a relay here, so the 0 ms rows include "
                "the relay's own cost. The agent floor is the client of section 3.", ""]
        rows = []
        for name, delay, res in core["latency"]:
            p, e, f = res["promsnmp"], res["snmp_exporter"], res["agent floor"]
            rows.append([label[name].replace(", via relay", ""), f"+{delay} ms", ms(p["ms"]), ms(e["ms"]),
                         ratio(p["ms"], e["ms"]), ms(f["ms"]), ratio(p["ms"], f["ms"])])
        out += [table(["device", "added RTT", "promsnmp ms", "snmp_exporter ms",
                       "ratio promsnmp / snmp_exporter", "agent floor ms", "ratio promsnmp / floor"], rows), ""]
        out += took(timings, 2)

    if 3 in sections:
        out += ["## 3. The agent's floor", "",
                "The fewest requests the agent accepts for the same data: the harness' own SNMP "
                f"v2c client sends {core['plan'].describe()} in one GETBULK, the scalars as "
                "non-repeaters, and continues, back to back, with every column not yet past its end. "
                "Each request asks for as many rows as snmpd returns for the columns it carries: "
                "(the most varbinds one answer holds − non-repeaters) / columns; net-snmp caps an answer "
                "at `maxGetbulkResponses` = 100 varbinds by default (the *varbinds per answer* column, "
                "measured). "
                "Measured in the same loop as section 1. The floor client sends one request at a "
                "time; promsnmp continues a long table with several sessions at once, so its wall "
                "time can be below the floor's. What the agent itself spends is its CPU time "
                "(`/proc/<snmpd>/schedstat`; snmpd is single-threaded).", ""]
        rows = []
        for name in ("few", "many"):
            p, f = live[name]["promsnmp"], live[name]["agent floor"]
            rows.append([label[name], dev[name]["maxvb"], reqs(f), ms(f["ms"]), ms(f["cpu"]), reqs(p),
                         ms(p["ms"]), ms(p["cpu"]), ratio(p["ms"], f["ms"]), ratio(p["cpu"], f["cpu"])])
        out += [table(["device", "varbinds per answer", "floor SNMP requests", "floor ms (one at a time)",
                       "floor agent CPU ms", "promsnmp SNMP requests", "promsnmp ms", "promsnmp agent CPU ms",
                       "ratio promsnmp / floor, ms", "ratio promsnmp / floor, agent CPU"], rows), ""]
        if 1 not in sections:
            out += took(timings, 3)

    if 4 in sections:
        wrk_snmp, wrk_results = core["wrk_snmp"], core["wrk_results"]
        cached = sum(n for name, n in wrk_snmp.items() if name.startswith("promsnmp"))
        cache_note = ("the agent saw no SNMP request during those runs" if cached == 0 else
                      f"yet the agent saw {cached} SNMP requests during those runs")
        out += ["## 4. Cached scrapes under load", "",
                f"`wrk --latency` against `/snmp?target=<{many['interfaces']}-interface device>`; promsnmp "
                f"serves it from its cache ({cache_note}). snmp_exporter has no cache and walks the "
                f"device for every request, so it gets a short, low-concurrency run. Median of "
                f"{args.wrk_repeats} wrk runs each, taken in turn.", ""]
        rows = []
        for name, _url, headers, t, c, secs, size in core["wrk_cases"]:
            rs = wrk_results[name]
            rows.append([name, f"`wrk -t{t} -c{c} -d{secs}s`" + (" + `Accept-Encoding: gzip`" if headers else ""),
                         f"{median([r['rps'] for r in rs]):.0f}", ms(median([r["p50"] for r in rs])),
                         ms(median([r["p99"] for r in rs])), f"{size / 1024:.1f}", wrk_snmp[name]])
        out += [table(["target", "load", "requests/s", "p50 ms", "p99 ms", "response KiB",
                       "SNMP requests during all runs"], rows), ""]
        out += took(timings, 4)

    if 5 in sections:
        v3res = core["v3res"]
        out += ["## 5. SNMPv3 cost", "",
                f"promsnmp live scrapes of the {few['interfaces']}-interface agent, v2c against "
                "v3 authPriv (user `benchuser`, SHA-256 / AES-128), the same snmpd on other ports: "
                "one v3 device posted without `engineId`, one with the agent's `engineId` stored "
                "(as discovery records it).", ""]
        base = v3res["v2c"]
        rows = [[f"{label['few']}, {name}", ms(r["ms"]), ratio(r["ms"], base["ms"]), reqs(r), ms(r["cpu"])]
                for name, r in v3res.items()]
        out += [table(["device, agent", "ms", "ratio to v2c", "SNMP requests", "agent CPU ms"], rows), ""]
        out += took(timings, 5)

    if 6 in sections:
        out += ["## 6. Memory", "",
                f"Resident memory after the runs above (promsnmp holds {len(devices)} devices; "
                "`VmRSS` and peak `VmHWM` from `/proc/<pid>/status`).", ""]
        out += [table(["process", "VmRSS MiB", "VmHWM MiB"],
                      [[n, f"{m['VmRSS']:.1f}", f"{m['VmHWM']:.1f}"] for n, m in core["mem"].items()]), ""]
    return out


def render_modules(args, r, timings):
    modules = r["modules"]
    names = ", ".join(f"`{m}`" for m in modules)
    label = {"few": "snmpd on 127.0.0.1", "many": "namespace, 201 interfaces, via relay"}
    out = ["## 10. Modules: one poll against one scrape per module", "",
           f"A net-snmp host polled with five modules of snmp_exporter's generated `snmp.yml` ({names}; "
           "the current file from the reference directory, `--reference-modules`, read there). promsnmp "
           "runs with `PROMSNMP_MODULES_FILE` set to that file (its `if_mib` then replaces the built-in one: "
           "every IF-MIB column) and holds the device with `\"modules\": [five]`; one "
           f"`GET /snmp?target=<ip:port>&live=true&module={','.join(modules)}` polls all five at once: one "
           "walk of the union of their OIDs. snmp_exporter 0.21 reads the same five modules converted to "
           "its layout (each module carrying `version: 2` and `auth: {community: public}`, written to the "
           "work directory) and takes one module per scrape, so a set is five scrapes, one after the other, "
           "each walking its module's subtrees. The agents are the `snmpd` of sections 1-4 (HOST-RESOURCES "
           "and UCD included). Times and agent CPU of a set are summed over its scrapes; each figure is the "
           "median over the runs, promsnmp and the snmp_exporter set taken in turn (order rotating). SNMP "
           "requests are the agent's `snmpInPkts` as in section 1. The +20 ms row adds 20 ms to every "
           "round trip through the relay of section 2 and is measured with fewer runs.", ""]
    rows = []
    for row in r["rows"]:
        p, e = row["res"]["sets"]["promsnmp"], row["res"]["sets"]["snmp_exporter"]
        rows.append([label[row["device"]], "" if row["delay"] is None else f"+{row['delay']} ms",
                     f"{row['warmup']} + {row['runs']}", ms(p["ms"]), ms(e["ms"]), ratio(p["ms"], e["ms"]),
                     reqs(p), reqs(e), ratio(p["req"], e["req"]), ms(p["cpu"]), ms(e["cpu"]),
                     ratio(p["cpu"], e["cpu"])])
    out += [table(["device", "added RTT", "warm-ups + runs", "promsnmp ms (1 scrape, 5 modules)",
                   "snmp_exporter ms (5 scrapes)", "ratio ms", "promsnmp SNMP requests",
                   "snmp_exporter SNMP requests", "ratio requests", "agent CPU ms, promsnmp",
                   "agent CPU ms, snmp_exporter", "agent CPU ratio"], rows), ""]
    out += ["Requests per module: snmp_exporter's scrape of each module alone; promsnmp's live scrape of "
            "that module alone (`&module=<one>&auth=public_v2` for another address of the same agent, one "
            "outside its inventory, which `PROMSNMP_SCRAPE_UNLISTED_TARGETS=true` polls with exactly the "
            "named module; a device of the inventory would be polled with all its modules); their sums; "
            "and promsnmp's one poll of all five (the de-duplication: the modules' OIDs packed into the "
            "same GETBULKs, each subtree walked once). snmp_exporter's milliseconds per module are from "
            "the runs above; promsnmp's per module are the median of 3 scrapes (1 at +20 ms) taken after "
            "them.", ""]
    rows = []
    for row in r["rows"]:
        dev = label[row["device"]] + ("" if row["delay"] is None else f", +{row['delay']} ms")
        pm, alone = row["res"]["per_module"], row["promsnmp_alone"]
        for m in modules:
            rows.append([dev, f"`{m}`", ms(pm[m]["ms"]), f"{pm[m]['req']:g}", ms(alone[m]["ms"]),
                         f"{alone[m]['req']:g}"])
        p = row["res"]["sets"]["promsnmp"]
        e_sum = sum(pm[m]["req"] for m in modules)
        p_sum = sum(a["req"] for a in alone.values())
        rows.append([dev, "sum of the five", ms(sum(pm[m]["ms"] for m in modules)), f"{e_sum:g}",
                     ms(sum(a["ms"] for a in alone.values())), f"{p_sum:g}"])
        rows.append([dev, "promsnmp, one poll of all five", "", "", ms(p["ms"]),
                     f"{p['req']:g} ({ratio(p['req'], p_sum)} of its own sum, "
                     f"{ratio(p['req'], e_sum)} of snmp_exporter's)"])
    out += [table(["device", "module", "snmp_exporter ms", "snmp_exporter SNMP requests", "promsnmp ms",
                   "promsnmp SNMP requests"], rows), ""]
    counts = "; ".join(f"{label[row['device']]}: promsnmp {row['res']['samples'].get('promsnmp')}, "
                       f"snmp_exporter {row['res']['samples'].get('snmp_exporter')}"
                       for row in r["rows"] if row["delay"] in (None, 0))
    out += [f"Samples served from the modules (without either exporter's own `snmp_scrape_*` series and "
            f"promsnmp's `interface_utilization` histogram), last run: {counts}. Resident memory after the "
            f"runs: promsnmp (the reference file loaded: {r['idle']['VmRSS']:.1f} MiB idle before the POST; "
            f"2 devices) {r['mem']['promsnmp']['VmRSS']:.1f} MiB, "
            f"snmp_exporter (5 modules) {r['mem']['snmp_exporter']['VmRSS']:.1f} MiB. Warnings and errors in "
            f"promsnmp's log: {problems_text(r['problems'])}.", ""]
    out += took(timings, 10, " (starting its promsnmp and snmp_exporter included)")
    return out


def responder_text(devices, processes):
    """How the scale sections' devices are made and the polls counted."""
    return (
        "The devices are synthetic agents served by `bench/responder.py`: "
        + ("one Python process" if processes == 1 else
           f"{processes} Python processes, each serving a contiguous share of the devices")
        + " (standard library, one thread, epoll) bound to one UDP port per device on 127.0.0.1, "
        "answering SNMP v2c GET, GETNEXT and GETBULK (BER code shared with the harness) with what "
        "promsnmp's default modules `system` and `if_mib` walk. Each agent has the system group "
        "(sysDescr, sysObjectID 1.3.6.1.4.1.8072.3.2.10, an advancing sysUpTime, sysContact, sysName "
        "`dev-0000`, `dev-0001`, …, sysLocation, sysServices 72, sysORLastChange; no sysORTable rows), "
        "4 interfaces with the IF-MIB columns of `if_mib` (ifDescr, ifType 6, ifMtu 1500, ifSpeed, "
        "ifPhysAddress unique per agent and interface, ifAdminStatus and ifOperStatus 1, "
        "ifLastChange, the discard and error Counter32s growing slowly, ifInUnknownProtos 0, "
        "ifName, the 8 ifHC* Counter64s growing at a fixed rate, ifHighSpeed, ifAlias) and "
        "snmpInPkts; a GETBULK answer is capped at 100 varbinds as net-snmp's is. The responder "
        "records the time of every request, every retry (a request identical to the agent's "
        "previous one, sent again within 5 s) and every poll: a GET or GETBULK whose first varbind "
        "lies in the system group and is not a retry (promsnmp's first request of a poll carries "
        "the system scalars, or sysUpTime.0, as non-repeaters), or any request after 5 s without "
        "one. The poll figures below come from that record, not from promsnmp. The devices are "
        "posted with `POST /promsnmp/inventory` (community agents, timeout 2 s, 1 retry, no "
        "`modules`: the defaults). The window starts once every device has been "
        "polled after the POST and lasts the number of intervals shown. A device *missed an "
        "interval* if two of its polls (or its last poll and the end of the window) are more than "
        "1.5 intervals apart; it was *polled twice in one interval* if two polls are less than half "
        "an interval apart. *Polls per device per interval* splits the window into intervals from "
        "its start; a device polled slightly more or less often than every interval can show 0 or 2 "
        "in one of them. CPU is the process' utime + stime (`/proc/<pid>/stat`, every thread) over "
        "the window, per poll counted by `promsnmp_replica_polls_total`. Whether the responders keep "
        "up: their CPU (each process is one thread, so a process near 100 % of a core would be the "
        "bottleneck), the retries they saw and the host's UDP receive-buffer drops "
        "(`RcvbufErrors` in `/proc/net/snmp`) over the window.")


def rss_target_mb(devices):
    """The resident memory target: issue 5 (1,000 devices) and 10,000 devices."""
    return 64 if devices <= 1000 else 128 if devices <= 10000 else None


def responder_rows(w):
    cpu = w["responder_cpu"]
    rcvbuf, inerr = w["udp_errors"]
    return [
        ["retried requests (the agents' record)", w["polls"]["retries"], "0"],
        ["the responders' CPU over the window, % of one core: all / busiest process "
         f"({len(cpu)} process{'es' if len(cpu) > 1 else ''})",
         f"{sum(cpu) * 100 / w['seconds']:.1f} / {max(cpu) * 100 / w['seconds']:.1f}", "busiest < 100"],
        ["UDP datagrams dropped on the host over the window (RcvbufErrors / InErrors)", f"{rcvbuf} / {inerr}", "0 / 0"],
    ]


def poll_rows(a, never, interval, rounds, first_round_s):
    lo, hi = a["per_device"]
    blo, bhi = a["per_interval"]
    gmin, gp50, gmax = a["gap"]
    return [
        ["devices polled after the POST", f"{a['devices'] - never} of {a['devices']} "
                                          f"(all within {first_round_s:.1f} s)" if not never else
         f"{a['devices'] - never} of {a['devices']} (**{never} never**)", "all"],
        ["polls in the window (the agents' record)", a["polls"], f"{a['devices'] * rounds}"],
        ["SNMP requests per poll", f"{a['requests'] / a['polls']:.2f}" if a["polls"] else "n/a", ""],
        ["polls per device in the window, min–max", f"{lo}–{hi}", f"≥ {rounds}"],
        ["polls per device per interval, min–max", f"{blo}–{bhi}", "1–1"],
        ["device-intervals with no poll / with 2 or more", f"{a['bins_empty']} / {a['bins_multi']}", ""],
        ["devices that missed an interval", a["missed"], "0"],
        ["devices polled twice in one interval", a["doubled"], "0"],
        ["time between two polls of a device, s: min / median / p99 / max",
         f"{gmin:.1f} / {gp50:.1f} / {a['gap_p99']:.1f} / {gmax:.1f}", f"{interval:g}"],
    ]


def problems_text(problems, limit=5):
    if not problems:
        return "none"
    items = sorted(problems.items(), key=lambda kv: -kv[1])[:limit]
    return "; ".join(f"`{k}` ×{n}" for k, n in items)


def render_scale_single(args, r, timings):
    interval = args.scale_interval_ms / 1000
    w = r["window"]
    a = w["polls"]
    d = w["delta"]["promsnmp"]
    n = a["devices"]
    rss_dev = (r["mem"]["VmRSS"] - r["idle"]["VmRSS"]) * 1024 / n
    rounds = r["rounds"]
    target = rss_target_mb(n)
    target_text = f"≤ {target} MB" if target else ""
    out = [f"## 7. Scale: one replica, {n:,} devices", "",
           f"One promsnmp (standalone, `COLLECTION_INTERVAL={args.scale_interval_ms}`, otherwise "
           f"defaults: the modules `system` and `if_mib` for every device) polling {n} devices for "
           f"{args.scale_rounds} intervals ({w['seconds']:.0f} s). "
           + responder_text(n, len(w["responder_cpu"])) + " Resident memory per device is (VmRSS "
           "after the window − VmRSS of the same process idle with an empty inventory, before the "
           "POST) / devices. Targets: every device polled every interval; resident memory ≤ 64 MB "
           "for 1,000 devices (issue 5), ≤ 128 MB for 10,000.", ""]
    rows = poll_rows(a, r["never"], interval, args.scale_rounds, r["first_round_s"])
    rows += responder_rows(w)
    rows += [
        ["polls counted by promsnmp (`promsnmp_replica_polls_total`)", f"{d['polls']:.0f}", ""],
        ["SNMP requests per poll counted by promsnmp (`promsnmp_snmp_requests_total`)",
         f"{d['snmp_requests'] / d['polls']:.2f}" if d["polls"] else "n/a", ""],
        ["failed polls (`promsnmp_snmp_poll_errors_total`)", f"{d['errors']:.0f}", "0"],
        ["mean poll duration, ms (`promsnmp_snmp_poll_duration_seconds`)",
         f"{d['poll_seconds'] * 1000 / d['timed_polls']:.1f}" if d["timed_polls"] else "n/a", ""],
        ["collection rounds that polled (log), all run: count / largest ok / longest ms",
         f"{len(rounds)} / {max((x[0] for x in rounds), default=0)} / {max((x[2] for x in rounds), default=0)}", ""],
        ["warnings and errors in its log", problems_text(r["problems"]), "none"],
        ["CPU per poll, ms", f"{d['cpu'] * 1000 / d['polls']:.3f}" if d["polls"] else "n/a", ""],
        ["CPU over the window, % of one core", f"{d['cpu'] * 100 / w['seconds']:.2f}", ""],
        ["VmRSS idle, empty inventory, MiB", f"{r['idle']['VmRSS']:.1f}", ""],
        ["VmRSS after the first round, MiB", f"{r['after_first']['VmRSS']:.1f}", ""],
        ["VmRSS at the end of each interval of the window, MiB",
         " / ".join(f"{x:.1f}" for x in w["rss"]["promsnmp"]), ""],
        [f"VmRSS after the window, {n} devices, MiB", f"{r['mem']['VmRSS']:.1f}", target_text],
        ["VmHWM (peak), MiB", f"{r['mem']['VmHWM']:.1f}", target_text],
        ["resident memory per device, KiB", f"{rss_dev:.1f}", ""],
    ]
    out += [table(["measure", "value", "target"], rows), ""]
    out += took(timings, 7)
    return out


def render_fleet_cached(args, r, timings):
    out = [f"## 8. Cached scrapes through HAProxy, fleet of {REPLICAS}", "",
           f"`redis-server` (`--save \"\" --appendonly no`, its own port), {REPLICAS} promsnmp replicas "
           f"(`REDIS_URL`, one shared `PROM_INV_FILE`, `COLLECTION_INTERVAL={args.scale_interval_ms}`, "
           "each on its own port) and `haproxy` (config written by the harness: http mode, keep-alive, "
           "a frontend on 127.0.0.1, backend `balance roundrobin` over the replicas with "
           "`option httpchk GET /actuator/health/readiness`). The device is the "
           f"{r['interfaces']}-interface namespace device of sections 1-4, posted to one replica; "
           "every replica serves its polled result from Redis. The requests are "
           f"`GET /snmp?target=<device>` through HAProxy.", "",
           "Debian has neither `wrk2` nor `vegeta` (no candidate in `apt-cache policy`), so the fixed "
           "rate comes from `bench/loadgen.py`: Python asyncio, "
           f"{args.loadgen_connections} keep-alive connections, open loop (request *i* is due at "
           "start + *i* / rate whatever happened before; it waits for a free connection if none is, "
           "and its latency counts from when it was due, so queueing is included). Its own ceiling is "
           "the *generator max* column: the same generator in a closed loop (every connection sends "
           f"again as soon as it is answered) for {args.loadgen_max_seconds} s against the same URL "
           "— a bound on the generator and everything behind HAProxy together. Everything shares "
           "the machine's CPUs; the CPU columns are each process' CPU time over the fixed-rate run. "
           "Target (issue 5): p99 ≤ 10 ms at 500 requests/s through HAProxy across three replicas.", ""]
    rows = []
    for run_ in r["runs"]:
        f, m, cpu = run_["fixed"], run_["max"], run_["cpu"]
        replicas_cpu = sum(v for k, v in cpu.items() if k.startswith("replica-"))
        rows.append([
            "gzip" if run_["label"] == "gzip" else "none",
            f"{run_['size'] / 1024:.1f}", f"{f['rate_asked']:g}", f"{f['achieved_rps']:.0f}",
            ms(f["p50_ms"]), ms(f["p90_ms"]), ms(f["p99_ms"]), ms(f["max_ms"]),
            f"{f['failures']}" + (f" ({', '.join(f['failure_kinds'])})" if f["failures"] else ""),
            f"{m['achieved_rps']:.0f}",
            f"{replicas_cpu * 100:.0f} / {cpu.get('haproxy', 0) * 100:.0f} / {cpu.get('redis-server', 0) * 100:.0f}"
            f" / {f['cpu_s'] * 100 / args.rate_seconds:.0f}"])
    out += [table(["Accept-Encoding", "response KiB", "asked requests/s", "achieved requests/s", "p50 ms",
                   "p90 ms", "p99 ms", "max ms", "failed", "generator max requests/s",
                   "CPU % of a core: replicas / haproxy / redis / generator"], rows), ""]
    rows = []
    for where, label, w in r["wrk"]:
        load = [where, f"`wrk -t2 -c16 -d{args.wrk_seconds}s`", "gzip" if label == "gzip" else "none"]
        if "error" in w:
            rows.append(load + ["failed: " + w["error"], "", ""])
        else:
            rows.append(load + [f"{w['rps']:.0f}", ms(w["p50"]), ms(w["p99"])])
    out += ["For comparison, the most HAProxy and the fleet serve (closed loop, `wrk --latency`), and "
            "the same against one replica without HAProxy (it still asks Redis whether its copy of "
            "the result is current on every scrape):", "",
            table(["to", "load", "Accept-Encoding", "requests/s", "p50 ms", "p99 ms"], rows), ""]
    lags = "; ".join(f"{'gzip' if x['label'] == 'gzip' else 'none'} {ms(x['fixed']['lag_p50_ms'])} / "
                     f"{ms(x['fixed']['lag_p99_ms'])}" for x in r["runs"])
    slow = "; ".join(f"{'gzip' if x['label'] == 'gzip' else 'none'}: "
                     + ", ".join(f"{ms(v)} ms at {at:.1f} s" for at, v in x["fixed"]["slowest"][:5])
                     + f" ({x['fixed']['device_polls']:.0f} background poll(s) of the device during the run)"
                     for x in r["runs"])
    out += [f"How late the generator sent its requests (due → sent, queueing for a connection "
            f"included), p50 / p99 ms: {lags}. The slowest requests of each fixed-rate run (latency, "
            f"when due after its start): {slow}.", ""]
    served = ", ".join(f"{n} {c}" for n, c in sorted(r["served"].items()))
    out += [f"Requests HAProxy sent to each replica during the section: {served}. SNMP requests "
            f"the device saw meanwhile (background polls only, every {args.scale_interval_ms / 1000:g} s "
            f"across the fleet): {r['snmp_requests']}.", ""]
    problems = "; ".join(f"{name}: {problems_text(p, 3)}" for name, p in sorted(r["problems"].items()))
    out += [f"Warnings and errors in the replicas' logs during this section: {problems}.", ""]
    out += took(timings, 8, " (starting redis, the replicas and haproxy included)")
    return out


def render_scale_fleet(args, r, timings):
    interval = args.scale_interval_ms / 1000
    w = r["window"]
    a = w["polls"]
    n = a["devices"]
    after8 = 8 in args.sections
    out = [f"## 9. Scale: fleet of {REPLICAS}, {n:,} devices", "",
           f"The {n} responder devices" + (" of section 7" if 7 in args.sections else "")
           + " posted to one replica of " + ("the fleet of section 8" if after8 else "a fleet")
           + f" (redis-server, {REPLICAS} replicas, `COLLECTION_INTERVAL={args.scale_interval_ms}`"
           + ("; the namespace device is replaced" if after8 else "") + "), measured "
           + ("the same way" if 7 in args.sections else "as section 7 describes") + f" for "
           f"{args.scale_rounds} intervals ({w['seconds']:.0f} s). "
           + ("" if 7 in args.sections else responder_text(n, len(w["responder_cpu"])) + " ")
           + "In a fleet each device should be polled exactly once per interval across all replicas.", ""]
    rows = poll_rows(a, r["never"], interval, args.scale_rounds, r["first_round_s"])
    rows += responder_rows(w)
    out += [table(["measure (whole fleet)", "value", "target"], rows), ""]
    rows = []
    total_cpu = total_polls = 0.0
    for name in sorted(k for k in w["delta"] if k.startswith("replica-")):
        d = w["delta"][name]
        total_cpu += d["cpu"]
        total_polls += d["polls"]
        role = "leader" if r["roles"][name]["leader"] else "follower"
        rounds, problems = r["logs"][name]
        rows.append([name, role, f"{d['polls']:.0f}", f"{d['errors']:.0f}",
                     f"{d['cpu'] * 1000 / d['polls']:.3f}" if d["polls"] else "n/a",
                     f"{d['cpu'] * 100 / w['seconds']:.2f}", f"{r['before'][name]['VmRSS']:.1f}",
                     f"{r['after'][name]['VmRSS']:.1f}", f"{r['after'][name]['VmHWM']:.1f}",
                     problems_text(problems, 3)])
    rd = w["delta"]["redis-server"]
    rows.append(["fleet", "", f"{total_polls:.0f}", "", f"{total_cpu * 1000 / total_polls:.3f}" if total_polls else "n/a",
                 f"{total_cpu * 100 / w['seconds']:.2f}", "", "", "", ""])
    rows.append(["redis-server", "", "", "", f"{rd['cpu'] * 1000 / total_polls:.3f}" if total_polls else "n/a",
                 f"{rd['cpu'] * 100 / w['seconds']:.2f}", f"{r['before']['redis-server']['VmRSS']:.1f}",
                 f"{r['after']['redis-server']['VmRSS']:.1f}", f"{r['after']['redis-server']['VmHWM']:.1f}", ""])
    out += [table(["process", "role", "polls in the window", "failed polls", "CPU per poll ms",
                   "CPU % of a core", "VmRSS before the POST, MiB", "VmRSS after, MiB", "VmHWM MiB",
                   "warnings and errors in its log (this section)"], rows), ""]
    out += ["Polls per replica are its `promsnmp_replica_polls_total` over the window; redis-server's "
            "CPU per poll is its CPU time divided by the fleet's polls. VmRSS before the POST is with "
            + ("the one device of section 8" if after8 else "an empty inventory") + ".", ""]
    out += took(timings, 9)
    return out



if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        log(f"error: {e}")
        sys.exit(1)
    except KeyboardInterrupt as e:
        log(f"interrupted ({str(e) or 'Ctrl-C'}); everything started was stopped")
        sys.exit(130)
