"""Fuzzing the HTTP/1.1 adapters: traffic written by real h11 peers, then mutated."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import h11
from hypothesis import given
from hypothesis import strategies as st

from protocols.events import (
    ConnectionClosed,
    Event,
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
)
from protocols.h1 import H1ClientAdapter, H1ServerAdapter
from protocols.messages import RequestHead, ResponseHead

from .mutate import (
    Contract,
    Op,
    apply_ops,
    bodies,
    chunk_sizes,
    chunks,
    encode_fields,
    examples,
    fields,
    methods,
    mutation_ops,
    paths,
    sendable,
)

H1_TOKENS = [
    b"Transfer-Encoding: chunked\r\n",
    b"Content-Length: 3\r\n",
    b"Content-Length: -1\r\n",
    b"Content-Length: 1, 2\r\n",
    b"\r\n\r\n",
    b"0\r\n\r\n",
    b"ffffffffffffffffffff\r\n",
    b";ext=1\n",
    b"\r\n\t",
    b"Expect: 100-continue\r\n",
    b"Connection: close\r\n",
    b"HTTP/1.0",
    b"Host: other\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n",
]


@dataclass(frozen=True, slots=True)
class H1Request:
    """What one client writes: a request, its framing and body.

    HTTP/1.1 requests are written by a real h11 client; HTTP/1.0 ones (which h11 does not
    send) by hand, with mixed-case field names. ``form``: origin-form (``/path``),
    absolute-form (``scheme://host/path``, its authority matching Host up to case, the scheme
    in any case) or asterisk-form (``OPTIONS *``). HTTP/1.0 requests may leave Host out and
    ask for keep-alive; ``expect`` adds ``Expect: 100-continue`` to a request with a body.
    """

    method: str
    path: str
    host: str
    fields: list[tuple[str, str]]
    framing: str  # none | length | chunked (HTTP/1.1 only)
    body: list[bytes]
    trailers: list[tuple[str, str]]
    version: str = "1.1"
    form: str = "origin"  # origin | absolute | asterisk
    send_host: bool = True
    keep_alive: bool = False
    expect: bool = False
    target_scheme: str = "http"
    bare: bool = False  # absolute-form without the "/" of an empty path (http://host?q)

    def headers(self) -> list[tuple[bytes, bytes]]:
        """The fields after Host, in wire order, as the adapter must report them."""
        out = encode_fields(self.fields)
        if self.keep_alive:
            out.append((b"connection", b"keep-alive"))
        if self.expect and self.has_body:
            out.append((b"expect", b"100-continue"))
        if self.framing == "length":
            out.append((b"content-length", str(sum(map(len, self.body))).encode()))
        elif self.framing == "chunked":
            out.append((b"transfer-encoding", b"chunked"))
        return out

    @property
    def has_body(self) -> bool:
        return self.framing == "chunked" or (self.framing == "length" and any(self.body))

    @property
    def continues(self) -> bool:
        """The server owes a 100 Continue (h11 honours Expect from HTTP/1.1 clients only)."""
        return self.expect and self.has_body and self.version == "1.1"

    def target(self) -> str:
        if self.form == "asterisk":
            return "*"
        if self.form == "absolute":
            path = self.path[1:] if self.bare and self.path[1:2] in ("", "?") else self.path
            return f"{self.target_scheme}://{self.host.upper()}{path}"
        return self.path

    def expected_head(self) -> RequestHead:
        """The head the server adapter must emit for this request."""
        absolute = self.form == "absolute"
        authority = self.host if self.send_host else self.host.upper() if absolute else ""
        return RequestHead(
            self.method.encode(),
            self.target_scheme.lower().encode() if absolute else b"https",
            authority.encode(),
            self.target().encode() if self.form == "asterisk" else self.path.encode(),
            self.headers(),
            self.version.encode(),
        )

    def wire(self) -> bytes:
        """The bytes a real client sends for this request."""
        if self.version == "1.0":
            return self._wire_10()
        client = h11.Connection(h11.CLIENT)
        headers = [(b"host", self.host.encode()), *self.headers()]
        out = client.send(h11.Request(method=self.method, target=self.target(), headers=headers))
        assert out is not None
        body = self.body if self.framing != "none" else []
        for chunk in body:
            out += client.send(h11.Data(data=chunk)) or b""
        trailers = encode_fields(self.trailers) if self.framing == "chunked" else []
        out += client.send(h11.EndOfMessage(headers=trailers)) or b""
        return out

    def _wire_10(self) -> bytes:
        lines = [f"{self.method} {self.target()} HTTP/1.0".encode()]
        if self.send_host:
            lines.append(b"Host: " + self.host.encode())
        lines += [name.title() + b": " + value for name, value in self.headers()]
        body = b"".join(self.body) if self.framing == "length" else b""
        return b"\r\n".join(lines) + b"\r\n\r\n" + body


def h1_request(
    base: H1Request, version: str, form: str, host_and_keep_alive: tuple[bool, bool]
) -> H1Request:
    """``base`` made into the given version and target form (a valid combination)."""
    method, framing, send_host, keep_alive = base.method, base.framing, True, False
    if version == "1.0":
        framing = "length" if framing == "chunked" else framing  # no chunked in HTTP/1.0
        send_host, keep_alive = host_and_keep_alive
    if form == "asterisk":
        method = "OPTIONS"
    return replace(
        base,
        method=method,
        framing=framing,
        version=version,
        form=form,
        send_host=send_host,
        keep_alive=keep_alive,
    )


hosts = st.sampled_from(["example.com", "localhost:8443", "a.b.c", "[::1]:443"])
h1_requests = st.builds(
    h1_request,
    st.builds(
        H1Request,
        method=methods,
        path=paths,
        host=hosts,
        fields=fields,
        framing=st.sampled_from(["none", "length", "chunked"]),
        body=bodies,
        trailers=fields,
        expect=st.booleans(),
        target_scheme=st.sampled_from(["http", "https", "HTTP", "Https"]),
        bare=st.booleans(),
    ),
    st.sampled_from(["1.1", "1.1", "1.1", "1.0"]),
    st.sampled_from(["origin", "origin", "absolute", "asterisk"]),
    st.tuples(st.booleans(), st.booleans()),
)


def up_to_first_10(requests: list[H1Request]) -> list[H1Request]:
    """An HTTP/1.0 request ends the connection (h11 does not keep HTTP/1.0 connections alive
    and says so with ``Connection: close``): a client sends nothing after it."""
    for i, request in enumerate(requests):
        if request.version == "1.0":
            return requests[: i + 1]
    return requests


class ServerDriver:
    """The owner of an H1ServerAdapter: answers each complete request with a 204."""

    def __init__(self, adapter: H1ServerAdapter) -> None:
        self.adapter = adapter
        self.contract = Contract(server=True)
        self.out = b""

    def feed(self, data: bytes) -> None:
        self.handle(self.adapter.receive_data(data))

    def handle(self, events: list[Event]) -> None:
        for _ in range(50):  # pipelined requests become visible one response at a time
            answered = False
            for event in self.contract.check(events):
                if isinstance(event, RequestEnd | RequestHeaders) and (
                    isinstance(event, RequestEnd) or event.end_stream
                ):
                    self.adapter.send_response(event.stream_id, ResponseHead(204, []), True)
                    answered = True
            self.out += sendable(self.adapter.data_to_send())
            events = self.adapter.next_events()
            if not events and not answered:
                return
        raise AssertionError("next_events() never settled")


@given(
    requests=st.lists(h1_requests, min_size=1, max_size=4).map(up_to_first_10),
    sizes=chunk_sizes,
)
@examples(1.0)
def test_h1_server_valid_requests_arrive_intact(
    requests: list[H1Request], sizes: list[int]
) -> None:
    driver = ServerDriver(H1ServerAdapter())
    for piece in chunks(b"".join(r.wire() for r in requests), sizes):
        driver.feed(piece)
    driver.feed(b"")
    events = driver.contract.events
    assert not [e for e in events if isinstance(e, ProtocolError)]
    assert isinstance(events[-1], ConnectionClosed)
    heads = [e for e in events if isinstance(e, RequestHeaders)]
    assert [e.stream_id for e in heads] == list(range(1, len(requests) + 1))
    for head_event, request in zip(heads, requests, strict=True):
        sid = head_event.stream_id
        assert head_event.head == request.expected_head()
        assert head_event.end_stream is not request.has_body
        mine = [e for e in events if getattr(e, "stream_id", None) == sid]
        body = b"".join(e.data for e in mine if isinstance(e, RequestData))
        assert body == (b"".join(request.body) if request.framing != "none" else b"")
        trailers = [e.trailers for e in mine if isinstance(e, RequestTrailers)]
        want = encode_fields(request.trailers) if request.framing == "chunked" else []
        assert trailers == ([want] if want else [])
        assert sum(isinstance(e, RequestEnd) for e in mine) == int(request.has_body)
    # What the client reads back: a 100 Continue before each answer it asked one for, and an
    # HTTP/1.0 client is told the connection closes.
    statuses = re.findall(rb"HTTP/1\.1 ([0-9]{3}) ", driver.out)
    assert statuses == [s for r in requests for s in ([b"100"] if r.continues else []) + [b"204"]]
    if requests[-1].version == "1.0":
        assert driver.out.rsplit(b"HTTP/1.1 204 ", 1)[1].lower().count(b"connection: close") == 1


@given(
    requests=st.lists(h1_requests, min_size=1, max_size=3),
    ops=mutation_ops(H1_TOKENS),
    sizes=chunk_sizes,
)
@examples(2.0)
def test_h1_server_survives_mutated_requests(
    requests: list[H1Request], ops: list[Op], sizes: list[int]
) -> None:
    wires = [r.wire() for r in requests]
    data = apply_ops(b"".join(wires), ops, donor=wires[-1])
    server_survives(data, sizes)


def server_survives(data: bytes, sizes: list[int]) -> None:
    driver = ServerDriver(H1ServerAdapter())
    for piece in chunks(data, sizes):
        driver.feed(piece)
    driver.feed(b"")
    assert isinstance(driver.contract.events[-1], ConnectionClosed | ProtocolError)


# -- client role ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class H1Response:
    """What one h11 server writes for one request: interim heads, a final head, a body."""

    informational: list[int]
    status: int
    fields: list[tuple[str, str]]
    framing: str  # length | chunked
    body: list[bytes]
    trailers: list[tuple[str, str]]

    def headers(self) -> list[tuple[bytes, bytes]]:
        out = encode_fields(self.fields)
        if self.framing == "length":
            out.append((b"content-length", str(sum(map(len, self.body))).encode()))
        else:
            out.append((b"transfer-encoding", b"chunked"))
        return out


h1_responses = st.builds(
    H1Response,
    informational=st.lists(st.sampled_from([100, 102, 103]), max_size=2),
    status=st.sampled_from([200, 201, 204, 206, 301, 304, 404, 418, 500, 503, 599]),
    fields=fields,
    framing=st.sampled_from(["length", "chunked"]),
    body=bodies,
    trailers=fields,
)
exchanges = st.lists(st.tuples(h1_requests, h1_responses), min_size=1, max_size=3)


def request_head(request: H1Request) -> RequestHead:
    return RequestHead(
        request.method.encode(), b"http", request.host.encode(), request.path.encode(), []
    )


def send_request(adapter: H1ClientAdapter, contract: Contract, request: H1Request) -> int:
    body = b"".join(request.body)
    sid = adapter.send_request(request_head(request), end_stream=not body)
    contract.opened(sid)
    if body:
        adapter.send_data(sid, body, end_stream=True)
    return sid


def write_response(peer: h11.Connection, request: H1Request, response: H1Response) -> bytes:
    """Let the h11 server read our request and write its response."""
    for _ in range(20):
        event = peer.next_event()
        if isinstance(event, h11.EndOfMessage):
            break
        assert event is not h11.NEED_DATA, "the request did not reach the peer whole"
    out = b""
    for status in response.informational:
        out += peer.send(h11.InformationalResponse(status_code=status, headers=[])) or b""
    headers = response.headers()
    bodyless = request.method == "HEAD" or response.status in (204, 304)
    if response.status in (204, 304):
        headers = encode_fields(response.fields)
    out += peer.send(h11.Response(status_code=response.status, headers=headers)) or b""
    if not bodyless:
        for chunk in response.body:
            out += peer.send(h11.Data(data=chunk)) or b""
    chunked = response.framing == "chunked" and not bodyless
    trailers = encode_fields(response.trailers) if chunked else []
    out += peer.send(h11.EndOfMessage(headers=trailers)) or b""
    peer.start_next_cycle()
    return out


@given(exchanges=exchanges, sizes=chunk_sizes)
@examples(1.0)
def test_h1_client_valid_responses_arrive_intact(
    exchanges: list[tuple[H1Request, H1Response]], sizes: list[int]
) -> None:
    adapter, peer, contract = H1ClientAdapter(), h11.Connection(h11.SERVER), Contract(server=False)
    for request, response in exchanges:
        assert adapter.available_streams() == 1
        sid = send_request(adapter, contract, request)
        peer.receive_data(sendable(adapter.data_to_send()))
        wire = write_response(peer, request, response)
        start = len(contract.events)
        for piece in chunks(wire, sizes):
            contract.check(adapter.receive_data(piece))
        mine = contract.events[start:]
        interim = [e.head.status for e in mine if isinstance(e, InformationalResponse)]
        assert interim == response.informational
        (head,) = [e for e in mine if isinstance(e, ResponseHeaders)]
        assert head.stream_id == sid and head.head.status == response.status
        bodyless = request.method == "HEAD" or response.status in (204, 304)
        if response.status not in (204, 304):
            assert head.head.headers == response.headers()
        body = b"".join(e.data for e in mine if isinstance(e, ResponseData))
        assert body == (b"" if bodyless else b"".join(response.body))
        trailers = [e.trailers for e in mine if isinstance(e, ResponseTrailers)]
        want = encode_fields(response.trailers)
        assert trailers == (
            [want] if want and response.framing == "chunked" and not bodyless else []
        )
        ends = [e for e in mine if isinstance(e, ResponseEnd)]
        assert len(ends) == int(not head.end_stream)
    contract.check(adapter.receive_data(b""))
    assert isinstance(contract.events[-1], ConnectionClosed)


@given(exchanges=exchanges, ops=mutation_ops(H1_TOKENS), sizes=chunk_sizes)
@examples(2.0)
def test_h1_client_survives_mutated_responses(
    exchanges: list[tuple[H1Request, H1Response]], ops: list[Op], sizes: list[int]
) -> None:
    # Record what a real h11 server answers, then replay it mutated to a fresh adapter.
    recorder, peer = H1ClientAdapter(), h11.Connection(h11.SERVER)
    wires: list[bytes] = []
    for request, response in exchanges:
        send_request(recorder, Contract(server=False), request)
        peer.receive_data(recorder.data_to_send())
        wires.append(write_response(peer, request, response))
        recorder.receive_data(wires[-1])
    data = apply_ops(b"".join(wires), ops, donor=wires[0])
    client_survives([r for r, _ in exchanges], data, sizes)


def client_survives(requests: list[H1Request], data: bytes, sizes: list[int]) -> None:
    adapter, contract = H1ClientAdapter(), Contract(server=False)
    pending = list(requests)
    for piece in [*chunks(data, sizes), b""]:
        if pending and adapter.available_streams() == 1:
            send_request(adapter, contract, pending.pop(0))
        contract.check(adapter.receive_data(piece))
        sendable(adapter.data_to_send())
    assert isinstance(contract.events[-1], ConnectionClosed | ProtocolError)
