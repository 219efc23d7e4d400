"""
The daemon under test: the real `twistd tinypilot`, started as a subprocess
from the virtualenv that runs this suite, configured through a generated TOML
file, and talked to over HTTPS the way any client would (stdlib http.client,
verifying the certificate against the CA that the daemon serves).
"""

import glob
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time

PORT = 8443


def toml_string(value):
    return json.dumps(value)  # a JSON string is a valid TOML basic string


class Response:
    def __init__(self, status, headers, body, elapsed):
        self.status, self.headers, self.body, self.elapsed = status, headers, body, elapsed

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def __repr__(self):
        return f"<{self.status} {self.text[:200]!r} after {self.elapsed:.3f} s>"


class Client:
    """One keep-alive HTTPS connection to the daemon (one per thread)."""

    def __init__(self, port, context, token=None, timeout=30.0):
        self.port, self.context, self.token, self.timeout = port, context, token, timeout
        self._connection = None
        self.last_elapsed = None

    def _connect(self):
        return http.client.HTTPSConnection(
            "localhost", self.port, context=self.context, timeout=self.timeout)

    def request(self, method, path, body=None, headers=None):
        headers = dict(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        if self.token:
            headers.setdefault("Authorization", f"Bearer {self.token}")
        started = time.monotonic()
        for attempt in (1, 2):
            if self._connection is None:
                self._connection = self._connect()
            try:
                self._connection.request(method, path, body=data, headers=headers)
                response = self._connection.getresponse()
                payload = response.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # The server closed an idle keep-alive connection: once more,
                # on a new one.
                self.close()
                if attempt == 2:
                    raise
        self.last_elapsed = time.monotonic() - started
        return Response(response.status, {k.lower(): v for k, v in response.getheaders()},
                        payload, self.last_elapsed)

    def post(self, path, body=None):
        return self.request("POST", path, body)

    def get(self, path):
        return self.request("GET", path)

    def keystroke(self, code, **modifiers):
        return self.post("/api/v1/keystroke", dict(code=code, **modifiers))

    def mouse(self, buttons=0, x=0.5, y=0.5, vertical=0, horizontal=0):
        return self.post("/api/v1/mouseEvent", {
            "buttons": buttons, "relativeX": x, "relativeY": y,
            "verticalWheelDelta": vertical, "horizontalWheelDelta": horizontal})

    def paste(self, text, language):
        return self.post("/api/v1/paste", {"text": text, "language": language})

    def close(self):
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class Daemon:
    """`twistd --nodaemon tinypilot --config <workdir>/tinypilot.toml`."""

    def __init__(self, workdir, *, keyboard="/dev/hidg0", mouse="/dev/hidg1",
                 write_timeout=2.0, video_command="", stale_after=3.0, port=PORT):
        self.workdir, self.port = workdir, port
        self.keyboard, self.mouse, self.write_timeout = keyboard, mouse, write_timeout
        self.video_command, self.stale_after = video_command, stale_after
        self.config = os.path.join(workdir, "tinypilot.toml")
        self.log = os.path.join(workdir, "daemon.log")
        self.process = None
        self.context = None
        self.token = None
        self.started_in = None

    def write_config(self):
        os.makedirs(self.workdir, exist_ok=True)
        with open(self.config, "w") as fh:
            fh.write(f"""\
[daemon]
listen = [{toml_string(f"ssl:{self.port}:interface=127.0.0.1")}]
state_dir = {toml_string(os.path.join(self.workdir, "state"))}

[auth]
password_required = false

[license]
required = false

[hid]
keyboard = {toml_string(self.keyboard)}
mouse = {toml_string(self.mouse)}
write_timeout = {self.write_timeout!r}

[video]
command = {toml_string(self.video_command)}
stale_after = {self.stale_after!r}
min_restart_delay = 1.0
""")

    def argv(self):
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        return [twistd, "--nodaemon", "--pidfile=", "tinypilot", "--config", self.config]

    def start(self, timeout=180.0):
        """Start the daemon and wait until it issues an API token."""
        self.write_config()
        started = time.monotonic()
        log = open(self.log, "ab")
        log.write(b"=== " + " ".join(self.argv()).encode() + b"\n")
        log.flush()
        self.process = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=log,
                                        stderr=subprocess.STDOUT, cwd=self.workdir)
        log.close()
        deadline = started + timeout
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"twistd exited with {self.process.returncode} at start:\n"
                                     + self.log_tail())
            if time.monotonic() > deadline:
                raise AssertionError(f"twistd did not answer within {timeout} s:\n" + self.log_tail())
            try:
                self._handshake()
                break
            except (OSError, http.client.HTTPException):
                time.sleep(0.2)
        self.started_in = time.monotonic() - started
        return self

    def _handshake(self):
        """Fetch the daemon's CA (the one unverified request), then get a
        token over a connection verified against it."""
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        with socket.create_connection(("127.0.0.1", self.port), timeout=5):
            pass
        probe = Client(self.port, insecure, timeout=10)
        ca = probe.get("/ca.crt")
        probe.close()
        if ca.status == 200 and b"BEGIN CERTIFICATE" in ca.body:
            self.context = ssl.create_default_context(cadata=ca.body.decode("ascii"))
        else:
            self.context = insecure
        client = Client(self.port, self.context, timeout=10)
        response = client.post("/api/v1/auth")
        client.close()
        if response.status != 200:
            raise AssertionError(f"POST /api/v1/auth answered {response!r}")
        self.token = json.loads(response.body)["token"]

    def client(self, timeout=30.0):
        return Client(self.port, self.context, self.token, timeout)

    @property
    def running(self):
        return self.process is not None and self.process.poll() is None

    def children(self):
        """PIDs of the daemon's child processes (the capture pipeline)."""
        pids = set()
        for path in glob.glob(f"/proc/{self.process.pid}/task/*/children"):
            try:
                with open(path) as fh:
                    pids.update(int(p) for p in fh.read().split())
            except OSError:
                continue
        return sorted(pids)

    def stop(self, timeout=20.0):
        """SIGTERM; returns (exit status, seconds it took to exit)."""
        if not self.running:
            return (self.process.returncode if self.process else None), 0.0
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            status = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"twistd still running {timeout} s after SIGTERM:\n" + self.log_tail()) from None
        return status, time.monotonic() - started

    def log_text(self):
        try:
            with open(self.log, errors="replace") as fh:
                return fh.read()
        except OSError:
            return ""

    def log_tail(self, lines=60):
        return "\n".join(self.log_text().splitlines()[-lines:])
