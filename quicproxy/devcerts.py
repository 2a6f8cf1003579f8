"""Create and reuse a development CA and a localhost TLS certificate signed by it.

`ensure_dev_certs(directory)` keeps four files in `directory`: `ca.pem`/`ca.key` (the development
CA, valid 10 years) and `localhost.pem`/`localhost.key` (the server certificate for `localhost`,
`127.0.0.1` and `::1`, valid about a year). `localhost.pem` holds the leaf followed by the CA, so a
server can load it as its chain. Files that exist and are still good are reused; keys are PKCS#8
PEM with mode 0600 and every file is written atomically.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import ipaddress
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CA_COMMON_NAME",
    "DevCerts",
    "default_cert_dir",
    "ensure_dev_certs",
    "spki_sha256_b64",
    "trust_instructions",
]

CA_COMMON_NAME = "quicproxy development CA"
LEAF_COMMON_NAME = "localhost"

CA_FILE = "ca.pem"
CA_KEY_FILE = "ca.key"
CERT_FILE = "localhost.pem"
KEY_FILE = "localhost.key"

CA_VALIDITY = datetime.timedelta(days=3650)
LEAF_VALIDITY = datetime.timedelta(days=365)  # browsers reject server certificates over 398 days
RENEW_BEFORE = datetime.timedelta(days=7)
BACKDATE = datetime.timedelta(hours=1)  # tolerate small clock skew between machines

ENV_CERT_DIR = "QUICPROXY_CERT_DIR"


@dataclass(frozen=True, slots=True)
class DevCerts:
    """Paths of the development CA and the localhost certificate chain and key."""

    ca_cert: Path
    ca_key: Path
    cert: Path
    key: Path


def ensure_dev_certs(directory: Path) -> DevCerts:
    """Return the certificates in `directory`, creating or renewing them when needed.

    The CA is kept when it is present, matches its key and stays valid beyond the leaf's lifetime
    (so a CA the user already trusts keeps working); otherwise both are made anew. The leaf is
    re-issued when any file is missing or unreadable, or when it expires within 7 days.
    """
    directory = Path(directory).expanduser().absolute()
    directory.mkdir(parents=True, exist_ok=True)
    certs = DevCerts(
        ca_cert=directory / CA_FILE,
        ca_key=directory / CA_KEY_FILE,
        cert=directory / CERT_FILE,
        key=directory / KEY_FILE,
    )
    now = datetime.datetime.now(datetime.UTC)
    ca = _load_ca(certs, now)
    if ca is not None and _leaf_is_good(certs, ca[0], now):
        return certs
    if ca is None:
        ca = _make_ca(now)
        _write_atomic(certs.ca_key, _key_pem(ca[1]), 0o600)
        _write_atomic(certs.ca_cert, ca[0].public_bytes(serialization.Encoding.PEM), 0o644)
    ca_cert, ca_key = ca
    leaf, leaf_key = _make_leaf(ca_cert, ca_key, now)
    chain = leaf.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(
        serialization.Encoding.PEM
    )
    _write_atomic(certs.key, _key_pem(leaf_key), 0o600)
    _write_atomic(certs.cert, chain, 0o644)
    return certs


def spki_sha256_b64(cert_path: Path) -> str:
    """Base64 SHA-256 of the first certificate's SubjectPublicKeyInfo in a PEM file.

    This is the value Chromium takes in `--ignore-certificate-errors-spki-list`.
    """
    leaf = x509.load_pem_x509_certificates(Path(cert_path).read_bytes())[0]
    spki = leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


def default_cert_dir() -> Path:
    """`$QUICPROXY_CERT_DIR`, else `./certs` if it exists, else `~/.local/share/quicproxy/certs`."""
    configured = os.environ.get(ENV_CERT_DIR)
    if configured:
        return Path(configured).expanduser()
    local = Path.cwd() / "certs"
    if local.is_dir():
        return local
    return Path.home() / ".local" / "share" / "quicproxy" / "certs"


def trust_instructions(certs: DevCerts, port: int = 8443) -> str:
    """Short text telling a user how to make clients accept the development certificate."""
    spki = spki_sha256_b64(certs.cert)
    return (
        f"Development CA: {certs.ca_cert}\n"
        f"Server certificate: {certs.cert} (key {certs.key})\n"
        f"  curl --cacert {certs.ca_cert} https://localhost:{port}/\n"
        f"  curl -k https://localhost:{port}/   (-k skips verification; fine for local testing)\n"
        f"  Chromium: --origin-to-force-quic-on=localhost:{port} "
        f"--ignore-certificate-errors-spki-list={spki}\n"
        f"To trust it system-wide, import {certs.ca_cert.name} into your OS or browser trust "
        f"store; its key {certs.ca_key.name} never leaves this machine.\n"
    )


# -- internals ---------------------------------------------------------------------------------


def _load_ca(
    certs: DevCerts, now: datetime.datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    """The stored CA and its key if both load, match, and outlive a fresh leaf; else None."""
    try:
        ca_cert = x509.load_pem_x509_certificate(certs.ca_cert.read_bytes())
        ca_key = serialization.load_pem_private_key(certs.ca_key.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        return None
    if ca_cert.public_key() != ca_key.public_key():
        return None
    if ca_cert.not_valid_after_utc < now + LEAF_VALIDITY + RENEW_BEFORE:
        return None
    return ca_cert, ca_key


def _leaf_is_good(certs: DevCerts, ca_cert: x509.Certificate, now: datetime.datetime) -> bool:
    """Whether the stored leaf chain and key are readable, match, chain to the CA and stay valid."""
    try:
        chain = x509.load_pem_x509_certificates(certs.cert.read_bytes())
        key = serialization.load_pem_private_key(certs.key.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return False
    leaf = chain[0]
    if leaf.public_key() != key.public_key():
        return False
    if leaf.issuer != ca_cert.subject or chain[-1] != ca_cert:
        return False
    try:
        leaf.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return leaf.not_valid_after_utc - now > RENEW_BEFORE


def _make_ca(now: datetime.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, CA_COMMON_NAME),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "quicproxy"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CA_VALIDITY)
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
    return cert, key


def _make_leaf(
    ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, now: datetime.datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    not_after = min(now + LEAF_VALIDITY, ca_cert.not_valid_after_utc)
    san = x509.SubjectAlternativeName(
        [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, LEAF_COMMON_NAME)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            # clientAuth too: the same dev leaf can be the proxy's client certificate (mTLS)
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(san, critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write `data` to a temporary file beside `path` with `mode`, then rename it over `path`."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as tmp:
            os.fchmod(tmp.fileno(), mode)  # before any byte lands, so a key is never world-readable
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
