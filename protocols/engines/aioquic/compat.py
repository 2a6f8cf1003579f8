"""The one check of aioquic: a tested version that still has every private name the engine uses.

Each module of this package lists the private state it relies on in ``PRIVATE_STATE`` (by the
object that holds it); ``check_compat`` builds one of each such object and checks every name, and
refuses an aioquic release outside ``TESTED_AIOQUIC_VERSIONS``. The server calls it at start, so
an upgrade fails with one clear line instead of silently breaking the backpressure rules.
"""

from __future__ import annotations

from collections.abc import Mapping

import aioquic
from aioquic import tls
from aioquic.h0.connection import H0Connection
from aioquic.h3 import connection as h3c
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.stream import QuicStream

from ..base import EngineCompatError
from . import ecn, gating, h3, hello, probes, recovery, server

__all__ = ["NAME", "TESTED_AIOQUIC_VERSIONS", "TESTED_VERSIONS", "check_compat"]

NAME = "aioquic"

TESTED_AIOQUIC_VERSIONS = frozenset({"1.7.2"})
"""aioquic releases whose private state this package was checked against."""

TESTED_VERSIONS = TESTED_AIOQUIC_VERSIONS

_MODULES = (probes, recovery, gating, ecn, hello, server, h3)


def _targets() -> dict[str, object]:
    """One object of each kind that holds private state, by the key ``PRIVATE_STATE`` uses."""
    quic = QuicConnection(configuration=QuicConfiguration(is_client=True, alpn_protocols=["h3"]))
    stream = QuicStream(stream_id=0, max_stream_data_local=1, max_stream_data_remote=1)
    targets: dict[str, object] = {
        "QuicConnection": quic,
        "QuicStream": stream,
        "QuicStreamReceiver": stream.receiver,
        "QuicStreamSender": stream.sender,
        "tls.Context": tls.Context,
        "tls": tls,
        "h3.connection": h3c,
        "H3Connection": h3c.H3Connection(quic),
        "H3Stream": h3c.H3Stream(0),
        "H0Connection": H0Connection(quic),
    }
    if hasattr(quic, "_loss"):
        targets["QuicPacketRecovery"] = quic._loss
    if hasattr(quic, "_local_max_data"):
        targets["Limit"] = quic._local_max_data
    return targets


def missing_state(modules: tuple[Mapping[str, tuple[str, ...]], ...] | None = None) -> list[str]:
    """Every ``Kind.name`` of the private-state lists that the installed aioquic lacks."""
    lists = modules if modules is not None else tuple(m.PRIVATE_STATE for m in _MODULES)
    targets = _targets()
    missing: list[str] = []
    for state in lists:
        for kind, names in state.items():
            target = targets.get(kind)
            if target is None:
                missing += [f"{kind}.{name}" for name in names]
                continue
            missing += [f"{kind}.{name}" for name in names if not hasattr(target, name)]
    return sorted(set(missing))


def _tested() -> str:
    return ", ".join(sorted(TESTED_AIOQUIC_VERSIONS))


def check_compat() -> None:
    """Raise ``EngineCompatError`` (one line: installed and tested versions) when the installed
    aioquic is not a tested release or lacks private state this package relies on."""
    installed = aioquic.__version__
    if installed not in TESTED_AIOQUIC_VERSIONS:
        raise EngineCompatError(
            f"aioquic {installed} is installed, but quicproxy is tested only with aioquic"
            f" {_tested()}: install a tested release"
        )
    missing = missing_state()
    if missing:
        raise EngineCompatError(
            f"aioquic {installed} lacks private state quicproxy relies on: "
            + ", ".join(missing)
            + f" (tested with aioquic {_tested()})"
        )
