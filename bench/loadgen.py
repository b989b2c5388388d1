#!/usr/bin/python3
"""A small fixed-rate HTTP/1.1 load generator for bench/run.py (Debian has
neither wrk2 nor vegeta). Python 3 standard library only (asyncio).

Open loop: request i is due at start + i / rate, whatever happened to the
earlier ones; it goes out on the first free keep-alive connection, and its
latency is counted from when it was due, so waiting for a connection
(queueing) is part of it. With --max it is a closed loop instead: every
connection sends its next request as soon as the last one is answered (the
most this generator, and what is behind the URL, can do).

    python3 bench/loadgen.py --port 8080 --path '/snmp?target=x' --rate 500 --seconds 15

Prints one JSON object: requests due, sent and completed, achieved rate,
latency percentiles (ms, from the due time, or from the sending if that
was up to 1.5 ms earlier), send lag (due -> sent, 0 if early),
failures, bytes, the generator's own CPU time and the 10 slowest requests
(when they were due, seconds after the start, and their latency).
"""

import argparse
import asyncio
import gc
import json
import resource

EARLY = 0.0015  # requests may go out this much before they are due (seconds)


class Conn(asyncio.Protocol):
    """One keep-alive connection; one request in flight at a time. Reads
    Content-Length and chunked bodies, counting bytes without keeping them."""

    def __init__(self):
        self.transport = None
        self.future = None
        self.lost = None

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        self.lost = exc or ConnectionError("connection closed")
        if self.future and not self.future.done():
            self.future.set_exception(self.lost)

    def send(self, request):
        self.future = asyncio.get_running_loop().create_future()
        self.head = b""
        self.status = None
        self.remaining = None  # body bytes left (Content-Length) or of the current chunk
        self.chunked = False
        self.chunk_line = b""
        self.trailer = False
        self.body = 0
        self.encoding = None
        self.transport.write(request)
        return self.future

    def data_received(self, data):
        if self.future is None or self.future.done():
            return
        try:
            if self.status is None:
                self.head += data
                end = self.head.find(b"\r\n\r\n")
                if end < 0:
                    if len(self.head) > 65536:
                        raise ValueError("response head too long")
                    return
                lines = self.head[:end].decode("latin-1").split("\r\n")
                self.status = int(lines[0].split()[1])
                headers = {}
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    headers[k.strip().lower()] = v.strip()
                self.encoding = headers.get("content-encoding")
                data = self.head[end + 4:]
                self.head = b""
                if headers.get("transfer-encoding", "").lower() == "chunked":
                    self.chunked = True
                else:
                    self.remaining = int(headers.get("content-length", "0"))
            if self.chunked:
                self._chunked(data)
            else:
                self.body += len(data)
                self.remaining -= len(data)
                if self.remaining <= 0:
                    self.future.set_result((self.status, self.body, self.encoding))
        except (ValueError, IndexError) as e:
            self.future.set_exception(e)
            self.transport.close()

    def _chunked(self, data):
        pos = 0
        while pos < len(data):
            if self.remaining:  # inside a chunk (its data and CRLF)
                take = min(self.remaining, len(data) - pos)
                self.remaining -= take
                self.body += take
                pos += take
                continue
            nl = data.find(b"\n", pos)
            if nl < 0:
                self.chunk_line += data[pos:]
                return
            line = (self.chunk_line + data[pos:nl]).strip()
            self.chunk_line = b""
            pos = nl + 1
            if self.trailer:
                if not line:
                    self.future.set_result((self.status, self.body, self.encoding))
                    return
                continue
            if not line:
                continue  # the CRLF after a chunk's data
            size = int(line.split(b";")[0], 16)
            if size == 0:
                self.trailer = True
            else:
                self.remaining = size


def percentile(sorted_xs, q):
    if not sorted_xs:
        return float("nan")
    k = min(len(sorted_xs) - 1, max(0, round(q / 100 * (len(sorted_xs) - 1))))
    return sorted_xs[k]


async def run(args):
    loop = asyncio.get_running_loop()
    extra = "".join(f"{h}\r\n" for h in args.header)
    request = (f"GET {args.path} HTTP/1.1\r\nHost: {args.host}:{args.port}\r\n"
               f"User-Agent: promsnmp-bench-loadgen\r\n{extra}\r\n").encode()
    queue = asyncio.Queue()
    latencies, lags, failures, slowest = [], [], [], []
    state = {"sent": 0, "completed": 0, "bytes": 0, "encodings": set(), "last_done": None}
    start = loop.time() + 0.2  # connections first
    deadline = start + args.seconds
    hard_stop = deadline + args.timeout + 5

    async def connect():
        _, proto = await asyncio.wait_for(
            loop.create_connection(Conn, args.host, args.port), args.timeout)
        return proto

    async def worker():
        conn = None
        while loop.time() < hard_stop:
            if args.max:
                if loop.time() >= deadline:
                    break
                due = loop.time()
            else:
                due = await queue.get()
                if due is None:
                    break
            try:
                if conn is None or conn.lost is not None:
                    conn = await connect()
                sent = loop.time()
                state["sent"] += 1
                status, size, encoding = await asyncio.wait_for(conn.send(request), args.timeout)
            except (OSError, asyncio.TimeoutError, ValueError, ConnectionError) as e:
                failures.append(type(e).__name__)
                if conn is not None and conn.transport is not None:
                    conn.transport.close()
                conn = None
                continue
            done = loop.time()
            if status != 200:
                failures.append(f"HTTP {status}")
                continue
            state["completed"] += 1
            state["bytes"] += size
            state["encodings"].add(encoding or "identity")
            state["last_done"] = done
            if start <= due < deadline:
                # Sent early (timer slack): from when it was sent.
                latency = (done - min(due, sent)) * 1000
                latencies.append(latency)
                lags.append(max(0.0, sent - due) * 1000)
                slowest.append((latency, due - start))
                if len(slowest) > 200:
                    slowest.sort(reverse=True)
                    del slowest[10:]
        if conn is not None and conn.transport is not None:
            conn.transport.close()

    async def schedule():
        total = int(args.rate * args.seconds)
        for i in range(total):
            due = start + i / args.rate
            delay = due - loop.time() - EARLY
            if delay > 0:  # the loop's timers wake up to ~1 ms late: aim early
                await asyncio.sleep(delay)
            queue.put_nowait(due)
        for _ in range(args.connections):
            queue.put_nowait(None)
        return total

    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    workers = [asyncio.create_task(worker()) for _ in range(args.connections)]
    due_total = None
    if not args.max:
        due_total = await schedule()
    await asyncio.wait(workers, timeout=max(1.0, hard_stop - loop.time()))
    for w in workers:
        w.cancel()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    elapsed = max(args.seconds, (state["last_done"] or deadline) - start)
    latencies.sort()
    lags.sort()
    slowest.sort(reverse=True)
    return {
        "mode": "closed loop (max)" if args.max else "open loop",
        "rate_asked": None if args.max else args.rate,
        "connections": args.connections,
        "seconds": args.seconds,
        "due": due_total,
        "sent": state["sent"],
        "completed": state["completed"],
        "achieved_rps": state["completed"] / elapsed,
        "p50_ms": percentile(latencies, 50),
        "p90_ms": percentile(latencies, 90),
        "p99_ms": percentile(latencies, 99),
        "max_ms": latencies[-1] if latencies else float("nan"),
        "lag_p50_ms": percentile(lags, 50),
        "lag_p99_ms": percentile(lags, 99),
        "failures": len(failures),
        "failure_kinds": sorted(set(failures)),
        "mean_bytes": state["bytes"] / state["completed"] if state["completed"] else 0,
        "encodings": sorted(state["encodings"]),
        "cpu_s": (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime),
        "slowest": [[round(at, 3), round(ms, 2)] for ms, at in slowest[:10]],  # [s after start, ms]
    }


def main():
    ap = argparse.ArgumentParser(description="fixed-rate (open loop) HTTP/1.1 load generator")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", required=True)
    ap.add_argument("--header", action="append", default=[], help="extra request header, 'Name: value'")
    ap.add_argument("--rate", type=float, default=500, help="requests per second (default 500)")
    ap.add_argument("--seconds", type=float, default=15, help="how long requests are issued (default 15)")
    ap.add_argument("--connections", type=int, default=32, help="keep-alive connections (default 32)")
    ap.add_argument("--timeout", type=float, default=10, help="per request, seconds (default 10)")
    ap.add_argument("--max", action="store_true", help="closed loop: as fast as possible")
    args = ap.parse_args()
    if not (0 < args.rate <= 100000 and 0 < args.seconds <= 600 and 1 <= args.connections <= 1000
            and 0 < args.timeout <= 60):
        ap.error("--rate 0-100000, --seconds 0-600, --connections 1-1000, --timeout 0-60")
    if not args.host.startswith("127.") and args.host != "localhost":
        ap.error("--host must be on 127.0.0.0/8")
    gc.disable()  # no collector pauses inside the measurement (short runs, little garbage)
    result = asyncio.run(run(args))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
