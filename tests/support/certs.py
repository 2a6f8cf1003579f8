"""Throwaway CAs and leaf certificates for given names (SNI and reload tests)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Issued:
    """A leaf's files and its CA's certificate file."""

    cert: Path
    key: Path
    ca: Path
    serial: int


def _name(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def issue(directory: Path, stem: str, names: list[str]) -> Issued:
    """A new CA and a leaf for ``names`` (DNS names), written as STEM.pem, STEM.key, STEM-ca.pem."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{stem} test CA"))
        .issuer_name(_name(f"{stem} test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path, ca_path = (
        directory / f"{stem}.pem",
        directory / f"{stem}.key",
        directory / f"{stem}-ca.pem",
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # the key first: a watcher seeing the new certificate finds its key already there
    key_path.write_bytes(key_pem)
    cert_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return Issued(cert_path, key_path, ca_path, leaf.serial_number)


def tls_verifies(port: int, server_name: str, ca: Path, alpn: str = "h2") -> bool:
    """Whether a TLS handshake over TCP sending ``server_name`` gets a certificate that ``ca``
    vouches for under that name (and the ALPN protocol is still ``alpn``)."""
    import socket
    import ssl

    context = ssl.create_default_context(cafile=str(ca))
    context.set_alpn_protocols([alpn])
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=server_name) as tls,
        ):
            return tls.selected_alpn_protocol() == alpn
    except ssl.SSLCertVerificationError:
        return False


def quic_verifies(port: int, server_name: str, ca: Path) -> bool:
    """The same over QUIC, with aioquic's client (ALPN h3)."""
    import asyncio

    from aioquic.asyncio.client import connect
    from aioquic.h3.connection import H3_ALPN
    from aioquic.quic.configuration import QuicConfiguration

    configuration = QuicConfiguration(
        is_client=True, alpn_protocols=H3_ALPN, server_name=server_name
    )
    configuration.load_verify_locations(str(ca))

    async def handshake() -> bool:
        try:
            async with connect("127.0.0.1", port, configuration=configuration) as client:
                await client.ping()
                return True
        except ConnectionError:
            return False

    return asyncio.run(asyncio.wait_for(handshake(), 15))
