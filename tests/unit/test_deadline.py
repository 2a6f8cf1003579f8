"""DeadlineTimer: one loop timer that follows a moving deadline."""

from __future__ import annotations

import asyncio

from quicproxy.net.deadline import DeadlineTimer


async def test_fires_once_at_the_latest_deadline() -> None:
    loop = asyncio.get_running_loop()
    fired: list[float] = []
    timer = DeadlineTimer(loop, lambda: fired.append(loop.time()))
    start = loop.time()
    timer.rearm(start + 0.5)
    timer.rearm(start + 0.05)  # moved earlier: the old handle is cancelled
    timer.rearm(start + 0.05)  # unchanged: nothing re-armed
    await asyncio.sleep(0.2)
    assert len(fired) == 1 and fired[0] >= start + 0.05
    assert timer.deadline is None  # fired: free to be armed again
    timer.rearm(loop.time() + 0.01)
    timer.cancel()
    timer.rearm(None)
    await asyncio.sleep(0.05)
    assert len(fired) == 1
