"""Server-side QUIC features aioquic lacks: NEW_TOKEN, preferred_address, steered connection IDs.

This module relies on aioquic's private state (checked by ``compat.check_compat`` through
``PRIVATE_STATE``; a unit test pins the aioquic version):

- ``cid_factory`` makes every connection ID the server issues (so that IDs can carry a worker
  index for socket steering, see ``quicproxy.net.steering``);
- ``preferred_address`` is announced in the transport parameters with a connection ID of
  sequence number 1 (RFC 9000 section 5.1.1), so clients can migrate to a second server address;
- ``new_token`` is called once the handshake is confirmed and its token is sent in a NEW_TOKEN
  frame (re-sent if lost), so a returning client may skip address validation;
- ``validated_address`` marks the client's address as validated from the first packet (it
  presented a valid token), lifting the 3x anti-amplification limit;
- ``max_streams_bidi`` sets the initial bidirectional stream limit the peer gets;
- ``reset_token`` derives each connection ID's stateless reset token, so that a server that
  lost the connection state can still send a stateless reset the client believes;
- ``certificate_for`` chooses the certificate by the client's SNI, and ``early_data_offered``
  tells whether the ClientHello offered 0-RTT (see ``hello``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from aioquic._buffer import Buffer
from aioquic.quic.connection import (
    QuicConnectionId,
    QuicNetworkPath,
)
from aioquic.quic.packet import (
    QuicFrameType,
    QuicPreferredAddress,
    pull_quic_transport_parameters,
    push_quic_transport_parameters,
)
from aioquic.quic.packet_builder import QuicDeliveryState, QuicPacketBuilder
from aioquic.quic.recovery import QuicPacketSpace

from .ecn import EcnQuicConnection
from .hello import Certificate, watch_hello

__all__ = ["PRIVATE_STATE", "ServerQuicConnection"]

PRIVATE_STATE: dict[str, tuple[str, ...]] = {
    "QuicConnection": (
        "_host_cids",
        "_host_cid_seq",
        "_local_initial_source_connection_id",
        "_network_paths",
        "_local_max_streams_bidi",
        "_serialize_transport_parameters",
        "_replenish_connection_ids",
        "_remote_active_connection_id_limit",
        "_handshake_confirmed",
        "_quic_logger",
        "_configuration",
    ),
}
"""The private aioquic attributes used here, by the object that holds them (see compat)."""

Address = tuple[Any, ...]


class ServerQuicConnection(EcnQuicConnection):
    """A gated server connection (with ECN feedback) and the features of the module docstring."""

    def __init__(
        self,
        *,
        cid_factory: Callable[[], bytes] | None = None,
        preferred_address: tuple[Address | None, Address | None] | None = None,
        new_token: Callable[[], bytes] | None = None,
        validated_address: Address | None = None,
        max_streams_bidi: int | None = None,
        reset_token: Callable[[bytes], bytes] | None = None,
        certificate_for: Callable[[str | None], Certificate] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._certificate_for = certificate_for
        self.early_data_offered = False  # the ClientHello offered 0-RTT (accepted or not)
        self._cid_factory = cid_factory
        self._reset_token = reset_token
        self._new_token = new_token
        self._token_pending: bytes | None = None
        self._preferred: QuicPreferredAddress | None = None
        self.address_validated_by_token = validated_address is not None
        first = self._host_cids[0]
        if cid_factory is not None:
            first.cid = cid_factory()
            self.host_cid = first.cid
            self._local_initial_source_connection_id = first.cid
        first.stateless_reset_token = self._token_for(first.cid)
        if preferred_address is not None:
            self._reserve_preferred(*preferred_address)
        if validated_address is not None:
            self._network_paths = [QuicNetworkPath(validated_address, is_validated=True)]
        if max_streams_bidi is not None:
            self._local_max_streams_bidi.value = max_streams_bidi
            self._local_max_streams_bidi.sent = max_streams_bidi

    def _initialize(self, peer_cid: bytes) -> None:
        super()._initialize(peer_cid)
        watch_hello(self.tls, self._on_hello)

    def _on_hello(self, server_name: str | None, early_data: bool) -> Certificate | None:
        self.early_data_offered = early_data
        return None if self._certificate_for is None else self._certificate_for(server_name)

    @property
    def address_validated(self) -> bool:
        """True once the client's current address is validated (token, handshake or path)."""
        paths = self._network_paths
        return bool(paths and paths[0].is_validated)

    def host_connection_ids(self) -> list[bytes]:
        """Every connection ID this endpoint issued and has not retired."""
        return [entry.cid for entry in self._host_cids]

    def _new_cid(self) -> bytes:
        if self._cid_factory is not None:
            return self._cid_factory()
        return os.urandom(self._configuration.connection_id_length)

    def _token_for(self, cid: bytes) -> bytes:
        return self._reset_token(cid) if self._reset_token is not None else os.urandom(16)

    def _reserve_preferred(self, ipv4: Address | None, ipv6: Address | None) -> None:
        cid = self._new_cid()
        entry = QuicConnectionId(
            cid=cid,
            sequence_number=self._host_cid_seq,
            stateless_reset_token=self._token_for(cid),
            was_sent=True,  # travels in the transport parameters, not a NEW_CONNECTION_ID
        )
        self._host_cids.append(entry)
        self._host_cid_seq += 1
        self._preferred = QuicPreferredAddress(
            ipv4_address=(str(ipv4[0]), int(ipv4[1])) if ipv4 else None,
            ipv6_address=(str(ipv6[0]), int(ipv6[1])) if ipv6 else None,
            connection_id=entry.cid,
            stateless_reset_token=entry.stateless_reset_token,
        )

    def _serialize_transport_parameters(self) -> bytes:
        data: bytes = super()._serialize_transport_parameters()
        if self._preferred is None:
            return data
        params = pull_quic_transport_parameters(Buffer(data=data))
        params.preferred_address = self._preferred
        buf = Buffer(capacity=len(data) + 128)
        push_quic_transport_parameters(buf, params)
        return buf.data

    def _replenish_connection_ids(self) -> None:
        limit = min(8, self._remote_active_connection_id_limit)
        while len(self._host_cids) < limit:
            cid = self._new_cid()
            self._host_cids.append(
                QuicConnectionId(
                    cid=cid,
                    sequence_number=self._host_cid_seq,
                    stateless_reset_token=self._token_for(cid),
                )
            )
            self._host_cid_seq += 1

    def _write_connection_limits(self, builder: QuicPacketBuilder, space: QuicPacketSpace) -> None:
        super()._write_connection_limits(builder=builder, space=space)
        if self._new_token is not None and self._handshake_confirmed:
            self._token_pending = self._new_token()
            self._new_token = None
        token = self._token_pending
        if token is None or builder.remaining_buffer_space < len(token) + 16:
            return
        buf = builder.start_frame(
            QuicFrameType.NEW_TOKEN,
            capacity=len(token) + 9,
            handler=self._on_new_token_delivery,
            handler_args=(token,),
        )
        buf.push_uint_var(len(token))
        buf.push_bytes(token)
        self._token_pending = None
        if self._quic_logger is not None and builder.quic_logger_frames is not None:
            builder.quic_logger_frames.append(self._quic_logger.encode_new_token_frame(token))

    def _on_new_token_delivery(self, delivery: QuicDeliveryState, token: bytes) -> None:
        if delivery != QuicDeliveryState.ACKED:
            self._token_pending = token
