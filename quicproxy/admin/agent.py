"""The worker's admin agent: once a second, apply the drain state and sample state into metrics.

Sampling reads what the proxy keeps anyway (backend health and load, pool sizes, plain integer
counters of the pool, the Alt-Svc policy and the QUIC listeners), so requests pay nothing for
it; counters sampled from integers advance by their delta since the last tick.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

from .. import metrics
from ..lb.balancer import LoadBalancer
from ..metrics import PrometheusRecorder
from .rundir import RunDirectory

if TYPE_CHECKING:
    from ..server import ProxyServer

__all__ = ["SAMPLE_INTERVAL", "WorkerAgent", "instrument"]

log = logging.getLogger("quicproxy.admin")

SAMPLE_INTERVAL = 1.0  # seconds between two samples (and two reads of the drain state)


class _Counter(Protocol):
    def inc(self, amount: float = 1) -> None: ...


_agents: set[WorkerAgent] = set()  # the agents of this process, kept alive while they run


def instrument(
    make_server: Callable[[bool], Awaitable[ProxyServer]], run: RunDirectory
) -> Callable[[bool], Awaitable[ProxyServer]]:
    """``make_server`` with metrics recording and an agent in the worker that calls it."""

    async def make(reuse_port: bool) -> ProxyServer:
        server = await make_server(reuse_port)
        recorder = PrometheusRecorder()
        metrics.install(recorder)
        WorkerAgent(server, run, recorder).start()
        return server

    return make


def balancers_of(server: ProxyServer) -> dict[str, LoadBalancer]:
    """The built-in proxy's balancers by upstream name (none for other ProxyHttp classes)."""
    found = getattr(server.proxy, "balancers", None)
    if not isinstance(found, dict):
        return {}
    return {name: lb for name, lb in found.items() if isinstance(lb, LoadBalancer)}


class WorkerAgent:
    """Applies ``drain.json`` to this worker's balancers and samples its state."""

    def __init__(self, server: ProxyServer, run: RunDirectory, recorder: PrometheusRecorder):
        self.server = server
        self.run = run
        self.recorder = recorder
        self.drained: frozenset[tuple[str, str]] = frozenset()  # as last applied
        self._totals: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Tick now, then every SAMPLE_INTERVAL until the event loop ends."""
        self.recorder.workers.set(1)
        self.tick()
        self._task = asyncio.get_running_loop().create_task(self._run())
        _agents.add(self)

    async def _run(self) -> None:
        try:
            while True:
                await asyncio.sleep(SAMPLE_INTERVAL)
                self.tick()
        finally:
            self.tick()  # the last counts of a worker that stops
            _agents.discard(self)

    def tick(self) -> None:
        """Apply the drain state, then sample."""
        try:
            self.apply_drains()
            self.sample()
        except Exception:
            log.exception("admin agent: sampling failed")

    def apply_drains(self) -> None:
        """Drain what ``drain.json`` lists and undrain what it no longer lists (backends this
        worker does not have yet, e.g. before discovery found them, are drained when they come)."""
        state = self.run.read_drains()
        balancers = balancers_of(self.server)
        for upstream, address in self.drained - state.drained:
            balancer = balancers.get(upstream)
            backend = balancer.backends.get(address) if balancer else None
            if balancer is not None and backend is not None and backend.draining:
                balancer.drain(address, False)
        for upstream, address in state.drained:
            balancer = balancers.get(upstream)
            backend = balancer.backends.get(address) if balancer else None
            if balancer is not None and backend is not None and not backend.draining:
                balancer.drain(address, True)
        self.drained = state.drained
        self.recorder.drain_version.set(state.version)

    def sample(self) -> None:
        """Copy this worker's state into the recorder's gauges and counters."""
        recorder = self.recorder
        now = time.monotonic()
        names: dict[str, str] = {}
        for upstream, balancer in balancers_of(self.server).items():
            for backend in balancer.backends:
                labels = (upstream, backend.key)
                names.setdefault(backend.key, upstream)
                recorder.upstream_healthy.labels(*labels).set(int(backend.healthy))
                recorder.upstream_ejected.labels(*labels).set(int(backend.ejected_until > now))
                recorder.upstream_draining.labels(*labels).set(int(backend.draining))
                recorder.in_flight.labels(*labels).set(backend.in_flight)
        recorder.upstream_names = names
        pool = self.server.services.pool
        recorder.pool_connections.labels("open").set(pool.open_count)
        recorder.pool_connections.labels("idle").set(pool.idle_count)
        self._advance("opened", pool.connections_opened, recorder.connections_opened)
        self._advance("new", pool.acquisitions[0], recorder.acquisitions.labels("new"))
        self._advance("reused", pool.acquisitions[1], recorder.acquisitions.labels("reused"))
        self._advance("altsvc", self.server.altsvc.advertised, recorder.alt_svc_advertised)
        listeners = self.server.quic_listeners
        recorder.quic_open.set(sum(listener.connection_count for listener in listeners))
        routers = [listener.router for listener in listeners]
        self._advance("handshakes", sum(r.stats.handshakes for r in routers), recorder.handshakes)
        accepted = sum(r.stats.early_data_accepted for r in routers)
        rejected = sum(r.stats.early_data_rejected for r in routers)
        self._advance("0rtt-accepted", accepted, recorder.early_data.labels("accepted"))
        self._advance("0rtt-rejected", rejected, recorder.early_data.labels("rejected"))
        self._advance("retry", sum(r.retries_sent for r in routers), recorder.retry_sent)
        self._advance("lost", sum(r.packets_lost() for r in routers), recorder.packets_lost)

    def _advance(self, name: str, total: int, counter: _Counter) -> None:
        delta = total - self._totals.get(name, 0)
        if delta > 0:
            counter.inc(delta)
        self._totals[name] = total
