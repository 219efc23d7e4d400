"""
The device's TLS material: a local CA, made once, and a server certificate
signed by it, renewed at start when it nears expiry.

Clients trust the CA (served publicly at C{/ca.crt}) instead of turning off
verification.  Keys are ECDSA P-256: fast to make on a Raspberry Pi and
accepted by every current TLS client.
"""

import datetime
import ipaddress
import os
import socket
from typing import Callable

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_LIFETIME = datetime.timedelta(days=3650)
#: 397 days: the longest validity current browsers accept for a server
#: certificate.
SERVER_LIFETIME = datetime.timedelta(days=397)
RENEW_BEFORE = datetime.timedelta(days=30)


@attrs.frozen
class TLSMaterial:
    """
    Paths to the PEM files in C{<state-dir>/tls/} and facts for the start log.
    """

    ca_cert: str
    server_cert: str
    server_key: str
    ca_pem: bytes
    ca_fingerprint: str
    server_not_after: datetime.datetime
    renewed: bool


def _writePrivate(path: str, data: bytes, mode: int) -> None:
    """
    Write C{data} to C{path} atomically with permissions C{mode}.
    """
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _keyPEM(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def fingerprint(cert: x509.Certificate) -> str:
    """
    The SHA-256 fingerprint as colon-separated hex, as browsers show it.
    """
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def _makeCA(now: datetime.datetime) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tinypilotd"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"tinypilotd local CA {socket.gethostname()}"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def serverNames(hostname: str) -> list[x509.GeneralName]:
    """
    The subject alternative names of the server certificate.
    """
    names: list[x509.GeneralName] = []
    for dns in dict.fromkeys([hostname, "tinypilot", "localhost"]):
        if dns:
            names.append(x509.DNSName(dns))
    names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    names.append(x509.IPAddress(ipaddress.ip_address("::1")))
    return names


def _makeServer(
    caKey: ec.EllipticCurvePrivateKey,
    caCert: x509.Certificate,
    hostname: str,
    now: datetime.datetime,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname or "tinypilot")]))
        .issuer_name(caCert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + SERVER_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(serverNames(hostname)), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(caKey.public_key()),
            critical=False,
        )
        .sign(caKey, hashes.SHA256())
    )
    return key, cert


def _needsRenewal(cert: x509.Certificate, caCert: x509.Certificate, hostname: str, now: datetime.datetime) -> bool:
    if cert.issuer != caCert.subject:
        return True
    if cert.not_valid_after_utc - now < RENEW_BEFORE:
        return True
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return True
    return set(san) != set(serverNames(hostname))


def ensureTLS(
    stateDir: str,
    hostname: str | None = None,
    now: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.timezone.utc),
) -> TLSMaterial:
    """
    Make sure C{<stateDir>/tls/} holds a CA and a current server certificate,
    creating or renewing what is missing, expiring within L{RENEW_BEFORE}, or
    made for another hostname.  Blocking file I/O: call before the reactor
    runs.
    """
    hostname = socket.gethostname() if hostname is None else hostname
    tlsDir = os.path.join(stateDir, "tls")
    os.makedirs(tlsDir, mode=0o700, exist_ok=True)
    caCertPath = os.path.join(tlsDir, "ca.crt")
    caKeyPath = os.path.join(tlsDir, "ca.key")
    certPath = os.path.join(tlsDir, "server.crt")
    keyPath = os.path.join(tlsDir, "server.key")
    moment = now()

    if os.path.exists(caCertPath) and os.path.exists(caKeyPath):
        with open(caCertPath, "rb") as f:
            caCert = x509.load_pem_x509_certificate(f.read())
        with open(caKeyPath, "rb") as f:
            caKey = serialization.load_pem_private_key(f.read(), password=None)
        assert isinstance(caKey, ec.EllipticCurvePrivateKey)
    else:
        caKey, caCert = _makeCA(moment)
        _writePrivate(caKeyPath, _keyPEM(caKey), 0o600)
        _writePrivate(caCertPath, caCert.public_bytes(serialization.Encoding.PEM), 0o644)

    renewed = True
    if os.path.exists(certPath) and os.path.exists(keyPath):
        with open(certPath, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        renewed = _needsRenewal(cert, caCert, hostname, moment)
    if renewed:
        key, cert = _makeServer(caKey, caCert, hostname, moment)
        _writePrivate(keyPath, _keyPEM(key), 0o600)
        _writePrivate(certPath, cert.public_bytes(serialization.Encoding.PEM), 0o644)

    return TLSMaterial(
        ca_cert=caCertPath,
        server_cert=certPath,
        server_key=keyPath,
        ca_pem=caCert.public_bytes(serialization.Encoding.PEM),
        ca_fingerprint=fingerprint(caCert),
        server_not_after=cert.not_valid_after_utc,
        renewed=renewed,
    )
