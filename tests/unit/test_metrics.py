"""The metrics recorder and the admin's pieces without sockets: the no-op default, request counts
from real sessions (an h11 client driving the HTTP/1.1 adapter in memory), the worker agent on
a real balancer and pool, the drain state file, dead workers' gauges, the status page, and the
``[admin]`` table."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import h11
import pytest
from prometheus_client import CollectorRegistry

from protocols.h1 import H1ServerAdapter
from protocols.messages import RequestHead
from quicproxy import metrics
from quicproxy.admin.agent import WorkerAgent
from quicproxy.admin.app import AdminApp
from quicproxy.admin.plan import AdminPlan
from quicproxy.admin.rundir import DrainState, RunDirectory, Sample
from quicproxy.admin.status import MetricView, render_status
from quicproxy.config import AdminConfig, Config, ConfigError, parse_config
from quicproxy.errors import ErrorSource
from quicproxy.metrics import PrometheusRecorder, status_class
from quicproxy.server import ProxyServer
from quicproxy.session import DownstreamInfo, Session
from quicproxy.streamio import ConnectionDriver, StreamIO
from tests.support.admin import StatusPage

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = """
[[listen]]
address = "127.0.0.1:8443"
[[upstream]]
name = "app"
addresses = ["127.0.0.1:8080", "127.0.0.1:8081"]
[[route]]
upstream = "app"
"""


def parse(text: str) -> Config:
    return parse_config(tomllib.loads(text), "proxy.toml", Path("/etc/quicproxy"))


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


async def _answered(protocol: str, status: int, upstream: str | None) -> Session:
    """A session for one real request, answered with ``status``."""
    conn = MemoryDownstream()
    conn.send(h11.Request(method="GET", target="/", headers=[("host", "a")]), h11.EndOfMessage())
    ((stream, head, end_stream),) = conn.started
    info = DownstreamInfo(protocol, ("10.0.0.7", 50123), ("127.0.0.1", 8443), True)
    session = Session(stream, head, info, end_stream)
    await session.respond(status, "x\n")
    session.upstream_address = upstream
    conn.flush()
    assert isinstance(conn.client.next_event(), h11.Response)  # the client got its answer
    return session


def test_the_default_recorder_records_nothing_and_prometheus_is_not_imported() -> None:
    assert metrics.current().enabled is False
    code = (
        "import sys, quicproxy.server, quicproxy.cli, quicproxy.pipeline\n"
        "assert 'prometheus_client' not in sys.modules, 'imported with [admin] off'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True)
    assert result.returncode == 0, result.stderr.decode()


@pytest.mark.parametrize(
    ("status", "label"), [(0, "none"), (101, "1xx"), (204, "2xx"), (399, "3xx"), (499, "4xx")]
)
def test_status_classes(status: int, label: str) -> None:
    assert status_class(status) == label


async def test_requests_by_protocol_status_class_and_upstream_group() -> None:
    registry = CollectorRegistry()
    recorder = PrometheusRecorder(registry)
    recorder.upstream_names = {"127.0.0.1:8080": "app"}
    for protocol, status, upstream in [
        ("http/1.1", 200, "127.0.0.1:8080"),
        ("http/1.1", 200, "127.0.0.1:8080"),
        ("h2", 502, "127.0.0.1:8080"),
        ("h3", 404, None),  # answered by the proxy: no upstream
        ("h3", 200, "192.0.2.1:80"),  # a peer no balancer knows
    ]:
        recorder.request(await _answered(protocol, status, upstream))

    def count(protocol: str, klass: str, upstream: str) -> float | None:
        labels = {"protocol": protocol, "status_class": klass, "upstream": upstream}
        return registry.get_sample_value("quicproxy_requests_total", labels)

    assert count("h1", "2xx", "app") == 2
    assert count("h2", "5xx", "app") == 1
    assert count("h3", "4xx", "-") == 1
    assert count("h3", "2xx", "-") == 1
    durations = "quicproxy_request_duration_seconds_count"
    assert registry.get_sample_value(durations, {"protocol": "h1"}) == 2
    assert registry.get_sample_value(durations, {"protocol": "h3"}) == 2


@pytest.fixture
def run() -> Iterator[RunDirectory]:
    directory = RunDirectory.create()
    try:
        yield directory
    finally:
        directory.remove()


def test_drain_state_round_trips_and_a_broken_file_reads_as_empty(run: RunDirectory) -> None:
    assert run.read_drains() == DrainState()
    state = DrainState(3, frozenset({("app", "127.0.0.1:8081")}))
    run.write_drains(state)
    assert run.read_drains() == state
    run.drain_file.write_text("{not json")
    assert run.read_drains() == DrainState()


async def test_the_agent_drains_a_real_balancer_and_samples_its_state(run: RunDirectory) -> None:
    config = parse(MINIMAL)
    server = ProxyServer(config)
    registry = CollectorRegistry()
    agent = WorkerAgent(server, run, PrometheusRecorder(registry))
    balancer = server.proxy.balancers["app"]  # type: ignore[attr-defined]
    server.services.pool.acquisitions[:] = [2, 5]
    server.altsvc.advertised = 4

    run.write_drains(DrainState(1, frozenset({("app", "127.0.0.1:8081")})))
    agent.tick()
    assert [b.draining for b in balancer.backends] == [False, True]
    backend = {"upstream": "app", "backend": "127.0.0.1:8081"}
    assert registry.get_sample_value("quicproxy_upstream_draining", backend) == 1
    assert registry.get_sample_value("quicproxy_upstream_healthy", backend) == 1
    assert registry.get_sample_value("quicproxy_admin_drain_version") == 1
    reused = {"connection": "reused"}
    assert registry.get_sample_value("quicproxy_upstream_acquisitions_total", reused) == 5
    assert registry.get_sample_value("quicproxy_alt_svc_advertised_total") == 4
    assert agent.recorder.upstream_names == {"127.0.0.1:8080": "app", "127.0.0.1:8081": "app"}

    server.services.pool.acquisitions[1] = 7  # counters move by their delta
    run.write_drains(DrainState(2, frozenset()))
    agent.tick()
    assert [b.draining for b in balancer.backends] == [False, False]
    assert registry.get_sample_value("quicproxy_upstream_acquisitions_total", reused) == 7
    assert registry.get_sample_value("quicproxy_upstream_draining", backend) == 0


def test_dead_workers_leave_their_counts_but_not_their_gauges(run: RunDirectory) -> None:
    """Two forked 'workers' write multiprocess files; one stays alive, one exits."""
    read, write = os.pipe()
    children = []
    for stays in (True, False):
        pid = os.fork()
        if pid == 0:
            os.close(read)
            metrics.use_multiprocess(str(run.metrics))
            recorder = PrometheusRecorder()
            recorder.workers.set(1)
            recorder.retry_sent.inc(3)
            os.write(write, b"x")
            if stays:
                time.sleep(30)  # until the test kills it
            os._exit(0)
        children.append(pid)
    os.close(write)
    assert os.read(read, 1) + os.read(read, 1) == b"xx"
    os.close(read)
    alive, gone = children
    try:
        os.waitpid(gone, 0)
        view = MetricView(run.samples())
        assert view.total("quicproxy_workers") == 1  # the dead one's gauge file is gone
        assert view.total("quicproxy_quic_retry_sent_total") == 6  # its counts stay
        assert not list(run.metrics.glob(f"gauge_live*_{gone}.db"))
    finally:
        os.kill(alive, 9)
        os.waitpid(alive, 0)


async def test_the_admin_app_names_unknown_upstreams_and_backends(run: RunDirectory) -> None:
    app = AdminApp(AdminPlan("127.0.0.1", 0, (("app", ("127.0.0.1:8080",)),)), run)
    reply = await app.handle("POST", "/drain?upstream=web&backend=127.0.0.1:8080")
    assert (reply.status, reply.body) == (404, b"404 no upstream named 'web' (known: app)\n")
    reply = await app.handle("POST", "/drain?upstream=app&backend=127.0.0.1:9")
    assert reply.status == 404
    assert b"no backend '127.0.0.1:9' in upstream 'app' (known: 127.0.0.1:8080)" in reply.body
    assert run.read_drains() == DrainState()  # nothing written
    assert (await app.handle("GET", "/drain")).allow == "POST"
    assert (await app.handle("GET", "/healthz")).status == 503  # no worker reported yet
    app.draining = True
    assert (await app.handle("GET", "/healthz")).body == b"draining\n"


def test_the_status_page_shows_configured_and_discovered_backends() -> None:
    plan = AdminPlan("127.0.0.1", 0, (("app", ("127.0.0.1:8080", "db.internal:5432")),))

    one = {"upstream": "app", "backend": "127.0.0.1:8080"}
    new = {"upstream": "app", "backend": "10.0.0.9:5432"}
    samples = [
        Sample("quicproxy_upstream_healthy", one, 1),
        Sample("quicproxy_upstream_ejected", one, 1),
        Sample("quicproxy_upstream_in_flight", one, 3),
        Sample("quicproxy_upstream_healthy", new, 0),
        Sample("quicproxy_upstream_draining", new, 1),
        Sample(
            "quicproxy_requests_total",
            {"protocol": "h3", "status_class": "2xx", "upstream": "app"},
            7,
        ),
        Sample("quicproxy_request_duration_seconds_count", {"protocol": "h3"}, 7),
        Sample("quicproxy_request_duration_seconds_sum", {"protocol": "h3"}, 0.07),
        Sample("quicproxy_quic_connections_open", {}, 2),
    ]
    page = StatusPage()
    page.feed(render_status(plan, MetricView(samples), draining=False))
    assert page.tables["upstream"] == [
        ["127.0.0.1:8080", "healthy", "ejected", "no", "3"],
        ["db.internal:5432", "unknown", "-", "-", "-"],  # not reported (yet) by any worker
        ["10.0.0.9:5432", "unhealthy", "no", "draining", "0"],
    ]
    assert ["h3", "7", "2xx: 7", "10.0 ms"] in page.tables["protocols"]
    assert "Upstream app (7 requests)" in page.headings


def test_the_admin_table() -> None:
    assert parse(MINIMAL).admin is None
    assert parse("[admin]\n" + MINIMAL).admin == AdminConfig("127.0.0.1", 9901)
    config = parse('[admin]\naddress = "[::1]:9000"\n' + MINIMAL)
    assert config.admin == AdminConfig("::1", 9000)
    assert parse('[admin]\naddress = ":9000"\n' + MINIMAL).admin == AdminConfig("127.0.0.1", 9000)
    with pytest.raises(ConfigError, match=r"proxy.toml: admin.address: .*has no port"):
        parse('[admin]\naddress = "localhost"\n' + MINIMAL)
    with pytest.raises(ConfigError, match=r"proxy.toml: admin.listen: unknown key"):
        parse('[admin]\nlisten = "127.0.0.1:1"\n' + MINIMAL)
