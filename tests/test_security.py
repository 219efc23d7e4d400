"""
TLS material, the Automation Licence (library and command-line tools), the
token store and the configuration loader.
"""

import datetime
import re
import os
import stat
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tinypilotd import config as _config
from tinypilotd.api.tokens import TokenStore, TooManyTokens
from tinypilotd.security import license as lic
from tinypilotd.security.license_cli import activate_main, vendor_main
from tinypilotd.security.tls import ensureTLS
from tinypilotd.tap import Options, isPlaintext, resolveEndpoint

UTC = datetime.timezone.utc


# TLS


def test_tls_first_start_makes_ca_and_server_cert(tmp_path):
    """First start writes a CA and a server cert it signed, keys 0600, with the promised SANs."""
    tls = ensureTLS(str(tmp_path), hostname="kvm-lab")
    assert tls.renewed
    for key in (tls.server_key, os.path.join(tmp_path, "tls", "ca.key")):
        assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "tls").st_mode) == 0o700
    with open(tls.server_cert, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    ca = x509.load_pem_x509_certificate(tls.ca_pem)
    cert.verify_directly_issued_by(ca)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"kvm-lab", "tinypilot", "localhost"}
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    assert len(tls.ca_fingerprint.split(":")) == 32


def test_tls_reuses_valid_material(tmp_path):
    """A second start keeps the CA and the server certificate."""
    first = ensureTLS(str(tmp_path), hostname="kvm")
    second = ensureTLS(str(tmp_path), hostname="kvm")
    assert not second.renewed
    assert second.ca_fingerprint == first.ca_fingerprint
    assert second.server_not_after == first.server_not_after


def test_tls_renews_near_expiry_and_on_new_hostname(tmp_path):
    """Within 30 days of expiry, or after a hostname change, the server cert is renewed under the same CA."""
    first = ensureTLS(str(tmp_path), hostname="kvm")
    later = lambda: first.server_not_after - datetime.timedelta(days=29)  # noqa: E731
    renewed = ensureTLS(str(tmp_path), hostname="kvm", now=later)
    assert renewed.renewed and renewed.server_not_after > first.server_not_after
    assert renewed.ca_fingerprint == first.ca_fingerprint
    notYet = lambda: first.server_not_after - datetime.timedelta(days=31)  # noqa: E731
    assert not ensureTLS(str(tmp_path), hostname="kvm", now=notYet).renewed
    assert ensureTLS(str(tmp_path), hostname="kvm2").renewed


def test_endpoint_resolution():
    """ssl: endpoints without a key get the generated cert; explicit keys and tcp: are left alone."""
    assert resolveEndpoint("ssl:443", "/s/c.crt", "/s/k:ey") == "ssl:443:privateKey=/s/k\\:ey:certKey=/s/c.crt"
    assert resolveEndpoint("ssl:443:privateKey=a.pem", "c", "k") == "ssl:443:privateKey=a.pem"
    assert resolveEndpoint("tcp:8080", "c", "k") == "tcp:8080"
    assert isPlaintext("tcp:8080") and not isPlaintext("ssl:443")


# Licence


@pytest.fixture
def signer():
    key = Ed25519PrivateKey.generate()
    return key, lic.publicKeyText(key.public_key())


def test_licence_roundtrip_and_refusals(signer):
    """A good key verifies; other device, expiry, foreign signature and garbage are refused with a reason."""
    key, public = signer
    today = lambda: datetime.date(2026, 12, 4)  # noqa: E731
    good = lic.issue(key, device="dev-1", expires=datetime.date(2026, 12, 4))
    assert lic.verify(good, [public], "dev-1", today).device == "dev-1"
    assert lic.verify(lic.issue(key), [public], None, today).expires is None
    with pytest.raises(lic.LicenseError, match="not this device"):
        lic.verify(good, [public], "dev-2", today)
    with pytest.raises(lic.LicenseError, match="expired on 2026-12-04"):
        lic.verify(good, [public], "dev-1", lambda: datetime.date(2026, 12, 5))
    other = lic.publicKeyText(Ed25519PrivateKey.generate().public_key())
    with pytest.raises(lic.LicenseError, match="signature"):
        lic.verify(good, [other], "dev-1", today)
    head, payload, sig = good.split(".")
    tampered = lic.issue(key, device="*").split(".")[1]
    with pytest.raises(lic.LicenseError, match="signature"):
        lic.verify(f"{head}.{tampered}.{sig}", [public], "dev-1", today)
    for garbage in ["", "TPL1", "TPL2.a.b", "TPL1.!!.??", "TPL1.e30.AAAA"]:
        with pytest.raises(lic.LicenseError):
            lic.verify(garbage, [public], "dev-1", today)


def test_licence_state_follows_the_file(tmp_path, signer):
    """
    Activating while running takes effect at the next request; no file means
    not allowed; a key expires at midnight without a restart; a malformed
    extra public key does not lock a good licence out.
    """
    key, public = signer
    day = [datetime.date(2026, 12, 4)]
    state = lic.LicenseState(str(tmp_path), ["ed25519:typo", public], "dev-1", required=True, today=lambda: day[0])
    assert not state.allows()
    lic.store(str(tmp_path), lic.issue(key, device="dev-1", expires=datetime.date(2026, 12, 4)))
    assert state.allows()
    day[0] = datetime.date(2026, 12, 5)
    assert not state.allows()
    lic.store(str(tmp_path), lic.issue(key, device="dev-1"))
    assert state.allows()
    assert "dev-1" in state.describe() and "TPL1" not in state.describe()
    assert stat.S_IMODE(os.stat(tmp_path / "license.key").st_mode) == 0o600
    assert lic.LicenseState(str(tmp_path), [], None, required=False).allows()


def test_license_tools_end_to_end(tmp_path, capsys):
    """keygen → issue → activate stores the key; a bad key exits non-zero, one line, nothing stored."""
    prefix = str(tmp_path / "vendor")
    assert vendor_main(["keygen", prefix]) == 0
    public = capsys.readouterr().out.strip()
    assert public.startswith("ed25519:")
    assert open(prefix + ".pub").read().strip() == public
    assert stat.S_IMODE(os.stat(prefix + ".key").st_mode) == 0o600
    assert vendor_main(["keygen", prefix]) == 1  # never overwrite a signing key
    capsys.readouterr()

    machineId = tmp_path / "machine-id"
    machineId.write_text("abc123\n")
    conf = tmp_path / "tp.toml"
    conf.write_text(f'[license]\npublic_keys = ["{public}"]\ndevice_id_file = "{machineId}"\n')
    state = tmp_path / "state"

    assert vendor_main(["issue", "--signing-key", prefix + ".key", "--device", "other"]) == 0
    wrong = capsys.readouterr().out.strip()
    assert activate_main(["--config", str(conf), "--state-dir", str(state), wrong]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not this device" in err
    assert not (state / "license.key").exists()

    assert vendor_main(["issue", "--signing-key", prefix + ".key", "--device", "abc123", "--expires", "2999-01-01"]) == 0
    good = capsys.readouterr().out.strip()
    assert activate_main(["--config", str(conf), "--state-dir", str(state), good]) == 0
    assert (state / "license.key").read_text().strip() == good


def test_console_scripts_installed():
    """The console scripts exist and answer --help."""
    bindir = os.path.dirname(sys.executable)
    for name in ("tinypilot-activate-license", "tinypilot-license"):
        out = subprocess.run([os.path.join(bindir, name), "--help"], capture_output=True, text=True)
        assert out.returncode == 0 and "usage" in out.stdout


# Tokens


def test_token_store_bound_and_lookup():
    """Tokens are valid until the bound; past it issue() raises; unknown strings are invalid."""
    store = TokenStore(2)
    a, b = store.issue(), store.issue()
    assert store.valid(a) and store.valid(b)
    assert not store.valid(a[:-1] + ("0" if a[-1] != "0" else "1"))
    assert not store.valid("") and not store.valid("\udcff")
    with pytest.raises(TooManyTokens):
        store.issue()


# Configuration


def test_config_refuses_unknown_and_mistyped_keys(tmp_path):
    """Unknown keys, wrong types and negative numbers are refused naming the key."""
    cases = {
        "[hid]\nkeybaord = '/dev/hidg0'\n": "hid.keybaord",
        "[hid]\nwrite_timeout = 'fast'\n": "hid.write_timeout",
        "[daemon]\nlisten = 'ssl:443'\n": "daemon.listen",
        "[auth]\npassword_required = 1\n": "auth.password_required",
        "[vidoe]\n": "[vidoe]",
        "[video]\nstale_after = -1\n": "video.stale_after",
        "[hid]\nwrite_timeout = nan\n": "hid.write_timeout",
        "[video]\nmax_restart_delay = inf\n": "video.max_restart_delay",
        "[license]\npublic_keys = ['ed25519:typo']\n": r"license.public_keys[0]",
        "[hid\n": "not valid TOML",
    }
    for text, name in cases.items():
        path = tmp_path / "c.toml"
        path.write_text(text)
        with pytest.raises(_config.ConfigError, match=re.escape(name)):
            _config.load(str(path))


def test_documented_config_is_the_default():
    """etc/tinypilot.toml documents exactly the built-in defaults."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    assert _config.load(os.path.join(here, "etc", "tinypilot.toml")) == _config.Config()


def test_command_line_overrides_file(tmp_path):
    """Options given on the command line win over the file; --listen repeats."""
    path = tmp_path / "c.toml"
    path.write_text('[hid]\nkeyboard = "/tmp/k"\nmouse = "/tmp/m"\n[daemon]\nlisten = ["ssl:443"]\n')
    options = Options()
    options.parseOptions(["--config", str(path), "--mouse", "/tmp/m2", "--listen", "tcp:80", "--listen", "ssl:8443"])
    assert options.config.hid.keyboard == "/tmp/k"
    assert options.config.hid.mouse == "/tmp/m2"
    assert options.config.daemon.listen == ("tcp:80", "ssl:8443")
    from twisted.python.usage import UsageError

    path.write_text("[hid]\nbogus = 1\n")
    with pytest.raises(UsageError, match="hid.bogus"):
        Options().parseOptions(["--config", str(path)])
