#!/usr/bin/env python3
"""
Screenshot benchmark: screenshots per second and median latency of
C{GET /api/v1/screenshot} over TLS keep-alive, against nginx serving the
same JPEG as a static file over TLS with the same certificate.

Both are loaded by wrk (Debian package) on loopback with the same threads,
connections and duration.  The daemon's capture pipeline is a shell loop
that writes one fixed 1280x720 JPEG ten times a second, so both servers
send identical bytes.  Target: the daemon reaches at least 0.5x nginx's
screenshots/s.

    python bench/screenshot.py [--duration 5] [--connections 8] [--threads 2]
"""

import argparse
import io
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tinypilotd.testing import freePort, startDaemon  # noqa: E402

NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
error_log {work}/nginx-error.log warn;
pid {work}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {work}/tmp;
    proxy_temp_path {work}/tmp;
    fastcgi_temp_path {work}/tmp;
    uwsgi_temp_path {work}/tmp;
    scgi_temp_path {work}/tmp;
    types {{ image/jpeg jpg; }}
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        keepalive_requests 1000000;
        root {work}/www;
        location / {{ add_header Cache-Control no-store; }}
    }}
}}
"""


def makeJPEG(path: str) -> int:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (1280, 720), (24, 52, 78))
    draw = ImageDraw.Draw(image)
    for i in range(0, 1280, 40):
        draw.line([(i, 0), (1280 - i, 720)], fill=(200, (i * 3) % 255, 90), width=3)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=80)
    with open(path, "wb") as f:
        f.write(buffer.getvalue())
    return len(buffer.getvalue())


def wrk(url: str, args: argparse.Namespace, headers: list[str]) -> tuple[float, str]:
    argv = ["wrk", "--latency", "-t", str(args.threads), "-c", str(args.connections), "-d", f"{args.duration}s"]
    for h in headers:
        argv += ["-H", h]
    out = subprocess.run(argv + [url], capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.MULTILINE).group(1)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise SystemExit(f"{url}: {non2xx.group(1)} failed responses\n{out}")
    return rate, p50


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
            raise SystemExit(f"{tool} is needed: apt-get install {tool}")

    work = tempfile.mkdtemp(prefix="tp-shot-")
    nginx = None
    daemon = None
    try:
        os.makedirs(os.path.join(work, "www"))
        os.makedirs(os.path.join(work, "tmp"))
        jpeg = os.path.join(work, "www", "frame.jpg")
        size = makeJPEG(jpeg)
        for name in ("kbd", "mouse"):
            os.mkfifo(os.path.join(work, name))
        command = f"sh -c 'while :; do cat {jpeg}; sleep 0.1; done'"
        config = f'[license]\nrequired = false\n[video]\ncommand = "{command}"\n'
        daemon = startDaemon(
            work, "--keyboard", os.path.join(work, "kbd"), "--mouse", os.path.join(work, "mouse"), config=config
        )
        ctx = ssl.create_default_context(cafile=daemon.caPath)
        request = urllib.request.Request(f"{daemon.url}/api/v1/auth", method="POST")
        token = json.loads(urllib.request.urlopen(request, context=ctx).read())["token"]
        auth = f"Authorization: Bearer {token}"
        deadline = time.monotonic() + 10
        while True:
            shot = urllib.request.Request(f"{daemon.url}/api/v1/screenshot", headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(shot, context=ctx) as response:
                if response.status == 200:
                    assert len(response.read()) == size
                    break
            if time.monotonic() > deadline:
                raise SystemExit("the daemon served no frame")
            time.sleep(0.1)

        port = freePort()
        tls = os.path.join(daemon.stateDir, "tls")
        with open(os.path.join(work, "nginx.conf"), "w") as f:
            f.write(NGINX_CONF.format(work=work, port=port, cert=f"{tls}/server.crt", key=f"{tls}/server.key"))
        nginxBin = shutil.which("nginx") or "/usr/sbin/nginx"
        nginx = subprocess.Popen([nginxBin, "-p", work, "-c", os.path.join(work, "nginx.conf")])
        time.sleep(0.5)

        ours = wrk(f"{daemon.url}/api/v1/screenshot", args, [auth])
        theirs = wrk(f"https://localhost:{port}/frame.jpg", args, [])
        print(f"screenshot: {size} byte 1280x720 JPEG, wrk {args.threads} threads, {args.connections} keep-alive TLS connections, {args.duration} s")
        print(f"  tinypilotd GET /api/v1/screenshot: {ours[0]:8.0f} screenshots/s, p50 {ours[1]}")
        print(f"  nginx static file:                 {theirs[0]:8.0f} screenshots/s, p50 {theirs[1]}")
        print(f"  ratio: {ours[0] / theirs[0]:.2f}x nginx (target ≥ 0.5x)")
    finally:
        if nginx is not None:
            nginx.send_signal(signal.SIGQUIT)
            nginx.wait(10)
        if daemon is not None:
            daemon.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
