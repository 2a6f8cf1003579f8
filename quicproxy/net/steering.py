"""QUIC packet steering across worker processes: connection IDs carry the worker's index.

With several workers, a QUIC connection must keep reaching the worker that owns it when the
client's address changes (NAT rebinding, migration), so the kernel's 4-tuple hash is not enough.
Before forking, the supervisor binds one SO_REUSEPORT UDP socket per worker for each QUIC
address, in worker order, and attaches a classic BPF program to the group
(SO_ATTACH_REUSEPORT_CBPF): a short-header packet goes to socket ``DCID[0] % workers``; long-header
packets (handshakes, whose first DCID the client chose) return an out-of-range index, so the
kernel falls back to its hash, which is stable while the handshake runs. Each worker issues
connection IDs whose first byte is its index modulo the worker count (``cid_factory``). A worker
that restarts inherits the same socket again. Linux only; elsewhere steering is off.
"""

from __future__ import annotations

import ctypes
import logging
import os
import socket
import struct
from collections.abc import Callable, Iterable

__all__ = ["cid_factory", "enter_worker", "prepare", "steered_cid", "take_socket"]

log = logging.getLogger("quicproxy.net.steering")

SO_ATTACH_REUSEPORT_CBPF = 51
CID_LENGTH = 8
_FALLBACK = 0xFFFFFFFF  # out of range: the kernel picks a socket by hash

_workers = 1
_index = 0
_sockets: dict[tuple[str, int], list[socket.socket]] = {}


def steered_cid(index: int, workers: int) -> bytes:
    """A random connection ID whose first byte is ``index`` modulo ``workers``."""
    raw = os.urandom(CID_LENGTH)
    first = (raw[0] // workers) * workers + index
    if first > 255:
        first -= workers
    return bytes([first]) + raw[1:]


def program(workers: int) -> bytes:
    """The classic BPF program (``struct sock_filter`` array) choosing a socket per packet."""
    instructions = [
        (0x30, 0, 0, 0),  # ldb [0]: the first byte of the UDP payload
        (0x45, 3, 0, 0x80),  # jset #0x80: a long header -> fall back to the hash
        (0x30, 0, 0, 1),  # ldb [1]: the first byte of the destination connection ID
        (0x94, 0, 0, workers),  # mod #workers
        (0x16, 0, 0, 0),  # ret a
        (0x06, 0, 0, _FALLBACK),  # ret #out-of-range
    ]
    return b"".join(struct.pack("=HBBI", *item) for item in instructions)


def _attach(sock: socket.socket, workers: int) -> None:
    code = program(workers)
    buffer = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("@HP", len(code) // 8, ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def prepare(addresses: Iterable[tuple[str, int]], workers: int) -> bool:
    """In the supervisor, before forking: bind and steer one socket per worker and address.

    Returns False (and binds nothing) where the kernel refuses the BPF program.
    """
    global _workers
    if workers < 2 or not hasattr(socket, "SO_REUSEPORT"):
        return False
    prepared: dict[tuple[str, int], list[socket.socket]] = {}
    try:
        for host, port in addresses:
            group = prepared[(host, port)] = []
            for _ in range(workers):
                group.append(_bind(host, port))
            _attach(group[0], workers)
    except OSError as exc:
        log.warning("QUIC steering across workers is off: %s", exc)
        for group in prepared.values():
            for sock in group:
                sock.close()
        return False
    _sockets.update(prepared)
    _workers = workers
    return True


def enter_worker(index: int) -> None:
    """In a forked worker: remember which socket of each group is ours."""
    global _index
    _index = index


def take_socket(host: str, port: int) -> socket.socket | None:
    """This worker's prepared socket for ``host:port`` (a duplicate), or None without steering."""
    group = _sockets.get((host, port))
    if group is None:
        return None
    return group[_index].dup()  # the supervisor keeps the original for a restarted worker


def cid_factory() -> Callable[[], bytes] | None:
    """The connection ID maker for this worker, or None when steering is off."""
    if not _sockets:
        return None
    index, workers = _index, _workers
    return lambda: steered_cid(index, workers)
