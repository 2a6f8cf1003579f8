"""The admin process: fork the proxy, serve the admin listener beside it, forward signals."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from .. import metrics
from .agent import instrument
from .app import AdminApp
from .listener import AdminListener, bind_admin, is_loopback
from .plan import AdminPlan
from .rundir import RunDirectory

if TYPE_CHECKING:
    from ..server import ProxyServer

__all__ = ["run_beside"]

log = logging.getLogger("quicproxy.admin")

MakeServer = Callable[[bool], Awaitable["ProxyServer"]]
_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_STOPPING = (signal.SIGTERM, signal.SIGINT)


def run_beside(
    plan: AdminPlan, make_server: MakeServer, serve_proxy: Callable[[MakeServer], int]
) -> int:
    """Run ``serve_proxy`` (the usual one-worker or supervised serving) in a child process with
    an instrumented ``make_server``, and the admin listener here, until the child exits.
    Returns the child's exit status."""
    try:
        sock = bind_admin(plan.host, plan.port)
    except OSError as exc:
        raise OSError(f"admin listener on {plan.host}:{plan.port}: {exc.strerror}") from None
    if not is_loopback(plan.host):
        log.warning(
            "admin listener on %s is not loopback: whoever reaches it can drain backends",
            plan.host,
        )
    run = RunDirectory.create()
    try:
        metrics.use_multiprocess(str(run.metrics))
        child = os.fork()
        if child == 0:
            _run_child(sock, lambda: serve_proxy(instrument(make_server, run)))
        return asyncio.run(_admin_main(plan, run, sock, child))
    finally:
        run.remove()


def _run_child(sock: socket.socket, serve: Callable[[], int]) -> None:
    """The proxy's side of the fork: never returns."""
    code = 1
    try:
        sock.close()
        _die_with_parent()
        code = serve()
    except KeyboardInterrupt:
        code = 0
    except OSError as exc:
        print(f"quicproxy: {exc}", file=sys.stderr)
    except BaseException:
        log.exception("the proxy process failed")
    finally:
        sys.stdout.flush()
        os._exit(code)


def _die_with_parent() -> None:
    """Linux: get SIGTERM (and drain) if the admin process dies without stopping us."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    if os.getppid() == 1:
        os.kill(os.getpid(), signal.SIGTERM)


async def _admin_main(plan: AdminPlan, run: RunDirectory, sock: socket.socket, child: int) -> int:
    app = AdminApp(plan, run)
    listener = AdminListener(app, sock)
    await listener.start()
    host, port = listener.address
    shown = f"[{host}]" if ":" in host else host
    print(f"quicproxy admin: http://{shown}:{port}/", flush=True)
    log.info("admin listener on %s port %d (/metrics, /healthz, /, POST /drain)", host, port)
    loop = asyncio.get_running_loop()

    def forward(signum: int) -> None:
        if signum in _STOPPING:
            app.draining = True  # /healthz: 503 from now on
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signum)

    for signum in _FORWARDED:
        loop.add_signal_handler(signum, forward, signum)
    try:
        status = await _wait_for(child)
    finally:
        await listener.close()
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


async def _wait_for(pid: int) -> int:
    """The wait status of ``pid`` once it exits (polled, 10 times a second)."""
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)  # noqa: ASYNC222 - WNOHANG never blocks
        if done:
            return status
        await asyncio.sleep(0.1)
