"""The peers of the local runner: quicproxy's endpoint (both roles) and Debian's ngtcp2 client
and server, each started in its own process group so that everything can be killed at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from interop.cases import CHACHA, Case

ROOT = Path(__file__).resolve().parents[1]
READY = re.compile(r"quicproxy ready: https://(\S+):(\d+)/")
UNSUPPORTED = 127
GTLSCLIENT = shutil.which("gtlsclient")
GTLSSERVER = shutil.which("gtlsserver") or (
    "/usr/sbin/gtlsserver" if Path("/usr/sbin/gtlsserver").exists() else None
)


@dataclass(slots=True)
class Cell:
    """Everything one (case, peers) run uses: its directories, addresses and files."""

    case: Case
    root: Path
    files: list[str]
    host: str  # the server's and the relay's address
    server_port: int = 0
    relay_port: int = 0
    chain_bytes: int = 0  # DER size of the served chain when it is a long one

    @property
    def www(self) -> Path:
        return self.root / "www"

    @property
    def certs(self) -> Path:
        return self.root / "certs"

    @property
    def downloads(self) -> Path:
        return self.root / "downloads"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def url(self, name: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.relay_port}/{name}"


@dataclass(slots=True)
class Proc:
    """A child process in its own session, logging to a file."""

    proc: asyncio.subprocess.Process
    log: Path
    extra: list[Path] = field(default_factory=list)

    async def stop(self, grace: float = 5.0) -> int | None:
        """SIGTERM the process group, then SIGKILL it after ``grace`` seconds."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)
            try:
                return await asyncio.wait_for(self.proc.wait(), grace)
            except TimeoutError:
                continue
        return self.proc.returncode

    def text(self, limit: int = 200_000) -> str:
        try:
            with self.log.open("rb") as handle:
                return handle.read(limit).decode("utf-8", "replace")
        except OSError:
            return ""


async def spawn(argv: list[str], log: Path, env: dict[str, str] | None = None) -> Proc:
    """Start ``argv`` in a new session with stdout and stderr to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            cwd=ROOT,
            start_new_session=True,
        )
    return Proc(proc, log)


async def run(argv: list[str], log: Path, seconds: float, env: dict[str, str] | None = None) -> int:
    """Run to completion; -9 when killed after ``seconds``."""
    proc = await spawn(argv, log, env)
    try:
        return await asyncio.wait_for(proc.proc.wait(), seconds)
    except TimeoutError:
        await proc.stop(1.0)
        return -9
    finally:
        if proc.proc.returncode is None:
            await proc.stop(1.0)


# -- servers ------------------------------------------------------------------------------------


class Unsupported(Exception):
    """The peer exited 127 for this test case."""


async def quicproxy_server(cell: Cell, wait: float = 20.0) -> Proc:
    """The endpoint's server role; returns once it printed its ready line."""
    env = {
        **os.environ,
        "ROLE": "server",
        "TESTCASE": cell.case.server_testcase,
        "HOST": cell.host,
        "PORT": str(cell.server_port),
        "WWW": str(cell.www),
        "CERTS": str(cell.certs),
        "SSLKEYLOGFILE": str(cell.logs / "server-keys.log"),
        "QLOGDIR": str(cell.root / "qlog-server"),
        "PYTHONUNBUFFERED": "1",
    }
    script = ["bash", str(ROOT / "interop" / "run_endpoint.sh")]
    proc = await spawn(script, cell.logs / "server.log", env)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if READY.search(proc.text()):
            return proc
        if proc.proc.returncode is not None:
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.proc.wait(), 0.05)
    code = await proc.stop(1.0)
    if code == UNSUPPORTED:
        raise Unsupported(f"server exited {code}")
    raise RuntimeError(f"server did not start (exit {code}): {proc.text()[-300:]!r}")


def _udp_bound(port: int) -> bool:
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with contextlib.suppress(OSError), open(table) as handle:
            for line in handle.readlines()[1:]:
                local = line.split()[1]
                if int(local.rsplit(":", 1)[1], 16) == port:
                    return True
    return False


async def ngtcp2_server(cell: Cell, wait: float = 10.0) -> Proc:
    """Debian's ngtcp2 server (HTTP/3 only); ``-V`` (Retry) for the retry case."""
    assert GTLSSERVER is not None
    argv = [GTLSSERVER, "-q", f"--htdocs={cell.www}", "--timeout=15s"]
    if cell.case.name == "retry":
        argv.append("-V")
    if cell.case.name == "connectionmigration" and ":" not in cell.host:
        argv.append(f"--preferred-ipv4-addr={cell.host}:{cell.server_port + 1}")
    argv += [cell.host, str(cell.server_port), str(cell.certs / "priv.key"),
             str(cell.certs / "cert.pem")]  # fmt: skip
    proc = await spawn(argv, cell.logs / "server.log")
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and proc.proc.returncode is None:
        if _udp_bound(cell.server_port):
            return proc
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.proc.wait(), 0.05)
    code = await proc.stop(1.0)
    raise RuntimeError(f"gtlsserver did not start (exit {code}): {proc.text()[-300:]!r}")


# -- clients ------------------------------------------------------------------------------------


def _batches(cell: Cell) -> list[list[str]]:
    """The files per connection."""
    if cell.case.connections == "two":
        return [cell.files[:1], cell.files[1:]]
    if cell.case.connections == "each":
        return [[name] for name in cell.files]
    return [cell.files]


async def gtlsclient(cell: Cell, seconds: float) -> int:
    """Debian's ngtcp2 client, one process per connection; its exit status is not reliable, so
    the result is the last non-zero status only for information."""
    assert GTLSCLIENT is not None
    state = [f"--session-file={cell.root / 'session'}", f"--tp-file={cell.root / 'tp'}"]
    extra = {"chacha20": [f"--ciphers={CHACHA}"], "keyupdate": ["--key-update=1ms"]}
    deadline = time.monotonic() + seconds
    status = 0
    for index, names in enumerate(_batches(cell)):
        left = deadline - time.monotonic()
        if left <= 1:
            return -9
        # Under 30 % bursty loss the client's Initial retransmissions back off exponentially:
        # allow a minute per connection (the real runner gives handshakeloss 300 s in all).
        argv = [GTLSCLIENT, "-q", "--exit-on-all-streams-close", f"--download={cell.downloads}",
                "--timeout=60s", "--handshake-timeout=60s"]  # fmt: skip
        argv += extra.get(cell.case.name, [])
        if cell.case.connections == "two":
            argv += state
        argv += [cell.host, str(cell.relay_port), *(cell.url(n) for n in names)]
        log = cell.logs / f"client-{index}.log"
        status = await run(argv, log, min(left, 65.0)) or status
    return status


async def quicproxy_client(cell: Cell, seconds: float, alpn: str | None = None) -> int:
    """The endpoint's client role: 0 success, 127 unsupported, else a failure."""
    env = {
        **os.environ,
        "ROLE": "client",
        "TESTCASE": cell.case.client_testcase,
        "REQUESTS": " ".join(cell.url(n) for n in cell.files),
        "DOWNLOADS": str(cell.downloads),
        "SSLKEYLOGFILE": str(cell.logs / "client-keys.log"),
        "QLOGDIR": str(cell.root / "qlog-client"),
        "CLIENT_TIMEOUT": str(max(5, int(seconds - 5))),
        "PYTHONUNBUFFERED": "1",
    }
    if alpn:
        env["CLIENT_ALPN"] = alpn
    argv = ["bash", str(ROOT / "interop" / "run_endpoint.sh")]
    return await run(argv, cell.logs / "client.log", seconds, env)
