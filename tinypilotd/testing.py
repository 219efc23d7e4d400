"""
Helpers for tests and benchmarks that run the real daemon: start
C{twistd -n tinypilot} as a subprocess on a free loopback port, wait until it
answers TLS, and stop it with SIGTERM.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from typing import IO, Any

import attrs


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def twistdPath() -> str:
    return os.path.join(os.path.dirname(sys.executable), "twistd")


@attrs.define
class Daemon:
    """
    One running C{twistd tinypilot}.
    """

    process: subprocess.Popen[bytes]
    port: int
    stateDir: str
    logPath: str
    _log: IO[bytes]

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    @property
    def caPath(self) -> str:
        return os.path.join(self.stateDir, "tls", "ca.crt")

    def logText(self) -> str:
        with open(self.logPath, encoding="utf-8", errors="replace") as f:
            return f.read()

    def client(self) -> Any:
        """
        A treq C{HTTPClient} that trusts only this daemon's CA and checks the
        hostname, without connection reuse.
        """
        from treq.client import HTTPClient
        from twisted.internet import reactor, ssl
        from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool

        with open(self.caPath, "rb") as f:
            trust = ssl.Certificate.loadPEM(f.read())
        pool = HTTPConnectionPool(reactor, persistent=False)
        return HTTPClient(Agent(reactor, contextFactory=BrowserLikePolicyForHTTPS(trustRoot=trust), pool=pool))

    def stop(self, timeout: float = 5.0) -> int:
        """
        SIGTERM, then wait; returns the exit status (SIGKILL after C{timeout}).
        """
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


def startDaemon(
    workDir: str,
    *args: str,
    config: str | None = None,
    port: int | None = None,
    timeout: float = 15.0,
    env: dict[str, str] | None = None,
) -> Daemon:
    """
    Start the daemon listening on C{ssl:<port>:interface=127.0.0.1} with its
    state in C{<workDir>/state} and wait until the port accepts connections.

    @param config: TOML text written to C{<workDir>/tinypilot.toml} and passed
        with C{--config}.
    """
    port = port or freePort()
    stateDir = os.path.join(workDir, "state")
    argv = [twistdPath(), "--nodaemon", "--pidfile=", "tinypilot"]
    if config is not None:
        path = os.path.join(workDir, "tinypilot.toml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(config)
        argv += ["--config", path]
    argv += ["--listen", f"ssl:{port}:interface=127.0.0.1", "--state-dir", stateDir, *args]
    logPath = os.path.join(workDir, "twistd.log")
    log = open(logPath, "wb")
    process = subprocess.Popen(
        argv, stdout=log, stderr=subprocess.STDOUT, cwd=workDir, env=env, stdin=subprocess.DEVNULL
    )
    daemon = Daemon(process, port, stateDir, logPath, log)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            daemon.stop()
            raise RuntimeError(f"twistd exited with {process.returncode}:\n{daemon.logText()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return daemon
        except OSError:
            if time.monotonic() > deadline:
                daemon.stop()
                raise RuntimeError(f"twistd did not listen within {timeout}s:\n{daemon.logText()}") from None
            time.sleep(0.02)
