"""The access log's formats: ``[server] access_log_format`` validation, and one JSON object per
request with the request's facts, written for a real HTTP/1.1 exchange driven in memory."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import h11
import pytest

from protocols.h1 import H1ServerAdapter
from protocols.messages import RequestHead
from quicproxy.accesslog import configure_access_log, log_request
from quicproxy.config import ConfigError, parse_config
from quicproxy.errors import ErrorSource
from quicproxy.session import DownstreamInfo, Session
from quicproxy.streamio import ConnectionDriver, StreamIO

MINIMAL = """
[[listen]]
address = "127.0.0.1:8443"
[[upstream]]
name = "app"
addresses = ["127.0.0.1:8080"]
[[route]]
upstream = "app"
"""
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def parse(text: str) -> object:
    import tomllib

    return parse_config(tomllib.loads(text), "proxy.toml", Path("/etc/quicproxy"))


def test_access_log_format_defaults_to_text_and_takes_json() -> None:
    assert parse(MINIMAL).server.access_log_format == "text"  # type: ignore[attr-defined]
    config = parse('[server]\naccess_log_format = "json"\n' + MINIMAL)
    assert config.server.access_log_format == "json"  # type: ignore[attr-defined]


@pytest.mark.parametrize("value", ['"yaml"', "true"])
def test_a_bad_access_log_format_names_the_key(value: str) -> None:
    with pytest.raises(ConfigError, match=r"proxy.toml: server.access_log_format: "):
        parse(f"[server]\naccess_log_format = {value}\n" + MINIMAL)


def test_configure_access_log_refuses_unknown_formats() -> None:
    with pytest.raises(ValueError, match="text, json"):
        configure_access_log("xml")


class MemoryDownstream(ConnectionDriver):
    """The server side of an HTTP/1.1 connection whose bytes go to a real h11 client."""

    def __init__(self) -> None:
        super().__init__(H1ServerAdapter(scheme=b"https"), peer_side=ErrorSource.DOWNSTREAM)
        self.client = h11.Connection(h11.CLIENT)
        self.started: list[tuple[StreamIO, RequestHead, bool]] = []

    def send(self, *events: h11.Event) -> None:
        data = b"".join(self.client.send(event) or b"" for event in events)
        self.handle_events(self.adapter.receive_data(data))

    def on_request(self, stream: StreamIO, head: RequestHead, end_stream: bool) -> None:
        self.started.append((stream, head, end_stream))

    def flush(self) -> None:
        self.client.receive_data(self.adapter.data_to_send())
        self.handle_events(self.adapter.next_events())

    def close_transport(self) -> None:
        self.closed = True


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    out = io.StringIO()
    logger = logging.getLogger("quicproxy.access")
    level = logger.level
    logger.setLevel(logging.INFO)
    configure_access_log("json", out)
    try:
        yield out
    finally:
        configure_access_log("text")
        logger.setLevel(level)


async def test_a_json_line_per_request_with_its_facts(json_log: io.StringIO) -> None:
    conn = MemoryDownstream()
    traceparent = f"00-{TRACE}-00f067aa0ba902b7-01"
    conn.send(
        h11.Request(
            method="POST",
            target="/upload?x=1",
            headers=[
                ("host", "example.com"),
                ("content-length", "5"),
                ("traceparent", traceparent),
            ],
        ),
        h11.Data(data=b"hello"),
        h11.EndOfMessage(),
    )
    ((stream, head, end_stream),) = conn.started
    info = DownstreamInfo("http/1.1", ("10.0.0.7", 50123), ("127.0.0.1", 8443), True, "example.com")
    session = Session(stream, head, info, end_stream)
    assert await session.read_body() == b"hello"
    await session.respond(201, "created\n")
    session.upstream_address = "127.0.0.1:8080"
    log_request(session, None)

    (line,) = json_log.getvalue().splitlines()
    record = json.loads(line)
    assert datetime.fromisoformat(record.pop("time")).tzinfo is not None
    assert record.pop("duration_ms") >= 0
    assert record == {
        "client": "10.0.0.7:50123",
        "protocol": "http/1.1",
        "sni": "example.com",
        "method": "POST",
        "authority": "example.com",
        "path": "/upload?x=1",
        "status": 201,
        "bytes_in": 5,
        "bytes_out": 8,
        "upstream": "127.0.0.1:8080",
        "error": None,
        "trace_id": TRACE,
    }
