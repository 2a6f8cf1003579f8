"""What TCP and QUIC frontends share: the handler that starts a pipeline task per request."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from protocols.events import ProtocolError
from protocols.messages import RequestHead

from ..errors import ErrorKind, ProxyError
from ..hooks import ProxyHttp
from ..pipeline import ProxyServices, run
from ..session import DownstreamInfo, Session
from ..streamio import ServerStream

__all__ = ["RequestStarter", "log_refusal"]

log = logging.getLogger("quicproxy.frontend")


class RequestStarter:
    """Starts and owns the pipeline tasks of one server; cancels them on shutdown."""

    def __init__(self, proxy: ProxyHttp[Any], services: ProxyServices) -> None:
        self.proxy = proxy
        self.services = services
        self.tasks: set[asyncio.Task[None]] = set()

    def start(
        self, stream: ServerStream, head: RequestHead, end_stream: bool, info: DownstreamInfo
    ) -> None:
        """Create the session and run the pipeline for it."""
        max_body = self.services.limits.max_body_size
        if max_body and not end_stream:
            too_large = f"the request body is over {max_body} bytes"
            stream.body.set_limit(
                max_body, ProxyError.downstream(ErrorKind.BODY_TOO_LARGE, too_large)
            )
        session = Session(stream, head, info, end_stream)
        session.altsvc = self.services.altsvc
        task = asyncio.get_running_loop().create_task(run(session, self.proxy, self.services))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        stream.on_peer_gone = task.cancel  # the client reset or left: stop its upstream work

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


def log_refusal(client: tuple[str, int], protocol: str, event: ProtocolError) -> None:
    """One log line for a client that broke the protocol, naming the rule it broke."""
    scope = "connection" if event.stream_id is None else f"stream {event.stream_id}"
    log.info("%s:%d %s %s refused: %s", client[0], client[1], protocol, scope, event.message)
