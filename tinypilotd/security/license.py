"""
The Automation Licence: an offline-verifiable key that enables the REST API.

A key reads C{TPL1.<payload>.<signature>}, both parts base64url without
padding.  The payload is JSON C{{"device": "<device id>" or "*", "expires":
"YYYY-MM-DD" or null}}; the signature is Ed25519 over the ASCII bytes
C{TPL1.<payload>}.  Public keys are written C{ed25519:<base64url of the 32
raw bytes>}, which is how C{[license] public_keys} lists them.
"""

import base64
import binascii
import datetime
import json
import os
from typing import Callable, Sequence

import attrs
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

PREFIX = "TPL1"
KEY_PREFIX = "ed25519:"
LICENSE_FILE = "license.key"

Today = Callable[[], datetime.date]


def _today() -> datetime.date:
    return datetime.datetime.now(datetime.timezone.utc).date()


class LicenseError(ValueError):
    """
    A licence key is not valid here; C{str(exc)} is a one-line reason.
    """


@attrs.frozen
class License:
    device: str
    expires: datetime.date | None

    def describe(self) -> str:
        scope = "any device" if self.device == "*" else f"device {self.device}"
        until = f"until {self.expires.isoformat()}" if self.expires else "with no expiry"
        return f"active for {scope}, {until}"


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    if not text or any(c not in _B64URL for c in text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def publicKeyText(key: Ed25519PublicKey) -> str:
    """
    A public key as C{[license] public_keys} takes it.
    """
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return KEY_PREFIX + _b64encode(raw)


def parsePublicKey(text: str) -> Ed25519PublicKey:
    if not text.startswith(KEY_PREFIX):
        raise LicenseError(f"public key {text!r} does not start with {KEY_PREFIX!r}")
    try:
        raw = _b64decode(text[len(KEY_PREFIX) :])
        return Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, binascii.Error):
        raise LicenseError(f"public key {text!r} is not a base64url Ed25519 key") from None


def issue(signingKey: Ed25519PrivateKey, device: str = "*", expires: datetime.date | None = None) -> str:
    """
    Make a licence key for C{device} (or C{"*"}) that expires after the day
    C{expires} (or never).
    """
    payload = json.dumps(
        {"device": device, "expires": expires.isoformat() if expires else None},
        separators=(",", ":"),
        sort_keys=True,
    ).encode("utf-8")
    signed = f"{PREFIX}.{_b64encode(payload)}"
    signature = signingKey.sign(signed.encode("ascii"))
    return f"{signed}.{_b64encode(signature)}"


def verify(
    key: str,
    publicKeys: Sequence[str],
    deviceId: str | None,
    today: Today = _today,
) -> License:
    """
    Check a licence key offline.

    @raise LicenseError: malformed, signed by no listed key, for another
        device, or expired.
    """
    parts = key.strip().split(".")
    if len(parts) != 3 or parts[0] != PREFIX:
        raise LicenseError(f"malformed licence key: expected {PREFIX}.<payload>.<signature>")
    try:
        payload = _b64decode(parts[1])
        signature = _b64decode(parts[2])
    except (ValueError, binascii.Error):
        raise LicenseError("malformed licence key: payload or signature is not base64url") from None
    if not publicKeys:
        raise LicenseError("no licence public keys are configured ([license] public_keys)")
    signed = f"{parts[0]}.{parts[1]}".encode("ascii")
    for text in publicKeys:
        try:
            parsePublicKey(text).verify(signature, signed)
            break
        except (InvalidSignature, LicenseError):
            continue
    else:
        raise LicenseError("licence key signature does not match any configured public key")
    try:
        fields = json.loads(payload)
        device = fields["device"]
        expiresText = fields["expires"]
        if not isinstance(device, str) or not (expiresText is None or isinstance(expiresText, str)):
            raise TypeError
        expires = datetime.date.fromisoformat(expiresText) if expiresText else None
    except (ValueError, KeyError, TypeError):
        raise LicenseError("malformed licence key: payload is not the expected JSON") from None
    if device != "*" and device != deviceId:
        raise LicenseError(f"licence key is for device {device}, not this device ({deviceId or 'unknown id'})")
    if expires is not None and today() > expires:
        raise LicenseError(f"licence key expired on {expires.isoformat()}")
    return License(device=device, expires=expires)


def readDeviceId(path: str) -> str | None:
    """
    The device id (C{/etc/machine-id} by default), or C{None} if unreadable.
    """
    try:
        with open(path, encoding="ascii") as f:
            return f.read().strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def store(stateDir: str, key: str) -> str:
    """
    Store a verified key atomically with mode 0600; return its path.
    """
    os.makedirs(stateDir, mode=0o700, exist_ok=True)
    path = os.path.join(stateDir, LICENSE_FILE)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, key.strip().encode("ascii") + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


class LicenseState:
    """
    Whether the REST API is licensed right now, as the daemon asks on every
    request.  The stored key is re-read only when its file changes (one
    C{stat} per request), so activating a licence while the daemon runs takes
    effect at once; expiry is checked against today's date every time.
    """

    def __init__(
        self,
        stateDir: str,
        publicKeys: Sequence[str],
        deviceId: str | None,
        required: bool,
        today: Today = _today,
    ) -> None:
        self._path = os.path.join(stateDir, LICENSE_FILE)
        self._publicKeys = tuple(publicKeys)
        self._deviceId = deviceId
        self.required = required
        self._today = today
        self._seen: tuple[int, int, int] | None = None
        self._key: str | None = None
        # The last verdict, valid while the file and the date stay the same:
        # a signature check per request would cost more than the request.
        self._verdict: tuple[object, License | LicenseError] | None = None

    def _load(self) -> str | None:
        try:
            st = os.stat(self._path)
        except OSError:
            self._seen, self._key = None, None
            return None
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if stamp != self._seen:
            try:
                with open(self._path, encoding="ascii") as f:
                    self._key = f.read().strip()
            except (OSError, UnicodeDecodeError):
                self._key = None
            self._seen = stamp
        return self._key

    def check(self) -> License:
        """
        @raise LicenseError: why there is no valid licence.
        """
        key = self._load()
        if key is None:
            raise LicenseError("no licence key is activated")
        stamp = (self._seen, self._today())
        if self._verdict is None or self._verdict[0] != stamp:
            try:
                verdict: License | LicenseError = verify(key, self._publicKeys, self._deviceId, lambda: stamp[1])
            except LicenseError as e:
                verdict = e
            self._verdict = (stamp, verdict)
        result = self._verdict[1]
        if isinstance(result, LicenseError):
            raise result
        return result

    def allows(self) -> bool:
        """
        Whether the REST API may answer: a valid licence, or none required.
        """
        if not self.required:
            return True
        try:
            self.check()
        except LicenseError:
            return False
        return True

    def describe(self) -> str:
        """
        One phrase for the start log (never the key itself).
        """
        try:
            state = self.check().describe()
        except LicenseError as e:
            state = f"inactive ({e})"
        return state if self.required else f"not required; {state}"
