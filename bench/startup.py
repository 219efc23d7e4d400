#!/usr/bin/env python3
"""
Start-up benchmark: time from exec of C{twistd tinypilot} to the first 200
over TLS (C{POST /api/v1/auth}), and the daemon's idle resident memory.

Targets: at most 1.5 s to the first 200, at most 40 MB idle RSS.  The TLS
material is made once before timing (as on a device after its first boot).

    python bench/startup.py [--runs N]
"""

import argparse
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tinypilotd.testing import freePort, twistdPath  # noqa: E402


def firstOK(port: int, ctx: ssl.SSLContext, deadline: float) -> float:
    request = b"POST /api/v1/auth HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as raw:
                with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                    tls.sendall(request)
                    if tls.recv(64).startswith(b"HTTP/1.1 200"):
                        return time.monotonic()
        except OSError:
            time.sleep(0.005)
    raise SystemExit("no 200 before the deadline")


def rssMB(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="tp-startup-")
    try:
        for name in ("kbd", "mouse"):
            os.mkfifo(os.path.join(work, name))
        readers = [
            subprocess.Popen(["sh", "-c", f'exec cat "{work}/{n}" >/dev/null']) for n in ("kbd", "mouse")
        ]
        config = os.path.join(work, "tp.toml")
        with open(config, "w") as f:
            f.write("[license]\nrequired = false\n")
        times, rss = [], []
        for run in range(args.runs + 1):
            port = freePort()
            argv = [
                twistdPath(), "--nodaemon", "--pidfile=", "tinypilot", "--config", config,
                "--listen", f"ssl:{port}:interface=127.0.0.1", "--state-dir", os.path.join(work, "state"),
                "--keyboard", os.path.join(work, "kbd"), "--mouse", os.path.join(work, "mouse"),
            ]
            started = time.monotonic()
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            try:
                if run == 0:
                    # First start makes the TLS material; not what is measured.
                    time.sleep(0.1)
                ctx = None
                deadline = started + 20
                while ctx is None:
                    try:
                        ctx = ssl.create_default_context(cafile=os.path.join(work, "state", "tls", "ca.crt"))
                    except (FileNotFoundError, ssl.SSLError):
                        time.sleep(0.005)
                ready = firstOK(port, ctx, deadline)
                time.sleep(1.0)  # idle
                if run > 0:
                    times.append(ready - started)
                    rss.append(rssMB(proc.pid))
            finally:
                proc.terminate()
                proc.wait(10)
        for r in readers:
            r.kill()
        print(f"startup: exec → first 200 over TLS, {args.runs} runs")
        print(f"  time to first 200: median {statistics.median(times):.3f} s, max {max(times):.3f} s (target ≤ 1.5 s)")
        print(f"  idle RSS:          median {statistics.median(rss):.1f} MB, max {max(rss):.1f} MB (target ≤ 40 MB)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
