"""
The real daemon: C{twistd tinypilot} as a subprocess over real TLS, verified
against the CA it serves, with FIFOs for the HID devices.
"""

import json
import os
import subprocess
import sys
import time

import pytest
import pytest_twisted
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twisted.internet.error import ConnectionRefusedError

from tinypilotd.security.license import issue, publicKeyText
from tinypilotd.testing import startDaemon, twistdPath

pytestmark = pytest.mark.integration


@pytest.fixture
def fifos(tmp_path):
    """Keyboard and mouse FIFOs with a reader process draining the keyboard into a file."""
    kbd, mouse = tmp_path / "kbd", tmp_path / "mouse"
    os.mkfifo(kbd)
    os.mkfifo(mouse)
    out = tmp_path / "kbd.bin"
    reader = subprocess.Popen(["sh", "-c", f'exec cat "{kbd}" > "{out}"'])
    mreader = subprocess.Popen(["sh", "-c", f'exec cat "{mouse}" > /dev/null'])
    yield str(kbd), str(mouse), out
    reader.kill()
    mreader.kill()
    reader.wait()
    mreader.wait()


def test_plugin_is_found():
    """`twistd tinypilot --help` works from the installed package."""
    out = subprocess.run([twistdPath(), "tinypilot", "--help"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "--video-command" in out.stdout and "--listen" in out.stdout


def test_bad_config_refuses_to_start(tmp_path):
    """An unknown key in the config file stops twistd at once with a message naming it."""
    path = tmp_path / "bad.toml"
    path.write_text("[hid]\nwrite_timeot = 1\n")
    out = subprocess.run(
        [twistdPath(), "--nodaemon", "--pidfile=", "tinypilot", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode != 0
    assert "hid.write_timeot" in out.stdout + out.stderr


@pytest_twisted.ensureDeferred
async def test_licensed_flow_over_tls_and_sigterm(tmp_path, fifos):
    """
    Licence required and missing → 403 on auth; activating with the CLI while
    the daemon runs opens the API without a restart; then Origin → 403, no
    token → 401, a keystroke reaches the keyboard FIFO as press + release,
    /ca.crt is the CA the connection was verified with, and SIGTERM exits 0
    within 2 s.
    """
    kbd, mouse, kbdOut = fifos
    signing = Ed25519PrivateKey.generate()
    machineId = tmp_path / "machine-id"
    machineId.write_text("device-under-test\n")
    config = (
        "[license]\nrequired = true\n"
        f'public_keys = ["{publicKeyText(signing.public_key())}"]\n'
        f'device_id_file = "{machineId}"\n'
    )
    daemon = startDaemon(str(tmp_path), "--keyboard", kbd, "--mouse", mouse, config=config)
    try:
        http = daemon.client()
        response = await http.post(daemon.url + "/api/v1/auth")
        assert response.code == 403
        assert "Automation Licence" in await response.text()

        activate = os.path.join(os.path.dirname(sys.executable), "tinypilot-activate-license")
        key = issue(signing, device="device-under-test")
        out = subprocess.run(
            [activate, "--config", str(tmp_path / "tinypilot.toml"), "--state-dir", daemon.stateDir, key],
            capture_output=True,
            text=True,
        )
        assert out.returncode == 0, out.stderr

        response = await http.post(daemon.url + "/api/v1/auth")
        assert response.code == 200
        token = json.loads(await response.text())["token"]

        response = await http.post(daemon.url + "/api/v1/auth", headers={"Origin": "https://x.example"})
        assert response.code == 403

        response = await http.get(daemon.url + "/api/v1/screenshot")
        assert response.code == 401
        assert response.headers.getRawHeaders("www-authenticate")

        response = await http.post(
            daemon.url + "/api/v1/keystroke",
            json={"code": "KeyH", "shiftLeft": True},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.code == 200, await response.text()

        response = await http.get(daemon.url + "/api/v1/screenshot", headers={"Authorization": f"Bearer {token}"})
        assert response.code == 204

        response = await http.get(daemon.url + "/ca.crt")
        with open(daemon.caPath, "rb") as f:
            assert await response.content() == f.read()
    finally:
        started = time.monotonic()
        status = daemon.stop()
        elapsed = time.monotonic() - started
    assert status == 0, daemon.logText()
    assert elapsed < 2.0
    log = daemon.logText()
    assert "CA fingerprint" in log and token not in log and key not in log
    # Press then release, and at stop the all-zero release again.
    data = kbdOut.read_bytes()
    assert data[:16] == bytes([0x02, 0, 0x0B, 0, 0, 0, 0, 0]) + bytes(8)


@pytest_twisted.ensureDeferred
async def test_password_mode_over_tls(tmp_path, fifos):
    """In password mode the real daemon answers 403 on auth and on the other routes."""
    kbd, mouse, _ = fifos
    config = "[auth]\npassword_required = true\n[license]\nrequired = false\n"
    daemon = startDaemon(str(tmp_path), "--keyboard", kbd, "--mouse", mouse, config=config)
    try:
        http = daemon.client()
        for method, path in [("POST", "auth"), ("POST", "keystroke"), ("GET", "screenshot")]:
            response = await http.request(method, f"{daemon.url}/api/v1/{path}")
            assert response.code == 403
            assert "password" in await response.text()
    finally:
        assert daemon.stop() == 0


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
@pytest_twisted.ensureDeferred
async def test_tls_1_1_refused(tmp_path, fifos):
    """A client limited to TLS 1.1 cannot connect: TLS 1.2 or newer only."""
    import ssl as stdssl

    kbd, mouse, _ = fifos
    daemon = startDaemon(str(tmp_path), "--keyboard", kbd, "--mouse", mouse, config="[license]\nrequired = false\n")
    try:
        ctx = stdssl.SSLContext(stdssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(daemon.caPath)
        ctx.maximum_version = stdssl.TLSVersion.TLSv1_1
        ctx.minimum_version = stdssl.TLSVersion.MINIMUM_SUPPORTED
        import socket

        with socket.create_connection(("127.0.0.1", daemon.port)) as raw:
            with pytest.raises((stdssl.SSLError, ConnectionResetError, ConnectionRefusedError)):
                ctx.wrap_socket(raw, server_hostname="localhost")
        ctx = stdssl.create_default_context(cafile=daemon.caPath)
        with socket.create_connection(("127.0.0.1", daemon.port)) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                assert tls.version() in ("TLSv1.2", "TLSv1.3")
    finally:
        assert daemon.stop() == 0


def _tlsSocket(daemon):
    import socket
    import ssl as stdssl

    ctx = stdssl.create_default_context(cafile=daemon.caPath)
    raw = socket.create_connection(("127.0.0.1", daemon.port), timeout=5)
    return ctx.wrap_socket(raw, server_hostname="localhost")


def _readAll(sock) -> bytes:
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    return data


def test_oversized_bodies_refused_while_arriving(tmp_path, fifos):
    """
    A declared body over 64 KiB, even on the token route, is answered 413 at
    once without the daemon waiting for (or storing) it; a chunked body is
    cut off with 413 as soon as it grows past the bound; the daemon keeps
    serving afterwards.
    """
    kbd, mouse, _ = fifos
    daemon = startDaemon(str(tmp_path), "--keyboard", kbd, "--mouse", mouse, config="[license]\nrequired = false\n")
    try:
        with _tlsSocket(daemon) as tls:
            tls.sendall(b"POST /api/v1/auth HTTP/1.1\r\nHost: localhost\r\nContent-Length: 314572800\r\n\r\n")
            tls.sendall(b"x" * 65536)
            started = time.monotonic()
            answer = _readAll(tls)
            assert time.monotonic() - started < 2
        assert answer.startswith(b"HTTP/1.1 413 ")
        assert answer.endswith(b"Request body too large: at most 65536 bytes")

        with _tlsSocket(daemon) as tls:
            tls.sendall(b"POST /api/v1/paste HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n")
            try:
                for _ in range(40):
                    tls.sendall(b"1000\r\n" + b"y" * 0x1000 + b"\r\n")
            except OSError:
                pass  # the daemon closed the connection mid-upload, as it should
            answer = _readAll(tls)
        assert answer.startswith(b"HTTP/1.1 413 ")

        with _tlsSocket(daemon) as tls:
            tls.sendall(b"POST /api/v1/auth HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            assert _readAll(tls).startswith(b"HTTP/1.1 200 ")
    finally:
        assert daemon.stop() == 0
