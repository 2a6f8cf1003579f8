"""Fuzzing H3ClientAdapter (HTTP/3 upstreams) against aioquic's server and H3Connection.

Valid traffic: random responses (1xx heads, statuses, QPACK-compressed fields, bodies up to
past the stream window, trailers, resets) over a network that drops, repeats and reorders the
server's datagrams; every response must arrive exact. Hostile traffic: malformed header
sections and stray frames on some streams (the others must still arrive exact unless the
connection failed), then the server's stream writes and datagrams edited, with raw server
streams and GOAWAY frames added; the adapter must never raise, keep its contract and report the
connection's end.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from aioquic.h3.connection import FrameType, encode_frame
from hypothesis import event, given
from hypothesis import strategies as st

from protocols.errors import ErrorCode
from protocols.events import (
    ConnectionClosed,
    Event,
    InformationalResponse,
    ProtocolError,
    ResponseData,
    ResponseEnd,
    ResponseHeaders,
    ResponseTrailers,
    StreamReset,
)
from protocols.messages import Headers, RequestHead, ResponseHead

from .h3_upstream import (
    Reply,
    Step,
    UpstreamPump,
)
from .mutate import bodies, encode_fields, examples, fields, methods, mutation_ops, paths
from .test_fuzz_h3 import H3_TOKENS

# Fields repeated across responses, so that aioquic's QPACK encoder puts them in its dynamic
# table and later header blocks refer to it (and may arrive before the encoder-stream data).
SHARED = [
    (b"server", b"origin/1.0"),
    (b"cache-control", b"public, max-age=3600"),
    (b"content-type", b"text/html; charset=utf-8"),
    (b"date", b"Thu, 03 Dec 2026 06:00:00 GMT"),
    (b"x-long", b"v" * 200),
    (b"vary", b"accept-encoding"),
]
RESET_CODES = [0x100, 0x101, 0x102, 0x10B, 0x10C, 0x10E, 0x21]  # 0x21: a reserved (grease) code
BIG = 280 * 1024  # past the 256 KiB stream window: the origin waits for credit

response_fields = st.builds(
    lambda shared, extra: [*shared, *encode_fields(extra)],
    st.lists(st.sampled_from(SHARED), max_size=4),
    fields,
)
response_bodies = st.tuples(st.integers(0, 9), bodies).map(
    lambda pick: [b"z" * BIG] if pick[0] == 9 else pick[1]  # 1 in 10; shrinks to small ones
)
replies = st.builds(
    Reply,
    informational=st.lists(
        st.tuples(st.sampled_from([100, 102, 103]), response_fields), max_size=2
    ),
    status=st.sampled_from([200, 201, 204, 206, 301, 304, 404, 413, 418, 500, 503, 599]),
    fields=response_fields,
    body=response_bodies,
    trailers=fields.map(encode_fields),
    length=st.booleans(),
    fin_alone=st.booleans(),
    reset=st.none() | st.sampled_from(["before-head", "after-head", "mid-body"]),
    reset_code=st.sampled_from(RESET_CODES),
    early=st.booleans(),
    grease=st.booleans(),
)


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    fields: list[tuple[str, str]]
    body: list[bytes]

    def head(self) -> RequestHead:
        headers = encode_fields(self.fields)
        return RequestHead(
            self.method.encode(), b"https", b"origin.test", self.path.encode(), headers, b"3"
        )


requests = st.builds(Request, method=methods, path=paths, fields=fields, body=bodies)


def valid(request: Request, reply: Reply) -> Reply:
    """``reply`` as a correct origin may send it to ``request``."""
    length = reply.length and reply.status != 204  # RFC 9110 8.6: never on a 204
    early = reply.early and bool(request.body) and reply.reset is None
    return Reply(  # never raw bytes or spoiled header sections
        reply.informational,
        reply.status,
        reply.fields,
        reply.body,
        reply.trailers,
        length=length,
        fin_alone=reply.fin_alone,
        reset=reply.reset,
        reset_code=reply.reset_code,
        early=early,
        grease=reply.grease,
    )


exchanges = st.lists(
    st.tuples(requests, replies).map(lambda pair: (pair[0], valid(*pair))),
    min_size=1,
    max_size=4,
)
loss_plans = st.dictionaries(
    st.integers(0, 30), st.sampled_from(["drop", "repeat", "late"]), max_size=4
)


def expected_events(sid: int, steps: list[Step]) -> list[Event]:
    """The events a correct client adapter emits for what the origin wrote (data merged)."""
    out: list[Event] = []
    final = stopped = reported = False
    for kind, what, end in steps:
        if kind == "stop":  # STOP_SENDING(H3_NO_ERROR): reported once the response has ended
            stopped = True
            continue
        if kind == "headers" and not final:
            fields: Headers = [(k, v) for k, v in what if not k.startswith(b":")]
            status = int(dict(what)[b":status"])
            if status < 200:
                out.append(InformationalResponse(sid, ResponseHead(status, fields)))
                continue
            final = True
            out.append(ResponseHeaders(sid, ResponseHead(status, fields), end))
            continue
        if kind == "headers":
            out.append(ResponseTrailers(sid, what))
        elif kind == "data" and what:
            out.append(ResponseData(sid, what))
        elif kind == "reset":
            if not reported:
                out.append(StreamReset(sid, ErrorCode.from_h3(what)))
        elif kind == "raw":
            continue  # grease: nothing to see
        if end:
            out.append(ResponseEnd(sid))
            if stopped:
                out.append(StreamReset(sid, ErrorCode.NO_ERROR))
                reported = True
    return merged(out)


def merged(events: list[Event]) -> list[Event]:
    """Consecutive body chunks as one: QUIC may cut and join them anywhere."""
    out: list[Event] = []
    for item in events:
        last = out[-1] if out else None
        if isinstance(item, ResponseData) and isinstance(last, ResponseData):
            out[-1] = ResponseData(item.stream_id, last.data + item.data)
        else:
            out.append(item)
    return out


def stream_events(pump: UpstreamPump, sid: int) -> list[Event]:
    return merged([e for e in pump.contract.events if getattr(e, "stream_id", None) == sid])


def ended(pump: UpstreamPump, sid: int) -> bool:
    return any(isinstance(e, ResponseEnd) for e in stream_events(pump, sid))


def send_all(pump: UpstreamPump, exchanges: list[tuple[Request, Reply]]) -> dict[int, Request]:
    sent = {}
    for request, reply in exchanges:
        sid = pump.request(request.head(), request.body, reply)
        if sid is None:
            break
        sent[sid] = request
    return sent


@given(exchanges=exchanges, losses=loss_plans)
@examples(1.0)
def test_h3_client_valid_responses_arrive_exact(
    certificate: Any, exchanges: list[tuple[Request, Reply]], losses: dict[int, str]
) -> None:
    pump = UpstreamPump(certificate, datagram_plan=losses)
    assert pump.run(lambda: pump.adapter.available_streams() >= len(exchanges))
    sent = send_all(pump, exchanges)
    assert len(sent) == len(exchanges)
    origin = pump.origin

    def arrived(upto_reset: bool) -> bool:
        if sorted(origin.scripts) != sorted(sent):
            return False
        for sid, steps in origin.scripts.items():
            if upto_reset and steps[-1][0] == "reset":
                steps = steps[:-1]
            if stream_events(pump, sid) != expected_events(sid, steps):
                return False
        return True

    pump.run(
        lambda: all(s.answered for s in origin.seen.values()) and len(origin.seen) == len(sent)
    )
    for sid, request in sent.items():  # the rest of a body an early answer did not stop
        if origin.replies[sid].early:
            pump.send_body(sid, request.body)
    pump.run(lambda: arrived(upto_reset=True))
    origin.send_resets()
    pump.run(lambda: arrived(upto_reset=False))
    for sid, request in sent.items():
        assert stream_events(pump, sid) == expected_events(sid, origin.scripts[sid])
        seen = origin.seen[sid]
        head = request.head()
        assert seen.headers == [
            (b":method", head.method),
            (b":scheme", b"https"),
            (b":authority", b"origin.test"),
            (b":path", head.path),
            *head.headers,
        ]
        if not origin.replies[sid].early:
            assert seen.body == b"".join(request.body) and seen.ended
    assert not [e for e in pump.contract.events if isinstance(e, ProtocolError)]
    event(f"lost or reordered datagrams: {bool(losses)}")
    event(f"a big body: {any(len(r.body) == 1 and len(r.body[0]) == BIG for _, r in exchanges)}")
    event(f"a reset: {any(r.reset for _, r in exchanges)}")
    assert pump.finish(), "the adapter never drained after close()"
    assert pump.contract.events[-1] == ConnectionClosed(ErrorCode.NO_ERROR, "")


def test_h3_client_decodes_dynamic_table_references(certificate: Any) -> None:
    """The valid-traffic generator does reach QPACK's dynamic table (not only literals)."""
    pump = UpstreamPump(certificate)
    assert pump.run(lambda: pump.adapter.available_streams() >= 4)
    reply = Reply([(103, SHARED[:2])], 200, SHARED, [b"body"], [])
    sids = []
    for _ in range(4):
        sid = pump.request(Request("GET", "/", [], []).head(), [], reply)
        assert sid is not None
        sids.append(sid)
        pump.run(partial(ended, pump, sid))
    assert pump.origin.encoder_bytes() > 0
    for sid in sids:
        assert stream_events(pump, sid) == [
            InformationalResponse(sid, ResponseHead(103, SHARED[:2])),
            ResponseHeaders(sid, ResponseHead(200, SHARED), False),
            ResponseData(sid, b"body"),
            ResponseEnd(sid),
        ]


# -- mutated traffic ---------------------------------------------------------------------------

write_plans = st.dictionaries(
    st.integers(0, 30), mutation_ops([*H3_TOKENS, b"\x05"], max_ops=3), max_size=4
)
datagram_plans = st.dictionaries(
    st.integers(0, 30),
    st.sampled_from(["drop", "repeat", "late"]) | mutation_ops(max_ops=2),
    max_size=4,
)
raw_streams = st.lists(
    st.tuples(st.booleans(), st.binary(max_size=64), st.booleans()), max_size=2
)  # (unidirectional, bytes, fin): server-initiated
goaways = st.lists(st.sampled_from([0, 1, 4, 8, 1 << 20]), max_size=2)
RAW_FRAMES = [
    encode_frame(FrameType.DATA, b"early"),  # DATA before HEADERS
    encode_frame(FrameType.SETTINGS, b""),  # a control frame on a request stream
    encode_frame(FrameType.GOAWAY, b"\x00"),
    encode_frame(FrameType.PUSH_PROMISE, b"\x00\x00\x00"),  # no MAX_PUSH_ID was sent
    encode_frame(FrameType.HEADERS, b"\xff\xff"),  # an undecodable field section
    encode_frame(FrameType.HEADERS, b""),
    b"\x00\x80",  # a truncated frame header
]
spoils = st.tuples(
    st.integers(0, 4),
    st.sampled_from(["status", "add", "first"]),
    st.sampled_from(
        [
            *(b":status", b":path", b"Upper", b"connection", b"transfer-encoding"),
            *(b"content-length", b"te", b"x\x00y", b"", b"x y"),
        ]
    ),
    st.sampled_from(
        [
            *(b"20", b"2000", b"abc", b"101", b" 200", b"", b"200", b"600", b"999", b"1", b"-1"),
            *(b"a\r\nb", b" lead", b"close", b"trailers", b"gzip", b"000", b"099"),
        ]
    ),
)
raw_frames = st.just(b"") | st.sampled_from(RAW_FRAMES)


def hostile(request: Request, reply: Reply, raw: bytes, spoil: Any) -> tuple[Request, Reply]:
    return request, replace(valid(request, reply), raw=raw, spoil=spoil)


mutated_exchanges = st.lists(
    st.tuples(requests, replies, raw_frames, st.none() | spoils).map(lambda t: hostile(*t)),
    max_size=3,
)


@given(
    exchanges=mutated_exchanges,
    write_plan=write_plans,
    datagram_plan=datagram_plans,
    raws=raw_streams,
    goaway=goaways,
)
@examples(1.0)
def test_h3_client_survives_mutated_responses(
    certificate: Any,
    exchanges: list[tuple[Request, Reply]],
    write_plan: dict[int, Any],
    datagram_plan: dict[int, Any],
    raws: list[tuple[bool, bytes, bool]],
    goaway: list[int],
) -> None:
    pump = UpstreamPump(certificate, write_plan, datagram_plan, strict=False)
    pump.run(lambda: pump.adapter.available_streams() > 0)
    sent = send_all(pump, exchanges)
    for uni, data, fin in raws:
        pump.origin.raw_stream(uni, data, fin)
    for identifier in goaway:
        pump.origin.goaway(identifier)
    pump.run()
    for sid, request in sent.items():
        if pump.origin.replies[sid].early and not pump.gone:
            pump.send_body(sid, request.body)
    pump.run()
    pump.origin.send_resets()
    pump.run()
    pump.finish()
    assert pump.contract.closed, "the owner never learnt that the connection is gone"
    errors = [e for e in pump.contract.events if isinstance(e, ProtocolError)]
    event("connection error" if pump.contract.failed else "stream errors" if errors else "clean")


@given(
    spoiled=st.lists(
        st.tuples(requests, replies, raw_frames, spoils).map(lambda t: hostile(*t)),
        min_size=1,
        max_size=2,
    ),
    good=st.lists(st.tuples(requests, replies).map(lambda p: (p[0], valid(*p))), max_size=2),
    order=st.randoms(use_true_random=False),
)
@examples(1.0)
def test_h3_client_malformed_response_spares_its_neighbours(
    certificate: Any,
    spoiled: list[tuple[Request, Reply]],
    good: list[tuple[Request, Reply]],
    order: Any,
) -> None:
    exchanges = spoiled + good
    order.shuffle(exchanges)
    pump = UpstreamPump(certificate, strict=False)
    assert pump.run(lambda: pump.adapter.available_streams() >= len(exchanges))
    sent = send_all(pump, exchanges)
    pump.run()
    pump.origin.send_resets()
    pump.run()
    failed = pump.contract.failed
    stream_errors = [
        e for e in pump.contract.events if isinstance(e, ProtocolError) and e.stream_id is not None
    ]
    event("connection error" if failed else f"stream errors: {min(len(stream_errors), 2)}")
    if not failed:  # a stream error: every other response still arrives exact
        for sid, (_, reply) in zip(sent, exchanges, strict=False):
            if reply.raw or reply.spoil or sid not in pump.origin.scripts:
                continue
            assert stream_events(pump, sid) == expected_events(sid, pump.origin.scripts[sid])
    pump.finish()
    assert pump.contract.closed
