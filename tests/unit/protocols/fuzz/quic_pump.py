"""An in-memory QUIC pump for fuzzing: a real aioquic client, our QuicRouter, hostile edits.

``TamperingClient`` is aioquic's client connection with one change: each stream write (what its
H3Connection / H0Connection frames) may be mutated first, so valid HTTP/3 traffic turns into
hostile traffic on a transport that stays valid. ``Pump`` can also mutate, drop or repeat whole
datagrams on their way to the router.
"""

from __future__ import annotations

import ssl
from typing import Any

from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import QuicEvent

from protocols.events import Event, RequestData, RequestEnd, RequestHeaders
from protocols.messages import ResponseHead
from protocols.quic import QuicServerConnection
from protocols.quic_router import QuicRouter, RouteResult

from .mutate import Contract, ContractViolation, Op, apply_ops

CLIENT_ADDR = ("127.0.0.1", 50000)
SERVER_ADDR = ("127.0.0.1", 4433)
STEP = 0.005


def server_configuration(certificate: tuple[Any, Any]) -> QuicConfiguration:
    config = QuicConfiguration(is_client=False, alpn_protocols=["h3", "hq-interop"])
    config.certificate, config.private_key = certificate
    return config


def client_configuration(alpn: str) -> QuicConfiguration:
    return QuicConfiguration(
        is_client=True, alpn_protocols=[alpn], verify_mode=ssl.CERT_NONE, server_name="localhost"
    )


class TamperingClient(QuicConnection):
    """aioquic's client QuicConnection whose n-th stream write goes through ``plan[n]``."""

    def __init__(self, alpn: str, plan: dict[int, list[Op]] | None = None) -> None:
        super().__init__(configuration=client_configuration(alpn))
        self.plan = plan or {}
        self.writes = 0

    def send_stream_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        ops = self.plan.get(self.writes)
        self.writes += 1
        if ops is not None:
            data = apply_ops(data, ops)
        super().send_stream_data(stream_id, data, end_stream)


def check_result(result: Any) -> RouteResult:
    if not isinstance(result, RouteResult):
        raise ContractViolation(f"receive_datagram returned {result!r}")
    if result.connection is not None and not isinstance(result.connection, QuicServerConnection):
        raise ContractViolation(f"bad connection {result.connection!r}")
    for reply in result.replies:
        if not (isinstance(reply, tuple) and type(reply[0]) is bytes):
            raise ContractViolation(f"bad reply {reply!r}")
    return result


class Pump:
    """Moves datagrams between the client and the router; answers every complete request."""

    def __init__(
        self,
        router: QuicRouter,
        client: QuicConnection,
        datagram_plan: dict[int, Any] | None = None,
    ) -> None:
        self.router, self.client = router, client
        self.now = 1.0
        self.client.connect(SERVER_ADDR, now=self.now)
        self.conn: QuicServerConnection | None = None
        # test_fuzz_findings.py::test_h3_server_emits_nothing_after_a_connection_error
        self.contract = Contract(server=True)
        self.client_events: list[QuicEvent] = []
        self.datagram_plan = datagram_plan or {}
        self.datagrams = 0
        self.others: dict[int, Contract] = {}
        self.http: Any = None  # the client's H3Connection / H0Connection, fed its events

    def _mangle(self, data: bytes) -> list[bytes]:
        plan = self.datagram_plan.get(self.datagrams)
        self.datagrams += 1
        if plan is None:
            return [data]
        if plan == "drop":
            return []
        if plan == "repeat":
            return [data, data]
        return [apply_ops(data, plan)]

    def handle(self, events: list[Event]) -> None:
        self.contract.check(events)
        adapter = self.conn.adapter if self.conn is not None else None
        if adapter is None:
            return
        for event in events:
            if isinstance(event, RequestData):
                adapter.consumed(event.stream_id, len(event.data))
            if isinstance(event, RequestEnd | RequestHeaders) and (
                isinstance(event, RequestEnd) or event.end_stream
            ):
                adapter.send_response(event.stream_id, ResponseHead(200, []), end_stream=True)

    def _to_router(self, data: bytes) -> None:
        for datagram in self._mangle(data):
            result = check_result(self.router.receive_datagram(datagram, CLIENT_ADDR, self.now))
            conn = result.connection
            if conn is not None and self.conn is None:
                self.conn = conn
            if conn is not None and conn is not self.conn:
                # A mangled DCID can make a second Initial start another connection: legal,
                # and its events answer to a contract of their own.
                self.others.setdefault(id(conn), Contract(server=True)).check(result.events)
                continue
            self.handle(result.events)
            for reply, _ in result.replies:
                self.client.receive_datagram(reply, SERVER_ADDR, self.now)

    def live(self) -> QuicServerConnection | None:
        conn = self.conn
        return conn if conn is not None and not conn.closed else None

    def run(self, rounds: int = 80, idle_rounds: int = 3) -> None:
        """Pump until nothing moved for ``idle_rounds`` rounds (or ``rounds`` ran out)."""
        idle = 0
        for _ in range(rounds):
            moved = False
            for data, _ in self.client.datagrams_to_send(self.now):
                moved = True
                self._to_router(data)
            conn = self.live()
            if conn is not None:
                timer = conn.timer()
                if timer is not None and timer <= self.now:
                    self.handle(conn.handle_timer(self.now))
            conn = self.live()
            if conn is not None:
                for data, _ in conn.datagrams_to_send(self.now):
                    moved = True
                    self.client.receive_datagram(data, SERVER_ADDR, self.now)
                self.handle(conn.pending_events())
            self.drain_client()
            idle = 0 if moved else idle + 1
            if idle >= idle_rounds:
                return
            self.now += STEP

    def drain_client(self) -> None:
        while (event := self.client.next_event()) is not None:
            self.client_events.append(event)
            if self.http is not None:
                try:
                    self.http.handle_event(event)
                except Exception:  # the peer library choking on our answers is not our test
                    self.http = None

    def finish(self) -> None:
        """Let every timer run out: the connection closes by idle timeout at the latest."""
        for _ in range(40):
            conn = self.live()
            if conn is None:
                return
            timer = conn.timer()
            if timer is None:
                return
            self.now = max(self.now, timer)
            self.handle(conn.handle_timer(self.now))
            conn.datagrams_to_send(self.now)
            self.handle(conn.pending_events())
