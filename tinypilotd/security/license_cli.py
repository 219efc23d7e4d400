"""
Command-line tools for the Automation Licence.

C{tinypilot-activate-license KEY} runs on the device (the seed's
C{activate-license}); C{tinypilot-license keygen|issue} is for whoever sells
licences, and for tests.
"""

import argparse
import datetime
import os
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tinypilotd import config as _config
from tinypilotd.security import license as _license

DEVICE_CONFIG = "/etc/tinypilot/tinypilot.toml"


def _fail(message: str) -> int:
    print(f"{os.path.basename(sys.argv[0] or 'tinypilot')}: {message}", file=sys.stderr)
    return 1


def activate_main(argv: list[str] | None = None) -> int:
    """
    Verify a licence key offline against the configured public keys and, if
    it is good, store it where the daemon looks for it.
    """
    parser = argparse.ArgumentParser(
        prog="tinypilot-activate-license",
        description="Activate a TinyPilot Automation Licence key on this device.",
    )
    parser.add_argument(
        "--config",
        help=f"daemon configuration file (default: {DEVICE_CONFIG} if it exists)",
    )
    parser.add_argument("--state-dir", help="where the daemon keeps its state (default: from the configuration)")
    parser.add_argument("key", help="the licence key, TPL1.<payload>.<signature>")
    args = parser.parse_args(argv)

    path = args.config or (DEVICE_CONFIG if os.path.exists(DEVICE_CONFIG) else None)
    try:
        config = _config.load(path)
    except _config.ConfigError as e:
        return _fail(str(e))
    stateDir = args.state_dir or config.daemon.state_dir
    deviceId = _license.readDeviceId(config.license.device_id_file)
    try:
        licence = _license.verify(args.key, config.license.public_keys, deviceId)
    except _license.LicenseError as e:
        return _fail(str(e))
    try:
        stored = _license.store(stateDir, args.key)
    except OSError as e:
        return _fail(f"cannot store the licence in {stateDir}: {e.strerror}")
    print(f"Licence {licence.describe()}; stored in {stored}.")
    return 0


def _keygen(args: argparse.Namespace) -> int:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(f"{args.prefix}.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public = _license.publicKeyText(key.public_key())
    with open(f"{args.prefix}.pub", "w", encoding="ascii") as f:
        f.write(public + "\n")
    print(public)
    return 0


def _issue(args: argparse.Namespace) -> int:
    try:
        with open(args.signing_key, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
    except (OSError, ValueError) as e:
        return _fail(f"cannot read signing key {args.signing_key}: {e}")
    if not isinstance(key, Ed25519PrivateKey):
        return _fail(f"{args.signing_key} is not an Ed25519 private key")
    expires = None
    if args.expires:
        try:
            expires = datetime.date.fromisoformat(args.expires)
        except ValueError:
            return _fail(f"--expires must be YYYY-MM-DD, not {args.expires!r}")
    print(_license.issue(key, device=args.device, expires=expires))
    return 0


def vendor_main(argv: list[str] | None = None) -> int:
    """
    Make signing keys and issue licence keys.
    """
    parser = argparse.ArgumentParser(prog="tinypilot-license", description="Make and sign Automation Licence keys.")
    sub = parser.add_subparsers(dest="command", required=True)
    keygen = sub.add_parser("keygen", help="write PREFIX.key (private, 0600) and PREFIX.pub")
    keygen.add_argument("prefix")
    keygen.set_defaults(run=_keygen)
    issue = sub.add_parser("issue", help="print a licence key signed with a private key")
    issue.add_argument("--signing-key", required=True, help="PREFIX.key from keygen")
    issue.add_argument("--device", default="*", help="device id (/etc/machine-id), default any device")
    issue.add_argument("--expires", help="last valid day, YYYY-MM-DD (default: never)")
    issue.set_defaults(run=_issue)
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except FileExistsError as e:
        return _fail(f"{e.filename} exists; not overwriting a key")
