"""A response whose header block waits for QPACK encoder-stream data is not lost.

The response's HEADERS frame and FIN can arrive before the encoder-stream instructions it
references (they travel on another stream). Found by the interop client: 4 of 2000 h3 responses
never completed because the finished stream was forgotten while still blocked.
"""

from __future__ import annotations

import pylsqpack
from aioquic.h3.connection import FrameType, encode_frame
from aioquic.quic import events as qe
from aioquic.quic.connection import QuicConnection

from protocols import events as ev
from protocols.h3 import H3ClientAdapter
from protocols.messages import RequestHead
from tests.unit.protocols.conftest import client_config

SERVER_ENCODER_STREAM = 3  # the first server-initiated unidirectional stream


def test_blocked_response_headers_are_delivered_after_the_encoder_data() -> None:
    adapter = H3ClientAdapter(QuicConnection(configuration=client_config()))
    head = RequestHead(b"GET", b"https", b"localhost", b"/", [], b"3")
    stream_id = adapter.send_request(head, end_stream=True)
    encoder = pylsqpack.Encoder()
    setup = encoder.apply_settings(max_table_capacity=4096, blocked_streams=16)
    headers = [(b":status", b"200"), (b"x-from-the-dynamic-table", b"yes" * 10)]
    instructions = b""
    for other in (101, 105):  # lsqpack inserts a field once it has seen it repeated
        instructions += encoder.encode(other, headers)[0]
    more, block = encoder.encode(stream_id, headers)
    instructions += more
    assert instructions  # the block references entries the client does not have yet

    frame = encode_frame(FrameType.HEADERS, block)
    early = adapter.handle_event(qe.StreamDataReceived(frame, True, stream_id))
    assert not any(isinstance(event, ev.ResponseHeaders) for event in early)

    encoder_stream = b"\x02" + setup + instructions
    late = adapter.handle_event(qe.StreamDataReceived(encoder_stream, False, SERVER_ENCODER_STREAM))
    heads = [event for event in late if isinstance(event, ev.ResponseHeaders)]
    assert len(heads) == 1 and heads[0].head.status == 200
    assert (b"x-from-the-dynamic-table", b"yes" * 10) in heads[0].head.headers
    assert heads[0].end_stream  # the FIN that arrived first still ends the response
