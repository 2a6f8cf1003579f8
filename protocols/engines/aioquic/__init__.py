"""The aioquic engine: the only code that imports aioquic's private names or touches its state.

Modules, each importing only those listed before it: ``probes`` (read-only state probes),
``recovery`` (PTO retransmission), ``gating`` (``GatedQuicConnection``), ``ecn``
(``EcnQuicConnection``), ``server`` (``ServerQuicConnection``), ``h3`` (``CompatH3Connection``)
and ``compat`` (``check_compat`` over all their ``PRIVATE_STATE`` lists). The names below are
the interface of ``protocols.engines.base.Engine``; the rest of the tree uses only them and
aioquic's public modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..base import EngineCompatError
from .compat import NAME, TESTED_AIOQUIC_VERSIONS, TESTED_VERSIONS, check_compat
from .ecn import EcnQuicConnection
from .gating import GatedQuicConnection
from .h3 import CompatH3Connection, StreamMessageError
from .probes import (
    connection_version,
    h0_buffered,
    h0_release,
    handshake_complete,
    packets_lost,
    peer_bidi_stream_credit,
    smoothed_rtt,
    stream_send_buffered,
    unacknowledged_data,
)
from .server import ServerQuicConnection

__all__ = [
    "NAME",
    "TESTED_AIOQUIC_VERSIONS",
    "TESTED_VERSIONS",
    "CompatH3Connection",
    "EcnQuicConnection",
    "EngineCompatError",
    "GatedQuicConnection",
    "ServerQuicConnection",
    "StreamMessageError",
    "check_compat",
    "connection_version",
    "h0_buffered",
    "h0_release",
    "handshake_complete",
    "packets_lost",
    "peer_bidi_stream_credit",
    "smoothed_rtt",
    "stream_send_buffered",
    "unacknowledged_data",
]

if TYPE_CHECKING:  # mypy checks this package against the engine interface
    from .. import aioquic as _this
    from ..base import Engine

    _engine: Engine = _this
