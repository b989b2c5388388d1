#!/usr/bin/python3
"""Many synthetic SNMP v2c agents in one process, for the scale sections of
bench/run.py (see bench/README.md). Python 3 standard library only.

Every agent has its own UDP port on 127.0.0.1 and answers GET, GETNEXT and
GETBULK (v2c; v1 GET/GETNEXT too) for community `public`:

* system: sysDescr, sysUpTime (TimeTicks, advancing), sysContact, sysName
  (`dev-0000`, `dev-0001`, …), sysLocation;
* IF-MIB, 4 interfaces: ifDescr, ifSpeed (Gauge32), ifName, ifHighSpeed
  (Gauge32), ifAlias and the 8 ifHC* Counter64 columns, which grow at a
  fixed per-agent, per-interface rate;
* snmpInPkts.0: the requests this agent has received.

A GETBULK answer is capped at 100 varbinds, as net-snmp's default
`maxGetbulkResponses` does. Each agent records when it got each request and
each poll (a request whose first varbind is sysUpTime: promsnmp's first
GETBULK of a poll); the harness fetches them through a control port:
`dump <since> <path>` writes JSON to <path> and answers `ok`.

    python3 bench/responder.py --count 1000 --ports-file /tmp/ports.json
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
SYS_UPTIME = (1, 3, 6, 1, 2, 1, 1, 3)
IF_ENTRY = (1, 3, 6, 1, 2, 1, 2, 2, 1)
IFX_ENTRY = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1)
COUNTER_COLUMNS = range(6, 14)  # ifHCInOctets … ifHCOutBroadcastPkts
END_OF_MIB_VIEW, NO_SUCH_INSTANCE = b"\x82\x00", b"\x81\x00"


def ber_uint(tag, v):
    return tlv(tag, v.to_bytes(v.bit_length() // 8 + 1, "big"))


def octets(s):
    return tlv(0x04, s.encode())


def build_mib():
    """The OIDs every agent has, in order, and how to get each value:
    (kind, argument); kind "static" carries the encoded value."""
    mib = {
        (1, 3, 6, 1, 2, 1, 1, 1, 0): ("static", octets("promsnmp bench responder")),
        SYS_UPTIME + (0,): ("uptime", None),
        (1, 3, 6, 1, 2, 1, 1, 4, 0): ("static", octets("bench@example.org")),
        (1, 3, 6, 1, 2, 1, 1, 5, 0): ("sysname", None),
        (1, 3, 6, 1, 2, 1, 1, 6, 0): ("static", octets("bench")),
        (1, 3, 6, 1, 2, 1, 11, 1, 0): ("inpkts", None),
    }
    for i in range(1, INTERFACES + 1):
        mib[IF_ENTRY + (2, i)] = ("static", octets(f"bench interface {i}"))
        mib[IF_ENTRY + (5, i)] = ("static", ber_uint(0x42, 1_000_000_000))  # Gauge32
        mib[IFX_ENTRY + (1, i)] = ("static", octets(f"eth{i - 1}"))
        mib[IFX_ENTRY + (15, i)] = ("static", ber_uint(0x42, 1000))  # Gauge32, Mb/s
        mib[IFX_ENTRY + (18, i)] = ("static", octets(f"uplink {i}"))
        for col in COUNTER_COLUMNS:
            mib[IFX_ENTRY + (col, i)] = ("counter", (col - 6) * INTERFACES + (i - 1))
    keys = sorted(mib)
    return keys, [mib[k] for k in keys], [ber_oid(".".join(map(str, k))) for k in keys]


KEYS, KINDS, ENCODED_OIDS = build_mib()
INDEX = {k: n for n, k in enumerate(KEYS)}


class Agent:
    def __init__(self, index, sock, started):
        self.index, self.sock = index, sock
        self.port = sock.getsockname()[1]
        self.name = f"dev-{index:04d}"
        self.sysname = octets(self.name)
        self.boot = started - 3600 - (index * 7919) % 86400  # up for a while already
        # Per (column, interface): octets/s 0.1–40 % of 1 Gb/s; packets/s a thousandth of that.
        self.rates = [(1 + (index * 31 + i * 17 + col) % 400) * 125_000 // (1 if col in (6, 10) else 1000)
                      for col in COUNTER_COLUMNS for i in range(INTERFACES)]
        self.requests = 0
        self.request_times = []
        self.poll_times = []

    def value(self, n, now):
        kind, arg = KINDS[n]
        if kind == "static":
            return arg
        if kind == "uptime":
            return ber_uint(0x43, int((now - self.boot) * 100) & 0xFFFFFFFF)
        if kind == "counter":
            return ber_uint(0x46, int(self.rates[arg] * (now - self.boot)) & 0xFFFFFFFFFFFFFFFF)
        if kind == "sysname":
            return self.sysname
        return ber_uint(0x41, self.requests & 0xFFFFFFFF)  # inpkts

    def varbind_next(self, oid, now):
        """GETNEXT of one OID (a tuple): the varbind bytes and the next OID."""
        n = bisect.bisect_right(KEYS, oid)
        if n >= len(KEYS):
            return tlv(0x30, ber_oid(".".join(map(str, oid))) + END_OF_MIB_VIEW), oid
        return tlv(0x30, ENCODED_OIDS[n] + self.value(n, now)), KEYS[n]

    def answer(self, data, now):
        """The response to one request, or None (bad community, not a request)."""
        _, pos, _ = ber_read(data, 0)  # message
        _, s, pos = ber_read(data, pos)  # version
        version = int.from_bytes(data[s:pos], "big")
        _, s, pos = ber_read(data, pos)  # community
        if version not in (0, 1) or data[s:pos] != COMMUNITY:
            return None
        pdu_tag, pos, _ = ber_read(data, pos)
        if pdu_tag not in (0xA0, 0xA1, 0xA5) or (pdu_tag == 0xA5 and version == 0):
            return None
        rid_start = pos
        _, _, pos = ber_read(data, pos)  # request-id, echoed as is
        request_id = data[rid_start:pos]
        _, s, pos = ber_read(data, pos)
        a = int.from_bytes(data[s:pos], "big", signed=True)  # error-status / non-repeaters
        _, s, pos = ber_read(data, pos)
        b = int.from_bytes(data[s:pos], "big", signed=True)  # error-index / max-repetitions
        _, pos, end = ber_read(data, pos)  # varbind list
        oids = []
        while pos < end:
            _, s, pos = ber_read(data, pos)  # varbind
            _, os_, oe = ber_read(data, s)
            oids.append(decode_oid(data[os_:oe]))
        self.requests += 1
        self.request_times.append(now)
        if oids and oids[0][:len(SYS_UPTIME)] == SYS_UPTIME and pdu_tag in (0xA0, 0xA5):
            self.poll_times.append(now)
        out = []
        if pdu_tag == 0xA0:  # GET
            for oid in oids:
                n = INDEX.get(oid)
                value = NO_SUCH_INSTANCE if n is None else self.value(n, now)
                out.append(tlv(0x30, ber_oid(".".join(map(str, oid))) + value))
        elif pdu_tag == 0xA1:  # GETNEXT
            out = [self.varbind_next(oid, now)[0] for oid in oids]
        else:  # GETBULK
            nonrep = min(max(a, 0), len(oids))
            out = [self.varbind_next(oid, now)[0] for oid in oids[:nonrep]]
            repeaters = oids[nonrep:]
            if repeaters and b > 0:
                reps = min(b, max(1, (MAX_VARBINDS - nonrep) // len(repeaters)))
                current = list(repeaters)
                for _ in range(reps):
                    for j, oid in enumerate(current):
                        vb, current[j] = self.varbind_next(oid, now)
                        out.append(vb)
        if version == 0 and any(vb.endswith(END_OF_MIB_VIEW) or vb.endswith(NO_SUCH_INSTANCE) for vb in out):
            pdu = request_id + ber_int(2) + ber_int(1) + tlv(0x30, b"".join(
                tlv(0x30, ber_oid(".".join(map(str, o))) + b"\x05\x00") for o in oids))
        else:
            pdu = request_id + b"\x02\x01\x00\x02\x01\x00" + tlv(0x30, b"".join(out))
        return tlv(0x30, ber_int(version) + tlv(0x04, COMMUNITY) + tlv(0xA2, pdu))


def dump(agents, since, path):
    doc = {"now": time.monotonic(), "agents": [
        {"port": a.port, "name": a.name, "requests": a.requests,
         "request_times": [t for t in a.request_times if t >= since],
         "poll_times": [t for t in a.poll_times if t >= since]} for a in agents]}
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description="many synthetic SNMP v2c agents on 127.0.0.1")
    ap.add_argument("--count", type=int, default=1000, help="agents, one UDP port each (default 1000)")
    ap.add_argument("--ports-file", required=True, help="where to write the ports (JSON)")
    ap.add_argument("--max-seconds", type=float, default=3600, help="exit after this long (default 3600)")
    ap.add_argument("--parent-pid", type=int, default=0, help="exit when this process is gone")
    args = ap.parse_args()
    if not 1 <= args.count <= 20000:
        ap.error("--count 1-20000")
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
        agent = Agent(i, s, started)
        agents.append(agent)
        sel.register(s, selectors.EVENT_READ, agent)
    control = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    control.bind(("127.0.0.1", 0))
    control.setblocking(False)
    sel.register(control, selectors.EVENT_READ, None)
    tmp = args.ports_file + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"ports": [a.port for a in agents], "control": control.getsockname()[1]}, f)
    os.replace(tmp, args.ports_file)

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
                    if len(words) == 3 and words[0] == "dump":
                        dump(agents, float(words[1]), words[2])
                        key.fileobj.sendto(b"ok", src)
                    continue
                try:
                    reply = agent.answer(data, time.monotonic())
                except (IndexError, ValueError, Exception):  # noqa: BLE001 - garbage in: no answer
                    continue
                if reply is not None:
                    try:
                        key.fileobj.sendto(reply, src)
                    except OSError:
                        pass


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
