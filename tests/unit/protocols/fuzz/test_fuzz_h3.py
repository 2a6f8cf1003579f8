"""Fuzzing the HTTP/3 and hq-interop server adapters behind a real QuicRouter.

A real aioquic client with aioquic's H3Connection (or H0Connection) writes requests; the
mutations edit its stream writes (request frames, SETTINGS, QPACK encoder stream) and add raw
streams, so the QUIC transport stays valid and the hostile bytes reach the adapters.
"""

from __future__ import annotations

from typing import Any

from aioquic.h0.connection import H0Connection
from aioquic.h3.connection import H3Connection
from hypothesis import given
from hypothesis import strategies as st

from protocols.events import ProtocolError, RequestData, RequestEnd, RequestHeaders, RequestTrailers
from protocols.messages import RequestHead
from protocols.quic_router import QuicRouter

from .mutate import encode_fields, examples, fields, methods, mutation_ops, paths
from .quic_pump import Pump, TamperingClient, server_configuration

H3_TOKENS = [
    b"\x00",  # DATA
    b"\x01",  # HEADERS
    b"\x04",  # SETTINGS
    b"\x07",  # GOAWAY
    b"\x0d",  # MAX_PUSH_ID
    b"\x01\x3f",  # a HEADERS frame of 63 bytes
    b"\x00\x80\x00\x40\x00",  # a DATA frame of 16 KiB (4-byte varint length)
    b"\xff\xff\xff\xff\xff\xff\xff\xff",
    b"\x21",  # a reserved frame type (0x1f * N + 0x21)
]

h3_requests = st.tuples(
    methods,
    paths,
    fields,
    st.lists(st.binary(min_size=1, max_size=300), max_size=3),
    fields,  # trailers
)
write_plans = st.dictionaries(st.integers(0, 24), mutation_ops(H3_TOKENS, max_ops=3), max_size=4)
raw_streams = st.lists(
    st.tuples(st.booleans(), st.binary(max_size=64), st.booleans()), max_size=3
)  # (unidirectional, bytes, fin)


def send_h3(http: H3Connection, client: TamperingClient, requests: list[Any]) -> dict[int, Any]:
    sent = {}
    for method, path, extra, body, trailers in requests:
        sid = client.get_next_available_stream_id()
        head = [
            (b":method", method.encode()),
            (b":scheme", b"https"),
            (b":authority", b"localhost"),
            (b":path", path.encode()),
            *encode_fields(extra),
        ]
        end_on_head = not body and not trailers
        http.send_headers(sid, head, end_stream=end_on_head)
        for i, chunk in enumerate(body):
            http.send_data(sid, chunk, end_stream=not trailers and i == len(body) - 1)
        if trailers:
            http.send_headers(sid, encode_fields(trailers), end_stream=True)
        sent[sid] = (head, end_on_head, b"".join(body), encode_fields(trailers))
    return sent


def send_raw(client: TamperingClient, raws: list[tuple[bool, bytes, bool]]) -> None:
    for uni, data, fin in raws:
        sid = client.get_next_available_stream_id(is_unidirectional=uni)
        client.send_stream_data(sid, data, end_stream=fin)


def h3_pump(certificate: Any, plan: dict[int, Any] | None = None) -> tuple[Pump, Any]:
    client = TamperingClient("h3", plan)
    pump = Pump(QuicRouter(server_configuration(certificate)), client)
    pump.http = H3Connection(client)
    pump.run()
    return pump, client


@given(requests=st.lists(h3_requests, min_size=1, max_size=4))
@examples(0.6)
def test_h3_server_valid_requests_arrive_intact(certificate: Any, requests: list[Any]) -> None:
    pump, client = h3_pump(certificate)
    sent = send_h3(pump.http, client, requests)
    pump.run()
    events = pump.contract.events
    assert not [e for e in events if isinstance(e, ProtocolError)]
    heads = {e.stream_id: e for e in events if isinstance(e, RequestHeaders)}
    assert sorted(heads) == sorted(sent)
    for sid, (head, end_on_head, body, trailers) in sent.items():
        pseudo = dict(head[:4])
        expected = RequestHead(
            pseudo[b":method"], b"https", b"localhost", pseudo[b":path"], head[4:], b"3"
        )
        assert heads[sid].head == expected and heads[sid].end_stream is end_on_head
        mine = [e for e in events if getattr(e, "stream_id", None) == sid]
        assert b"".join(e.data for e in mine if isinstance(e, RequestData)) == body
        got = [e.trailers for e in mine if isinstance(e, RequestTrailers)]
        assert got == ([trailers] if trailers else [])
        assert len([e for e in mine if isinstance(e, RequestEnd)]) == int(not end_on_head)
    pump.finish()


@given(
    requests=st.lists(h3_requests, min_size=1, max_size=3),
    plan=write_plans,
    raws=raw_streams,
)
@examples(0.6)
def test_h3_server_survives_mutated_streams(
    certificate: Any, requests: list[Any], plan: dict[int, Any], raws: list[Any]
) -> None:
    pump, client = h3_pump(certificate, plan)
    if pump.http is not None:
        send_h3(pump.http, client, requests)
    send_raw(client, raws)
    pump.run()
    pump.finish()


# -- hq-interop --------------------------------------------------------------------------------

hq_paths = st.lists(paths, min_size=1, max_size=4)


def hq_pump(certificate: Any, plan: dict[int, Any] | None = None) -> tuple[Pump, Any]:
    client = TamperingClient("hq-interop", plan)
    pump = Pump(QuicRouter(server_configuration(certificate)), client)
    pump.http = H0Connection(client)
    pump.run()
    return pump, client


def send_hq(http: H0Connection, client: TamperingClient, targets: list[str]) -> dict[int, str]:
    sent = {}
    for path in targets:
        sid = client.get_next_available_stream_id()
        http.send_headers(sid, [(b":method", b"GET"), (b":path", path.encode())], end_stream=True)
        sent[sid] = path
    return sent


@given(targets=hq_paths)
@examples(0.4)
def test_hq_server_valid_requests_arrive_intact(certificate: Any, targets: list[str]) -> None:
    pump, client = hq_pump(certificate)
    sent = send_hq(pump.http, client, targets)
    pump.run()
    events = pump.contract.events
    heads = {e.stream_id: e.head for e in events if isinstance(e, RequestHeaders)}
    assert heads == {
        sid: RequestHead(b"GET", b"https", b"", path.encode(), [], b"0.9")
        for sid, path in sent.items()
    }
    assert not [e for e in events if isinstance(e, ProtocolError)]


@given(
    targets=hq_paths,
    plan=st.dictionaries(st.integers(0, 6), mutation_ops([b"\r\n", b" ", b"GET "]), max_size=3),
    raws=raw_streams,
)
@examples(0.4)
def test_hq_server_survives_mutated_requests(
    certificate: Any, targets: list[str], plan: dict[int, Any], raws: list[Any]
) -> None:
    pump, client = hq_pump(certificate, plan)
    send_hq(pump.http, client, targets)
    send_raw(client, raws)
    pump.run()
    pump.finish()
