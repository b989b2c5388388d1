"""Process and HTTP helpers shared by the benchmark (bench/run.py) and the
compatibility harness (compat/run.py): bounded commands, started processes
that are stopped on exit, readiness waits, small HTTP requests. Python
standard library only."""

import http.client
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time


class HarnessError(Exception):
    """A setup or measurement step failed; the message says which and why."""


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def program(name, package):
    """The path of program `name`, or an error naming the Debian `package`."""
    path = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin:/usr/bin:/bin")
    if not path:
        raise HarnessError(f"`{name}` not found: install the Debian package `{package}`")
    return path


def run(cmd, timeout=60, check=True, **kw):
    """Runs a command (bounded); returns stdout. Raises HarnessError on failure."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired:
        raise HarnessError(f"`{shlex.join(cmd)}` did not finish within {timeout} s")
    if check and p.returncode != 0:
        raise HarnessError(f"`{shlex.join(cmd)}` failed ({p.returncode}): {p.stderr.strip()[-500:]}")
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


def start_process(stack, name, cmd, logfile, env=None, cwd=None):
    """Starts `cmd` (output to `logfile`, its own session); `stack` stops it."""
    out = open(logfile, "ab")
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=env, cwd=cwd, start_new_session=True)
    out.close()
    proc.harness_name, proc.harness_log = name, logfile
    stack.callback(stop_process, proc)
    return proc


def stop_process(proc):
    """SIGTERM, then SIGKILL after 10 s; waits until it is gone (a port it
    held is free again)."""
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
        raise HarnessError(f"{proc.harness_name} exited ({proc.returncode}); log tail:\n{file_tail(proc.harness_log)}")


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
    raise HarnessError(f"{what} not ready within {timeout} s (last error: {last}); "
                       f"log tail:\n{file_tail(proc.harness_log)}")


def http_request(port, method, path, headers=None, body=None, timeout=120):
    """Returns (status, headers (lower-case names), body bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()
