#!/usr/bin/env python3
"""
Keystroke benchmark: request->200 latency (p50/p99) and keystrokes per second
of C{POST /api/v1/keystroke} over TLS keep-alive, through the whole daemon.

Starts C{twistd -n tinypilot --listen ssl:PORT:interface=127.0.0.1} with its
keyboard and mouse on FIFOs, each drained by a reader process (a target that
collects every report at once), then loads it with wrk (Debian package) and a
Lua script that POSTs a keystroke JSON body:

  latency     1 connection, one request at a time
  throughput  several keep-alive connections

and checks that the keyboard FIFO received exactly one press and one release
(16 bytes) per 200.  Target: p50 <= 1.5 ms, >= 1,000 keystrokes/s.

    python bench/keystroke.py [--duration 5] [--connections 8] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tinypilotd.testing import startDaemon  # noqa: E402

# POSTs the same keystroke on every request; wrk counts non-2xx answers.
WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '{"code": "KeyA", "shiftLeft": true}'
wrk.headers["Content-Type"] = "application/json"
"""

# The target's end of a FIFO: opened read-write so it never sees end-of-file
# and the daemon's open never fails with ENXIO; counts bytes until its stdin
# closes, then prints the count.
READER = r"""
import os, select, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_NONBLOCK)
count = 0
print("ready", flush=True)
while True:
    ready, _, _ = select.select([fd, sys.stdin], [], [])
    if fd in ready:
        try:
            while True:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    break
                count += len(chunk)
        except BlockingIOError:
            pass
    if sys.stdin in ready and not sys.stdin.buffer.read1(1):
        break
print(count, flush=True)
"""

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def reader(path: str) -> subprocess.Popen[str]:
    os.mkfifo(path)
    process = subprocess.Popen(
        [sys.executable, "-c", READER, path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    return process


def finish(process: subprocess.Popen[str]) -> int:
    assert process.stdin is not None and process.stdout is not None
    process.stdin.close()
    count = int(process.stdout.readline())
    process.wait(5)
    return count


def milliseconds(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if match is None:
        raise ValueError(text)
    return float(match.group(1)) * UNITS[match.group(2)]


def wrk(url: str, script: str, token: str, threads: int, connections: int,
        duration: int) -> dict[str, float]:  # fmt: skip
    argv = ["wrk", "--latency", "-t", str(threads), "-c", str(connections),
            "-d", f"{duration}s", "-s", script,
            "-H", f"Authorization: Bearer {token}", url]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if failed:
        raise SystemExit(f"{failed.group(1)} failed responses\n{out}")
    errors = re.search(r"Socket errors: (.*)", out)
    if errors:
        print(f"  (wrk socket errors: {errors.group(1)})")
    figures = {
        "rate": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
    }
    for pct in ("50", "99"):
        value = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.MULTILINE).group(1)  # type: ignore[union-attr]
        figures[f"p{pct}"] = milliseconds(value)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")

    work = tempfile.mkdtemp(prefix="tp-keystroke-")
    readers: dict[str, subprocess.Popen[str]] = {}
    daemon = None
    try:
        for name in ("hidg0", "hidg1"):
            readers[name] = reader(os.path.join(work, name))
        script = os.path.join(work, "keystroke.lua")
        with open(script, "w") as f:
            f.write(WRK_SCRIPT)
        daemon = startDaemon(
            work,
            "--keyboard", os.path.join(work, "hidg0"),
            "--mouse", os.path.join(work, "hidg1"),
            config="[license]\nrequired = false\n",
        )  # fmt: skip
        context = ssl.create_default_context(cafile=daemon.caPath)
        request = urllib.request.Request(f"{daemon.url}/api/v1/auth", method="POST")
        with urllib.request.urlopen(request, context=context) as response:
            token = json.loads(response.read())["token"]
        url = f"{daemon.url}/api/v1/keystroke"

        wrk(url, script, token, 1, 1, 1)  # warm up: imports, TLS session
        latency = wrk(url, script, token, 1, 1, args.duration)
        load = wrk(url, script, token, args.threads, args.connections, args.duration)
        daemon.stop()
        daemon = None
        written = finish(readers.pop("hidg0"))
        answered = latency["requests"] + load["requests"]

        print(f"keystroke: POST /api/v1/keystroke over TLS keep-alive, {args.duration} s per run")
        print(f"  1 connection:  p50 {latency['p50']:.2f} ms, p99 {latency['p99']:.2f} ms,"
              f" {latency['rate']:,.0f} keystrokes/s")  # fmt: skip
        print(f"  {args.connections} connections ({args.threads} wrk threads):"
              f" {load['rate']:,.0f} keystrokes/s, p50 {load['p50']:.2f} ms,"
              f" p99 {load['p99']:.2f} ms")  # fmt: skip
        # wrk's warm-up run and any request still in flight when a run ends
        # also reached the device: at least 16 bytes per counted 200.
        print(f"  keyboard FIFO: {written} bytes = {written // 16} keystrokes"
              f" for {answered} counted 200s (plus warm-up)")  # fmt: skip
        if written % 16 != 8 or written // 16 < answered:
            raise SystemExit("the FIFO did not get one press and one release per 200")
        print("  target: p50 <= 1.5 ms, >= 1,000 keystrokes/s")
    finally:
        if daemon is not None:
            print(daemon.logText()[-2000:])
            daemon.stop()
        for process in readers.values():
            finish(process)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
