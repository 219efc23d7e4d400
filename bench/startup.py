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


def memoryMB(pid: int) -> tuple[float, float]:
    """
    (RSS, private anonymous memory) of C{pid} in MB: the second is what the
    process really costs beyond shared library pages.
    """
    fields = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                fields[parts[0].rstrip(":")] = int(parts[1]) / 1024
    return fields["Rss"], fields["Anonymous"]


def floorMB() -> float:
    """
    RSS of a bare Python that only imports Twisted's reactor: the floor
    under any Twisted daemon on this interpreter.
    """
    code = (
        "import twisted.internet.reactor\n"
        "print([l for l in open('/proc/self/status') if l.startswith('VmRSS')][0].split()[1])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout) / 1024


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
                    rss.append(memoryMB(proc.pid))
            finally:
                proc.terminate()
                proc.wait(10)
        for r in readers:
            r.kill()
        print(f"startup: exec → first 200 over TLS, {args.runs} runs")
        print(f"  time to first 200: median {statistics.median(times):.3f} s, max {max(times):.3f} s (target ≤ 1.5 s)")
        total = [r for r, _ in rss]
        anon = [a for _, a in rss]
        print(f"  idle RSS:          median {statistics.median(total):.1f} MB, max {max(total):.1f} MB (target ≤ 40 MB)")
        print(f"    of which private anonymous memory: median {statistics.median(anon):.1f} MB")
        print(f"    floor: `import twisted.internet.reactor` alone: {floorMB():.1f} MB RSS")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
