#!/usr/bin/python3
"""Many synthetic SNMP v2c agents in one process, for the scale sections of
bench/run.py (see bench/README.md). Python 3 standard library only.

Every agent has its own UDP port on 127.0.0.1 and answers GET, GETNEXT and
GETBULK (v2c; v1 GET/GETNEXT too) for community `public`, with what
promsnmp's default modules (`system`, `if_mib`) walk:

* system: sysDescr, sysObjectID (1.3.6.1.4.1.8072.3.2.10), sysUpTime
  (TimeTicks, advancing), sysContact, sysName (`dev-0000`, `dev-0001`, …),
  sysLocation, sysServices (72), sysORLastChange (TimeTicks); no sysORTable
  rows;
* IF-MIB, 4 interfaces: ifDescr, ifType (6), ifMtu (1500), ifSpeed
  (Gauge32), ifPhysAddress (6 bytes, unique per agent and interface),
  ifAdminStatus and ifOperStatus (1), ifLastChange (TimeTicks), ifInDiscards,
  ifInErrors, ifOutDiscards, ifOutErrors (Counter32, small and growing),
  ifInUnknownProtos (Counter32 0); ifName, the 8 ifHC* Counter64 columns
  (growing at a fixed per-agent, per-interface rate), ifHighSpeed (Gauge32),
  ifAlias;
* snmpInPkts.0: the requests this agent has received.

A GETBULK answer is capped at 100 varbinds, as net-snmp's default
`maxGetbulkResponses` does. Each agent records when it got each request and
when each poll started. A request starts a poll when it is a GET or GETBULK
whose first varbind lies in the system group (1.3.6.1.2.1.1: promsnmp's first
request of a poll carries the system scalars, or sysUpTime.0 when a device
polls no `system` module, as non-repeaters) and is not a retry (the same
request as this agent's previous one, within the quiet gap), or when it is
the agent's first request after a quiet gap (`--quiet-gap`, 5 s: a poll that
starts elsewhere). Retries are counted apart. The harness fetches the record
through a control port: `dump <since> <path> [polls]` writes JSON to <path>
(with `polls`, poll times only) and answers `ok`.

Several processes can share a large number of agents: each serves `--count`
agents from `--first-index` on (sysName `dev-<index>`).

    python3 bench/responder.py --count 1000 --ports-file /tmp/ports.json
    python3 bench/responder.py --count 20 --ports-file /tmp/p.json --log-requests /tmp/req.log
"""

import argparse
import bisect
import json
import os
import resource
import selectors
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import ber_int, ber_oid, ber_read, decode_oid_parts as decode_oid, tlv  # noqa: E402  (the harness' BER helpers)

COMMUNITY = b"public"
MAX_VARBINDS = 100  # net-snmp's default maxGetbulkResponses
INTERFACES = 4
SYSTEM = (1, 3, 6, 1, 2, 1, 1)
IF_ENTRY = (1, 3, 6, 1, 2, 1, 2, 2, 1)
IFX_ENTRY = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1)
HC_COLUMNS = range(6, 14)  # ifHCInOctets … ifHCOutBroadcastPkts
ERROR_COLUMNS = (13, 14, 19, 20)  # ifInDiscards, ifInErrors, ifOutDiscards, ifOutErrors
END_OF_MIB_VIEW, NO_SUCH_INSTANCE = b"\x82\x00", b"\x81\x00"
GET, GETNEXT, GETBULK = 0xA0, 0xA1, 0xA5
MAX_PLANS = 50000  # cached request shapes (every agent has the same MIB)


def ber_uint(tag, v):
    return tlv(tag, v.to_bytes(v.bit_length() // 8 + 1, "big"))


def octets(s):
    return tlv(0x04, s if isinstance(s, bytes) else s.encode())


def build_mib():
    """The OIDs every agent has, in order, and how to get each value:
    (kind, argument); kind "static" carries the encoded value (the same for
    every agent), the others are computed per agent."""
    mib = {
        SYSTEM + (1, 0): ("static", octets("promsnmp bench responder")),
        SYSTEM + (2, 0): ("static", ber_oid("1.3.6.1.4.1.8072.3.2.10")),  # sysObjectID: net-snmp Linux
        SYSTEM + (3, 0): ("uptime", None),
        SYSTEM + (4, 0): ("static", octets("bench@example.org")),
        SYSTEM + (5, 0): ("sysname", None),
        SYSTEM + (6, 0): ("static", octets("bench")),
        SYSTEM + (7, 0): ("static", ber_int(72)),  # sysServices
        SYSTEM + (8, 0): ("static", ber_uint(0x43, 150)),  # sysORLastChange, TimeTicks
        (1, 3, 6, 1, 2, 1, 11, 1, 0): ("inpkts", None),
    }
    for i in range(1, INTERFACES + 1):
        mib[IF_ENTRY + (2, i)] = ("static", octets(f"bench interface {i}"))
        mib[IF_ENTRY + (3, i)] = ("static", ber_int(6))  # ethernetCsmacd
        mib[IF_ENTRY + (4, i)] = ("static", ber_int(1500))
        mib[IF_ENTRY + (5, i)] = ("static", ber_uint(0x42, 1_000_000_000))  # Gauge32
        mib[IF_ENTRY + (6, i)] = ("physaddr", i)
        mib[IF_ENTRY + (7, i)] = ("static", ber_int(1))  # up
        mib[IF_ENTRY + (8, i)] = ("static", ber_int(1))  # up
        mib[IF_ENTRY + (9, i)] = ("static", ber_uint(0x43, 200 + i))  # TimeTicks
        for k, col in enumerate(ERROR_COLUMNS):
            mib[IF_ENTRY + (col, i)] = ("counter32", k * INTERFACES + (i - 1))
        mib[IF_ENTRY + (15, i)] = ("static", ber_uint(0x41, 0))  # ifInUnknownProtos, Counter32
        mib[IFX_ENTRY + (1, i)] = ("static", octets(f"eth{i - 1}"))
        for col in HC_COLUMNS:
            mib[IFX_ENTRY + (col, i)] = ("counter64", (col - 6) * INTERFACES + (i - 1))
        mib[IFX_ENTRY + (15, i)] = ("static", ber_uint(0x42, 1000))  # Gauge32, Mb/s
        mib[IFX_ENTRY + (18, i)] = ("static", octets(f"uplink {i}"))
    keys = sorted(mib)
    return keys, [mib[k] for k in keys], [ber_oid(".".join(map(str, k))) for k in keys]


KEYS, KINDS, ENCODED_OIDS = build_mib()
INDEX = {k: n for n, k in enumerate(KEYS)}
# The whole varbind of every OID whose value is the same on every agent.
STATIC_VARBINDS = [tlv(0x30, ENCODED_OIDS[n] + arg) if kind == "static" else None
                   for n, (kind, arg) in enumerate(KINDS)]


class Plan:
    """What the answer to one request shape is, for any agent: `parts`, a
    list of prebuilt varbind bytes (joined where adjacent) and MIB positions
    whose value is computed per agent; `exception`, the 1-based position of
    the first endOfMibView or noSuchInstance varbind, else 0 (v1 answers
    noSuchName there); the request's OIDs (v1 error answers, the request
    log) and whether its first varbind lies in the system group."""

    __slots__ = ("parts", "exception", "oids", "system_first")

    def __init__(self, pdu_tag, a, b, oids):
        self.oids = oids
        self.system_first = bool(oids) and oids[0][:len(SYSTEM)] == SYSTEM
        items = []  # MIB position, or bytes for an exception varbind
        if pdu_tag == GET:
            for oid in oids:
                n = INDEX.get(oid)
                items.append(n if n is not None else tlv(0x30, ber_oid(".".join(map(str, oid))) + NO_SUCH_INSTANCE))
        elif pdu_tag == GETNEXT:
            items = [self.next(oid)[0] for oid in oids]
        else:
            nonrep = min(max(a, 0), len(oids))
            items = [self.next(oid)[0] for oid in oids[:nonrep]]
            repeaters = oids[nonrep:]
            if repeaters and b > 0:
                reps = min(b, max(1, (MAX_VARBINDS - nonrep) // len(repeaters)))
                current = list(repeaters)
                for _ in range(reps):
                    for j, oid in enumerate(current):
                        item, current[j] = self.next(oid)
                        items.append(item)
        self.exception = next((k + 1 for k, x in enumerate(items) if isinstance(x, bytes)), 0)
        parts = []
        for x in items:
            chunk = x if isinstance(x, bytes) else STATIC_VARBINDS[x]
            if chunk is None:
                parts.append(x)
            elif parts and isinstance(parts[-1], bytes):
                parts[-1] += chunk
            else:
                parts.append(chunk)
        self.parts = parts

    @staticmethod
    def next(oid):
        """GETNEXT of one OID: (MIB position or endOfMibView varbind, next OID)."""
        n = bisect.bisect_right(KEYS, oid)
        if n >= len(KEYS):
            return tlv(0x30, ber_oid(".".join(map(str, oid))) + END_OF_MIB_VIEW), oid
        return n, KEYS[n]


PLANS = {}


def plan_for(version, pdu_tag, a, b, data, start, end):
    key = (version, pdu_tag, a, b, data[start:end])
    plan = PLANS.get(key)
    if plan is None:
        oids = []
        pos = start
        while pos < end:
            _, s, pos = ber_read(data, pos)  # varbind
            _, os_, oe = ber_read(data, s)
            oids.append(decode_oid(data[os_:oe]))
        plan = Plan(pdu_tag, a, b, oids)
        if len(PLANS) >= MAX_PLANS:
            PLANS.clear()
        PLANS[key] = plan
    return key, plan


class Agent:
    def __init__(self, index, sock, started, quiet_gap):
        self.index, self.sock = index, sock
        self.port = sock.getsockname()[1]
        self.name = f"dev-{index:04d}"
        self.sysname = octets(self.name)
        self.boot = started - 3600 - (index * 7919) % 86400  # up for a while already
        self.quiet_gap = quiet_gap
        # Per (column, interface): octets/s 0.1–40 % of 1 Gb/s; packets/s a thousandth of that.
        self.rates = [(1 + (index * 31 + i * 17 + col) % 400) * 125_000 // (1 if col in (6, 10) else 1000)
                      for col in HC_COLUMNS for i in range(INTERFACES)]
        # Discards and errors: 0-4 per 100 s.
        self.error_rates = [((index * 13 + k * 7 + i) % 5) / 100 for k in range(len(ERROR_COLUMNS))
                            for i in range(INTERFACES)]
        self.requests = 0
        self.retries = 0
        self.last_request = float("-inf")
        self.last_key = None
        self.request_times = []
        self.poll_times = []
        self.retry_times = []

    def varbind(self, n, now):
        kind, arg = KINDS[n]
        if kind == "uptime":
            value = ber_uint(0x43, int((now - self.boot) * 100) & 0xFFFFFFFF)
        elif kind == "counter64":
            value = ber_uint(0x46, int(self.rates[arg] * (now - self.boot)) & 0xFFFFFFFFFFFFFFFF)
        elif kind == "counter32":
            value = ber_uint(0x41, int(self.error_rates[arg] * (now - self.boot)) & 0xFFFFFFFF)
        elif kind == "sysname":
            value = self.sysname
        elif kind == "physaddr":
            i = self.index
            value = tlv(0x04, bytes([0x02, 0x42, (i >> 16) & 0xFF, (i >> 8) & 0xFF, i & 0xFF, arg]))
        else:  # inpkts
            value = ber_uint(0x41, self.requests & 0xFFFFFFFF)
        return tlv(0x30, ENCODED_OIDS[n] + value)

    def answer(self, data, now):
        """The response to one request, or None (bad community, not a
        request), and the request's plan."""
        _, pos, _ = ber_read(data, 0)  # message
        _, s, pos = ber_read(data, pos)  # version
        version = int.from_bytes(data[s:pos], "big")
        _, s, pos = ber_read(data, pos)  # community
        if version not in (0, 1) or data[s:pos] != COMMUNITY:
            return None, None
        pdu_tag, pos, _ = ber_read(data, pos)
        if pdu_tag not in (GET, GETNEXT, GETBULK) or (pdu_tag == GETBULK and version == 0):
            return None, None
        rid_start = pos
        _, _, pos = ber_read(data, pos)  # request-id, echoed as is
        request_id = data[rid_start:pos]
        _, s, pos = ber_read(data, pos)
        a = int.from_bytes(data[s:pos], "big", signed=True)  # error-status / non-repeaters
        _, s, pos = ber_read(data, pos)
        b = int.from_bytes(data[s:pos], "big", signed=True)  # error-index / max-repetitions
        _, start, end = ber_read(data, pos)  # varbind list
        key, plan = plan_for(version, pdu_tag, a, b, data, start, end)

        gap = now - self.last_request
        retry = key == self.last_key and gap < self.quiet_gap
        self.requests += 1
        if retry:
            self.retries += 1
            self.retry_times.append(now)
        self.request_times.append(now)
        if gap >= self.quiet_gap or (plan.system_first and pdu_tag != GETNEXT and not retry):
            self.poll_times.append(now)
        self.last_request, self.last_key = now, key

        if version == 0 and plan.exception:
            pdu = request_id + ber_int(2) + ber_int(min(plan.exception, len(plan.oids))) + tlv(0x30, b"".join(
                tlv(0x30, ber_oid(".".join(map(str, o))) + b"\x05\x00") for o in plan.oids))
        else:
            vbs = b"".join([p if p.__class__ is bytes else self.varbind(p, now) for p in plan.parts])
            pdu = request_id + b"\x02\x01\x00\x02\x01\x00" + tlv(0x30, vbs)
        return tlv(0x30, ber_int(version) + tlv(0x04, COMMUNITY) + tlv(0xA2, pdu)), plan


def dump(agents, since, path, polls_only):
    doc = {"now": time.monotonic(), "plans": len(PLANS), "agents": [
        {"port": a.port, "name": a.name, "requests": a.requests, "retries": a.retries,
         "poll_times": [t for t in a.poll_times if t >= since],
         "retry_times": [t for t in a.retry_times if t >= since],
         **({} if polls_only else {"request_times": [t for t in a.request_times if t >= since]})}
        for a in agents]}
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description="many synthetic SNMP v2c agents on 127.0.0.1")
    ap.add_argument("--count", type=int, default=1000, help="agents, one UDP port each (default 1000)")
    ap.add_argument("--first-index", type=int, default=0,
                    help="index of the first agent (sysName dev-<index>; default 0)")
    ap.add_argument("--ports-file", required=True, help="where to write the ports (JSON)")
    ap.add_argument("--quiet-gap", type=float, default=5.0,
                    help="seconds without a request after which the next one starts a poll (default 5)")
    ap.add_argument("--log-requests", help="append one line per request to this file (for checking "
                                           "what a poller sends)")
    ap.add_argument("--log-limit", type=int, default=5000, help="requests logged at most (default 5000)")
    ap.add_argument("--max-seconds", type=float, default=3600, help="exit after this long (default 3600)")
    ap.add_argument("--parent-pid", type=int, default=0, help="exit when this process is gone")
    args = ap.parse_args()
    if not 1 <= args.count <= 20000 or not 0 <= args.first_index <= 10**6:
        ap.error("--count 1-20000, --first-index 0-1000000")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.count + 64
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))

    started = time.monotonic()
    sel = selectors.DefaultSelector()
    agents = []
    for i in range(args.count):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        agent = Agent(args.first_index + i, s, started, args.quiet_gap)
        agents.append(agent)
        sel.register(s, selectors.EVENT_READ, agent)
    control = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    control.bind(("127.0.0.1", 0))
    control.setblocking(False)
    sel.register(control, selectors.EVENT_READ, None)
    tmp = args.ports_file + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"ports": [a.port for a in agents], "control": control.getsockname()[1],
                   "first_index": args.first_index}, f)
    os.replace(tmp, args.ports_file)
    request_log = open(args.log_requests, "a", buffering=1) if args.log_requests else None
    logged = 0

    last_check = started
    while True:
        now = time.monotonic()
        if now - started > args.max_seconds:
            return
        if now - last_check > 1.0:
            last_check = now
            if args.parent_pid and not os.path.exists(f"/proc/{args.parent_pid}"):
                return
        for key, _ in sel.select(1.0):
            agent = key.data
            for _ in range(64):  # drain, bounded
                try:
                    data, src = key.fileobj.recvfrom(65535)
                except OSError:
                    break
                if agent is None:
                    words = data.decode(errors="replace").split()
                    if len(words) in (3, 4) and words[0] == "dump":
                        dump(agents, float(words[1]), words[2], words[3:] == ["polls"])
                        key.fileobj.sendto(b"ok", src)
                    continue
                try:
                    t = time.monotonic()
                    polls = len(agent.poll_times)
                    reply, plan = agent.answer(data, t)
                except Exception:  # noqa: BLE001 - garbage in: no answer
                    continue
                if reply is not None:
                    try:
                        key.fileobj.sendto(reply, src)
                    except OSError:
                        pass
                    if request_log and logged < args.log_limit:
                        logged += 1
                        tag, pos, _ = ber_read(data, 0)
                        for _ in range(3):
                            tag, s, pos = ber_read(data, pos)
                        pdu = {GET: "GET", GETNEXT: "GETNEXT", GETBULK: "GETBULK"}[tag]
                        fields = []
                        p = s
                        for _ in range(3):
                            _, fs, p = ber_read(data, p)
                            fields.append(int.from_bytes(data[fs:p], "big", signed=True))
                        request_log.write(
                            f"{t - started:.4f} {agent.name} src={src[1]} {pdu} a={fields[1]} b={fields[2]} "
                            f"varbinds={len(plan.oids)} answered={len(reply)}B "
                            f"{'POLL ' if len(agent.poll_times) > polls else ''}"
                            f"{' '.join('.'.join(map(str, o)) for o in plan.oids)}\n")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
