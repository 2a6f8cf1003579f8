"""A QUIC server's secrets: address-validation tokens (Retry and NEW_TOKEN, RFC 9000 8.1) and
stateless reset tokens (RFC 9000 10.3).

A token is ``kind (1 byte) | nonce (12) | AES-GCM(payload)``; the kind and the client's address
are authenticated data, so a token only validates the address it was issued to. Retry tokens are
bound to IP and port, carry the original and Retry connection IDs, and live ``RETRY_LIFETIME``
seconds; NEW_TOKEN tokens are bound to the IP only (a returning client has a new port) and live
``lifetime`` seconds. Tokens survive a fork (workers share the key made before it), not a restart.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["NEW_TOKEN", "RETRY", "TokenCheck", "TokenIssuer", "reset_token", "stateless_reset"]

RETRY = 0x52  # "R"
NEW_TOKEN = 0x4E  # "N"
RETRY_LIFETIME = 10.0
_NONCE = 12
_SHARED_KEY = AESGCM.generate_key(bit_length=128)  # made at import: shared by forked workers
_RESET_KEY = os.urandom(32)


@dataclass(frozen=True, slots=True)
class TokenCheck:
    """A token that decrypted and is in date: its kind and, for Retry, the connection IDs."""

    kind: int
    original_dcid: bytes = b""
    retry_scid: bytes = b""


def _address(addr: tuple[Any, ...], with_port: bool) -> bytes:
    host = str(addr[0]).encode()
    return host + (b"|%d" % int(addr[1]) if with_port else b"")


class TokenIssuer:
    """Makes and checks tokens with one AES-128-GCM key.

    Timestamps come from the caller's clock: the event loop's monotonic clock is shared by the
    workers of one machine.
    """

    def __init__(self, key: bytes | None = None, lifetime: float = 86400.0) -> None:
        self._aead = AESGCM(key or _SHARED_KEY)
        self.lifetime = lifetime

    def retry_token(
        self, addr: tuple[Any, ...], original_dcid: bytes, retry_scid: bytes, now: float
    ) -> bytes:
        """A token for a Retry packet sent to ``addr``."""
        payload = (
            struct.pack("!dB", now, len(original_dcid))
            + original_dcid
            + bytes([len(retry_scid)])
            + retry_scid
        )
        return self._seal(RETRY, payload, _address(addr, True))

    def new_token(self, addr: tuple[Any, ...], now: float) -> bytes:
        """A token for a NEW_TOKEN frame: lets the client skip address validation next time."""
        return self._seal(NEW_TOKEN, struct.pack("!d", now), _address(addr, False))

    def check(self, token: bytes, addr: tuple[Any, ...], now: float) -> TokenCheck | None:
        """The token's content when it is authentic, meant for ``addr`` and in date, else None."""
        if len(token) < 1 + _NONCE + 16 + 8:
            return None
        kind = token[0]
        if kind not in (RETRY, NEW_TOKEN):
            return None
        aad = bytes([kind]) + _address(addr, kind == RETRY)
        try:
            payload = self._aead.decrypt(token[1 : 1 + _NONCE], token[1 + _NONCE :], aad)
        except InvalidTag:
            return None
        (issued,) = struct.unpack_from("!d", payload)
        lifetime = RETRY_LIFETIME if kind == RETRY else self.lifetime
        if not issued - 1.0 <= now <= issued + lifetime:
            return None
        if kind == NEW_TOKEN:
            return TokenCheck(NEW_TOKEN)
        odcid_length = payload[8]
        odcid = payload[9 : 9 + odcid_length]
        scid = payload[10 + odcid_length : 10 + odcid_length + payload[9 + odcid_length]]
        return TokenCheck(RETRY, odcid, scid)

    def _seal(self, kind: int, payload: bytes, address: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        return bytes([kind]) + nonce + self._aead.encrypt(nonce, payload, bytes([kind]) + address)


def reset_token(cid: bytes) -> bytes:
    """The stateless reset token of a connection ID: HMAC-SHA256 under a per-process key, so
    a worker that lost the connection (restarted) can still compute it."""
    mac = hmac.HMAC(_RESET_KEY, hashes.SHA256())
    mac.update(cid)
    return mac.finalize()[:16]


def stateless_reset(cid: bytes, received: int) -> bytes | None:
    """A stateless reset for a packet of ``received`` bytes to ``cid``: shorter than it (no
    reset loops), at least 21 bytes; None when the packet is too small to answer."""
    size = min(received - 1, 43)
    if size < 21:
        return None
    first = 0x40 | (os.urandom(1)[0] & 0x3F)  # looks like a short-header packet
    return bytes([first]) + os.urandom(size - 17) + reset_token(cid)
