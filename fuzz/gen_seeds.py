#!/usr/bin/env python3
"""Writes the seed inputs of fuzz/corpus/<target>/seed-* (deterministic).

The seeds are small valid inputs of our own: the fuzzer finds the rest and
`run.sh` merges what it finds next to them. Re-run after changing a target's
input layout: `python3 fuzz/gen_seeds.py` (needs python3-cryptography for the
encrypted inventory seed; skipped with a note without it).
"""
import json
import os
import random
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def write(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


# ---------------------------------------------------------------- inventory
COMMUNITY_AGENT = {
    "type": "snmp-community",
    "id": "agent-1",
    "endpoint": {"address": "192.0.2.10", "port": 161},
    "version": 1,
    "timeout": 1500,
    "retries": 2,
    "discoveredAt": "2024-06-10T06:13:20Z",
    "readCommunity": "public",
    "writeCommunity": None,
}
USER_AGENT = {
    "type": "snmp-user",
    "id": "agent-2",
    "endpoint": {"address": "2001:db8::7", "port": 1161},
    "version": 3,
    "timeout": 2000,
    "retries": 1,
    "discoveredAt": 1718000000.5,
    "securityName": "monitor",
    "securityLevel": 3,
    "authProtocol": "SHA256",
    "authPassphrase": "authpass123",
    "privProtocol": "AES128",
    "privPassphrase": "privpass123",
    "engineId": "80001f8880aabbcc",
    "contextName": "",
}
SEED = {
    "id": "seed-1",
    "potentialTargets": ["192.0.2.0/30", "router.example"],
    "port": 161,
    "version": "v2c",
    "agentType": "snmp-community",
    "readCommunity": "public",
    "timeout": 2000,
    "retries": 1,
    "modules": ["system", "if_mib"],
}
USER_SEED = {
    "potentialTargets": ["192.0.2.20"],
    "port": 161,
    "version": "v3",
    "agentType": "snmp-user",
    "securityName": "monitor",
    "authProtocol": "SHA",
    "authPassphrase": "authpass123",
    "privProtocol": "AES256C",
    "privPassphrase": "privpass123",
}
INVENTORY = {
    "devices": [
        {
            "id": "dev-1",
            "sysName": "edge-router",
            "sysDescr": "Linux edge-router 6.1.0",
            "sysContact": None,
            "sysLocation": "Rack 1",
            "discoveredAt": 1718000000.1234567,
            "agents": [COMMUNITY_AGENT],
            "primaryAgent": None,
            "modules": ["system", "if_mib"],
            "someNewJavaField": {"x": 1},
        },
        {
            "id": "dev-2",
            "sysName": "",
            "agents": [],
            "primaryAgent": USER_AGENT,
        },
    ],
    "discoverySeeds": [SEED],
    "exportedBy": "fuzz seed",
}


def inventory_seeds():
    write("inventory_json", "full", json.dumps(INVENTORY, indent=2))
    write("inventory_json", "empty", '{"devices": []}')
    write("inventory_json", "devices-only",
          json.dumps({"devices": INVENTORY["devices"][:1]}))
    write("inventory_json", "seed-body", json.dumps(SEED))
    write("inventory_json", "user-seed-body", json.dumps(USER_SEED))
    write("inventory_json", "nulls",
          '{"devices": null, "discoverySeeds": null}')

    plain = json.dumps(INVENTORY).encode()
    write("inventory_envelope", "plaintext", b"\x00" + plain)
    write("inventory_envelope", "round-trip-16",
          b"\x01\x00" + b"K" * 16 + b"\x00" * 20 + plain[:64])
    write("inventory_envelope", "round-trip-32",
          b"\x01\x02" + b"k" * 32 + b"\x01" * 20 + b'{"devices":[]}')
    try:
        import base64
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError:
        print("python3-cryptography missing: no encrypted inventory seed",
              file=sys.stderr)
        return
    iv = bytes(range(12))
    for name, key in (("well-known", b"0123456789ABCDEF"),
                      ("key32", b"0123456789ABCDEF0123456789ABCDEF")):
        sealed = AESGCM(key).encrypt(iv, plain, None)
        write("inventory_envelope", "encrypted-" + name,
              b"\x00" + base64.b64encode(iv + sealed) + b"\n")


# --------------------------------------------------------------------- http
def http_seeds():
    for name, text in (
        ("scrape", "target=192.0.2.10&module=if_mib&module=system&auth=public_v2"),
        ("escapes", "target=%5B2001%3Adb8%3A%3A1%5D%3A161&x=a+b%2Bc&&empty=&flag"),
        ("accept", "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;"
                   "encoding=delimited;q=0.7,application/openmetrics-text;version=1.0.0;q=0.5,"
                   "text/plain;version=0.0.4;q=0.3,*/*;q=0.1"),
        ("accept-encoding", "gzip;q=1.0, identity; q=0.5, *;q=0"),
        ("hosts", "localhost,promsnmp.example:9090,[::1]:8080,127.0.0.1"),
    ):
        write("http_query", name, text)


# ------------------------------------------------------------------ modules
MODULE_FILE = """\
auths:
  lab_v2:
    community: lab
    version: 2
  lab_v3:
    version: 3
    username: monitor
    security_level: authPriv
    auth_protocol: SHA256
    password: authpass123
    priv_protocol: AES
    priv_password: privpass123
    context_name: ctx
modules:
  lab:
    walk:
    - 1.3.6.1.4.1.4242.1
    get:
    - 1.3.6.1.4.1.4242.2.0
    max_repetitions: 10
    retries: 2
    timeout: 1500ms
    metrics:
    - name: labTemperature
      oid: 1.3.6.1.4.1.4242.1.1.2
      type: gauge
      help: Temperature of a sensor, tenths of a degree
      scale: 0.1
      indexes:
      - labelname: labSensor
        type: gauge
      lookups:
      - labels: [labSensor]
        labelname: labSensorName
        oid: 1.3.6.1.4.1.4242.1.1.3
        type: DisplayString
    - name: labState
      oid: 1.3.6.1.4.1.4242.1.1.4
      type: EnumAsStateSet
      help: State of a sensor
      indexes:
      - labelname: labSensor
        type: gauge
      enum_values:
        1: ok
        2: failed
    - name: labPeer
      oid: 1.3.6.1.4.1.4242.1.2.1
      type: counter
      help: Packets from a peer
      indexes:
      - labelname: labPeerAddr
        type: InetAddressIPv4
      - labelname: labPeerName
        type: DisplayString
    - name: labFirmware
      oid: 1.3.6.1.4.1.4242.2
      type: DisplayString
      help: Firmware version
      regex_extracts:
        Major:
        - regex: ^([0-9]+)\\.
          value: $1
"""

LEGACY_FILE = """\
lab_legacy:
  walk:
  - 1.3.6.1.4.1.4242.1.1
  version: 1
  auth:
    community: public
  metrics:
  - name: labTemperature
    oid: 1.3.6.1.4.1.4242.1.1.2
    type: gauge
    indexes:
    - labelname: labSensor
      type: Integer32
"""


def module_seeds():
    write("module_file", "current", MODULE_FILE)
    write("module_file", "legacy", LEGACY_FILE)
    rng = random.Random(7)
    write("module_file", "current-with-varbinds",
          MODULE_FILE.encode() + b"\x00" + bytes(rng.randrange(256) for _ in range(400)))


# ----------------------------------------------------------------- varbinds
def varbind_seeds():
    rng = random.Random(42)
    for i in range(8):
        n = rng.choice([64, 256, 600, 1200])
        write("decode_varbinds", "random-%d" % i, bytes(rng.randrange(256) for _ in range(n)))


# ---------------------------------------------------------------------- BER
def ber_len(n):
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def tlv(tag, body):
    return bytes([tag]) + ber_len(len(body)) + body


def integer(n, tag=0x02):
    length = max(1, (n.bit_length() + 8) // 8)
    return tlv(tag, n.to_bytes(length, "big", signed=True))


def unsigned(n, tag):
    body = n.to_bytes(max(1, (n.bit_length() + 7) // 8), "big")
    if body[0] & 0x80:
        body = b"\x00" + body
    return tlv(tag, body)


def octets(b, tag=0x04):
    return tlv(tag, b if isinstance(b, bytes) else b.encode())


def oid(text):
    parts = [int(p) for p in text.strip(".").split(".")]
    body = bytes([40 * parts[0] + parts[1]])
    for p in parts[2:]:
        chunk = [p & 0x7F]
        p >>= 7
        while p:
            chunk.append(0x80 | (p & 0x7F))
            p >>= 7
        body += bytes(reversed(chunk))
    return tlv(0x06, body)


def seq(*items):
    return tlv(0x30, b"".join(items))


def varbinds(pairs):
    return seq(*(seq(oid(o), v) for o, v in pairs))


def pdu(tag, req_id, pairs, status=0, index=0):
    return tlv(tag, integer(req_id) + integer(status) + integer(index) + varbinds(pairs))


SYSTEM = [
    ("1.3.6.1.2.1.1.1.0", octets("Linux edge 6.1.0 #1 SMP x86_64")),
    ("1.3.6.1.2.1.1.2.0", oid("1.3.6.1.4.1.8072.3.2.10")),
    ("1.3.6.1.2.1.1.3.0", unsigned(123456, 0x43)),
    ("1.3.6.1.2.1.1.5.0", octets("edge")),
]
IF_ROWS = []
for idx in (1, 2):
    IF_ROWS += [
        ("1.3.6.1.2.1.2.2.1.2.%d" % idx, octets("eth%d" % idx)),
        ("1.3.6.1.2.1.2.2.1.3.%d" % idx, integer(6)),
        ("1.3.6.1.2.1.2.2.1.5.%d" % idx, unsigned(1000000000, 0x42)),
        ("1.3.6.1.2.1.2.2.1.8.%d" % idx, integer(1)),
        ("1.3.6.1.2.1.31.1.1.1.1.%d" % idx, octets("eth%d" % idx)),
        ("1.3.6.1.2.1.31.1.1.1.6.%d" % idx, unsigned(2 ** 40 + idx, 0x46)),
        ("1.3.6.1.2.1.31.1.1.1.10.%d" % idx, unsigned(2 ** 33 + idx, 0x46)),
        ("1.3.6.1.2.1.31.1.1.1.15.%d" % idx, unsigned(1000, 0x42)),
    ]
FANCY = [
    ("1.3.6.1.4.1.99999.1.1.4.1", octets(b"\x9f\x78\x04\x42\xf6\x00\x00", 0x44)),
    ("1.3.6.1.4.1.99999.1.1.6.1", octets(bytes([7, 232, 6, 10, 6, 13, 20, 0, ord("+"), 2, 0]))),
    ("1.3.6.1.4.1.99999.1.1.12.1", octets(b"\x81\x01")),
    ("1.3.6.1.4.1.99999.1.1.16.1", integer(1)),
    ("1.3.6.1.4.1.99999.1.1.17.1", octets(b"\xc0\x00\x02\x01")),
    ("1.3.6.1.4.1.99999.1.2.1.1.4.192.0.2.1.192.0.2.2", unsigned(5, 0x42)),
    ("1.3.6.1.2.1.1.9.1.2.1", tlv(0x80, b"")),
    ("1.3.6.1.2.1.1.9.1.3.1", tlv(0x81, b"")),
    ("1.3.6.1.2.1.1.9.1.4.1", tlv(0x82, b"")),
]

ENGINE_ID = bytes([0x80, 0x00, 0x1F, 0x88, 0x80, 0x12, 0x34, 0x56, 0x78])


def v1v2(version, community, tag, pairs, status=0, index=0):
    return seq(integer(version), octets(community), pdu(tag, 0x1234, pairs, status, index))


def v3(flags, engine_id, boots, time, user, scoped, auth_params=b"", priv_params=b""):
    header = seq(integer(0x4321), integer(65507), octets(bytes([flags])), integer(3))
    usm = seq(octets(engine_id), integer(boots), integer(time), octets(user),
              octets(auth_params), octets(priv_params))
    return seq(integer(3), header, octets(usm), scoped)


def scoped_pdu(engine_id, tag, pairs):
    return seq(octets(engine_id), octets(b""), pdu(tag, 0x1234, pairs))


def snmp_seeds():
    # mode 0: v1/v2c.
    write("snmp_response", "v2c-system-ifmib", b"\x00" + v1v2(1, "public", 0xA2, SYSTEM + IF_ROWS))
    write("snmp_response", "v2c-fancy", b"\x00" + v1v2(1, "public", 0xA2, FANCY))
    write("snmp_response", "v1-nosuchname", b"\x00" + v1v2(0, "public", 0xA2, SYSTEM[:1], 2, 1))
    write("snmp_response", "v1-trap",
          b"\x00" + seq(integer(0), octets("public"),
                        tlv(0xA4, oid("1.3.6.1.4.1.8072") + octets(b"\xc0\x00\x02\x01", 0x40)
                            + integer(6) + integer(1) + unsigned(99, 0x43)
                            + varbinds(SYSTEM[:1]))))
    # mode 1: v3 discovery (no engine id yet): an unauthenticated report.
    report = scoped_pdu(ENGINE_ID, 0xA8, [("1.3.6.1.6.3.15.1.1.4.0", unsigned(1, 0x41))])
    write("snmp_response", "v3-discovery-report", b"\x01" + v3(0, ENGINE_ID, 3, 1000, b"", report))
    write("snmp_response", "v3-discovery-report-authpriv",
          b"\x02" + v3(0, ENGINE_ID, 3, 1000, b"", report))
    # mode 3: engine known, noAuthNoPriv response.
    resp = scoped_pdu(ENGINE_ID, 0xA2, SYSTEM + IF_ROWS[:8])
    write("snmp_response", "v3-noauth-response", b"\x03" + v3(0, ENGINE_ID, 3, 1000, b"monitor", resp))
    # modes 4-7: engine known with SHA1 keys (the harness signs these):
    # authNoPriv, then authPriv with DES, AES128 and AES256 (the ciphertext
    # is junk: it decrypts to noise).
    write("snmp_response", "v3-auth-response",
          b"\x04" + v3(1, ENGINE_ID, 3, 1000, b"monitor", resp, auth_params=b"\x00" * 12))
    # AES128 for real (RFC 3826): the scoped PDU encrypted with the
    # localised SHA1 key of privpass123, IV = boots || time || salt.
    try:
        import hashlib
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
        try:
            from cryptography.hazmat.decrepit.ciphers.modes import CFB
        except ImportError:
            from cryptography.hazmat.primitives.ciphers.modes import CFB

        def localized(password):
            ku = hashlib.sha1((password * (1048576 // len(password) + 1))[:1048576]).digest()
            return hashlib.sha1(ku + ENGINE_ID + ku).digest()

        salt = bytes(range(8))
        iv = struct.pack(">II", 3, 1000) + salt
        enc = Cipher(algorithms.AES(localized(b"privpass123")[:16]), CFB(iv)).encryptor()
        sealed = enc.update(resp) + enc.finalize()
        write("snmp_response", "v3-priv-response-aes128-valid",
              b"\x06" + v3(3, ENGINE_ID, 3, 1000, b"monitor", octets(sealed),
                            auth_params=b"\x00" * 12, priv_params=salt))
    except ImportError:
        print("python3-cryptography missing: no encrypted SNMPv3 seed", file=sys.stderr)
    for mode, name in ((5, "des"), (6, "aes128"), (7, "aes256")):
        write("snmp_response", "v3-priv-response-" + name,
              bytes([mode]) + v3(3, ENGINE_ID, 3, 1000, b"monitor", octets(b"\x11" * 48),
                                 auth_params=b"\x00" * 12, priv_params=b"\x00" * 8))


# ---------------------------------------------------------------- cache wire
def wire_seeds():
    doc = {
        "device_id": "dev-1",
        "device_name": "edge",
        "target": "192.0.2.10:161",
        "polled_at_ms": 1718000000000,
        "poll_duration_seconds": 0.125,
        "sys_uptime_ticks": 123456,
        "labels": [
            [],
            [["ifIndex", "1"], ["ifName", "eth0"]],
            {"base": 1, "extra": ["ifOperStatus", "up"]},
        ],
        "modules": [
            {"module": "system", "families": [
                {"name": "sysUpTime", "help": "Uptime", "counter": False, "series": [[0, 123456]]},
            ]},
            {"module": "if_mib", "families": [
                {"name": "ifHCInOctets", "help": "In", "counter": True, "series": [[1, 1.5e12]]},
                {"name": "ifOperStatus", "help": "State", "counter": False,
                 "series": [[2, 1], [1, "NaN"]]},
                {"name": "ifSpeed", "help": "Speed", "counter": False, "series": [[1, "+Inf"]]},
            ]},
        ],
        "utilization": [
            {"if_index": 1, "labels": 1, "histogram": {
                "bucket_counts": [1, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                "sum": 250.5, "count": 3, "zero_count": 1,
                "native_buckets": [[-3, 1], [7, 2]]}},
        ],
    }
    write("polled_wire", "poll", "promsnmp-poll/3\n" + json.dumps(doc))
    doc["modules"] = []
    doc["utilization"] = []
    doc["labels"] = []
    write("polled_wire", "empty-poll", "promsnmp-poll/3\n" + json.dumps(doc))


if __name__ == "__main__":
    inventory_seeds()
    http_seeds()
    module_seeds()
    varbind_seeds()
    snmp_seeds()
    wire_seeds()
