"""What TCP and QUIC frontends share: the handler that starts a pipeline task per request."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from protocols.messages import RequestHead

from ..hooks import ProxyHttp
from ..pipeline import ProxyServices, run
from ..session import DownstreamInfo, Session
from ..streamio import StreamIO

__all__ = ["FrontendLimits", "RequestStarter"]


@dataclass(frozen=True, slots=True)
class FrontendLimits:
    """Downstream limits shared by all listeners."""

    idle_timeout: float = 75.0
    write_timeout: float = 60.0
    stream_buffer: int = 256 * 1024
    max_concurrent_streams: int = 100
    max_header_size: int = 64 * 1024
    quic_max_datagram_size: int = 1350


class RequestStarter:
    """Starts and owns the pipeline tasks of one server; cancels them on shutdown."""

    def __init__(self, proxy: ProxyHttp[Any], services: ProxyServices) -> None:
        self.proxy = proxy
        self.services = services
        self.tasks: set[asyncio.Task[None]] = set()

    def start(
        self, stream: StreamIO, head: RequestHead, end_stream: bool, info: DownstreamInfo
    ) -> None:
        """Create the session and run the pipeline for it."""
        session = Session(stream, head, info, end_stream)
        task = asyncio.get_running_loop().create_task(run(session, self.proxy, self.services))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    @property
    def in_flight(self) -> int:
        """Requests being served."""
        return len(self.tasks)

    async def cancel_all(self) -> None:
        """Cancel every pipeline task and wait for them."""
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
