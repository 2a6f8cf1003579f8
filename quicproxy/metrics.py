"""Metrics recording: a no-op recorder by default, Prometheus counters once the admin is on.

The pipeline calls :func:`record_request` once per request (in ``run``'s ``finally``). Until
:func:`install` swaps in a :class:`PrometheusRecorder` (done in each worker when ``[admin]`` is
configured), that call costs one attribute lookup and an empty method: prometheus-client is not
even imported. Everything else (upstream health, pool sizes, QUIC counts) is sampled once a
second by the worker's admin agent (``quicproxy.admin.agent``) from plain integers and object
state, never per request.

With several workers the values live in prometheus-client's multiprocess files (one set per
worker process, in the run directory made by :func:`use_multiprocess` before forking), and the
admin listener sums them at scrape time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from .session import Session

__all__ = [
    "PROTOCOL_LABELS",
    "PrometheusRecorder",
    "Recorder",
    "current",
    "install",
    "record_request",
    "status_class",
    "use_multiprocess",
]

PROTOCOL_LABELS: Mapping[str, str] = {
    "http/1.1": "h1",
    "h2": "h2",
    "h3": "h3",
    "hq-interop": "hq",
}
"""Downstream protocol (``Session.downstream.protocol``) -> the ``protocol`` label value."""

_CLASSES = ("none", "1xx", "2xx", "3xx", "4xx", "5xx")


def status_class(status: int) -> str:
    """``2xx`` for 200..299 and so on; ``none`` when no status was sent or known."""
    return _CLASSES[status // 100] if 100 <= status < 600 else "none"


class Recorder:
    """Records nothing: what runs while ``[admin]`` is off."""

    __slots__ = ()

    enabled = False

    def request(self, session: Session) -> None:
        """One request is over (called once, after the access log)."""


_recorder: Recorder = Recorder()


def record_request(session: Session) -> None:
    """Count a finished request on the installed recorder (a no-op by default)."""
    _recorder.request(session)


def install(recorder: Recorder) -> None:
    """Make ``recorder`` the process's recorder (each worker installs its own)."""
    global _recorder
    _recorder = recorder


def current() -> Recorder:
    """The installed recorder."""
    return _recorder


def use_multiprocess(directory: str) -> None:
    """Keep metric values in per-process files under ``directory`` (prometheus-client's
    multiprocess mode). Call it before forking workers and before any metric is created."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    from prometheus_client import values

    # prometheus-client picks its value class at import time from the environment; it may have
    # been imported before the variable was set (a program embedding quicproxy, the tests).
    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]


class PrometheusRecorder(Recorder):
    """Every ``quicproxy_`` metric, recorded in this process.

    ``registry`` None (workers): the metrics are registered nowhere; in multiprocess mode the
    admin listener reads their files. Tests pass a ``CollectorRegistry`` to read them back.
    ``upstream_names`` maps a backend address (``host:port``) to its upstream group, the
    ``upstream`` label of requests; the worker agent keeps it current.
    """

    __slots__ = (
        "_durations",
        "_requests",
        "acquisitions",
        "alt_svc_advertised",
        "connections_opened",
        "drain_version",
        "duration",
        "early_data",
        "handshakes",
        "in_flight",
        "packets_lost",
        "pool_connections",
        "quic_open",
        "requests",
        "retry_sent",
        "upstream_draining",
        "upstream_ejected",
        "upstream_healthy",
        "upstream_names",
        "workers",
    )

    enabled = True

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        reg: Any = registry
        backend = ("upstream", "backend")
        self.upstream_names: dict[str, str] = {}
        self.requests = Counter(
            "quicproxy_requests",
            "Requests served, by client protocol, response status class and upstream group",
            ("protocol", "status_class", "upstream"),
            registry=reg,
        )
        self.duration = Histogram(
            "quicproxy_request_duration_seconds",
            "Time from the request head to the end of the response, by client protocol",
            ("protocol",),
            registry=reg,
        )
        self.upstream_healthy = Gauge(
            "quicproxy_upstream_healthy",
            "1 while every worker's health checks find the backend healthy",
            backend,
            registry=reg,
            multiprocess_mode="livemin",
        )
        self.upstream_ejected = Gauge(
            "quicproxy_upstream_ejected",
            "1 while passive health has ejected the backend in at least one worker",
            backend,
            registry=reg,
            multiprocess_mode="livemax",
        )
        self.upstream_draining = Gauge(
            "quicproxy_upstream_draining",
            "1 while the backend is drained by hand (POST /drain) in at least one worker",
            backend,
            registry=reg,
            multiprocess_mode="livemax",
        )
        self.in_flight = Gauge(
            "quicproxy_upstream_in_flight",
            "Requests in flight to the backend, all workers",
            backend,
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.pool_connections = Gauge(
            "quicproxy_upstream_pool_connections",
            "Upstream connections in the pools: open (all) and idle (HTTP/1.1, reusable)",
            ("state",),
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.connections_opened = Counter(
            "quicproxy_upstream_connections_opened",
            "Upstream connections the pools opened",
            registry=reg,
        )
        self.acquisitions = Counter(
            "quicproxy_upstream_acquisitions",
            "Upstream connections handed to a request: new or reused",
            ("connection",),
            registry=reg,
        )
        self.alt_svc_advertised = Counter(
            "quicproxy_alt_svc_advertised",
            "Responses to TCP clients given the proxy's Alt-Svc (h3 or clear)",
            registry=reg,
        )
        self.quic_open = Gauge(
            "quicproxy_quic_connections_open",
            "QUIC connections open, all workers",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.handshakes = Counter(
            "quicproxy_quic_handshakes", "QUIC handshakes completed", registry=reg
        )
        self.early_data = Counter(
            "quicproxy_quic_early_data",
            "QUIC connections that offered 0-RTT: accepted or rejected",
            ("result",),
            registry=reg,
        )
        self.retry_sent = Counter(
            "quicproxy_quic_retry_sent", "QUIC Retry packets sent", registry=reg
        )
        self.packets_lost = Counter(
            "quicproxy_quic_packets_lost", "QUIC packets declared lost", registry=reg
        )
        self.workers = Gauge(
            "quicproxy_workers",
            "Worker processes serving",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.drain_version = Gauge(
            "quicproxy_admin_drain_version",
            "The version of the admin drain state every live worker has applied",
            registry=reg,
            multiprocess_mode="livemin",
        )
        self._requests: dict[tuple[str, str, str], Any] = {}
        self._durations: dict[str, Any] = {}

    def request(self, session: Session) -> None:
        protocol = PROTOCOL_LABELS.get(session.downstream.protocol, "other")
        status = session.response_status or (session.error.status if session.error else 0)
        address = session.upstream_address
        upstream = self.upstream_names.get(address, "-") if address else "-"
        key = (protocol, status_class(status), upstream)
        counter = self._requests.get(key)
        if counter is None:
            counter = self._requests[key] = self.requests.labels(*key)
        counter.inc()
        histogram = self._durations.get(protocol)
        if histogram is None:
            histogram = self._durations[protocol] = self.duration.labels(protocol)
        histogram.observe(time.monotonic() - session.started)
