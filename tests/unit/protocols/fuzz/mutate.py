"""Shared fuzz machinery: byte mutations, chunking, and the checker of the adapter contract.

Mutations are concrete tuples (``("flip", 17, 0x20)``) drawn by hypothesis and applied by
``apply_ops``, so a failing case prints as plain data and shrinks well.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st

from protocols.errors import ErrorCode
from protocols.events import (
    CapacityAvailable,
    ConnectionClosed,
    Event,
    GoAway,
    InformationalResponse,
    ProtocolError,
    RequestData,
    RequestEnd,
    RequestHeaders,
    RequestTrailers,
    ResponseData,
    ResponseEnd,
    ResponseHeaders,
    ResponseTrailers,
    StreamReset,
)
from protocols.messages import RequestHead, ResponseHead

Op = tuple[Any, ...]

INTERESTING = [
    b"\x00",
    b"\xff",
    b"\r",
    b"\n",
    b"\r\n",
    b" ",
    b"\t",
    b":",
    b"0",
    b"\x7f",
    b"\x80",
    b"\x3f",
    b"\x40",
]


def examples(fraction: float) -> settings:
    """Settings with ``fraction`` of the loaded profile's examples (at least 5)."""
    return settings(max_examples=max(5, int(settings().max_examples * fraction)))


def mutation_ops(tokens: Sequence[bytes] = (), max_ops: int = 4) -> st.SearchStrategy[list[Op]]:
    """One to ``max_ops`` mutations; ``tokens`` are protocol words worth inserting."""
    pos = st.integers(0, 1 << 16)
    words = st.sampled_from([*INTERESTING, *tokens])
    op = st.one_of(
        st.tuples(st.just("flip"), pos, st.integers(1, 255)),
        st.tuples(st.just("set"), pos, words),
        st.tuples(st.just("insert"), pos, words | st.binary(min_size=1, max_size=8)),
        st.tuples(st.just("delete"), pos, st.integers(1, 16)),
        st.tuples(st.just("dup"), pos, st.integers(1, 64)),
        st.tuples(st.just("truncate"), pos),
        st.tuples(st.just("splice"), pos, pos),
    )
    return st.lists(op, min_size=1, max_size=max_ops)


def apply_op(data: bytes, op: Op, donor: bytes = b"") -> bytes:
    """Apply one mutation; positions wrap around the current length."""
    kind = op[0]
    at = op[1] % (len(data) + 1)
    if kind == "flip":
        if not data:
            return bytes([op[2]])
        at %= len(data)
        return data[:at] + bytes([data[at] ^ op[2]]) + data[at + 1 :]
    if kind == "set":
        word = bytes(op[2])
        return data[:at] + word + data[at + len(word) :]
    if kind == "insert":
        return data[:at] + bytes(op[2]) + data[at:]
    if kind == "delete":
        return data[:at] + data[at + op[2] :]
    if kind == "dup":
        return data[:at] + data[at : at + op[2]] + data[at:]
    if kind == "truncate":
        return data[:at]
    if kind == "splice":  # the head of this message, the tail of another one
        source = donor or data
        return data[:at] + source[op[2] % (len(source) + 1) :]
    raise AssertionError(f"unknown mutation {op!r}")


def apply_ops(data: bytes, ops: Sequence[Op], donor: bytes = b"") -> bytes:
    for op in ops:
        data = apply_op(data, op, donor)
    return data


chunk_sizes = st.lists(st.integers(1, 600), min_size=1, max_size=6)


def chunks(data: bytes, sizes: Sequence[int]) -> Iterator[bytes]:
    """``data`` cut into pieces of the given sizes, cycling through them."""
    offset, index = 0, 0
    while offset < len(data):
        size = sizes[index % len(sizes)]
        yield data[offset : offset + size]
        offset += size
        index += 1


# -- the contract ---------------------------------------------------------------------------

SERVER_EVENTS = (RequestHeaders, RequestData, RequestTrailers, RequestEnd)
CLIENT_EVENTS = (
    InformationalResponse,
    ResponseHeaders,
    ResponseData,
    ResponseTrailers,
    ResponseEnd,
)
COMMON_EVENTS = (StreamReset, ProtocolError, CapacityAvailable, GoAway, ConnectionClosed)

_HEAD = {RequestHeaders, ResponseHeaders}
_DATA = {RequestData, ResponseData}
_TRAILERS = {RequestTrailers, ResponseTrailers}
_END = {RequestEnd, ResponseEnd}


class ContractViolation(AssertionError):
    """An adapter emitted an event its contract does not allow."""


def _fields_ok(fields: Any) -> bool:
    return isinstance(fields, list) and all(
        isinstance(f, tuple) and len(f) == 2 and all(isinstance(x, bytes) for x in f)
        for f in fields
    )


class Contract:
    """Checks every event an adapter emits against protocols/base.py and protocols/events.py.

    Per stream: head (after informational heads, client role), data, at most one trailer block,
    end; a StreamReset or a stream ProtocolError ends the stream's events. Per connection: after
    a connection ProtocolError only one ConnectionClosed (and CapacityAvailable) may follow, after
    ConnectionClosed nothing.
    """

    def __init__(self, *, server: bool) -> None:
        self.server = server
        self.allowed = (*(SERVER_EVENTS if server else CLIENT_EVENTS), *COMMON_EVENTS)
        self.events: list[Event] = []
        self.state: dict[int, str] = {}  # absent | sent | open | trailers | ended | dead
        self.failed = False
        self.closed = False

    def opened(self, stream_id: int) -> None:
        """Client role: we sent a request on ``stream_id``."""
        self.state[stream_id] = "sent"

    def check(self, events: Any) -> list[Event]:
        if not isinstance(events, list):
            raise ContractViolation(f"events must be a list, got {type(events).__name__}")
        for event in events:
            self._one(event)
            self.events.append(event)
        return events

    def _fail(self, event: object, why: str) -> None:
        raise ContractViolation(f"{why}: {event!r}\nafter: {self.events[-8:]!r}")

    def _one(self, event: object) -> None:
        if not isinstance(event, self.allowed):
            self._fail(event, "not an event this role may emit")
        if self.closed:
            self._fail(event, "event after ConnectionClosed")
        if isinstance(event, CapacityAvailable):
            if event.stream_id is not None and not isinstance(event.stream_id, int):
                self._fail(event, "bad stream id")
            return
        if self.failed and not isinstance(event, ConnectionClosed):
            self._fail(event, "event after a connection-level ProtocolError")
        if isinstance(event, ConnectionClosed):
            if not isinstance(event.code, ErrorCode) or not isinstance(event.message, str):
                self._fail(event, "bad ConnectionClosed fields")
            self.closed = True
            return
        if isinstance(event, GoAway):
            if event.last_stream_id is not None and not isinstance(event.last_stream_id, int):
                self._fail(event, "bad GoAway")
            return
        if isinstance(event, ProtocolError):
            if not isinstance(event.code, ErrorCode) or not isinstance(event.message, str):
                self._fail(event, "ProtocolError code is not an ErrorCode member")
            if event.stream_id is None:
                self.failed = True
                return
        self._stream_event(event)

    def _stream_event(self, event: Any) -> None:
        sid = event.stream_id
        if not isinstance(sid, int) or sid < 0:
            self._fail(event, "bad stream id")
        state = self.state.get(sid, "absent")
        kind = type(event)
        if state == "dead":
            self._fail(event, f"event on stream {sid} after its reset or stream error")
        if kind is ProtocolError:
            self.state[sid] = "dead"
            return
        if kind is StreamReset:
            if not isinstance(event.code, ErrorCode):
                self._fail(event, "StreamReset code is not an ErrorCode member")
            if state == "absent" or (self.server and state == "sent"):
                self._fail(event, f"StreamReset for stream {sid} the owner never saw")
            self.state[sid] = "dead"
            return
        self._message_event(event, kind, state)

    def _message_event(self, event: Any, kind: type, state: str) -> None:
        sid = event.stream_id
        if kind is InformationalResponse:
            if state != "sent" or not isinstance(event.head, ResponseHead):
                self._fail(event, "informational response out of place")
            if not 100 <= event.head.status < 200:
                self._fail(event, "informational status")
            return
        if kind in _HEAD:
            expected = "absent" if self.server else "sent"
            if state != expected:
                self._fail(event, f"second or unexpected head on stream {sid} ({state})")
            head = event.head
            head_type = RequestHead if self.server else ResponseHead
            if not isinstance(head, head_type) or not _fields_ok(head.headers):
                self._fail(event, "bad head")
            if isinstance(head, RequestHead):
                parts = (head.method, head.scheme, head.authority, head.path, head.http_version)
                if not all(isinstance(p, bytes) for p in parts):
                    self._fail(event, "bad request head fields")
            elif not isinstance(head.status, int) or not 200 <= head.status <= 999:
                self._fail(event, "bad final status")
            self.state[sid] = "ended" if event.end_stream else "open"
        elif kind in _DATA:
            if state != "open" or not isinstance(event.data, bytes):
                self._fail(event, f"body data on stream {sid} in state {state}")
        elif kind in _TRAILERS:
            if state != "open" or not _fields_ok(event.trailers):
                self._fail(event, f"trailers on stream {sid} in state {state}")
            self.state[sid] = "trailers"
        elif kind in _END:
            if state not in ("open", "trailers"):
                self._fail(event, f"end of stream {sid} in state {state}")
            self.state[sid] = "ended"


def sendable(data: Any) -> bytes:
    """``data_to_send()`` must give bytes."""
    if type(data) is not bytes:
        raise ContractViolation(f"data_to_send() returned {type(data).__name__}")
    return data


# -- generators shared by the HTTP adapters ---------------------------------------------------

TOKEN = "abcdefghijklmnopqrstuvwxyz0123456789-"
VALUE = "".join(chr(c) for c in range(0x21, 0x7F))

field_names = st.text(TOKEN, min_size=1, max_size=12).map(lambda s: "x-" + s)
field_values = st.builds(
    lambda a, b: (a + b).strip(),
    st.text(VALUE, min_size=0, max_size=16),
    st.text(VALUE + " ", min_size=0, max_size=8),
)
fields = st.lists(st.tuples(field_names, field_values), max_size=5)
paths = st.builds(
    lambda p, q: "/" + p + (("?" + q) if q else ""),
    st.text(TOKEN + "/._~%", max_size=20),
    st.text(TOKEN + "=&", max_size=10),
)
methods = st.sampled_from(["GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "PATCH", "X-CUSTOM"])
bodies = st.lists(st.binary(min_size=1, max_size=300), max_size=4)


def encode_fields(pairs: Sequence[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(n.encode(), v.encode()) for n, v in pairs]


# -- frame-aware mutations for length-prefixed framing (HTTP/2) -------------------------------


def frame_ops(max_ops: int = 3) -> st.SearchStrategy[list[Op]]:
    """Mutations of whole HTTP/2 frames: drop, repeat, swap, new flags, type or stream id, and
    byte mutations inside one payload (with the length field kept right)."""
    index = st.integers(0, 1 << 10)
    op = st.one_of(
        st.tuples(st.just("drop"), index),
        st.tuples(st.just("repeat"), index),
        st.tuples(st.just("swap"), index),
        st.tuples(st.just("flags"), index, st.integers(0, 255)),
        st.tuples(st.just("type"), index, st.integers(0, 12)),
        st.tuples(st.just("stream"), index, st.sampled_from([0, 1, 2, 3, 5, 7, 0x7FFFFFFF])),
        st.tuples(st.just("payload"), index, mutation_ops(max_ops=2)),
    )
    return st.lists(op, min_size=1, max_size=max_ops)


def split_frames(data: bytes, prefix: int) -> tuple[bytes, list[bytearray]]:
    """``prefix`` bytes (the client preface), then 9-byte-header frames; a torn tail is one."""
    head, frames, offset = data[:prefix], [], prefix
    while offset < len(data):
        length = int.from_bytes(data[offset : offset + 3], "big")
        frames.append(bytearray(data[offset : offset + 9 + length]))
        offset += 9 + length
    return head, frames


def apply_frame_ops(data: bytes, ops: Sequence[Op], prefix: int = 0) -> bytes:
    head, frames = split_frames(data, prefix)
    for op in ops:
        if not frames:
            break
        i = op[1] % len(frames)
        frame = frames[i]
        kind = op[0]
        if kind == "drop":
            del frames[i]
        elif kind == "repeat":
            frames.insert(i, bytearray(frame))
        elif kind == "swap" and i + 1 < len(frames):
            frames[i], frames[i + 1] = frames[i + 1], frames[i]
        elif len(frame) < 9:
            continue
        elif kind == "flags":
            frame[4] = op[2]
        elif kind == "type":
            frame[3] = op[2]
        elif kind == "stream":
            frame[5:9] = op[2].to_bytes(4, "big")
        elif kind == "payload":
            payload = apply_ops(bytes(frame[9:]), op[2])
            frames[i] = bytearray(len(payload).to_bytes(3, "big") + frame[3:9] + payload)
    return head + b"".join(frames)
