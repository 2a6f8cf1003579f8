"""Run the interop test cases locally through a UDP relay, without docker, and print a matrix.

    python -m interop.run_local [--cases a,b] [--quick] [--peers qp-ngtcp2,qp-qp,ngtcp2-qp]
                                [--keep DIR]

Per cell: a fresh directory with random files, the server on a free port, a relay between the
two (:mod:`interop.relay`) with the case's network conditions, the client, then the verdict
(:mod:`interop.checks`). Exit status 0 only when no cell failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from interop import peers
from interop.cases import BY_NAME, CASES, QUICK, Case
from interop.certs import chain_certs, dev_certs
from interop.checks import Evidence, load_qlogs, verdict
from interop.peers import Cell, Proc, Unsupported
from interop.relay import Impairment, Relay, RelayConfig

ServerStart = Callable[[Cell], Awaitable[Proc]]
ClientRun = Callable[[Cell, float], Awaitable[int]]


@dataclass(frozen=True, slots=True)
class Peers:
    """One column: a server and a client, and the cases they cannot express (with why)."""

    key: str
    title: str
    server: str  # "quicproxy" or "ngtcp2"
    client: str
    not_applicable: dict[str, str]


V2_DRAFT = "ngtcp2 0.12 knows only draft v2"
COLUMNS = (
    Peers("qp-ngtcp2", "quicproxy server, ngtcp2 client", "quicproxy", "ngtcp2", {"v2": V2_DRAFT}),
    Peers("qp-qp", "quicproxy server, quicproxy client", "quicproxy", "quicproxy", {}),
    Peers("ngtcp2-qp", "ngtcp2 server, quicproxy client (h3)", "ngtcp2", "quicproxy",
          {"v2": V2_DRAFT}),
)  # fmt: skip
BY_KEY = {p.key: p for p in COLUMNS}


@dataclass(slots=True)
class Result:
    """One cell's outcome: "pass", "FAIL (...)", "unsupported" or "n/a (...)"."""

    case: str
    peers: str
    outcome: str
    seconds: float
    directory: Path | None = None

    @property
    def failed(self) -> bool:
        return self.outcome.startswith("FAIL")


def free_port(host: str) -> int:
    """A UDP port free on ``host`` (also free over TCP: the endpoint listens on both)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        with socket.socket(family, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port = int(tcp.getsockname()[1])
            try:
                with socket.socket(family, socket.SOCK_DGRAM) as udp:
                    udp.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


def relay_config(case: Case, server: tuple[str, int]) -> RelayConfig:
    """The case's network conditions for a relay in front of ``server``."""
    r = case.relay
    side = Impairment(r.get("loss", 0.0), r.get("corrupt", 0.0), r.get("burst", 1))
    return RelayConfig(
        server=server,
        listen=(server[0], 0),
        delay_ms=r.get("delay_ms", 0.0),
        to_server=side,
        to_client=side,
        drops_to_server=frozenset(r.get("drops", ())),
        blackhole_on=r.get("blackhole_on", 0.0),
        blackhole_off=r.get("blackhole_off", 0.0),
        rebind_first=r.get("rebind_first", 0.0),
        rebind_every=r.get("rebind_every", 0.0),
        rebind_addr=r.get("rebind_addr", False),
    )


def prepare(case: Case, root: Path, quick: bool, seed: int | None = None) -> Cell:
    """A cell directory with random files and certificates."""
    rng = random.Random(seed)
    files = case.files(quick, rng)
    cell = Cell(case, root, [name for name, _ in files], "::1" if case.ipv6 else "127.0.0.1")
    for directory in (cell.www, cell.downloads, cell.logs):
        directory.mkdir(parents=True, exist_ok=True)
    for name, size in files:
        (cell.www / name).write_bytes(os.urandom(size))
    if case.cert_chain:
        cell.chain_bytes = chain_certs(cell.certs, case.cert_chain)
    else:
        dev_certs(cell.certs, root.parent / "devcerts")
    return cell


async def run_cell(case: Case, column: Peers, root: Path, quick: bool = False) -> Result:
    """Run one (case, peers) cell in ``root``; never raises."""
    started = time.monotonic()
    if case.name in column.not_applicable:
        return Result(case.name, column.key, f"n/a ({column.not_applicable[case.name]})", 0.0)
    missing = _missing_tool(column)
    if missing:
        return Result(case.name, column.key, f"n/a ({missing} not installed)", 0.0)
    try:
        outcome = await asyncio.wait_for(_cell(case, column, root, quick), case.timeout + 30)
    except TimeoutError:
        outcome = "FAIL (cell timeout)"
    except Exception as exc:
        outcome = f"FAIL ({type(exc).__name__}: {str(exc)[:80]})"
    return Result(case.name, column.key, outcome, time.monotonic() - started, root)


def _missing_tool(column: Peers) -> str | None:
    if column.client == "ngtcp2" and peers.GTLSCLIENT is None:
        return "gtlsclient"
    if column.server == "ngtcp2" and peers.GTLSSERVER is None:
        return "gtlsserver"
    return None


async def _cell(case: Case, column: Peers, root: Path, quick: bool) -> str:
    cell = prepare(case, root, quick)
    cell.server_port = free_port(cell.host)
    start: ServerStart = peers.quicproxy_server if column.server == "quicproxy" else (
        peers.ngtcp2_server
    )  # fmt: skip
    try:
        server = await start(cell)
    except Unsupported:
        return "unsupported"
    relay = Relay(relay_config(case, (cell.host, cell.server_port)))
    try:
        await relay.start()
        cell.relay_port = relay.port
        if column.client == "ngtcp2":
            status = await peers.gtlsclient(cell, case.timeout)
        else:
            alpn = "h3" if column.server == "ngtcp2" else None
            status = await peers.quicproxy_client(cell, case.timeout, alpn)
    finally:
        await server.stop()  # the endpoint writes its qlogs as its connections end
        relay.close()
    if status == peers.UNSUPPORTED and column.client == "quicproxy":
        return "unsupported"
    evidence = Evidence(
        cell.www,
        cell.downloads,
        cell.files,
        relay.observer,
        relay.counters,
        load_qlogs(root / "qlog-server", root / "qlog-client"),
        cell.chain_bytes,
    )
    reason = verdict(case.name, evidence)
    (cell.logs / "relay.json").write_text(_json(relay))
    if reason is None:
        return "pass"
    if status not in (0, None) and column.client == "quicproxy":
        reason += f"; client exit {status}"
    return f"FAIL ({reason})"


def _json(relay: Relay) -> str:
    return json.dumps(relay.snapshot(), indent=1, default=str)


async def run_matrix(
    cases: list[str], columns: list[str], quick: bool = False, keep: Path | None = None
) -> list[Result]:
    """Run every cell one after another; directories are kept under ``keep`` if given."""
    base = Path(tempfile.mkdtemp(prefix="interop-")) if keep is None else keep
    base.mkdir(parents=True, exist_ok=True)
    results: list[Result] = []
    try:
        for name in cases:
            for key in columns:
                result = await run_cell(BY_NAME[name], BY_KEY[key], base / key / name, quick)
                print(f"{name:20} {key:10} {result.outcome} ({result.seconds:.1f} s)",
                      file=sys.stderr, flush=True)  # fmt: skip
                results.append(result)
    finally:
        if keep is None:
            shutil.rmtree(base, ignore_errors=True)
    return results


def matrix(results: list[Result], cases: list[str], columns: list[str]) -> str:
    """The results as a Markdown table: rows are cases, columns are peer pairs."""
    by = {(r.case, r.peers): r for r in results}
    lines = [
        "| case | " + " | ".join(BY_KEY[c].title for c in columns) + " |",
        "| --- |" + " --- |" * len(columns),
    ]
    for name in cases:
        cells = []
        for key in columns:
            r = by.get((name, key))
            cells.append("" if r is None else f"{r.outcome} ({r.seconds:.1f} s)")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """The command line; exit status 1 when a cell failed."""
    p = argparse.ArgumentParser(prog="python -m interop.run_local", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--cases", help="comma-separated; default: all (or the quick subset)")
    p.add_argument("--quick", action="store_true", help="the CI subset with smaller files")
    p.add_argument("--peers", default=",".join(BY_KEY), help="columns: " + ", ".join(BY_KEY))
    p.add_argument("--keep", type=Path, help="keep every cell's files and logs under DIR")
    args = p.parse_args(argv)
    default = QUICK if args.quick else tuple(c.name for c in CASES)
    cases = args.cases.split(",") if args.cases else list(default)
    columns = args.peers.split(",")
    unknown = [c for c in cases if c not in BY_NAME] + [k for k in columns if k not in BY_KEY]
    if unknown:
        p.error(f"unknown: {', '.join(unknown)}")
    results = asyncio.run(run_matrix(cases, columns, args.quick, args.keep))
    print(matrix(results, cases, columns))
    return 1 if any(r.failed for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
