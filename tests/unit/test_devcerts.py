"""Development certificates: a CA and a localhost chain that real TLS stacks accept."""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import ipaddress
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from quicproxy.devcerts import (
    CA_COMMON_NAME,
    DevCerts,
    default_cert_dir,
    ensure_dev_certs,
    spki_sha256_b64,
    trust_instructions,
)


def _chain(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> DevCerts:
    return ensure_dev_certs(tmp_path_factory.mktemp("devcerts") / "nested" / "certs")


def test_files_and_modes(certs: DevCerts) -> None:
    assert certs.ca_cert.name == "ca.pem" and certs.ca_key.name == "ca.key"
    assert certs.cert.name == "localhost.pem" and certs.key.name == "localhost.key"
    for key in (certs.ca_key, certs.key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8
    assert not list(certs.cert.parent.glob("*.tmp"))  # no leftovers from atomic writes


def test_leaf_chains_to_ca(certs: DevCerts) -> None:
    ca = x509.load_pem_x509_certificate(certs.ca_cert.read_bytes())
    chain = _chain(certs.cert)
    assert len(chain) == 2 and chain[1] == ca
    leaf = chain[0]
    ca_public = ca.public_key()
    assert isinstance(ca_public, ec.EllipticCurvePublicKey)
    ca_public.verify(leaf.signature, leaf.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256()))
    ca_public.verify(ca.signature, ca.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256()))
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    key = serialization.load_pem_private_key(certs.key.read_bytes(), password=None)
    assert key.public_key() == leaf.public_key()


def test_ca_properties(certs: DevCerts) -> None:
    ca = x509.load_pem_x509_certificate(certs.ca_cert.read_bytes())
    assert ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == CA_COMMON_NAME
    bc = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    assert ca.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    lifetime = ca.not_valid_after_utc - ca.not_valid_before_utc
    assert datetime.timedelta(days=3640) < lifetime < datetime.timedelta(days=3660)


def test_leaf_properties(certs: DevCerts) -> None:
    leaf = _chain(certs.cert)[0]
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "localhost"
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    }
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    leaf.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert datetime.timedelta(days=300) < lifetime <= datetime.timedelta(days=397)
    assert leaf.not_valid_before_utc <= datetime.datetime.now(datetime.UTC)


def test_web_pki_verifier_accepts_chain(certs: DevCerts) -> None:
    ca = x509.load_pem_x509_certificate(certs.ca_cert.read_bytes())
    leaf = _chain(certs.cert)[0]
    builder = PolicyBuilder().store(Store([ca]))
    for subject in (x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("::1"))):
        verified = builder.build_server_verifier(subject).verify(leaf, [])
        assert verified[-1] == ca


def test_second_call_reuses_files(tmp_path: Path) -> None:
    first = ensure_dev_certs(tmp_path)
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in _paths(first)}
    second = ensure_dev_certs(tmp_path)
    assert second == first
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in _paths(second)} == before


def test_missing_leaf_is_reissued_by_same_ca(tmp_path: Path) -> None:
    certs = ensure_dev_certs(tmp_path)
    ca_bytes = certs.ca_cert.read_bytes()
    old_leaf = _chain(certs.cert)[0]
    certs.key.unlink()
    ensure_dev_certs(tmp_path)
    assert certs.ca_cert.read_bytes() == ca_bytes  # a CA the user trusts keeps working
    new_leaf = _chain(certs.cert)[0]
    assert new_leaf.serial_number != old_leaf.serial_number
    assert stat.S_IMODE(certs.key.stat().st_mode) == 0o600


def test_leaf_expiring_soon_is_renewed(tmp_path: Path) -> None:
    certs = ensure_dev_certs(tmp_path)
    ca = x509.load_pem_x509_certificate(certs.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(certs.ca_key.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    leaf_key = serialization.load_pem_private_key(certs.key.read_bytes(), password=None)
    assert isinstance(leaf_key, ec.EllipticCurvePrivateKey)
    now = datetime.datetime.now(datetime.UTC)
    short = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3))
        .sign(ca_key, hashes.SHA256())
    )
    certs.cert.write_bytes(
        short.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM)
    )
    ensure_dev_certs(tmp_path)
    renewed = _chain(certs.cert)[0]
    assert renewed.not_valid_after_utc - now > datetime.timedelta(days=300)


def test_spki_pin(certs: DevCerts) -> None:
    leaf = _chain(certs.cert)[0]
    spki = leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    expected = base64.b64encode(hashlib.sha256(spki).digest()).decode()
    assert spki_sha256_b64(certs.cert) == expected
    assert len(expected) == 44


def test_default_cert_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUICPROXY_CERT_DIR", str(tmp_path / "env"))
    assert default_cert_dir() == tmp_path / "env"
    monkeypatch.delenv("QUICPROXY_CERT_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert default_cert_dir() == tmp_path / "home" / ".local" / "share" / "quicproxy" / "certs"
    (tmp_path / "certs").mkdir()
    assert default_cert_dir() == tmp_path / "certs"


def test_trust_instructions(certs: DevCerts) -> None:
    text = trust_instructions(certs)
    assert f"curl --cacert {certs.ca_cert} https://localhost:8443/" in text
    assert "-k" in text


@pytest.mark.parametrize("server_hostname", ["localhost", "127.0.0.1"])
async def test_python_ssl_accepts_chain(certs: DevCerts, server_hostname: str) -> None:
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(certs.cert, certs.key)
    client_ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    client_ctx.load_verify_locations(certs.ca_cert)
    client_ctx.verify_flags |= ssl.VERIFY_X509_STRICT  # the default from Python 3.13 on

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.readexactly(4)
        writer.write(b"pong:" + data)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        async with asyncio.timeout(10):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_ctx, server_hostname=server_hostname
            )
            writer.write(b"ping")
            await writer.drain()
            assert await reader.readexactly(9) == b"pong:ping"
            peer = writer.get_extra_info("peercert")
            assert ("DNS", "localhost") in peer["subjectAltName"]
            writer.close()
    finally:
        server.close()
        await server.wait_closed()


def _paths(certs: DevCerts) -> list[Path]:
    return [certs.ca_cert, certs.ca_key, certs.cert, certs.key]
