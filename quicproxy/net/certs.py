"""Server certificates: loaded once per (re)load, chosen per connection by the client's SNI.

A :class:`CertificateStore` holds the default certificate and any number chosen by name (exact
names first, then ``*.domain`` wildcards covering one label). Each entry carries what both
transports need: an ``ssl.SSLContext`` for TLS over TCP and the parsed certificate, chain and
private key for QUIC. :class:`Certificates` is the live holder a server reads at each handshake;
a reload swaps its store, so new handshakes get the new files and open connections are not
touched. Loading validates everything first: a bad file raises :class:`CertificateError` and
nothing is swapped.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from .tls import record_server_name, tls_server_context

__all__ = [
    "ALPN",
    "CertificateError",
    "CertificateFiles",
    "CertificateStore",
    "Certificates",
    "Entry",
]


ALPN = ("h2", "http/1.1")
"""What TCP listeners offer, in order of preference."""


class CertificateError(ValueError):
    """A certificate or key file that cannot be used (names the file and the reason)."""


@dataclass(frozen=True, slots=True)
class CertificateFiles:
    """A certificate and key file pair; empty ``names``: the DNS names in the certificate."""

    cert: Path
    key: Path
    names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Entry:
    """One loaded certificate, ready for TCP (``context``) and QUIC (the parsed objects)."""

    files: CertificateFiles
    names: tuple[str, ...]
    context: ssl.SSLContext
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    private_key: Any


def _dns_names(certificate: x509.Certificate) -> tuple[str, ...]:
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return ()
    return tuple(name.lower() for name in san.value.get_values_for_type(x509.DNSName))


def load_entry(files: CertificateFiles, alpn: Sequence[str]) -> Entry:
    """Read and check one pair; CertificateError naming the file when it is unusable."""
    try:
        pem = files.cert.read_bytes()
        chain = x509.load_pem_x509_certificates(pem)
    except (OSError, ValueError) as exc:
        raise CertificateError(f"{files.cert}: cannot read a PEM certificate ({exc})") from None
    try:
        private_key = load_pem_private_key(files.key.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise CertificateError(f"{files.key}: cannot read a PEM private key ({exc})") from None
    try:
        context = tls_server_context(files.cert, files.key, alpn)
    except ssl.SSLError as exc:
        raise CertificateError(f"{files.cert} with {files.key}: {exc.reason or exc}") from None
    names = files.names or _dns_names(chain[0])
    return Entry(files, names, context, chain[0], tuple(chain[1:]), private_key)


class CertificateStore:
    """The default certificate and those chosen by SNI, as loaded at one moment."""

    def __init__(self, default: Entry, others: Iterable[Entry] = ()) -> None:
        self.default = default
        self.entries = (default, *others)
        self._exact: dict[str, Entry] = {}
        self._wildcard: dict[str, Entry] = {}
        for entry in reversed(self.entries[1:]):  # the first listing of a name wins
            for name in entry.names:
                table = self._wildcard if name.startswith("*.") else self._exact
                table[name.removeprefix("*.") if name.startswith("*.") else name] = entry

    @classmethod
    def load(
        cls, default: CertificateFiles, others: Iterable[CertificateFiles], alpn: Sequence[str]
    ) -> CertificateStore:
        """Load every pair (CertificateError on the first unusable one)."""
        return cls(load_entry(default, alpn), [load_entry(files, alpn) for files in others])

    def pick(self, server_name: str | None) -> Entry:
        """The certificate for ``server_name``: an exact name, a wildcard, else the default."""
        if not server_name:
            return self.default
        name = server_name.lower().rstrip(".")
        entry = self._exact.get(name)
        if entry is None:
            _, _, parent = name.partition(".")
            entry = self._wildcard.get(parent) if parent else None
        return entry or self.default

    def files(self) -> list[Path]:
        """Every file this store was loaded from (to watch for changes)."""
        return [path for entry in self.entries for path in (entry.files.cert, entry.files.key)]


class Certificates:
    """The live certificates of a server: what new handshakes get; :meth:`replace` on reload."""

    def __init__(self, store: CertificateStore) -> None:
        self.store = store
        files = store.default.files
        self.context = tls_server_context(files.cert, files.key, ALPN)  # switched per handshake
        self.context.sni_callback = self._choose

    def replace(self, store: CertificateStore) -> None:
        """Serve ``store`` to every handshake from now on."""
        self.store = store

    def _choose(
        self, connection: ssl.SSLObject | ssl.SSLSocket, name: str | None, _ctx: ssl.SSLContext
    ) -> None:
        record_server_name(connection, name)
        connection.context = self.store.pick(name).context
