"""Certificates for the local runner: the development pair, or a long ECDSA P-256 chain."""

from __future__ import annotations

import datetime
import ipaddress
import shutil
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from quicproxy.devcerts import ensure_dev_certs


def dev_certs(target: Path, cache: Path) -> Path:
    """``target``/cert.pem and priv.key from quicproxy's development certificates."""
    certs = ensure_dev_certs(cache)
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(certs.cert, target / "cert.pem")
    shutil.copy(certs.key, target / "priv.key")
    return target


def chain_certs(target: Path, length: int) -> int:
    """Write a chain of ``length`` certificates (root, intermediates, leaf): cert.pem holds the
    leaf and the intermediates. Returns the DER size of what cert.pem holds."""
    now = datetime.datetime.now(datetime.UTC)
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(length)]
    names = [x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"interop chain {i}")])
             for i in range(length)]  # fmt: skip
    certs: list[x509.Certificate] = []
    for i, key in enumerate(keys):
        leaf = i == length - 1
        issuer = max(i - 1, 0)
        builder = (
            x509.CertificateBuilder()
            .subject_name(names[i])
            .issuer_name(names[issuer])
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=10))
            .add_extension(x509.BasicConstraints(ca=not leaf, path_length=None), critical=True)
        )
        if leaf:
            san: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.DNSName("server")]
            san += [x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", "::1")]
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        certs.append(builder.sign(keys[issuer], hashes.SHA256()))
    target.mkdir(parents=True, exist_ok=True)
    served = list(reversed(certs[1:]))
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in served)
    (target / "cert.pem").write_bytes(pem)
    (target / "ca.pem").write_bytes(certs[0].public_bytes(serialization.Encoding.PEM))
    key_pem = keys[-1].private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (target / "priv.key").write_bytes(key_pem)
    (target / "priv.key").chmod(0o600)
    return sum(len(c.public_bytes(serialization.Encoding.DER)) for c in served)
