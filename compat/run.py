#!/usr/bin/python3
"""Compatibility harness: promsnmp against snmp_exporter 0.21 on recorded
devices. See compat/README.md.

Builds promsnmp, prepares a copy of snmpsim's recordings (decompressed,
sorted, changing values frozen), starts snmpsim, a net-snmp snmpd (this
host), snmp_exporter 0.21 and promsnmp on 127.0.0.1, scrapes every
(module, agent) pair with data from both exporters and compares the series
one by one. Prints a table and writes COMPATIBILITY.md. Needs root
(snmpsim refuses root unless told, which the harness does). Python 3
standard library only.
"""

import argparse
import bz2
import contextlib
import datetime
import fnmatch
import glob
import http.client
import json
import math
import os
import platform
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from bisect import bisect_left

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench"))
from harness import (HarnessError, check_alive, free_port, http_request, log,  # noqa: E402
                     program as harness_program, run, start_process, wait_until)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROGRAMS = {  # program -> Debian package
    "snmpd": "snmpd",
    "snmpbulkwalk": "snmp",
    "prometheus-snmp-exporter": "prometheus-snmp-exporter",
}

# The test set: many vendors and kinds of device (snmpsim-data 1.0.1 names,
# = the v2c community). Large ones (LARGE_BYTES) are left out unless --large.
DEFAULT_RECORDINGS = [
    "UPS/apc-8641", "UPS/eastpower-istars-swv053", "UPS/eaton-93e-80", "UPS/ingrasys-power-switch",
    "UPS/phoenixtec-power", "bmc/hp-onboard-administrator", "camera/samsung-ipolis",
    "cloud/arista-dcs-7150s-52-cl", "iot/geist-temperature-sensor", "network/appliance/cisco-controller",
    "network/appliance/cisco-ucs-6100", "network/appliance/tripplite-poweralert",
    "network/firewall/paloalto-pa-5000", "network/router/huawei-acu2", "network/router/huawei-s5720",
    "network/router/juniper-mx960-13-3r9-13", "network/switch/brocade-icx6430-24",
    "network/switch/cisco-c3560", "network/switch/cisco-n5000", "network/switch/dlink-des3200",
    "network/switch/h3c-e528-2", "network/switch/hpe-procurve-516733-b21", "network/switch/metel-poe-box",
    "network/switch/ruijie-s5750-24gt12sfp", "network/wifi/aruba-7210", "network/wifi/ubiquiti-m5",
    "os/linux/slackware", "os/linux/unknown-006", "os/windows/XP", "storage/isilon-onefs",
    "storage/netapp-fas3270",
]
LARGE_BYTES = 1_000_000  # a .bz2 recording this big (or a plain one 50 times that) is "large"

HOST_AGENT = "snmpd (this host)"
HOST_COMMUNITY = "public"

# What snmp_exporter 0.21 reads (config/config.go of v0.21.0); other keys
# make it refuse the file.
V021_MODULE_KEYS = {"walk", "get", "metrics", "version", "max_repetitions", "retries", "timeout", "auth",
                    "use_unconnected_udp_socket", "allow_nonincreasing_oids"}
V021_METRIC_KEYS = {"name", "oid", "type", "help", "indexes", "lookups", "regex_extracts", "enum_values"}
V021_INDEX_KEYS = {"labelname", "type", "fixed_size", "implied", "enum_values"}
V021_LOOKUP_KEYS = {"labels", "labelname", "oid", "type"}
# Metric types 0.21 renders (collector.go of v0.21.0); anything else it
# treats as a string.
V021_TYPES = {"counter", "gauge", "Float", "Double", "DateAndTime", "EnumAsInfo", "EnumAsStateSet", "Bits",
              "DisplayString", "OctetString", "PhysAddress48", "InetAddressIPv4", "InetAddressIPv6",
              "InetAddress", "InetAddressMissingSize", "LldpPortId"}
# Keys of the current layout 0.21 lacks, and how this harness checks them
# (the module is given to 0.21 without them and promsnmp's series are
# compared with 0.21's series transformed as the key says).
NEWER_KEYS = {
    "scale": "value × scale",
    "offset": "value + offset",
    "datetime_pattern": "the string 0.21 serves as a label, parsed with the pattern (type ParseDateAndTime)",
    "lookup enum_values": "the lookup label's integer replaced by its enum name (lookup type EnumAsInfo)",
    "display_hint": "not checked: 0.21 has no counterpart",
    "filters": "not checked: 0.21 has no counterpart",
}
UNCHECKABLE_KEYS = {"display_hint", "filters"}

COUNTER64_WRAP = 2 ** 53  # snmp_exporter's --snmp.wrap-large-counters (default on)


CompatError = HarnessError


def program(name):
    return harness_program(name, PROGRAMS[name])


def oid_tuple(oid):
    return tuple(int(x) for x in str(oid).strip().strip(".").split("."))


def slug(community):
    return re.sub(r"[^A-Za-z0-9_.-]", "_", community)


# ---------------------------------------------------------------------------
# Processes: every one is registered with the ExitStack and stopped at the end
# ---------------------------------------------------------------------------

def scrape(port, path, timeout=120):
    """(status, text) of a GET; a connection failure or timeout is status 0."""
    try:
        status, _, body = http_request(port, "GET", path, timeout=timeout)
    except (OSError, http.client.HTTPException) as e:
        return 0, f"request failed: {e}"
    return status, body.decode("utf-8", "surrogateescape")
# ---------------------------------------------------------------------------
# YAML: the subset snmp_exporter's generator writes (standard library only)
# ---------------------------------------------------------------------------

class Plain(str):
    """A plain (unquoted) YAML scalar, kept as written. The config fields
    decide what it means (`1` is an int key of `enum_values`, a string in
    `help`), so it is resolved where it is used, and written back as is."""


class YamlError(Exception):
    pass


_DQ_ESCAPES = {"0": "\0", "a": "\a", "b": "\b", "t": "\t", "\t": "\t", "n": "\n", "v": "\v", "f": "\f",
               "r": "\r", "e": "\x1b", " ": " ", '"': '"', "/": "/", "\\": "\\", "N": "\x85",
               "_": "\xa0", "L": "\u2028", "P": "\u2029"}


def _fold(parts):
    """Joins the lines of a multi-line flow scalar: a line break becomes a
    space, each empty line a newline."""
    out, pending_empty = parts[0], 0
    for part in parts[1:]:
        if part == "":
            pending_empty += 1
            continue
        out += ("\n" * pending_empty) if pending_empty else " "
        out += part
        pending_empty = 0
    return out


class _YamlReader:
    """Block mappings and sequences (a sequence may sit at its key's indent,
    as go-yaml writes it), plain scalars over several lines, single- and
    double-quoted scalars over several lines, empty flow collections and
    one-line flow sequences of scalars. Anchors, tags, block scalars and
    other flow forms are refused (the generator does not write them)."""

    def __init__(self, text, name):
        self.lines = text.split("\n")
        self.name = name
        self.i = 0

    def error(self, msg, line=None):
        n = (self.i if line is None else line) + 1
        return YamlError(f"{self.name}:{n}: {msg}")

    def _skip(self):
        """Moves to the next line holding content (not blank, not a comment)."""
        while self.i < len(self.lines):
            s = self.lines[self.i].strip()
            if s and not s.startswith("#"):
                return True
            self.i += 1
        return False

    def _peek(self):
        """(indent, content) of the next content line, or None at the end."""
        if not self._skip():
            return None
        line = self.lines[self.i]
        if "\t" in line[: len(line) - len(line.lstrip())]:
            raise self.error("tab in indentation")
        content = line.lstrip(" ")
        return len(line) - len(content), content.rstrip()

    def document(self):
        first = self._peek()
        if first is None:
            return None
        value = self._block(first[0])
        rest = self._peek()
        if rest is not None:
            raise self.error(f"unexpected content at indent {rest[0]}")
        return value

    def _block(self, indent):
        _, content = self._peek()
        if content == "-" or content.startswith("- "):
            return self._sequence(indent)
        return self._mapping(indent)

    @staticmethod
    def _is_item(content):
        return content == "-" or content.startswith("- ")

    def _split_key(self, content):
        """(key, rest after `:`) if content starts a mapping entry, else None."""
        if content[:1] in ("'", '"'):
            key, end = self._quoted_inline(content)
            if end is None:
                return None
            after = content[end:]
            if after == ":" or after.startswith(": "):
                return key, after[1:].strip()
            return None
        if content[:1] in "[]{}&*!|>%@`":
            return None
        j = 0
        while True:
            j = content.find(":", j)
            if j < 0:
                return None
            if j + 1 == len(content) or content[j + 1] == " ":
                key = content[:j].rstrip()
                if " #" in key:
                    return None
                return Plain(key), content[j + 1:].strip()
            j += 1

    @staticmethod
    def _quoted_inline(content):
        """A quoted scalar that ends on this line: (value, index after it)."""
        q = content[0]
        j, out = 1, []
        while j < len(content):
            c = content[j]
            if q == "'" and c == "'":
                if content[j + 1:j + 2] == "'":
                    out.append("'")
                    j += 2
                    continue
                return "".join(out), j + 1
            if q == '"' and c == "\\":
                e = content[j + 1:j + 2]
                if e in _DQ_ESCAPES:
                    out.append(_DQ_ESCAPES[e])
                    j += 2
                    continue
                width = {"x": 2, "u": 4, "U": 8}.get(e)
                if width is None:
                    return None, None
                out.append(chr(int(content[j + 2:j + 2 + width], 16)))
                j += 2 + width
                continue
            if q == '"' and c == '"':
                return "".join(out), j + 1
            out.append(c)
            j += 1
        return None, None

    def _mapping(self, indent):
        result = {}
        while True:
            nxt = self._peek()
            if nxt is None or nxt[0] < indent:
                return result
            ind, content = nxt
            if ind > indent:
                raise self.error(f"unexpected indent {ind} (expected {indent})")
            if self._is_item(content):
                return result  # a sequence at this indent belongs to the parent
            kv = self._split_key(content)
            if kv is None:
                raise self.error(f"expected `key: value`, got {content[:40]!r}")
            key, rest = kv
            if key in result:
                raise self.error(f"duplicate key {key!r}")
            line = self.i
            self.i += 1
            if rest == "" or rest.startswith("#"):
                nxt = self._peek()
                if nxt is not None and (nxt[0] > indent or (nxt[0] == indent and self._is_item(nxt[1]))):
                    result[key] = self._block(nxt[0])
                else:
                    result[key] = None
            else:
                result[key] = self._inline_value(rest, indent, line)

    def _sequence(self, indent):
        result = []
        while True:
            nxt = self._peek()
            if nxt is None or nxt[0] < indent:
                return result
            ind, content = nxt
            if ind > indent:
                raise self.error(f"unexpected indent {ind} in a sequence at {indent}")
            if not self._is_item(content):
                return result
            rest = content[1:].lstrip(" ")
            line = self.i
            if rest == "":
                self.i += 1
                nxt = self._peek()
                result.append(self._block(nxt[0]) if nxt is not None and nxt[0] > indent else None)
            elif self._split_key(rest) is not None and rest[:1] not in ("[", "{"):
                # `- key: value`: a mapping whose first entry shares the item's line.
                inner = indent + (len(content) - len(rest))
                self.lines[self.i] = " " * inner + rest
                result.append(self._mapping(inner))
            else:
                self.i += 1
                result.append(self._inline_value(rest, indent, line))

    def _continuation(self, indent):
        """Lines of a multi-line scalar: every following line indented more
        than `indent` (blank lines included), stripped."""
        parts = []
        while self.i < len(self.lines):
            line = self.lines[self.i]
            if line.strip() == "":
                parts.append("")
                self.i += 1
                continue
            if len(line) - len(line.lstrip(" ")) <= indent:
                break
            parts.append(line.strip())
            self.i += 1
        while parts and parts[-1] == "":
            parts.pop()
        return parts

    def _inline_value(self, rest, indent, line):
        c = rest[0]
        if c in ("'", '"'):
            return self._quoted(rest, line)
        if c in "&*!|>%@`":
            raise self.error(f"unsupported YAML construct {rest[:20]!r}", line)
        if c in "[{":
            return self._flow(rest, line)
        if " #" in rest:
            rest = rest[: rest.index(" #")].rstrip()
        parts = [rest] + self._continuation(indent)
        return Plain(_fold(parts))

    def _flow(self, rest, line):
        if rest == "[]":
            return []
        if rest == "{}":
            return {}
        if rest.startswith("[") and rest.endswith("]") and not any(ch in rest[1:-1] for ch in "[]{}'\"#"):
            return [Plain(x.strip()) for x in rest[1:-1].split(",") if x.strip()]
        raise self.error(f"unsupported flow collection {rest[:30]!r}", line)

    def _quoted(self, rest, line):
        """A single- or double-quoted scalar starting at `rest`, possibly
        continuing over the next lines."""
        q = rest[0]
        text = rest[1:]
        chunks = []  # (text of one physical line, escaped_newline_before)
        self.i = line + 1
        while True:
            value, end = self._scan_quoted(q, text)
            if end is not None:
                chunks.append(value)
                tail = text[end:].strip()
                if tail and not tail.startswith("#"):
                    raise self.error(f"text after a quoted scalar: {tail[:20]!r}", self.i - 1)
                break
            chunks.append(value)
            if self.i >= len(self.lines):
                raise self.error("unterminated quoted scalar", line)
            text = self.lines[self.i]
            self.i += 1
        # Fold: trailing spaces of a line and leading spaces of the next go;
        # a line break is a space, an empty line a newline; `\` at a line's
        # end (double quotes) joins the lines without a space.
        parts = []
        for k, (s, escaped_break) in enumerate(chunks):
            s = s if k == 0 else s.lstrip(" \t")
            if k < len(chunks) - 1 and not escaped_break:
                s = s.rstrip(" \t")
            parts.append((s, escaped_break))
        out = parts[0][0]
        empties = 0
        for k in range(1, len(parts)):
            s, _ = parts[k]
            joined = parts[k - 1][1]
            if s == "" and k < len(parts) - 1:
                empties += 1
                continue
            if joined:
                out += s
            else:
                out += ("\n" * empties) if empties else " "
                out += s
            empties = 0
        return out

    @staticmethod
    def _scan_quoted(q, text):
        """Reads one physical line of a quoted scalar: ((value, escaped line
        break at its end), index after the closing quote or None)."""
        out, j = [], 0
        while j < len(text):
            c = text[j]
            if q == "'" and c == "'":
                if text[j + 1:j + 2] == "'":
                    out.append("'")
                    j += 2
                    continue
                return ("".join(out), False), j + 1
            if q == '"' and c == "\\":
                e = text[j + 1:j + 2]
                if e == "":
                    return ("".join(out), True), None
                if e in _DQ_ESCAPES:
                    out.append(_DQ_ESCAPES[e])
                    j += 2
                    continue
                width = {"x": 2, "u": 4, "U": 8}.get(e)
                if width is None:
                    raise YamlError(f"unknown escape \\{e}")
                out.append(chr(int(text[j + 2:j + 2 + width], 16)))
                j += 2 + width
                continue
            if q == '"' and c == '"':
                return ("".join(out), False), j + 1
            out.append(c)
            j += 1
        return ("".join(out), False), None


def yaml_load(text, name="<yaml>"):
    return _YamlReader(text, name).document()


_PLAIN_OK = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+\-]*|-[0-9][0-9.eE+\-]*")


def _yaml_scalar(v):
    if v is None:
        return "null"
    if v is True or v is False:
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, Plain) and _PLAIN_OK.fullmatch(v):
        return str(v)
    return json.dumps(str(v), ensure_ascii=False)


def yaml_dump(value, indent=0):
    """Block YAML that go-yaml v2 (snmp_exporter 0.21) and promsnmp read:
    strings double-quoted (JSON escapes are YAML escapes), plain scalars as
    written when that is safe. No anchors or aliases (0.21 rejects many:
    "document contains excessive aliasing")."""
    pad = " " * indent
    lines = []
    if isinstance(value, dict):
        for k, v in value.items():
            key = _yaml_scalar(k)
            if isinstance(v, dict) and v:
                lines.append(f"{pad}{key}:")
                lines.extend(yaml_dump(v, indent + 2))
            elif isinstance(v, list) and v:
                lines.append(f"{pad}{key}:")
                lines.extend(yaml_dump(v, indent))
            else:
                lines.append(f"{pad}{key}: {_inline(v)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict) and item:
                sub = yaml_dump(item, indent + 2)
                lines.append(f"{pad}- {sub[0][indent + 2:]}")
                lines.extend(sub[1:])
            elif isinstance(item, list) and item:
                sub = yaml_dump(item, indent + 2)
                lines.append(f"{pad}- {sub[0][indent + 2:]}")
                lines.extend(sub[1:])
            else:
                lines.append(f"{pad}- {_inline(item)}")
    else:
        lines.append(pad + _inline(value))
    return lines


def _inline(v):
    if isinstance(v, dict):
        return "{}"
    if isinstance(v, list):
        return "[]"
    return _yaml_scalar(v)


# ---------------------------------------------------------------------------
# Module sets: snmp_exporter's reference files
# ---------------------------------------------------------------------------

def reference_dir(arg):
    d = arg or os.environ.get("PROMSNMP_REFERENCE_MODULES") or os.path.join(os.path.dirname(REPO), "shared",
                                                                             "snmp_exporter")
    for f in ("snmp-v0.21.yml", "snmp.yml"):
        if not os.path.isfile(os.path.join(d, f)):
            raise CompatError(f"snmp_exporter's reference module file {os.path.join(d, f)} is missing: give the "
                              f"directory holding snmp.yml and snmp-v0.21.yml with --reference-modules DIR or "
                              f"PROMSNMP_REFERENCE_MODULES (default ../shared/snmp_exporter beside the repository)")
    return os.path.abspath(d)


def read_yaml(path):
    with open(path, encoding="utf-8") as f:
        return yaml_load(f.read(), path)


def newer_keys(module):
    """The keys and types of a current-layout module that 0.21 lacks:
    {key: count}. (`auth`/`version` live in `auths:` there.)"""
    found = {}

    def add(k):
        found[k] = found.get(k, 0) + 1
    for k in module:
        if k not in V021_MODULE_KEYS:
            add(k)
    for metric in module.get("metrics") or []:
        for k in metric:
            if k not in V021_METRIC_KEYS:
                add(k)
        if metric.get("type") not in V021_TYPES:
            add(f"type {metric.get('type')}")
        for idx in metric.get("indexes") or []:
            for k in idx:
                if k not in V021_INDEX_KEYS:
                    add(f"index {k}")
        for lookup in metric.get("lookups") or []:
            for k in lookup:
                if k not in V021_LOOKUP_KEYS:
                    add(f"lookup {k}")
    return found


def strip_to_v021(module):
    """The module with only the keys 0.21 reads."""
    out = {k: v for k, v in module.items() if k in V021_MODULE_KEYS}
    metrics = []
    for metric in module.get("metrics") or []:
        m = {k: v for k, v in metric.items() if k in V021_METRIC_KEYS}
        if "indexes" in m:
            m["indexes"] = [{k: v for k, v in i.items() if k in V021_INDEX_KEYS} for i in m["indexes"]]
        if "lookups" in m:
            m["lookups"] = [{k: v for k, v in i.items() if k in V021_LOOKUP_KEYS} for i in m["lookups"]]
        metrics.append(m)
    out["metrics"] = metrics
    return out


def series_names(metric):
    """The series names one metric gives."""
    name = str(metric["name"])
    if metric.get("regex_extracts"):
        return [name + str(k) for k in metric["regex_extracts"]]
    if metric.get("type") == "EnumAsInfo":
        return [name + "_info"]
    return [name]


class Transform:
    """What a newer key changes, applied to 0.21's series of the stripped
    module to get the series the full module must give."""

    def __init__(self, module):
        self.values = {}     # series name -> (scale, offset)
        self.labels = {}     # series name -> [(label, {int: name})]
        self.datetime = {}   # series name -> strptime pattern
        self.unchecked = {}  # series name -> key
        for metric in module.get("metrics") or []:
            names = series_names(metric)
            kind = metric.get("type")
            if ("scale" in metric or "offset" in metric) and kind not in ("EnumAsInfo", "EnumAsStateSet", "Bits"):
                scale = float(metric.get("scale") or 0)
                offset = float(metric.get("offset") or 0)
                for n in names:
                    self.values[n] = (scale, offset)
            if kind == "ParseDateAndTime" and metric.get("datetime_pattern"):
                self.datetime[str(metric["name"])] = str(metric["datetime_pattern"])
            for lookup in metric.get("lookups") or []:
                if lookup.get("enum_values") and lookup.get("type") == "EnumAsInfo":
                    enum = {int(k): str(v) for k, v in lookup["enum_values"].items()}
                    for n in names:
                        self.labels.setdefault(n, []).append((str(lookup["labelname"]), enum))
                if "display_hint" in lookup:
                    for n in names:
                        self.unchecked[n] = "display_hint"
            for k in UNCHECKABLE_KEYS:
                if k in metric:
                    for n in names:
                        self.unchecked[n] = k

    def empty(self):
        return not (self.values or self.labels or self.datetime or self.unchecked)

    def apply(self, expo):
        """A new Exposition: 0.21's series as the full module gives them.
        Series of unchecked metrics are left out (counted)."""
        out = Exposition()
        out.types = dict(expo.types)
        for (name, labels), (value, raw) in expo.series.items():
            touched = name in self.values or name in self.datetime
            if name in self.unchecked:
                out.unchecked += 1
                continue
            lab = dict(labels)
            if name in self.datetime:
                text = lab.pop(name, None)
                value = parse_datetime(text, self.datetime[name])
                if value is None:
                    continue  # the current snmp_exporter gives no sample for a string it cannot parse
                raw = None
            for label, enum in self.labels.get(name, ()):
                v = lab.get(label)
                if v is not None and re.fullmatch(r"-?[0-9]+", v) and int(v) in enum:
                    lab[label] = enum[int(v)]
                    touched = True
            if name in self.values:
                scale, offset = self.values[name]
                if scale != 0:
                    value *= scale
                value += offset
                raw = None
            key = (name, tuple(sorted((k, v) for k, v in lab.items() if v != "")))
            out.series[key] = (value, raw)
            if touched:
                out.transformed += 1
        return out


def parse_datetime(text, pattern):
    """snmp_exporter's ParseDateAndTime: the string read with the strptime
    pattern, UTC unless the pattern gives a zone; None if it does not parse."""
    if text is None:
        return None
    try:
        t = datetime.datetime.strptime(text.strip(), pattern)
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=datetime.timezone.utc)
    return float(int(t.timestamp()))


class ModuleSet:
    """One comparison setting: the modules of one reference file, what
    snmp_exporter 0.21 is given for each (converted, stripped), and the file
    promsnmp reads (the reference file itself)."""

    def __init__(self, key, title, promsnmp_file, modules, exporter_modules, dropped, transforms):
        self.key, self.title, self.promsnmp_file = key, title, promsnmp_file
        self.modules = modules                    # name -> module as in the reference file
        self.exporter_modules = exporter_modules  # name -> module given to 0.21 (without auth/version)
        self.dropped = dropped                    # name -> {newer key: count}
        self.transforms = transforms              # name -> Transform (modules with newer keys)


def module_sets(ref, only=None):
    v021_path, current_path = os.path.join(ref, "snmp-v0.21.yml"), os.path.join(ref, "snmp.yml")
    v021 = read_yaml(v021_path)
    current = read_yaml(current_path)
    if not isinstance(v021, dict) or "modules" in v021:
        raise CompatError(f"{v021_path} is not in the 0.21 layout (one map of modules)")
    if not isinstance(current, dict) or "modules" not in current:
        raise CompatError(f"{current_path} is not in the current layout (`auths:` + `modules:`)")
    current = current["modules"]

    def pick(mods):
        return {n: m for n, m in mods.items() if not only or n in only}
    sets = []
    mods = pick(v021)
    sets.append(ModuleSet("v0.21", "snmp-v0.21.yml", v021_path, mods,
                          {n: {k: v for k, v in m.items() if k not in ("auth", "version")} for n, m in mods.items()},
                          {}, {}))
    mods = pick(current)
    exporter, dropped, transforms = {}, {}, {}
    for n, m in mods.items():
        keys = newer_keys(m)
        exporter[n] = strip_to_v021(m)
        if keys:
            dropped[n] = keys
            transforms[n] = Transform(m)
    sets.append(ModuleSet("current", "snmp.yml", current_path, mods, exporter, dropped, transforms))
    return sets


def module_has_data(module, oids, oidset):
    """Whether an agent with these (sorted) OIDs gives the module a series: a
    recorded OID under one of its metrics and under one of its walks, or one
    of its gets."""
    walks = [oid_tuple(w) for w in module.get("walk") or []]
    gets = [oid_tuple(g) for g in module.get("get") or []]
    for metric in module.get("metrics") or []:
        m = oid_tuple(metric["oid"])
        for w in walks:
            if m[:len(w)] == w:
                prefix = m
            elif w[:len(m)] == m:
                prefix = w
            else:
                continue
            i = bisect_left(oids, prefix)
            while i < len(oids) and oids[i] == prefix:
                i += 1
            if i < len(oids) and oids[i][:len(prefix)] == prefix:
                return True
        for g in gets:
            if g[:len(m)] == m and len(g) > len(m) and g in oidset:
                return True
    return False


# ---------------------------------------------------------------------------
# Recordings: snmpsim-data, prepared for a side-by-side comparison
# ---------------------------------------------------------------------------

def snmpsim_venv(arg):
    venv = arg or os.environ.get("SNMPSIM_VENV") or "/opt/snmpsim-venv"
    responder = os.path.join(venv, "bin", "snmpsim-command-responder")
    data = sorted(glob.glob(os.path.join(venv, "lib", "python3*", "site-packages", "snmpsim_data", "data")))
    if not os.access(responder, os.X_OK) or not data:
        raise CompatError(
            f"snmpsim not found in {venv} (--snmpsim-venv or SNMPSIM_VENV): install it with "
            f"`apt-get install python3-venv python3-gdbm && /usr/bin/python3 -m venv {venv} && "
            f"{venv}/bin/pip install snmpsim==1.2.2 snmpsim-data==1.0.1`")
    return venv, responder, data[-1]


def list_recordings(data_dir):
    """community -> source file, for every recording of snmpsim-data."""
    found = {}
    for root, _, files in os.walk(data_dir):
        for f in files:
            for ext in (".snmprec.bz2", ".snmprec"):
                if f.endswith(ext):
                    rel = os.path.relpath(os.path.join(root, f), data_dir)
                    found[rel[:-len(ext)]] = os.path.join(root, f)
                    break
    return found


def is_large(path):
    size = os.path.getsize(path)
    return size > (LARGE_BYTES if path.endswith(".bz2") else 50 * LARGE_BYTES)


_HEX = re.compile(rb"(?:[0-9a-fA-F]{2})*")


def freeze(tag, value):
    """A record whose value snmpsim varies (variation modules) or cannot read
    as written, made constant: (tag, value, how) with how None when kept."""
    if b":" in tag:
        base, variation = tag.split(b":", 1)
        if variation == b"numeric":
            params = dict(p.split(b"=", 1) for p in value.split(b",") if b"=" in p)
            v = params.get(b"initial", params.get(b"min", b"0"))
            return base, str(int(float(v))).encode(), "numeric"
        if variation == b"writecache":
            m = re.search(rb"(?:^|,)value=(.*)$", value)
            return base, m.group(1) if m else b"", "writecache"
        return tag, value, None
    if tag.endswith(b"x") and not _HEX.fullmatch(value):
        return tag[:-1], value, "bad hex"
    return tag, value, None


def prepare_recording(src, dst):
    """Copies one recording as snmpsim serves it fast and right:
    decompressed (every seek in a .bz2 decompresses again), sorted by OID with
    repeated OIDs dropped (snmpsim walks in file order), values frozen.
    Returns (sorted OID tuples, statistics)."""
    opener = bz2.open if src.endswith(".bz2") else open
    records, stats = {}, {"records": 0, "repeated": 0, "frozen": 0, "unsorted": 0}
    prev = None
    with opener(src, "rb") as f:
        for line in f:
            line = line.rstrip(b"\r\n")
            if not line.strip() or line.lstrip().startswith(b"#") or b"|" not in line:
                continue
            parts = line.split(b"|", 2)
            if len(parts) != 3:
                continue
            try:
                key = tuple(int(x) for x in parts[0].strip(b".").split(b"."))
            except ValueError:
                continue
            if prev is not None and key < prev:
                stats["unsorted"] += 1
            prev = key
            if key in records:
                stats["repeated"] += 1
                continue
            tag, value, how = freeze(parts[1], parts[2])
            if how:
                stats["frozen"] += 1
            records[key] = parts[0] + b"|" + tag + b"|" + value
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    keys = sorted(records)
    with open(dst, "wb") as f:
        for k in keys:
            f.write(records[k] + b"\n")
    stats["records"] = len(keys)
    return keys, stats


class Agent:
    """One SNMP agent the exporters poll: a recording served by snmpsim, or
    this host's snmpd."""

    def __init__(self, name, community, kind, oids, stats=None):
        self.name, self.community, self.kind = name, community, kind
        self.oids = oids
        self.oidset = set(oids)
        self.stats = stats or {}
        self.address = None  # host:port, once its agent runs
        self.device = slug(community) if kind == "snmpsim" else "snmpd-host"
        self.modules = {}    # set key -> [module names with data]


# ---------------------------------------------------------------------------
# Expositions and their comparison (as tests/common/parity.rs does)
# ---------------------------------------------------------------------------

class Exposition:
    """(name, sorted non-empty labels) -> (value, value as written) and each
    family's TYPE; the exporters' own `snmp_*` series and promsnmp's derived
    `interface_utilization*` are left out."""

    def __init__(self):
        self.series = {}
        self.types = {}
        self.duplicates = []  # keys seen twice (after dropping empty label values)
        self.unchecked = 0    # series left out (a key 0.21 has no counterpart for)
        self.transformed = 0  # series a newer key applies to (Transform.apply)


def _parse_sample(line):
    i = 0
    n = len(line)
    while i < n and line[i] not in "{ ":
        i += 1
    name = line[:i]
    labels = []
    if i < n and line[i] == "{":
        i += 1
        while True:
            while i < n and line[i] in " ,":
                i += 1
            if i >= n:
                raise ValueError("unterminated label set")
            if line[i] == "}":
                i += 1
                break
            j = line.index("=", i)
            lname = line[i:j].strip()
            if line[j + 1] != '"':
                raise ValueError("label value not quoted")
            i = j + 2
            out = []
            while True:
                c = line[i]
                if c == "\\":
                    e = line[i + 1]
                    out.append("\n" if e == "n" else e)
                    i += 2
                elif c == '"':
                    i += 1
                    break
                else:
                    out.append(c)
                    i += 1
            labels.append((lname, "".join(out)))
    rest = line[i:].split()
    if not rest:
        raise ValueError("no value")
    return name, labels, rest[0]


def parse_value(raw):
    try:
        return float(raw)
    except ValueError:
        return float("nan")


def exposition(text):
    out = Exposition()
    for line in text.split("\n"):
        if not line:
            continue
        if line.startswith("#"):
            if line.startswith("# TYPE "):
                parts = line[7:].split(" ")
                if len(parts) >= 2:
                    out.types[parts[0]] = parts[1]
            continue
        try:
            name, labels, raw = _parse_sample(line)
        except (ValueError, IndexError):
            out.duplicates.append(("unparsable line", line[:200]))
            continue
        if name.startswith("snmp_") or name.startswith("interface_utilization"):
            continue
        key = (name, tuple(sorted((k, v) for k, v in labels if v != "")))
        if key in out.series:
            out.duplicates.append(key)
            continue
        out.series[key] = (parse_value(raw), raw)
    out.types = {k: v for k, v in out.types.items()
                 if not k.startswith("snmp_") and not k.startswith("interface_utilization")}
    return out


def show(key):
    name, labels = key
    return name + "{" + ",".join(f"{k}={json.dumps(v, ensure_ascii=True)}" for k, v in labels) + "}"


def fmt(v):
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e16:
        return str(int(v))
    return repr(v)


class Comparison:
    def __init__(self):
        self.matched = 0
        self.missing = []    # (key, reference values)
        self.extra = []      # (key, value)
        self.differing = []  # (key, promsnmp value, reference values, raw promsnmp value)
        self.types = []      # (name, promsnmp type, snmp_exporter type)
        self.intentional = []  # (reason, text)

    def counts(self):
        return self.matched, len(self.missing), len(self.extra), len(self.differing) + len(self.types)


def close(a, b, tolerance):
    if a == b or (math.isnan(a) and math.isnan(b)):
        return True
    return abs(a - b) <= tolerance * max(abs(a), abs(b))


def compare(before, ours, after, tolerance):
    """promsnmp's series against snmp_exporter's scrapes just before and just
    after: a value matches when it equals either, lies between them, or is
    within `tolerance` (relative) of either. A series in only one of the two
    snmp_exporter scrapes may be absent from promsnmp's."""
    c = Comparison()
    keys = set(before.series) | set(after.series)
    for key in sorted(keys):
        ref = [x[0] for x in (before.series.get(key), after.series.get(key)) if x is not None]
        got = ours.series.get(key)
        if got is None:
            if key in before.series and key in after.series:
                c.missing.append((key, ref))
            continue
        p = got[0]
        if any(close(a, p, tolerance) for a in ref) or (min(ref) <= p <= max(ref)):
            c.matched += 1
        else:
            c.differing.append((key, p, ref, got[1]))
    for key, (value, _) in ours.series.items():
        if key not in keys:
            c.extra.append((key, value))
    for name, kind in before.types.items():
        theirs = ours.types.get(name)
        if theirs is not None and theirs != kind and any(k[0] == name for k in ours.series):
            c.types.append((name, theirs, kind))
    return c


def explain(c, ours):
    """Moves the differences README's "Differences from snmp_exporter" names
    into c.intentional: Counter64 values above 2^53 (snmp_exporter wraps them)
    and label values with trailing NUL bytes (promsnmp drops them)."""
    still = []
    for key, p, ref, raw in c.differing:
        exact = int(raw) if raw and re.fullmatch(r"[0-9]+", raw) else None
        if exact is not None and exact >= COUNTER64_WRAP and any(a == float(exact % COUNTER64_WRAP) for a in ref):
            c.intentional.append(("counter64", f"{show(key)}: promsnmp {raw}, snmp_exporter "
                                               f"{' / '.join(fmt(a) for a in ref)} (= {raw} mod 2^53)"))
            c.matched += 1
        else:
            still.append((key, p, ref, raw))
    c.differing = still
    still = []
    extra = {k for k, _ in c.extra}
    for key, ref in c.missing:
        name, labels = key
        if any(v.endswith("\0") for _, v in labels):
            trimmed = (name, tuple(sorted((k, v.rstrip("\0")) for k, v in labels if v.rstrip("\0") != "")))
            if trimmed in ours.series:
                value = ours.series[trimmed][0]
                where = [k for k, v in labels if v.endswith("\0")]
                if any(close(a, value, 1e-9) for a in ref) or min(ref) <= value <= max(ref):
                    c.intentional.append(("nul", f"{show(key)}: label {', '.join(where)} without its "
                                                 f"trailing NUL bytes"))
                    c.matched += 1
                    extra.discard(trimmed)
                    continue
        still.append((key, ref))
    c.missing = still
    c.extra = [(k, v) for k, v in c.extra if k in extra]


# ---------------------------------------------------------------------------
# snmp_exporter's failures
# ---------------------------------------------------------------------------

ERROR_KINDS = [
    ("duplicate", re.compile(r"was collected before with the same name and label values"),
     "duplicate series (one metric name and label set twice): snmp_exporter 0.21 fails the whole scrape"),
    ("utf8", re.compile(r"not valid UTF-8"),
     "a label value that is not valid UTF-8: snmp_exporter 0.21 fails the whole scrape"),
    ("help", re.compile(r"has help .* but should have"),
     "two metrics of one name with different help texts in the module: snmp_exporter 0.21 fails the scrape"),
    ("timeout", re.compile(r"request timeout|timeout"), "SNMP timeout"),
]


def readable(text):
    """Text with the bytes that are not UTF-8 (kept as surrogates when the
    body was decoded) shown as \\xNN escapes."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def exporter_errors(body):
    """The error lines of a failed snmp_exporter scrape (its body lists them
    as `* …`)."""
    body = readable(body)
    lines = [line[2:] for line in body.splitlines() if line.startswith("* ")]
    if not lines:  # one error: no list
        lines = [line for line in body.strip().splitlines()[1:] if line.strip()]
    return lines or [body.strip()[:300]]


def error_kind(line):
    for kind, rx, _ in ERROR_KINDS:
        if rx.search(line):
            return kind
    return "other"


def error_series(line):
    """(metric name, {label: value}) named in a 0.21 error line, if any."""
    m = re.search(r"error for metric ([A-Za-z_:][A-Za-z0-9_:]*) with labels", line)
    if m:
        return m.group(1), {}
    m = re.search(r'collected metric "?([A-Za-z_:][A-Za-z0-9_:]*)"? (.*?)(?: was collected before| has help|$)', line)
    if not m:
        m = re.search(r'fqName: "([^"]+)"', line)
        return (m.group(1), {}) if m else (None, {})
    labels = {}
    for lm in re.finditer(r'name:"([^"]*)" value:"((?:[^"\\]|\\.)*)"', m.group(2)):
        labels[lm.group(1)] = lm.group(2).encode("latin-1", "backslashreplace").decode("unicode_escape", "replace") \
            if "\\" in lm.group(2) else lm.group(2)
    return m.group(1), labels


# ---------------------------------------------------------------------------
# The programs: snmpsim, snmpd, snmp_exporter, promsnmp
# ---------------------------------------------------------------------------

def snmp_env(workdir):
    return dict(os.environ, MIBS="", SNMPCONFPATH=workdir, SNMP_PERSISTENT_DIR=os.path.join(workdir, "persist"))


def agent_answers(addr, community, workdir):
    """Whether an agent answers a v2c GETNEXT for `community`."""
    p = subprocess.run([program("snmpbulkwalk"), "-v2c", "-c", community, "-r0", "-t1", "-Cr1", "-On",
                        addr, "1.3.6.1.2.1.1.2"], capture_output=True, text=True, timeout=10,
                       env=snmp_env(workdir))
    return p.returncode == 0 and "Timeout" not in p.stderr


# snmpsim's command responder, started by the venv's python with pysnmp's
# GETBULK answer limit set first: snmpsim 1.2.2's --max-var-binds sets an
# attribute pysnmp 7 no longer reads (`maxVarBinds`; it reads `max_varbinds`,
# 64), and with that limit pysnmp leaves a GETBULK for more than 64 columns
# without non-repeaters unanswered (it computes 0 repetitions, then fails on
# its own empty answer).
SNMPSIM_BOOT = """
import sys
from pysnmp.entity.rfc3413 import cmdrsp
assert hasattr(cmdrsp.BulkCommandResponder, "max_varbinds"), "pysnmp without BulkCommandResponder.max_varbinds"
cmdrsp.BulkCommandResponder.max_varbinds = int(sys.argv.pop(1))
from snmpsim.commands.responder import main
sys.argv[0] = "snmpsim-command-responder"
sys.exit(main())
"""


def start_snmpsim(stack, venv, workdir, index, agents, prepared, max_varbinds):
    """One snmpsim process serving `agents` (hard links to the prepared files)
    on its own port and data directory."""
    data = os.path.join(workdir, f"snmpsim-{index}", "data")
    cache = os.path.join(workdir, f"snmpsim-{index}", "cache")
    for a in agents:
        dst = os.path.join(data, a.community + ".snmprec")
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        os.link(prepared[a.community], dst)
    port = free_port(socket.SOCK_DGRAM)
    env = dict(os.environ, SNMPSIM_ALLOW_ROOT="true")  # snmpsim refuses root otherwise
    log_file = os.path.join(workdir, f"snmpsim-{index}", "snmpsim.log")
    proc = start_process(stack, f"snmpsim {index}",
                         [os.path.join(venv, "bin", "python3"), "-c", SNMPSIM_BOOT, str(max_varbinds),
                          f"--data-dir={data}", f"--cache-dir={cache}",
                          f"--agent-udpv4-endpoint=127.0.0.1:{port}", "--log-level=error",
                          f"--logging-method=file:{log_file}"],
                         os.path.join(workdir, f"snmpsim-{index}", "snmpsim.out"), env=env)
    addr = f"127.0.0.1:{port}"
    wait_until(f"snmpsim {index} on {addr}", proc, lambda: agent_answers(addr, agents[0].community, workdir), 600)
    for a in agents:
        a.address = addr
    return proc


def start_snmpd(stack, workdir):
    """net-snmp's snmpd on 127.0.0.1 (this host's MIBs: HOST-RESOURCES, UCD,
    IF-MIB), community public. Returns (process, address)."""
    d = os.path.join(workdir, "snmpd")
    os.makedirs(os.path.join(d, "persist"))
    port = free_port(socket.SOCK_DGRAM)
    conf = os.path.join(d, "snmpd.conf")
    with open(conf, "w") as f:
        f.write(f"agentAddress udp:127.0.0.1:{port}\nview all included .1\n"
                f"rocommunity {HOST_COMMUNITY} 127.0.0.1 -V all\n"
                "sysName compat-host\nsysContact compat@example.org\nsysLocation compat\n")
    proc = start_process(stack, "snmpd",
                         [program("snmpd"), "-f", "-Lf", os.path.join(d, "snmpd.log"), "-C", "-c", conf,
                          "-I", "-smux", "-p", os.path.join(d, "snmpd.pid")],
                         os.path.join(d, "snmpd.out"), env=snmp_env(d))
    addr = f"127.0.0.1:{port}"
    wait_until(f"snmpd on {addr}", proc, lambda: agent_answers(addr, HOST_COMMUNITY, d), 20)
    return proc, addr


def walk_oids(addr, community, workdir):
    """Every OID the agent has (one bulk walk of the whole tree), sorted."""
    out = run([program("snmpbulkwalk"), "-v2c", "-c", community, "-On", "-Oq", "-Cr50", "-t5", addr, "1"],
              timeout=300, env=snmp_env(workdir))
    oids = set()
    for line in out.splitlines():
        m = re.match(r"\.(1(?:\.[0-9]+)+) ", line + " ")
        if m:
            oids.add(oid_tuple(m.group(1)))
    return sorted(oids)


def exporter_version():
    out = subprocess.run([program("prometheus-snmp-exporter"), "--version"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, timeout=10).stdout.split("\n")[0]
    return out.replace("snmp_exporter, version ", "") or "?"


def write_exporter_config(path, s, pairs):
    """The 0.21 file: one full copy of the module per (module, agent) pair,
    named <module>__<community>, with the agent's credentials (v2c and its
    community). No YAML anchors: 0.21 refuses a file with many aliases."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"# Written by compat/run.py from snmp_exporter's {s.title} for snmp_exporter 0.21.\n")
        for module, agent in pairs:
            m = dict(s.exporter_modules[module])
            m["version"] = Plain("2")
            m["auth"] = {"community": agent.community}
            name = f"{module}__{slug(agent.community)}"
            f.write("\n".join(yaml_dump({name: m})) + "\n")


def start_exporter(stack, workdir, s, pairs):
    d = os.path.join(workdir, f"snmp_exporter-{s.key}")
    os.makedirs(d)
    conf = os.path.join(d, "snmp.yml")
    write_exporter_config(conf, s, pairs)
    port = free_port()
    proc = start_process(stack, f"snmp_exporter ({s.key})",
                         [program("prometheus-snmp-exporter"), f"--config.file={conf}",
                          f"--web.listen-address=127.0.0.1:{port}", "--log.level=error"],
                         os.path.join(d, "snmp_exporter.log"))
    wait_until(f"snmp_exporter ({s.key})", proc, lambda: http_request(port, "GET", "/", timeout=2)[0] == 200, 180)
    proc.port = port
    return proc


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
        raise CompatError("`cargo` not found (install Rust: https://rustup.rs)")
    log("cargo build --release")
    try:
        p = subprocess.run([cargo, "build", "--release"], cwd=REPO, env=env, timeout=1800, **kw)
    except subprocess.TimeoutExpired:
        raise CompatError("cargo build --release did not finish within 30 min")
    if p.returncode != 0:
        raise CompatError("cargo build --release failed")
    binary = os.path.join(REPO, "target", "release", "promsnmp")
    if not os.path.isfile(binary):
        raise CompatError(f"{binary} missing after the build")
    return binary


def start_promsnmp(stack, binary, workdir, s, agents):
    """promsnmp reading the reference file itself, one inventory device per
    agent with the modules it has data for; waits for the first poll of
    every device (promsnmp polls new devices at once) to be over."""
    d = os.path.join(workdir, f"promsnmp-{s.key}")
    os.makedirs(d)
    exe = os.path.join(d, "promsnmp")
    shutil.copy2(binary, exe)  # a rebuild of target/ during the run cannot swap it
    port = free_port()
    env = dict(os.environ, SERVER_PORT=str(port), PROMSNMP_BIND_ADDRESS="127.0.0.1",
               PROM_INV_FILE=os.path.join(d, "inventory.json"), PROM_ENCRYPT_KEY="compat-key-16byt",
               DISCOVERY_CRON="-", COLLECTION_INTERVAL="86400000", RUST_LOG="warn",
               PROMSNMP_MODULES_FILE=s.promsnmp_file)
    proc = start_process(stack, f"promsnmp ({s.key})", [exe], os.path.join(d, "promsnmp.log"), env=env, cwd=d)
    wait_until(f"promsnmp ({s.key})", proc,
               lambda: http_request(port, "GET", "/actuator/health", timeout=2)[0] == 200, 60)
    proc.port = port
    devices = []
    for a in agents:
        if not a.modules.get(s.key):
            continue
        host, aport = a.address.rsplit(":", 1)
        devices.append({"sysName": a.device, "modules": a.modules[s.key],
                        "agents": [{"type": "snmp-community", "endpoint": {"address": host, "port": int(aport)},
                                    "version": 1, "timeout": 5000, "retries": 3, "readCommunity": a.community}]})
    rounds_before = self_metric(port, "promsnmp_collection_rounds_total") or 0
    status, _, body = http_request(port, "POST", "/promsnmp/inventory", {"Content-Type": "application/json"},
                                json.dumps({"devices": devices}).encode())
    if status != 200:
        raise CompatError(f"promsnmp ({s.key}): POST /promsnmp/inventory: {status} {body[:1000]!r}")
    # promsnmp polls new devices in its next collection round (within 5 s);
    # the comparisons start once that round is over.
    posted = time.monotonic()
    while time.monotonic() < posted + 300:
        check_alive(proc)
        rounds = self_metric(port, "promsnmp_collection_rounds_total")
        running = self_metric(port, "promsnmp_polls_in_flight")
        if running == 0 and (rounds is None and time.monotonic() > posted + 10
                             or rounds is not None and rounds > rounds_before):
            break
        time.sleep(0.5)
    else:
        log(f"note: promsnmp ({s.key}) still polling its devices' first round after 300 s; going on")
    return proc


def self_metric(port, name):
    """A series without labels of promsnmp's /actuator/prometheus, or None."""
    text = http_request(port, "GET", "/actuator/prometheus", timeout=10)[2].decode("utf-8", "replace")
    m = re.search(rf"^{re.escape(name)}(?:{{}})? (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


# ---------------------------------------------------------------------------
# One (module, agent) pair
# ---------------------------------------------------------------------------

def served_instead(errors, ours):
    """What promsnmp served for the series snmp_exporter's errors name."""
    out = []
    for line in errors[:20]:
        kind = error_kind(line)
        name, labels = error_series(line)
        if not name:
            continue
        same = [(k, v) for k, v in ours.series.items() if k[0] == name]
        if kind == "duplicate":
            want = tuple(sorted((k, v) for k, v in labels.items() if v != ""))
            hit = ours.series.get((name, want))
            if hit is not None:
                text = f"{show((name, want))} once, value {hit[1]}"
            else:
                text = f"no {show((name, want))} ({len(same)} {name} series)"
            if text not in out:
                out.append(text)
        elif kind == "utf8":
            shown = ", ".join(f"{show(k)} {v[1]}" for k, v in same[:2])
            text = f"{len(same)} {name} series: {shown}" if same else f"no {name} series"
            if text not in out:
                out.append(text)
        elif kind == "help":
            text = f"{len(same)} {name} series (one family, the first metric's help)"
            if text not in out:
                out.append(text)
    return out[:5]


def run_pair(ctx, s, module, agent):
    exp, prom = ctx["exporters"][s.key], ctx["promsnmp"][s.key]
    ename = f"{module}__{slug(agent.community)}"
    epath = "/snmp?" + urllib.parse.urlencode({"target": agent.address, "module": ename})
    ppath = "/snmp?" + urllib.parse.urlencode({"target": agent.device, "module": module, "live": "true"})
    r = {"set": s.key, "module": module, "agent": agent.name, "kind": agent.kind}
    t = time.monotonic()
    st_b, body_b = scrape(exp.port, epath, ctx["timeout"])
    r["exporter_seconds"] = time.monotonic() - t
    t = time.monotonic()
    st_p, body_p = scrape(prom.port, ppath, ctx["timeout"])
    r["promsnmp_seconds"] = time.monotonic() - t
    ours = exposition(body_p) if st_p == 200 else None
    r["promsnmp_status"] = st_p
    r["promsnmp_series"] = len(ours.series) if ours else None
    r["promsnmp_duplicates"] = [show(k) if isinstance(k[1], tuple) else k[1] for k in ours.duplicates] if ours else []
    if st_p != 200:
        r["promsnmp_error"] = readable(body_p.strip()[-500:])
    r["exporter_status"] = st_b
    if st_b != 200:
        r["exporter_errors"] = exporter_errors(body_b)
        r["exporter_body"] = readable(body_b[-3000:])
        r["exporter_series"] = None
        r["served_instead"] = served_instead(r["exporter_errors"], ours) if ours else []
        return r
    before = exposition(body_b)
    st_a, body_a = scrape(exp.port, epath, ctx["timeout"])
    after = exposition(body_a) if st_a == 200 else before
    r["exporter_series"] = len(before.series)
    r["exporter_duplicates"] = len(before.duplicates)
    if ours is None:
        return r
    transform = s.transforms.get(module)
    if transform is not None and not transform.empty():
        before, after = transform.apply(before), transform.apply(after)
        r["unchecked"] = before.unchecked
        r["transformed"] = before.transformed
        ours.series = {k: v for k, v in ours.series.items() if k[0] not in transform.unchecked}
    tolerance = 0.05 if agent.kind == "snmpd" else 1e-9
    c = compare(before, ours, after, tolerance)
    explain(c, ours)
    r["comparison"] = c
    return r


def worker(ctx, jobs, results, lock, progress):
    for s, module, agent in jobs:
        if ctx["stop"].is_set():
            return
        try:
            r = run_pair(ctx, s, module, agent)
        except Exception as e:  # noqa: BLE001 - reported with the pair, the run goes on
            r = {"set": s.key, "module": module, "agent": agent.name, "kind": agent.kind,
                 "harness_error": f"{type(e).__name__}: {e}"}
        with lock:
            results.append(r)
            progress[0] += 1
            if progress[0] % 50 == 0 or progress[0] == progress[1]:
                log(f"{progress[0]}/{progress[1]} pairs compared")


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def dist_version(venv, package):
    for path in glob.glob(os.path.join(venv, "lib", "python3*", "site-packages", f"{package}-*.dist-info")):
        m = re.search(rf"{package}-([^-]+)\.dist-info$", path)
        if m:
            return m.group(1)
    return "?"


def run_info(args, binary, agents, sets, large, timings, started, built):
    cpu = ""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.*)$", f.read(), re.M)
            cpu = m.group(1) if m else ""
    debian = ""
    with contextlib.suppress(OSError):
        with open("/etc/debian_version") as f:
            debian = "Debian " + f.read().strip()
    git = ["git", "-C", REPO, "-c", f"safe.directory={REPO}"]
    commit = run(git + ["rev-parse", "--short", "HEAD"], check=False).strip() or "unknown"
    dirty = run(git + ["status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"], check=False).strip()
    with open(os.path.join(REPO, "Cargo.toml")) as f:
        version = re.search(r'^version\s*=\s*"([^"]+)"', f.read(), re.M).group(1)
    venv = snmpsim_venv(args.snmpsim_venv)[0]
    snmpd_v = re.search(r"NET-SNMP version:\s*(\S+)", run([program("snmpd"), "-v"], check=False))
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} CPUs ({cpu}), {debian}, Linux {platform.release()}",
        "promsnmp": (f"binary `{binary}` (--binary)" if args.binary else
                     f"{version} (git {commit}{', uncommitted changes in src/' if dirty else ''}, "
                     f"`cargo build --release`)"),
        "exporter": exporter_version(),
        "snmpsim": f"snmpsim {dist_version(venv, 'snmpsim')} (pysnmp {dist_version(venv, 'pysnmp')}), "
                   f"snmpsim-data {dist_version(venv, 'snmpsim_data')}",
        "snmpd": snmpd_v.group(1) if snmpd_v else "?",
        "python": platform.python_version(),
        "command": "python3 compat/run.py" + ("".join(" " + shlex.quote(a) for a in sys.argv[1:])),
        "large": large if not args.large else [],
        "timings": timings,
        "build": built - started,
        "total": time.monotonic() - started,
        "records": sum(a.stats.get("records", 0) for a in agents),
        "frozen": sum(a.stats.get("frozen", 0) for a in agents),
        "unsorted": sum(1 for a in agents if a.stats.get("unsorted")),
        "repeated": sum(1 for a in agents if a.stats.get("repeated")),
        "agents": len(agents),
    }


def pair_note(r):
    if "harness_error" in r:
        return "harness error: " + r["harness_error"]
    notes = []
    if r.get("exporter_status") != 200:
        kinds = sorted({error_kind(e) for e in r.get("exporter_errors", [])})
        notes.append(f"snmp_exporter {r.get('exporter_status')} ({', '.join(kinds)})")
    if r.get("promsnmp_status") != 200:
        notes.append(f"promsnmp {r.get('promsnmp_status')}")
    c = r.get("comparison")
    if c is not None:
        kinds = sorted({k for k, _ in c.intentional})
        if kinds:
            notes.append("intentional: " + ", ".join(INTENTIONAL[k][0] for k in kinds))
    if r.get("unchecked"):
        notes.append(f"{r['unchecked']} unchecked")
    return "; ".join(notes)


INTENTIONAL = {
    "counter64": ("Counter64 above 2^53",
                  "Counter64 values are served as they are; snmp_exporter wraps them at 2^53 "
                  "(`--snmp.wrap-large-counters`, on by default)"),
    "nul": ("trailing NUL",
            "trailing NUL bytes of DisplayStrings are dropped; snmp_exporter keeps them in the label value"),
}


def cells(r):
    c = r.get("comparison")
    if c is None:
        n = r.get("promsnmp_series")
        return ["–", "–", "–", "–", "–" if n is None else n]
    m, miss, extra, diff = c.counts()
    return [r.get("exporter_series"), m, miss, extra, diff]


def console_table(sets, results):
    order = {s.key: i for i, s in enumerate(sets)}
    rows = sorted(results, key=lambda r: (order[r["set"]], r["module"], r["agent"]))
    lines = [f"{'file':8} {'module':22} {'agent':42} {'0.21':>6} {'match':>6} {'miss':>5} {'extra':>5} "
             f"{'diff':>5}  note"]
    for r in rows:
        c = cells(r)
        lines.append(f"{r['set']:8} {r['module'][:22]:22} {r['agent'][:42]:42} {str(c[0]):>6} {str(c[1]):>6} "
                     f"{str(c[2]):>5} {str(c[3]):>5} {str(c[4]):>5}  {pair_note(r)}")
    return "\n".join(lines)


def totals(results):
    t = {"pairs": len(results), "compared": 0, "matched": 0, "missing": 0, "extra": 0, "differing": 0,
         "exporter_failed": 0, "promsnmp_failed": 0, "harness": 0, "exact": 0, "intentional": 0}
    for r in results:
        if "harness_error" in r:
            t["harness"] += 1
            continue
        if r.get("exporter_status") != 200:
            t["exporter_failed"] += 1
        if r.get("promsnmp_status") != 200:
            t["promsnmp_failed"] += 1
        c = r.get("comparison")
        if c is None:
            continue
        t["compared"] += 1
        m, miss, extra, diff = c.counts()
        t["matched"] += m
        t["missing"] += miss
        t["extra"] += extra
        t["differing"] += diff
        t["intentional"] += len(c.intentional)
        if not (miss or extra or diff):
            t["exact"] += 1
    return t


def render(args, info, sets, agents, results):
    ti = info["timings"]
    out = ["# promsnmp compatibility with snmp_exporter", "",
           f"Measured {info['date']} with", "", "```sh", info["command"] + "        # as root", "```", "",
           f"Machine: {info['machine']}. promsnmp {info['promsnmp']}; snmp_exporter {info['exporter']} (Debian "
           f"package `prometheus-snmp-exporter`); {info['snmpsim']}; net-snmp {info['snmpd']}; "
           f"Python {info['python']}. The run took {info['total']:.0f} s: build {info['build']:.0f} s, "
           f"preparing the recordings {ti.get('prepare', 0):.0f} s, starting and walking snmpd "
           f"{ti.get('host', 0):.0f} s, finding the pairs with data {ti.get('plan', 0):.0f} s, snmpsim's start "
           f"{ti.get('snmpsim', 0):.0f} s, the exporters' start with promsnmp's first poll of every device "
           f"{ti.get('start', 0):.0f} s, the comparisons {ti.get('compare', 0):.0f} s.", ""]
    sim = [a for a in agents if a.kind == "snmpsim"]
    out += ["## How", "",
            f"Agents: {len(sim)} recordings of snmpsim-data served by snmpsim ({info['records']:,} records; "
            "decompressed, sorted by OID, repeated OIDs dropped"
            + (f": {info['unsorted']} of them were not in OID order, {info['repeated']} repeated OIDs" if sim else "")
            + f", {info['frozen']} changing values frozen: snmpsim's `numeric` variation at its initial value, "
              "`writecache` at its value)"
            + ("" if args.no_host else ", and this host's net-snmp `snmpd` (HOST-RESOURCES, UCD, IF-MIB)")
            + ". snmpsim runs pysnmp with a GETBULK answer limit of "
            f"{args.agent_max_varbinds} varbinds (`--agent-max-varbinds`): pysnmp's own limit, 64, leaves a "
            "request for more columns unanswered, which promsnmp's polls of devices with many modules ask for "
            "(it then asks for less, after a timeout) and snmp_exporter's one-column walks do not (compat/README.md)." + (f" Left out as large (`--large` adds them): {', '.join(info['large'])}." if info["large"] else ""),
            "",
            "Modules: the 22 of snmp_exporter's `snmp-v0.21.yml`, and every module of the current `snmp.yml`. "
            "A (module, agent) pair is compared when the agent has an OID under one of the module's metrics "
            "and walks (or one of its gets). snmp_exporter 0.21 reads, per reference file, a file with one full "
            "copy of the module per pair, named `<module>__<community>`, with the agent's credentials (v2c, "
            "its community; the 0.21 file's `version: 1` and `auth` are the auth part, which promsnmp takes "
            "from its inventory); the current modules are converted to the 0.21 layout, and those using keys "
            "0.21 lacks are given to it without them (see *Newer keys*). promsnmp reads the reference files "
            "themselves (one process per file), with one inventory device per agent (its community; the "
            "modules it has data for).", "",
            "Per pair: snmp_exporter `/snmp?target=<agent>&module=<module>__<community>`, promsnmp "
            "`/snmp?target=<device>&module=<module>&live=true`, snmp_exporter again. Series are compared by "
            "name and label set (empty label values dropped, as Prometheus does), TYPE and value: equal, "
            "between the two snmp_exporter values, or within a relative 1e-9 (5 % on `snmpd`, whose values "
            "move). Left out: the exporters' own `snmp_*` series and promsnmp's derived "
            "`interface_utilization*`. *missing*: in both snmp_exporter scrapes, not in promsnmp's; *extra*: "
            "in promsnmp's only; *differing*: value or TYPE.", ""]
    t_all = totals(results)
    rows = []
    for s in sets:
        t = totals([r for r in results if r["set"] == s.key])
        rows.append([s.title, t["pairs"], t["compared"], t["exact"], f"{t['matched']:,}", t["missing"], t["extra"],
                     t["differing"], t["intentional"], t["exporter_failed"], t["promsnmp_failed"] + t["harness"]])
    rows.append(["**all**", t_all["pairs"], t_all["compared"], t_all["exact"], f"{t_all['matched']:,}",
                 t_all["missing"], t_all["extra"], t_all["differing"], t_all["intentional"],
                 t_all["exporter_failed"], t_all["promsnmp_failed"] + t_all["harness"]])
    out += ["## Totals", "",
            table(["file", "pairs", "compared", "exactly equal", "series matched", "missing", "extra",
                   "differing", "of the matched: intentional differences", "snmp_exporter failed",
                   "promsnmp failed"], rows), ""]
    out += render_modules(sets, results)
    out += render_newer(sets, results)
    out += render_differences(results, {s.key: i for i, s in enumerate(sets)})
    out += ["## Every pair", "",
            "snmp_exporter's series / matched / missing / extra / differing (– : not compared, then the last "
            "column is promsnmp's series).", ""]
    order = {s.key: i for i, s in enumerate(sets)}
    rows = []
    for r in sorted(results, key=lambda r: (order[r["set"]], r["module"], r["agent"])):
        rows.append([dict((s.key, s.title) for s in sets)[r["set"]], r["module"], r["agent"]] + cells(r)
                    + [pair_note(r)])
    out += [table(["file", "module", "agent", "snmp_exporter", "matched", "missing", "extra", "differing", "note"],
                  rows), ""]
    return "\n".join(out)


def render_modules(sets, results):
    out = ["## Modules", ""]
    rows = []
    for s in sets:
        for module in s.modules:
            rs = [r for r in results if r["set"] == s.key and r["module"] == module]
            if not rs:
                continue
            t = totals(rs)
            rows.append([s.title, module, len(rs), t["exact"], f"{t['matched']:,}", t["missing"], t["extra"],
                         t["differing"], t["exporter_failed"], t["promsnmp_failed"] + t["harness"]])
    out += [table(["file", "module", "agents with data", "exactly equal", "series matched", "missing", "extra",
                   "differing", "snmp_exporter failed", "promsnmp failed"], rows), ""]
    for s in sets:
        none = [m for m in s.modules if not any(r["set"] == s.key and r["module"] == m for r in results)]
        if none:
            out += [f"No agent has data for these modules of {s.title}: {', '.join(none)}.", ""]
    return out


def render_newer(sets, results):
    out = []
    for s in sets:
        if not s.dropped:
            continue
        out += ["## Newer keys", "",
                f"Modules of {s.title} using keys or types snmp_exporter 0.21 lacks. 0.21 is given them "
                "without those keys; promsnmp reads them whole, and its series are compared with 0.21's "
                "series transformed as the key says (scale and offset as the current snmp_exporter applies "
                "them: value × scale when scale is not 0, then + offset).", ""]
        rows = []
        for module, keys in sorted(s.dropped.items()):
            rs = [r for r in results if r["set"] == s.key and r["module"] == module]
            checked = sum(r["comparison"].matched for r in rs if r.get("comparison"))
            changed = sum(r.get("transformed", 0) for r in rs if r.get("comparison"))
            how = "; ".join(f"{k}: {NEWER_KEYS.get(k, 'see datetime_pattern' if k == 'type ParseDateAndTime' else 'not checked')}"
                            for k in sorted(keys))
            rows.append([module, ", ".join(f"{k} ×{n}" for k, n in sorted(keys.items())), how,
                         (f"{len(rs)} agent{'s' if len(rs) != 1 else ''}: {checked:,} series matched, "
                          f"{changed:,} of them under these keys") if rs else "no agent has data: not exercised"])
        out += [table(["module", "keys 0.21 lacks", "how promsnmp's series are checked", "exercised"], rows), ""]
        used = {k for keys in s.dropped.values() for k in keys}
        not_checked = sorted(k for k in NEWER_KEYS if k in UNCHECKABLE_KEYS and k in used)
        unused = sorted(k for k in NEWER_KEYS if k not in used and not k.startswith("lookup"))
        notes = []
        if not_checked:
            notes.append(f"Not checked (0.21 has no counterpart): {', '.join(not_checked)}.")
        if unused:
            notes.append(f"Not used by any module of {s.title}: {', '.join(unused)}.")
        unexercised = sorted({k for m, keys in s.dropped.items() for k in keys
                              if not any(r["set"] == s.key and r["module"] == m and r.get("comparison")
                                         for r in results)}
                             - {k for m, keys in s.dropped.items() for k in keys
                                if any(r["set"] == s.key and r["module"] == m and r.get("comparison")
                                       for r in results)})
        if unexercised:
            notes.append(f"Used only by modules no agent has data for, so not exercised: {', '.join(unexercised)}.")
        if notes:
            out += [" ".join(notes), ""]
    return out


def render_differences(results, order):
    out = ["## Differences", ""]
    intentional = {}
    for r in results:
        c = r.get("comparison")
        for kind, text in (c.intentional if c else []):
            intentional.setdefault(kind, []).append((r, text))
    out += ["### Intentional", "",
            "Listed in README's *Differences from snmp_exporter*; counted as matched above.", ""]
    if not intentional:
        out += ["None seen.", ""]
    for kind, items in sorted(intentional.items()):
        pairs = {}
        for r, text in items:
            pairs.setdefault((r["set"], r["module"], r["agent"]), []).append(text)
        out += [f"**{INTENTIONAL[kind][0]}** ({INTENTIONAL[kind][1]}): {len(items)} series in {len(pairs)} pairs.", ""]
        for (s, module, agent), texts in sorted(pairs.items(), key=lambda kv: (order[kv[0][0]], kv[0][1:])):
            out.append(f"* {module} ({s}) × {agent}: {len(texts)} series, e.g. `{texts[0]}`")
        out.append("")
    failed = [r for r in results if r.get("exporter_status") not in (200, None)]
    out += ["### snmp_exporter 0.21 failures", "",
            "Pairs where snmp_exporter answered an error; nothing to compare, so what promsnmp served is "
            "shown instead.", ""]
    if failed:
        rows = []
        for r in sorted(failed, key=lambda r: (order[r["set"]], r["module"], r["agent"])):
            errs = r.get("exporter_errors", [])
            kinds = sorted({error_kind(e) for e in errs})
            reason = "; ".join(dict((k, d) for k, _, d in ERROR_KINDS).get(k, "other") for k in kinds)
            first = errs[0][:300] if errs else ""
            served = (f"HTTP {r.get('promsnmp_status')}, {r.get('promsnmp_series')} series"
                      + (": " + "; ".join(r.get("served_instead") or []) if r.get("served_instead") else ""))
            rows.append([r["module"], r["set"], r["agent"], f"HTTP {r['exporter_status']}: {reason} "
                         f"({len(errs)} error{'s' if len(errs) != 1 else ''}, first: `{first}`)", served])
        out += [table(["module", "file", "agent", "snmp_exporter 0.21", "promsnmp served"], rows), ""]
    else:
        out += ["None.", ""]
    out += ["### Not explained", "",
            "Series missing, extra or differing that no documented difference explains.", ""]
    bad = [r for r in results if "harness_error" in r or r.get("promsnmp_status") not in (200, None)
           or (r.get("comparison") and any(r["comparison"].counts()[1:]))
           or r.get("promsnmp_duplicates")]
    if not bad:
        out += ["None.", ""]
    for r in sorted(bad, key=lambda r: (order[r["set"]], r["module"], r["agent"])):
        out.append(f"**{r['module']}** ({r['set']}) × **{r['agent']}**")
        out.append("")
        if "harness_error" in r:
            out.append(f"* harness error: {r['harness_error']}")
        if r.get("promsnmp_status") not in (200, None):
            out.append(f"* promsnmp HTTP {r['promsnmp_status']}: `{r.get('promsnmp_error', '')[:300]}`")
        for d in r.get("promsnmp_duplicates") or []:
            out.append(f"* promsnmp served twice: `{d}`")
        c = r.get("comparison")
        if c:
            items = ([f"missing `{show(k)}` (snmp_exporter {' / '.join(fmt(a) for a in ref)})" for k, ref in c.missing]
                     + [f"extra `{show(k)}` = {fmt(v)}" for k, v in c.extra]
                     + [f"differing `{show(k)}`: promsnmp {raw or fmt(p)}, snmp_exporter "
                        f"{' / '.join(fmt(a) for a in ref)}" for k, p, ref, raw in c.differing]
                     + [f"TYPE of {n}: promsnmp {a}, snmp_exporter {b}" for n, a, b in c.types])
            for item in items[:25]:
                out.append(f"* {item}")
            if len(items) > 25:
                out.append(f"* … and {len(items) - 25} more")
        out.append("")
    return out


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

def choose_recordings(args, available):
    wanted = []
    for item in (args.recordings.split(",") if args.recordings else ["default"]):
        item = item.strip()
        if not item:
            continue
        if item == "default":
            names = DEFAULT_RECORDINGS
        elif item == "all":
            names = sorted(available)
        else:
            names = sorted(n for n in available if fnmatch.fnmatchcase(n, item))
            if not names:
                raise CompatError(f"--recordings: no recording matches {item!r} (names as in snmpsim-data, "
                                  f"e.g. network/switch/cisco-c3560; globs work)")
        for n in names:
            if n not in available:
                raise CompatError(f"recording {n} is not in snmpsim-data")
            if n not in wanted:
                wanted.append(n)
    large = [n for n in wanted if is_large(available[n])]
    if not args.large:
        wanted = [n for n in wanted if n not in large]
    return wanted, large


def prepare(args, available, names, workdir):
    """Prepares the recordings, --jobs at a time (bz2 releases the GIL while
    it decompresses); returns them as agents."""
    prepared, agents = {}, {}
    lock = threading.Lock()
    todo = list(names)

    def one():
        while True:
            with lock:
                if not todo:
                    return
                name = todo.pop(0)
            dst = os.path.join(workdir, "recordings", name + ".snmprec")
            oids, stats = prepare_recording(available[name], dst)
            with lock:
                prepared[name] = dst
                agents[name] = Agent(name, name, "snmpsim", oids, stats)
    threads = [threading.Thread(target=one, daemon=True) for _ in range(max(1, args.jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    missing = [n for n in names if n not in agents]
    if missing:
        raise CompatError(f"could not prepare {missing}")
    return prepared, [agents[n] for n in names]


def assign(agents, sets, jobs):
    """Spreads the agents over `jobs` snmpsim processes (and workers) by
    their work: the series their pairs read, roughly their records."""
    load = [0] * jobs
    groups = [[] for _ in range(jobs)]
    weight = {a.name: sum(len(a.modules.get(s.key, [])) for s in sets) * max(1, len(a.oids)) for a in agents}
    for a in sorted(agents, key=lambda a: -weight[a.name]):
        i = load.index(min(load))
        groups[i].append(a)
        load[i] += weight[a.name]
    return groups


def on_sigterm(signum, frame):
    raise KeyboardInterrupt("SIGTERM")


def main():
    ap = argparse.ArgumentParser(description="promsnmp against snmp_exporter 0.21 on recorded devices "
                                             "(writes COMPATIBILITY.md; run as root)")
    ap.add_argument("--recordings", metavar="LIST",
                    help="comma-separated snmpsim-data recordings (e.g. network/switch/cisco-c3560; globs "
                         "work; `default` = the test set, `all` = every recording); default: the test set")
    ap.add_argument("--large", action="store_true",
                    help=f"also the large recordings (.bz2 over {LARGE_BYTES // 1000_000} MB: several 100,000 "
                         "records each; minutes more)")
    ap.add_argument("--modules", metavar="LIST", help="only these modules (comma-separated; both files)")
    ap.add_argument("--no-host", action="store_true", help="without this host's snmpd")
    ap.add_argument("--jobs", type=int, default=4,
                    help="snmpsim processes, and pairs compared at once (default 4)")
    ap.add_argument("--agent-max-varbinds", type=int, default=10000, metavar="N",
                    help="most varbinds snmpsim puts in one GETBULK answer (default 10000; pysnmp's own 64 "
                         "leaves a request for more columns unanswered, see compat/README.md)")
    ap.add_argument("--timeout", type=float, default=120, help="HTTP timeout of one scrape, s (default 120)")
    ap.add_argument("--reference-modules", metavar="DIR",
                    help="directory of snmp_exporter's snmp.yml and snmp-v0.21.yml (read there, never copied; "
                         "default $PROMSNMP_REFERENCE_MODULES, else ../shared/snmp_exporter beside the repository)")
    ap.add_argument("--snmpsim-venv", metavar="DIR",
                    help="the snmpsim virtualenv (default $SNMPSIM_VENV, else /opt/snmpsim-venv)")
    ap.add_argument("--binary", metavar="PATH", help="this promsnmp binary instead of building the repository's")
    ap.add_argument("--workdir", metavar="DIR", help="work directory, kept afterwards (default: a temporary "
                                                     "one, removed)")
    ap.add_argument("--output", default=os.path.join(REPO, "COMPATIBILITY.md"), help="report file")
    args = ap.parse_args()
    if args.jobs < 1:
        ap.error("--jobs must be at least 1")
    started = time.monotonic()
    for p in PROGRAMS:
        program(p)
    ref = reference_dir(args.reference_modules)
    venv, responder, data_dir = snmpsim_venv(args.snmpsim_venv)
    only = {m.strip() for m in args.modules.split(",")} if args.modules else None
    sets = module_sets(ref, only)
    available = list_recordings(data_dir)
    names, large = choose_recordings(args, available)
    if not names and args.no_host:
        raise CompatError("no agent to compare with")
    binary = os.path.abspath(args.binary) if args.binary else build_promsnmp()
    built = time.monotonic()

    signal.signal(signal.SIGTERM, on_sigterm)
    results, timings = [], {}
    with contextlib.ExitStack() as stack:
        if args.workdir:
            workdir = os.path.abspath(args.workdir)
            os.makedirs(workdir, exist_ok=False)
        else:
            workdir = tempfile.mkdtemp(prefix="promsnmp-compat-")
            stack.callback(shutil.rmtree, workdir, True)
        t = time.monotonic()
        log(f"preparing {len(names)} recording{'s' if len(names) != 1 else ''}" + (f" (left out as large: {', '.join(large)})"
                                                    if large and not args.large else ""))
        prepared, agents = prepare(args, available, names, workdir)
        timings["prepare"] = time.monotonic() - t
        t = time.monotonic()
        if not args.no_host:
            _, host_addr = start_snmpd(stack, workdir)
            log(f"snmpd answers on {host_addr} ({time.monotonic() - t:.1f} s); walking it")
            host = Agent(HOST_AGENT, HOST_COMMUNITY, "snmpd", walk_oids(host_addr, HOST_COMMUNITY, workdir))
            log(f"snmpd: {len(host.oids)} OIDs ({time.monotonic() - t:.1f} s)")
            host.address = host_addr
            agents.append(host)
        timings["host"] = time.monotonic() - t
        t = time.monotonic()
        for a in agents:
            for s in sets:
                a.modules[s.key] = [m for m, mod in s.modules.items() if module_has_data(mod, a.oids, a.oidset)]
        timings["plan"] = time.monotonic() - t
        sim_agents = [a for a in agents if a.kind == "snmpsim"]
        t = time.monotonic()
        groups = assign(sim_agents, sets, min(args.jobs, max(1, len(sim_agents))))
        for i, group in enumerate(groups):
            if group:
                start_snmpsim(stack, venv, workdir, i, group, prepared, args.agent_max_varbinds)
        timings["snmpsim"] = time.monotonic() - t
        if not args.no_host:
            smallest = min(range(len(groups)), key=lambda i: sum(len(a.oids) for a in groups[i]))
            groups[smallest].append(agents[-1])
        t = time.monotonic()
        ctx = {"exporters": {}, "promsnmp": {}, "timeout": args.timeout, "stop": threading.Event()}
        for s in sets:
            pairs = [(m, a) for a in agents for m in a.modules[s.key]]
            if pairs:
                ctx["exporters"][s.key] = start_exporter(stack, workdir, s, pairs)
                ctx["promsnmp"][s.key] = start_promsnmp(stack, binary, workdir, s, agents)
        timings["start"] = time.monotonic() - t
        jobs = [[(s, m, a) for a in group for s in sets if s.key in ctx["exporters"] for m in a.modules[s.key]]
                for group in groups]
        total = sum(len(j) for j in jobs)
        log(f"comparing {total} (module, agent) pairs on {len(agents)} agents, {len(groups)} at once")
        t = time.monotonic()
        lock, progress = threading.Lock(), [0, total]
        threads = [threading.Thread(target=worker, args=(ctx, j, results, lock, progress), daemon=True)
                   for j in jobs if j]
        try:
            for th in threads:
                th.start()
            for th in threads:
                while th.is_alive():
                    th.join(0.5)
        finally:
            ctx["stop"].set()
        timings["compare"] = time.monotonic() - t
        for s in sets:
            for proc in (ctx["exporters"].get(s.key), ctx["promsnmp"].get(s.key)):
                if proc is not None:
                    check_alive(proc)
        info = run_info(args, binary, agents, sets, large, timings, started, built)
    if args.workdir:
        with open(os.path.join(workdir, "results.json"), "w") as f:
            json.dump([{k: v for k, v in r.items() if k != "comparison"} | (
                {"counts": r["comparison"].counts()} if r.get("comparison") else {}) for r in results], f, indent=1)
    report = render(args, info, sets, agents, results)
    print(console_table(sets, results))
    with open(args.output, "w", encoding="utf-8", errors="backslashreplace") as f:
        f.write(report)
    log(f"wrote {args.output} ({time.monotonic() - started:.0f} s in all)")


if __name__ == "__main__":
    try:
        main()
    except CompatError as e:
        log(f"error: {e}")
        sys.exit(1)
    except KeyboardInterrupt as e:
        log(f"interrupted ({str(e) or 'Ctrl-C'}); everything started was stopped")
        sys.exit(130)
