"""An in-memory HTTP/3 upstream for fuzzing H3ClientAdapter: aioquic's server, tampered with.

The client side is what ``quicproxy/upstream/quic_client.py`` builds: an ``EcnQuicConnection``
(a ``GatedQuicConnection``) under an ``H3ClientAdapter``, driven as its ``_drain`` drives it. The
server is aioquic's own ``QuicConnection(is_client=False)`` with aioquic's ``H3Connection``
writing the responses an ``Origin`` was told to give. ``TamperingServer`` may mutate each of the
server's stream writes (response frames, SETTINGS, the QPACK encoder stream) and ``UpstreamPump``
may drop, repeat, delay or mutate the server's datagrams.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from aioquic.buffer import encode_uint_var
from aioquic.h3.connection import FrameType, H3Connection, encode_frame
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import QuicEvent

from protocols.engines.aioquic import EcnQuicConnection
from protocols.errors import ErrorCode
from protocols.events import Event, ProtocolError, ResponseData
from protocols.h3 import H3ClientAdapter
from protocols.messages import Headers, RequestHead

from .mutate import Contract, Op, apply_ops
from .quic_pump import CLIENT_ADDR, SERVER_ADDR, STEP, client_configuration, server_configuration

STREAM_BUFFER = 256 * 1024  # as quicproxy/upstream/quic_client.py
H3_NO_ERROR = 0x100


@dataclass(frozen=True, slots=True)
class Reply:
    """What the origin answers on one request stream.

    ``length``: send ``content-length`` (for HEAD and 304 the length a GET would have had,
    RFC 9110 8.6). ``reset``: abandon the response with RESET_STREAM(``reset_code``) before the
    head, after it, or after half the body. ``early``: answer on the request head, before the
    request body ended, with STOP_SENDING(H3_NO_ERROR) first (RFC 9114 4.1). ``grease``: a
    frame of a reserved type before the head and each body chunk (to be ignored, RFC 9114 9).
    Hostile only: ``raw`` bytes on the stream before the answer, and ``spoil`` =
    ``(index, kind, name, value)`` edits the index-th header section before it is encoded:
    ``status`` sets ``:status`` to ``value`` (removes it when empty), ``add`` appends a field,
    ``first`` puts one in front of the pseudo-header.
    """

    informational: list[tuple[int, Headers]]
    status: int
    fields: Headers
    body: list[bytes]
    trailers: Headers
    length: bool = False
    fin_alone: bool = False  # no body and no trailers: FIN in an empty DATA frame, not the head
    reset: str | None = None  # None | before-head | after-head | mid-body
    reset_code: int = 0x10C
    early: bool = False
    grease: bool = False
    raw: bytes = b""
    spoil: tuple[int, str, bytes, bytes] | None = None


@dataclass(slots=True)
class Seen:
    """What the origin received on one request stream."""

    headers: Headers
    body: bytes = b""
    ended: bool = False
    answered: bool = False


class TamperingServer(QuicConnection):
    """aioquic's server QuicConnection whose n-th stream write goes through ``plan[n]``."""

    def __init__(self, certificate: Any, odcid: bytes, plan: dict[int, list[Op]]) -> None:
        super().__init__(
            configuration=server_configuration(certificate),
            original_destination_connection_id=odcid,
        )
        self.plan = plan
        self.writes = 0
        self.written: dict[int, int] = {}  # bytes written per stream (before mutation)
        self.kinds: dict[int, int] = {}  # the type byte of each unidirectional stream

    def send_stream_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        ops = self.plan.get(self.writes)
        self.writes += 1
        self.written[stream_id] = self.written.get(stream_id, 0) + len(data)
        if stream_id % 4 == 3 and data and stream_id not in self.kinds:
            self.kinds[stream_id] = data[0]
        if ops is not None:
            data = apply_ops(data, ops)
        super().send_stream_data(stream_id, data, end_stream)


Step = tuple[str, Any, bool]
"""One thing the origin does on a stream: ``("headers", fields, end)``, ``("data", bytes, end)``,
``("raw", bytes, False)`` (stream bytes as they are), ``("stop", code, False)`` (STOP_SENDING)
or ``("reset", code, False)`` (RESET_STREAM, sent by ``Origin.send_resets`` once everything
before it has arrived)."""

GREASE = encode_frame(0x21, b"grease")  # a reserved frame type (0x1f * N + 0x21)


def bodyless_response(method: bytes, status: int) -> bool:
    return method == b"HEAD" or status in (204, 304)


def script(reply: Reply, method: bytes, request_ended: bool) -> list[Step]:
    """What the origin writes for ``reply`` to a ``method`` request, in order."""
    steps: list[Step] = [("raw", reply.raw, False)] if reply.raw else []
    if reply.early and not request_ended:
        steps.append(("stop", H3_NO_ERROR, False))
    if reply.reset == "before-head":
        return [*steps, ("reset", reply.reset_code, False)]
    for status, extra in reply.informational:
        steps.append(("headers", [(b":status", str(status).encode()), *extra], False))
    bodyless = bodyless_response(method, reply.status)
    body = [] if bodyless else reply.body
    trailers = [] if bodyless else reply.trailers
    head = [(b":status", str(reply.status).encode()), *reply.fields]
    if reply.length:
        head.append((b"content-length", str(sum(map(len, reply.body))).encode()))
    ends_on_head = not body and not trailers and not reply.fin_alone and reply.reset is None
    grease: list[Step] = [("raw", GREASE, False)] if reply.grease else []
    steps += [*grease, ("headers", head, ends_on_head)]
    if reply.reset == "mid-body":
        body = body[: len(body) // 2]
    elif reply.reset == "after-head":
        body = []
    for i, chunk in enumerate(body):
        last = i == len(body) - 1 and not trailers and reply.reset is None
        steps += [*grease, ("data", chunk, last)]
    if reply.reset is not None:
        steps.append(("reset", reply.reset_code, False))
    elif trailers:
        steps.append(("headers", trailers, True))
    elif not body and not ends_on_head:
        steps.append(("data", b"", True))
    return spoiled(steps, reply.spoil) if reply.spoil else steps


def spoiled(steps: list[Step], spoil: tuple[int, str, bytes, bytes]) -> list[Step]:
    """``steps`` with one header section edited as ``Reply.spoil`` says."""
    at, kind, name, value = spoil
    sections = [i for i, step in enumerate(steps) if step[0] == "headers"]
    if not sections:
        return steps
    index = sections[at % len(sections)]
    _, fields, end = steps[index]
    if kind == "status":
        fields = [(k, v) for k, v in fields if k != b":status"]
        fields = [(b":status", value), *fields] if value else fields
    elif kind == "add":
        fields = [*fields, (name, value)]
    else:
        fields = [(name, value), *fields]
    return [*steps[:index], ("headers", fields, end), *steps[index + 1 :]]


UNI_CONTROL, UNI_ENCODER = 0x00, 0x02


class Origin:
    """An HTTP/3 origin on aioquic's H3Connection that answers each request as planned.

    ``strict``: valid traffic, so aioquic refusing its own writes is a test failure; otherwise
    (mutated traffic) such refusals are not traffic and are skipped.
    """

    def __init__(self, quic: TamperingServer, *, strict: bool) -> None:
        self.quic = quic
        self.h3: H3Connection | None = H3Connection(quic)
        self.strict = strict
        self.replies: dict[int, Reply] = {}
        self.seen: dict[int, Seen] = {}
        self.scripts: dict[int, list[Step]] = {}  # what was answered, for the expectations
        self.resets: dict[int, int] = {}

    def handle(self, event: QuicEvent) -> None:
        if self.h3 is None:
            return
        try:
            h3_events = self.h3.handle_event(event)
        except Exception:
            if self.strict:
                raise
            self.h3 = None
            return
        for h3_event in h3_events:
            if not isinstance(h3_event, HeadersReceived | DataReceived):
                continue
            sid = h3_event.stream_id
            if isinstance(h3_event, HeadersReceived) and sid not in self.seen:
                self.seen[sid] = Seen(list(h3_event.headers))
            elif isinstance(h3_event, DataReceived) and sid in self.seen:
                self.seen[sid].body += h3_event.data
            seen = self.seen.get(sid)
            if seen is None:
                continue
            seen.ended |= h3_event.stream_ended
            reply = self.replies.get(sid)
            if reply is not None and not seen.answered and (seen.ended or reply.early):
                seen.answered = True
                method = dict(seen.headers).get(b":method", b"")
                steps = self.scripts[sid] = script(reply, method, seen.ended)
                self._guard(partial(self._play, sid, steps))

    def _guard(self, action: Callable[[], None]) -> None:
        try:
            action()
        except Exception:
            if self.strict:
                raise

    def _play(self, sid: int, steps: list[Step]) -> None:
        h3 = self.h3
        assert h3 is not None
        for kind, what, end in steps:
            if kind == "headers":
                h3.send_headers(sid, what, end_stream=end)
            elif kind == "data":
                h3.send_data(sid, what, end_stream=end)
            elif kind == "raw":
                self.quic.send_stream_data(sid, what)
            elif kind == "stop":
                self.quic.stop_stream(sid, what)
            else:
                self.resets[sid] = what

    def send_resets(self) -> None:
        resets, self.resets = self.resets, {}
        for sid, code in resets.items():
            self._guard(partial(self.quic.reset_stream, sid, code))

    def raw_stream(self, uni: bool, data: bytes, fin: bool) -> None:
        """Open a server-initiated stream (a bidirectional one is forbidden in HTTP/3)."""
        sid = self.quic.get_next_available_stream_id(is_unidirectional=uni)
        self._guard(lambda: self.quic.send_stream_data(sid, data, end_stream=fin))

    def goaway(self, identifier: int) -> None:
        """A GOAWAY frame on the control stream (aioquic's H3Connection cannot send one)."""
        control = [sid for sid, kind in self.quic.kinds.items() if kind == UNI_CONTROL]
        frame = encode_frame(FrameType.GOAWAY, encode_uint_var(identifier))
        if control:
            self._guard(lambda: self.quic.send_stream_data(control[0], frame))

    def encoder_bytes(self) -> int:
        """Bytes the origin's QPACK encoder wrote beyond its stream type: dynamic-table use."""
        return sum(
            self.quic.written[sid] - 1
            for sid, kind in self.quic.kinds.items()
            if kind == UNI_ENCODER
        )


@dataclass(slots=True)
class UpstreamPump:
    """Moves datagrams between the adapter's client connection and the tampering server.

    Each round: client datagrams to the server, server datagrams (through ``datagram_plan``:
    ``"drop"``, ``"repeat"``, ``"late"`` = after the next one, or mutation ops) to the client;
    when nothing moves, the clock jumps to the next timer (loss recovery, delayed ACKs).
    """

    certificate: Any
    write_plan: dict[int, list[Op]] = field(default_factory=dict)
    datagram_plan: dict[int, Any] = field(default_factory=dict)
    strict: bool = True
    now: float = 1.0
    datagrams: int = 0
    late: list[bytes] = field(default_factory=list)
    client: EcnQuicConnection = field(init=False)
    adapter: H3ClientAdapter = field(init=False)
    server: TamperingServer = field(init=False)
    origin: Origin = field(init=False)
    contract: Contract = field(init=False)

    def __post_init__(self) -> None:
        configuration = client_configuration("h3")
        configuration.max_datagram_size = 1350
        self.client = EcnQuicConnection(configuration=configuration, stream_window=STREAM_BUFFER)
        self.adapter = H3ClientAdapter(self.client, stream_buffer=STREAM_BUFFER)
        self.server = TamperingServer(
            self.certificate, self.client.original_destination_connection_id, self.write_plan
        )
        self.origin = Origin(self.server, strict=self.strict)
        self.contract = Contract(server=False)
        self.client.connect(SERVER_ADDR, now=self.now)

    # -- the owner's side (quicproxy/upstream/quic_client.py and streamio) --------------------

    @property
    def gone(self) -> bool:
        return self.contract.closed or self.contract.failed

    def request(self, head: RequestHead, body: list[bytes], reply: Reply) -> int | None:
        """Send a request head (and its body unless ``reply.early``); None when refused."""
        if self.gone or self.adapter.available_streams() == 0:
            return None
        end = not body
        sid = self.adapter.send_request(head, end_stream=end)
        self.contract.opened(sid)
        self.origin.replies[sid] = reply
        if not reply.early:
            self.send_body(sid, body)
        return sid

    def send_body(self, sid: int, body: list[bytes]) -> None:
        for i, chunk in enumerate(body):
            if self.adapter.send_capacity(sid) < len(chunk):
                return  # the peer stopped the stream (or is slow): the owner waits or gives up
            self.adapter.send_data(sid, chunk, end_stream=i == len(body) - 1)

    def _events(self, events: list[Event]) -> None:
        for event in self.contract.check(events):
            if isinstance(event, ResponseData):
                self.adapter.consumed(event.stream_id, len(event.data))
            elif isinstance(event, ProtocolError) and event.stream_id is None:
                self.client.close()  # the owner's close_transport()

    def _drain_client(self) -> None:
        while (event := self.client.next_event()) is not None:
            self._events(self.adapter.handle_event(event))
        self.adapter.poll()

    def _drain_server(self) -> None:
        while (event := self.server.next_event()) is not None:
            self.origin.handle(event)

    # -- the wire ----------------------------------------------------------------------------

    def _mangle(self, data: bytes) -> list[bytes]:
        plan = self.datagram_plan.get(self.datagrams)
        self.datagrams += 1
        if plan is None:
            out, self.late = [data, *self.late], []
            return out
        if plan == "drop":
            return []
        if plan == "repeat":
            return [data, data]
        if plan == "late":
            self.late.append(data)
            return []
        return [apply_ops(data, plan)]

    def _to_client(self, datagrams: list[bytes]) -> None:
        for datagram in datagrams:
            self.client.receive_datagram(datagram, SERVER_ADDR, self.now)
            self._drain_client()

    def step(self) -> bool:
        """One round both ways; True when a datagram moved."""
        moved = False
        for data, _ in self.client.datagrams_to_send(self.now):
            moved = True
            self.server.receive_datagram(data, CLIENT_ADDR, self.now)
            self._drain_server()
        self._drain_server()
        for data, _ in self.server.datagrams_to_send(self.now):
            moved = True
            self._to_client(self._mangle(data))
        if self.late:
            late, self.late = self.late, []
            self._to_client(late)
        return moved

    def next_timer(self) -> float | None:
        timers = [t for t in (self.client.get_timer(), self.server.get_timer()) if t is not None]
        return min(timers) if timers else None

    def fire_timers(self) -> None:
        """Jump to the earliest timer and run every timer that is due."""
        timer = self.next_timer()
        if timer is None:
            return
        self.now = max(self.now, timer)
        if (timer := self.server.get_timer()) is not None and timer <= self.now:
            self.server.handle_timer(self.now)
            self._drain_server()
        if (timer := self.client.get_timer()) is not None and timer <= self.now:
            self.client.handle_timer(self.now)
            self._drain_client()

    def run(
        self, until: Callable[[], bool] = lambda: False, rounds: int = 200, horizon: float = 10.0
    ) -> bool:
        """Pump until ``until()`` holds after a quiet round (True), or nothing is left to do
        within ``horizon`` seconds (loss recovery and ACK timers, not the idle timeout), the
        connection is gone or ``rounds`` ran out (False)."""
        for _ in range(rounds):
            if self.step():
                self.now += STEP
                continue
            if until():
                return True
            timer = self.next_timer()
            if self.contract.closed or timer is None or timer > self.now + horizon:
                return until()
            self.fire_timers()
        return until()

    def finish(self) -> bool:
        """Close as the owner does when done: ``adapter.close()``, CONNECTION_CLOSE once it is
        drained (or given up on), then timers until the connection is gone. Returns whether
        the adapter drained."""
        self.adapter.close(ErrorCode.NO_ERROR)
        self.adapter.poll()
        drained = self.run(lambda: self.adapter.drained, rounds=60)
        self.client.close(error_code=ErrorCode.NO_ERROR.h3_code)
        self.run(lambda: self.contract.closed, rounds=80, horizon=120.0)
        return drained
