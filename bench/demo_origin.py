"""Run quicproxy's DemoOrigin on 127.0.0.1 as a process (the fallback when nginx is missing)."""

from __future__ import annotations

import asyncio
import contextlib
import signal

from quicproxy.demo import DemoOrigin


async def _main() -> None:
    origin = DemoOrigin("127.0.0.1", 0)
    await origin.start()
    print(f"origin ready: {origin.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await origin.stop()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main())
