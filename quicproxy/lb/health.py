"""Backend health: active checks (TCP, HTTP over h1/h2/h3) and passive ejection on failures."""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Sequence
from typing import Protocol

from protocols.messages import RequestHead

from ..config import ActiveCheck, PassiveCheck
from ..errors import ProxyError
from ..net.tcp import describe_os_error, open_tcp
from ..upstream.connector import Connector
from ..upstream.peer import HttpPeer

__all__ = ["ActiveCheck", "HealthChecker", "HealthTarget", "PassiveCheck", "PassiveHealth"]

log = logging.getLogger("quicproxy.health")


class HealthTarget(Protocol):
    """What health checking reads and sets on a backend."""

    peer: HttpPeer
    healthy: bool
    ejected_until: float

    @property
    def key(self) -> str: ...


class _Streak:
    __slots__ = ("failures", "successes")

    def __init__(self) -> None:
        self.successes = 0
        self.failures = 0


class HealthChecker:
    """Runs ``check`` against every target each ``interval``; flips ``healthy`` after the
    thresholds of consecutive results, logging each change with its reason."""

    def __init__(
        self,
        group: str,
        targets: Sequence[HealthTarget],
        check: ActiveCheck,
        connector: Connector | None = None,
    ) -> None:
        self.group = group
        self.targets = list(targets)
        self.check = check
        self.connector = connector or Connector()
        self._streaks: dict[str, _Streak] = collections.defaultdict(_Streak)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Check now and then every interval, until ``stop``."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop checking."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            await self.check_all()
            await asyncio.sleep(self.check.interval)

    async def check_all(self) -> None:
        """One round of checks, all targets at once."""
        results = await asyncio.gather(*(self.probe(t.peer) for t in self.targets))
        for target, reason in zip(self.targets, results, strict=True):
            self.record(target, reason)

    def record(self, target: HealthTarget, failure: str | None) -> None:
        """Count one result (``failure`` None: success) and flip state at the thresholds."""
        streak = self._streaks[target.key]
        if failure is None:
            streak.successes += 1
            streak.failures = 0
            if not target.healthy and streak.successes >= self.check.healthy_threshold:
                target.healthy = True
                log.warning(
                    "health: %s in %r is UP after %d successful checks",
                    target.key,
                    self.group,
                    streak.successes,
                )
            return
        streak.failures += 1
        streak.successes = 0
        if target.healthy and streak.failures >= self.check.unhealthy_threshold:
            target.healthy = False
            log.warning(
                "health: %s in %r is DOWN after %d failed checks: %s",
                target.key,
                self.group,
                streak.failures,
                failure,
            )

    async def probe(self, peer: HttpPeer) -> str | None:
        """One check of ``peer``: None when healthy, else why not."""
        try:
            async with asyncio.timeout(self.check.timeout):
                if self.check.kind == "tcp":
                    stream = await open_tcp(
                        peer.host,
                        peer.port,
                        lambda s: _Ignore(),
                        ssl_context=None,
                        server_hostname=None,
                        connect_timeout=self.check.timeout,
                    )
                    stream.close()
                    return None
                return await self._probe_http(peer)
        except TimeoutError:
            return f"no answer within {self.check.timeout:g}s"
        except ProxyError as exc:
            return exc.message
        except OSError as exc:
            return describe_os_error(exc)

    async def _probe_http(self, peer: HttpPeer) -> str | None:
        conn = await self.connector.connect(peer)
        try:
            head = RequestHead(
                method=b"GET",
                scheme=peer.scheme.encode(),
                authority=(self.check.host or peer.address).encode(),
                path=self.check.path.encode(),
                headers=[(b"user-agent", b"quicproxy-health-check")],
            )
            stream = conn.open_stream(head, end_stream=True)
            response = await stream.response
            low, high = self.check.expected_status
            if not low <= response.status <= high:
                return f"status {response.status}, expected {low}-{high}"
            return None
        finally:
            conn.close_transport()


class _Ignore:
    """A receiver for TCP checks: nothing is read or written."""

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> None:
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        pass

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass


class PassiveHealth:
    """Ejects a backend whose real traffic fails (or is slow) too often."""

    def __init__(self, group: str, check: PassiveCheck) -> None:
        self.group = group
        self.check = check
        self._failures: dict[str, collections.deque[float]] = collections.defaultdict(
            collections.deque
        )

    def record(
        self, target: HealthTarget, ok: bool, duration: float, now: float | None = None
    ) -> None:
        """Count one request's outcome."""
        now = time.monotonic() if now is None else now
        slow = self.check.slow_threshold > 0 and duration > self.check.slow_threshold
        if ok and not slow:
            return
        failures = self._failures[target.key]
        failures.append(now)
        while failures and failures[0] < now - self.check.fail_window:
            failures.popleft()
        if len(failures) >= self.check.max_fails and target.ejected_until <= now:
            target.ejected_until = now + self.check.fail_duration
            failures.clear()
            log.warning(
                "health: %s in %r ejected for %gs after %d %s within %gs",
                target.key,
                self.group,
                self.check.fail_duration,
                self.check.max_fails,
                "slow or failed requests" if self.check.slow_threshold else "failed requests",
                self.check.fail_window,
            )
