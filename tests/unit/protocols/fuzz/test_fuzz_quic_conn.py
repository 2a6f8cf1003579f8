"""Fuzzing QuicServerConnection directly: random owner calls in random connection states.

The router tests only call ``handle_timer`` when it is due, never pass ECN bits, never read
``facts`` and never close. Here a real aioquic client (HTTP/3, hq-interop or an ALPN without an
adapter) talks to one QuicServerConnection while the owner does what an I/O shell may do at any
moment: run the timer early or late, flush (the datagrams delivered or lost), feed ECN-marked
datagrams, read ``facts``, close gracefully or with any code, or close the QUIC connection; the
client pings, opens requests, resets them, moves to a new connection ID or closes. Whatever
happens: no exception, the adapter contract holds, and once every timer has run out the
connection is closed and its owner was told exactly once.
"""

from __future__ import annotations

from typing import Any

from aioquic.h0.connection import H0Connection
from aioquic.h3.connection import H3Connection
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from hypothesis import event, given
from hypothesis import strategies as st

from protocols.engines.aioquic import ServerQuicConnection
from protocols.errors import ErrorCode
from protocols.events import ConnectionClosed, Event, RequestData, RequestEnd, RequestHeaders
from protocols.limits import ConnectionLimits
from protocols.messages import ResponseHead
from protocols.quic import QuicFacts, QuicServerConnection
from protocols.quic_tokens import reset_token

from .mutate import Contract, ContractViolation, examples
from .quic_pump import CLIENT_ADDR, SERVER_ADDR, STEP, client_configuration

SERVER_ALPNS = ["h3", "hq-interop", "h3-29", "hq-29", "x-unsupported"]

actions = st.one_of(
    st.tuples(st.just("pump"), st.integers(1, 6)),
    st.tuples(st.just("advance"), st.sampled_from([0.0005, 0.01, 0.1, 0.5, 2.0, 10.0, 70.0])),
    st.tuples(st.just("timer")),  # handle_timer(now), due or not
    st.tuples(st.just("flush"), st.booleans()),  # datagrams_to_send(now): delivered or lost
    st.tuples(st.just("ecn"), st.sampled_from([0b00, 0b01, 0b10, 0b11])),
    st.tuples(st.just("facts")),
    st.tuples(st.just("close"), st.sampled_from(list(ErrorCode))),
    st.tuples(st.just("quic-close")),  # what the frontend does to refuse or after draining
    st.tuples(st.just("request"), st.booleans()),  # with a body?
    st.tuples(st.just("client-reset")),
    st.tuples(st.just("ping")),
    st.tuples(st.just("new-cid")),
    st.tuples(st.just("client-close")),
)


def check_facts(facts: Any) -> None:
    if not isinstance(facts, QuicFacts):
        raise ContractViolation(f"facts is {facts!r}")
    if not (facts.alpn is None or isinstance(facts.alpn, str)):
        raise ContractViolation(f"bad alpn {facts!r}")
    if not (facts.version is None or isinstance(facts.version, int)):
        raise ContractViolation(f"bad version {facts!r}")
    bytes.fromhex(facts.original_dcid), bytes.fromhex(facts.host_cid)
    if not (isinstance(facts.rtt, float) and facts.rtt >= 0.0):
        raise ContractViolation(f"bad rtt {facts!r}")
    flags = (facts.early_data, facts.session_resumed, facts.address_validated)
    if not all(isinstance(flag, bool) for flag in flags):
        raise ContractViolation(f"bad flags {facts!r}")


class Owner:
    """A client and one QuicServerConnection, with the owner's calls made one by one."""

    def __init__(self, certificate: Any, alpn: str) -> None:
        self.now = 1.0
        self.ecn = 0
        self.client = QuicConnection(configuration=client_configuration(alpn))
        self.http: H3Connection | H0Connection | None = None
        if alpn.startswith("h3"):
            self.http = H3Connection(self.client)
        elif alpn.startswith("hq"):
            self.http = H0Connection(self.client)
        config = QuicConfiguration(is_client=False, alpn_protocols=SERVER_ALPNS)
        config.certificate, config.private_key = certificate
        self.issued: list[bytes] = []
        self.retired: list[bytes] = []
        self.conn = QuicServerConnection(
            ServerQuicConnection(
                configuration=config,
                original_destination_connection_id=self.client.original_destination_connection_id,
                stream_window=64 * 1024,
                connection_window=256 * 1024,
                reset_token=reset_token,
            ),
            limits=ConnectionLimits(stream_buffer=64 * 1024),
            on_cid_issued=self.issued.append,
            on_cid_retired=self.retired.append,
        )
        self.contract = Contract(server=True)
        self.streams: list[int] = []
        self.client.connect(SERVER_ADDR, now=self.now)
        self.to_server()  # as QuicRouter does: the client's Initial creates the connection

    @property
    def live(self) -> bool:
        return not self.conn.closed  # once closed, the owner forgets the connection

    def handle(self, events: list[Event]) -> None:
        self.contract.check(events)
        adapter = self.conn.adapter
        if adapter is None or self.contract.closed:
            return
        for item in events:
            if isinstance(item, RequestData):
                adapter.consumed(item.stream_id, len(item.data))
            if isinstance(item, RequestEnd) or (
                isinstance(item, RequestHeaders) and item.end_stream
            ):
                adapter.send_response(item.stream_id, ResponseHead(200, []), end_stream=True)

    def to_server(self) -> bool:
        moved = False
        for data, _ in self.client.datagrams_to_send(self.now):
            moved = True
            if self.live:
                self.handle(self.conn.receive_datagram(data, CLIENT_ADDR, self.now, self.ecn))
        return moved

    def flush(self, deliver: bool = True) -> bool:
        if not self.live:
            return False
        datagrams = self.conn.datagrams_to_send(self.now)
        for data, addr in datagrams:
            if type(data) is not bytes or addr != CLIENT_ADDR:
                raise ContractViolation(f"bad datagram for {addr!r}")
            if deliver:
                self.client.receive_datagram(data, SERVER_ADDR, self.now)
        self.handle(self.conn.pending_events())
        self.drain_client()
        return bool(datagrams)

    def drain_client(self) -> None:
        while (item := self.client.next_event()) is not None:
            if self.http is not None:
                try:
                    self.http.handle_event(item)
                except Exception:  # the peer library choking on our answers is not our test
                    self.http = None

    def timer(self) -> None:
        if not self.live:
            return
        deadline = self.conn.timer()
        if deadline is not None and not isinstance(deadline, float):
            raise ContractViolation(f"timer() returned {deadline!r}")
        self.handle(self.conn.handle_timer(self.now))

    def pump(self, rounds: int) -> None:
        for _ in range(rounds):
            moved = self.to_server()
            moved = self.flush() or moved
            if not moved:
                return
            self.now += STEP

    def act(self, action: tuple[Any, ...]) -> None:
        kind = action[0]
        if kind == "pump":
            self.pump(action[1])
        elif kind == "advance":
            self.now += action[1]
        elif kind == "timer":
            self.timer()
        elif kind == "flush":
            self.flush(deliver=action[1])
        elif kind == "ecn":
            self.ecn = action[1]
        elif kind == "facts":
            check_facts(self.conn.facts)
        elif kind == "close" and self.live:
            self.conn.close(action[1])
        elif kind == "quic-close" and self.live:
            self.conn.quic.close(error_code=ErrorCode.NO_ERROR.h3_code)
        elif kind == "request":
            self.request(body=action[1])
        elif kind == "client-reset" and self.streams:
            self.client.reset_stream(self.streams[-1], ErrorCode.CANCEL.h3_code)
        elif kind == "ping":
            self.client.send_ping(len(self.streams))
        elif kind == "new-cid":
            self.client.change_connection_id()
        elif kind == "client-close":
            self.client.close(error_code=ErrorCode.NO_ERROR.h3_code)

    def request(self, body: bool) -> None:
        if self.http is None:
            return
        sid = self.client.get_next_available_stream_id()
        try:
            if isinstance(self.http, H3Connection):
                head = [
                    (b":method", b"POST" if body else b"GET"),
                    (b":scheme", b"https"),
                    (b":authority", b"localhost"),
                    (b":path", b"/"),
                ]
                self.http.send_headers(sid, head, end_stream=not body)
                if body:
                    self.http.send_data(sid, b"b" * 3000, end_stream=True)
            else:
                self.http.send_headers(sid, [(b":method", b"GET"), (b":path", b"/")], True)
        except Exception:  # the client library refuses (closing, no stream credit): not traffic
            return
        self.streams.append(sid)

    def finish(self) -> None:
        """Let the owner's graceful close complete and every timer run out."""
        for _ in range(200):
            if not self.live:
                return
            adapter = self.conn.adapter
            if adapter is not None and adapter.drained:
                self.conn.quic.close(error_code=ErrorCode.NO_ERROR.h3_code)
            self.pump(20)
            deadlines = [t for t in (self.conn.timer(), self.client.get_timer()) if t is not None]
            if not deadlines:
                return
            self.now = max(self.now, min(deadlines))
            if (deadline := self.client.get_timer()) is not None and deadline <= self.now:
                self.client.handle_timer(self.now)
                self.drain_client()
            self.timer()


@given(
    alpn=st.sampled_from(["h3", "h3", "hq-interop", "h3-29", "hq-29", "x-unsupported"]),
    plan=st.lists(actions, max_size=16),
)
@examples(1.0)
def test_server_connection_survives_any_owner_calls(
    certificate: Any, alpn: str, plan: list[tuple[Any, ...]]
) -> None:
    owner = Owner(certificate, alpn)
    for action in plan:
        owner.act(action)
    owner.finish()
    assert owner.conn.closed, "every timer ran out and the connection is still open"
    closed = [e for e in owner.contract.events if isinstance(e, ConnectionClosed)]
    assert len(closed) == 1, "the owner must learn exactly once that the connection is gone"
    check_facts(owner.conn.facts)
    event(f"alpn {alpn}: {'adapter' if owner.conn.adapter is not None else 'no adapter'}")
    event(f"closed with {closed[0].code.name}")
