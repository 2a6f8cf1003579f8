"""The aioquic engine's receive gating and state probes, against real QUIC peers in memory."""

from __future__ import annotations

from typing import Any

from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import QuicEvent, StreamDataReceived

from protocols.engines import aioquic as engine
from protocols.engines.aioquic import GatedQuicConnection


class Received:
    """Server-side sink: bytes per stream, consumed only when the test says so."""

    def __init__(self) -> None:
        self.data: dict[int, int] = {}

    def __call__(self, event: QuicEvent) -> None:
        if isinstance(event, StreamDataReceived):
            self.data[event.stream_id] = self.data.get(event.stream_id, 0) + len(event.data)


def gated_pair(
    harness: Any, config: QuicConfiguration, **gate: int
) -> tuple[Any, QuicConnection, GatedQuicConnection, Received]:
    client = QuicConnection(configuration=harness.client_config("h3"))
    server = GatedQuicConnection(
        configuration=config,
        original_destination_connection_id=client.original_destination_connection_id,
        **gate,
    )
    sink = Received()
    pair = harness.DirectPair(client, server, lambda e: None, sink)
    pair.transfer()
    return pair, client, server, sink


def test_stream_window_caps_unconsumed_bytes(
    harness: Any, server_config: QuicConfiguration
) -> None:
    window = 32 * 1024
    pair, client, server, sink = gated_pair(harness, server_config, stream_window=window)
    client.send_stream_data(0, b"x" * 300_000, end_stream=True)
    pair.transfer(rounds=300)
    assert sink.data[0] == window  # aioquic alone would have doubled the limit repeatedly
    assert server.receive_window(0) == window

    consumed = 0
    for _ in range(40):
        server.consumed(0, sink.data[0] - consumed)
        consumed = sink.data[0]
        pair.transfer(rounds=300)
        assert sink.data[0] - consumed <= window  # never more than a window unconsumed
        if sink.data[0] == 300_000:
            break
    total = sink.data[0]
    assert total == 300_000


def test_connection_window_caps_all_streams_together(
    harness: Any, server_config: QuicConfiguration
) -> None:
    pair, client, server, sink = gated_pair(
        harness, server_config, stream_window=64 * 1024, connection_window=100 * 1024
    )
    for stream_id in (0, 4, 8, 12):
        client.send_stream_data(stream_id, b"y" * 64 * 1024, end_stream=True)
    pair.transfer(rounds=300)
    assert sum(sink.data.values()) == 100 * 1024  # each stream alone could take 64 KiB
    consumed: dict[int, int] = {}
    for _ in range(20):
        for stream_id, amount in list(sink.data.items()):
            server.consumed(stream_id, amount - consumed.get(stream_id, 0))
            consumed[stream_id] = amount
        pair.transfer(rounds=300)
        assert sum(sink.data.values()) - sum(consumed.values()) <= 100 * 1024
        if sum(sink.data.values()) == 4 * 64 * 1024:
            break
    assert sink.data == dict.fromkeys((0, 4, 8, 12), 64 * 1024)


def test_unregistered_uni_streams_keep_aioquic_growth(
    harness: Any, server_config: QuicConfiguration
) -> None:
    pair, client, _server, sink = gated_pair(
        harness, server_config, stream_window=16 * 1024, connection_window=64 * 1024
    )
    uni = client.get_next_available_stream_id(is_unidirectional=True)
    client.send_stream_data(uni, b"z" * 3_000_000, end_stream=True)
    pair.transfer(rounds=2000)
    assert sink.data[uni] == 3_000_000  # never consumed explicitly, still not held back


def test_stream_send_buffered_and_peer_credit(
    harness: Any, server_config: QuicConfiguration
) -> None:
    pair, client, _server, sink = gated_pair(harness, server_config)
    assert engine.stream_send_buffered(client, 0) == 0
    credit = engine.peer_bidi_stream_credit(client)
    assert credit == 128
    client.send_stream_data(0, b"a" * 5000)
    assert engine.stream_send_buffered(client, 0) == 5000
    assert engine.peer_bidi_stream_credit(client) == credit - 1
    pair.transfer()
    assert engine.stream_send_buffered(client, 0) == 0  # acknowledged
    assert sink.data[0] == 5000
    client.reset_stream(0, 0x10C)
    assert engine.stream_send_buffered(client, 0) == 0
    assert engine.smoothed_rtt(client) > 0
    assert engine.connection_version(client) == 1
