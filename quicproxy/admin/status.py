"""The HTML status page, rendered from the aggregated metrics (no JavaScript)."""

from __future__ import annotations

import html
from collections import defaultdict
from collections.abc import Iterable

from .plan import AdminPlan
from .rundir import Sample

__all__ = ["MetricView", "render_status"]


class MetricView:
    """Aggregated samples indexed for the page and the admin's own checks."""

    def __init__(self, samples: Iterable[Sample]) -> None:
        self.samples = list(samples)

    def total(self, name: str, **labels: str) -> float:
        """The sum of ``name``'s samples whose labels include ``labels``."""
        return sum(
            s.value
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        )

    def values(self, name: str) -> list[Sample]:
        """The samples of ``name``."""
        return [s for s in self.samples if s.name == name]

    def has(self, name: str) -> bool:
        """True when some live process reported ``name``."""
        return any(s.name == name for s in self.samples)

    def backends(self, plan: AdminPlan) -> dict[str, list[str]]:
        """Backend addresses per upstream: configured ones, then ones the workers report
        (addresses that discovery found)."""
        groups: dict[str, list[str]] = {name: list(addrs) for name, addrs in plan.upstreams}
        for sample in self.values("quicproxy_upstream_healthy"):
            backends = groups.setdefault(sample.labels["upstream"], [])
            if sample.labels["backend"] not in backends:
                backends.append(sample.labels["backend"])
        return groups


def _table(headers: list[str], rows: list[list[str]], css: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _count(value: float) -> str:
    return f"{value:.0f}"


def _backend_state(view: MetricView, upstream: str, backend: str) -> list[str]:
    labels = {"upstream": upstream, "backend": backend}
    reported = any(
        s.labels == labels for s in view.values("quicproxy_upstream_healthy")
    )  # not yet reported: no worker ticked since start
    if not reported:
        return [backend, "unknown", "-", "-", "-"]
    healthy = view.total("quicproxy_upstream_healthy", **labels) >= 1
    ejected = view.total("quicproxy_upstream_ejected", **labels) >= 1
    draining = view.total("quicproxy_upstream_draining", **labels) >= 1
    in_flight = view.total("quicproxy_upstream_in_flight", **labels)
    return [
        backend,
        "healthy" if healthy else "unhealthy",
        "ejected" if ejected else "no",
        "draining" if draining else "no",
        _count(in_flight),
    ]


def _protocol_rows(view: MetricView) -> list[list[str]]:
    protocols = sorted(
        {s.labels["protocol"] for s in view.values("quicproxy_requests_total")} | {"h1", "h2", "h3"}
    )
    rows = []
    for protocol in protocols:
        by_class: dict[str, float] = defaultdict(float)
        for sample in view.values("quicproxy_requests_total"):
            if sample.labels["protocol"] == protocol:
                by_class[sample.labels["status_class"]] += sample.value
        count = view.total("quicproxy_request_duration_seconds_count", protocol=protocol)
        seconds = view.total("quicproxy_request_duration_seconds_sum", protocol=protocol)
        mean = f"{seconds / count * 1000:.1f} ms" if count else "-"
        classes = ", ".join(f"{k}: {v:.0f}" for k, v in sorted(by_class.items())) or "-"
        rows.append([protocol, _count(sum(by_class.values())), classes, mean])
    return rows


def render_status(plan: AdminPlan, view: MetricView, draining: bool) -> str:
    """The whole page."""
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>quicproxy status</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;"
        "margin-bottom:1.5em}td,th{border:1px solid #999;padding:.3em .8em;text-align:left}"
        "</style></head><body><h1>quicproxy</h1>",
        f"<p id='state'>{'draining' if draining else 'serving'};"
        f" workers: <span id='workers'>{_count(view.total('quicproxy_workers'))}</span>;"
        " QUIC connections open: <span id='quic-open'>"
        f"{_count(view.total('quicproxy_quic_connections_open'))}</span></p>",
        "<h2>Requests by protocol</h2>",
        _table(
            ["protocol", "requests", "by status class", "mean latency"],
            _protocol_rows(view),
            "protocols",
        ),
    ]
    for upstream, backends in view.backends(plan).items():
        requests = view.total("quicproxy_requests_total", upstream=upstream)
        parts.append(f"<h2>Upstream {html.escape(upstream)} ({_count(requests)} requests)</h2>")
        rows = [_backend_state(view, upstream, backend) for backend in backends]
        headers = ["backend", "health", "ejected", "drained", "in flight"]
        parts.append(_table(headers, rows, "upstream"))
    pool_rows = [
        [
            "open connections",
            _count(view.total("quicproxy_upstream_pool_connections", state="open")),
        ],
        [
            "idle connections",
            _count(view.total("quicproxy_upstream_pool_connections", state="idle")),
        ],
        ["connections opened", _count(view.total("quicproxy_upstream_connections_opened_total"))],
        [
            "new acquisitions",
            _count(view.total("quicproxy_upstream_acquisitions_total", connection="new")),
        ],
        [
            "reused acquisitions",
            _count(view.total("quicproxy_upstream_acquisitions_total", connection="reused")),
        ],
        ["Alt-Svc advertised", _count(view.total("quicproxy_alt_svc_advertised_total"))],
        ["QUIC handshakes", _count(view.total("quicproxy_quic_handshakes_total"))],
        [
            "0-RTT accepted",
            _count(view.total("quicproxy_quic_early_data_total", result="accepted")),
        ],
        [
            "0-RTT rejected",
            _count(view.total("quicproxy_quic_early_data_total", result="rejected")),
        ],
        ["QUIC Retry sent", _count(view.total("quicproxy_quic_retry_sent_total"))],
        ["QUIC packets lost", _count(view.total("quicproxy_quic_packets_lost_total"))],
    ]
    parts.append("<h2>Connections</h2>")
    parts.append(_table(["what", "count"], pool_rows, "connections"))
    parts.append(
        "<p>Metrics: <a href='/metrics'>/metrics</a>; probe: <a href='/healthz'>"
        "/healthz</a></p></body></html>"
    )
    return "".join(parts)
