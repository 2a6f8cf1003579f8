"""`python -m bench.run`: measure quicproxy over h1, h2 and h3 against its origin's ceiling.

Starts nginx (or the DemoOrigin) and the proxy on 127.0.0.1, runs each scenario while reading the
proxy's CPU time and peak RSS from /proc, prints a table and writes bench/results/<time>.json.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from . import profile, tools
from .contenders import CONTENDERS, PROTOCOLS_OF, start_contender
from .report import RESULTS, ratios, summarize, table, write_json
from .scenarios import (
    MIB,
    PROTOCOLS,
    Settings,
    Target,
    big_download,
    download,
    progress,
    small_load,
)
from .servers import ROOT, Origin, Proxy, start_origin, start_proxy

__all__ = ["main"]


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 round of 3 s, 32 MiB download")
    parser.add_argument("--duration", type=float, help="seconds per load run (default 10, quick 3)")
    parser.add_argument("--rounds", type=int, help="load runs per protocol (default 3, quick 1)")
    parser.add_argument("--only", help="comma-separated subset of origin,h1,h2,h3 (default all)")
    parser.add_argument("-c", "--connections", type=int, default=10)
    parser.add_argument("-m", "--streams", type=int, default=10, help="per connection, h2 and h3")
    parser.add_argument("--large-mib", type=int, help="large download (default 256, quick 32)")
    parser.add_argument("--big-mib", type=int, default=1024, help="memory check size, 0 = skip")
    parser.add_argument("--origin", choices=("nginx", "demo"), default="nginx")
    parser.add_argument("--profile", action="store_true", help="py-spy the proxy under h3 load")
    parser.add_argument(
        "--compare",
        default="",
        help=f"also run these proxies on the same load, side by side: {','.join(CONTENDERS)}",
    )
    args = parser.parse_args(argv)
    args.contenders = [n for n in args.compare.replace(" ", "").split(",") if n]
    strangers = sorted(set(args.contenders) - set(CONTENDERS))
    if strangers:
        parser.error(f"--compare: unknown {strangers}; choose from {', '.join(CONTENDERS)}")
    names = (args.only or ",".join(PROTOCOLS)).replace(" ", "").split(",")
    unknown = sorted(set(names) - set(PROTOCOLS))
    if unknown or not names:
        parser.error(f"--only: unknown {unknown}; choose from {', '.join(PROTOCOLS)}")
    args.names = [name for name in PROTOCOLS if name in names]
    return args


def _settings(args: argparse.Namespace) -> Settings:
    large = args.large_mib or (32 if args.quick else 256)
    return Settings(
        duration=max(0.5, min(args.duration or (3.0 if args.quick else 10.0), 120.0)),
        rounds=max(1, min(args.rounds or (1 if args.quick else 3), 20)),
        connections=max(1, args.connections),
        streams=max(1, args.streams),
        large_size=max(1, large) * MIB,
        big_size=max(0, args.big_mib) * MIB,
    )


def _version(args: list[str]) -> str:
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "missing"
    return (out.stdout or out.stderr).strip().splitlines()[0] if out.stdout or out.stderr else ""


def _machine() -> dict[str, Any]:
    import aioquic

    return {
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
        "python": platform.python_version(),
        "aioquic": aioquic.__version__,
        "h2load": _version(["h2load", "--version"]),
        "nginx": _version([tools.which("nginx") or "nginx", "-v"]),
        "caddy": _version([tools.which("caddy") or "caddy", "version"]),
        "commit": _version(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
    }


def _check_alive(proxy: Proxy) -> None:
    if not proxy.alive():
        raise RuntimeError(f"the proxy exited:\n{proxy.output()[-3000:]}")


def _attempt(label: str, action: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one scenario; a tool failure becomes a ``failure`` entry, not the end of the run."""
    try:
        result: dict[str, Any] = action()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        progress(f"  {label}: FAILED {exc}")
        return {"failure": str(exc)[-2000:]}
    return result


def _loads(targets: list[Target], settings: Settings) -> dict[str, list[dict[str, Any]]]:
    """Rounds interleave the protocols so that noise from other users spreads over all rows."""
    runs: dict[str, list[dict[str, Any]]] = {t.name: [] for t in targets}
    for index in range(settings.rounds):
        for target in targets:
            label = f"{target.name} small, round {index + 1}/{settings.rounds}"
            result = _attempt(label, functools.partial(small_load, target, settings))
            runs[target.name].append(result)
            if "failure" not in result:
                progress(
                    f"  {label}: {result['rps']:.0f} req/s, p99 {result['p99_ms']:.1f} ms,"
                    f" {result['cpu_s_per_10k']:.2f} CPU s/10k, busy {result['busy']:.0%}"
                )
            _check_alive(target.proxy)
    return runs


def _downloads(targets: list[Target], settings: Settings) -> dict[str, dict[str, Any]]:
    results = {}
    for target in targets:
        label = f"{target.name} download {settings.large_size // MIB} MiB"
        action = functools.partial(download, target, settings.large_size, settings.download_timeout)
        result = _attempt(label, action)
        if "failure" not in result:
            state = "ok" if result["ok"] else f"INCOMPLETE {result['received']} B {result['error']}"
            progress(f"  {label}: {result['mb_per_s']:.1f} MB/s, {state}")
        results[target.name] = result
        _check_alive(target.proxy)
    return results


def _big(targets: list[Target], settings: Settings) -> dict[str, Any] | None:
    candidates = [t for t in targets if t.name in ("h2", "h1")]
    if not settings.big_size or not candidates:
        return None
    target = candidates[-1]  # h2 when present: flow-control windows are the tighter path
    label = f"{target.name} {settings.big_size // MIB} MiB memory check"
    result = _attempt(label, lambda: big_download(target, settings))
    if "failure" not in result:
        progress(
            f"  {label}: peak RSS {result['peak_rss_mib']:.1f} MiB"
            f" (+{result['rss_growth_mib']:.1f}), {result['mb_per_s']:.1f} MB/s,"
            f" {'bounded' if result['bounded'] else 'NOT BOUNDED or incomplete'}"
        )
    _check_alive(target.proxy)
    return result


def _measure(
    args: argparse.Namespace, settings: Settings, origin: Origin, proxy: Proxy, stamp: str
) -> dict[str, Any]:
    targets = [Target(name, origin, proxy) for name in args.names]
    progress(f"origin {origin.kind} on :{origin.port}, proxy pid {proxy.pid} on :{proxy.port}")
    runs = _loads(targets, settings)
    downloads = _downloads(targets, settings)
    rows = []
    for name in args.names:
        ok_runs = [run for run in runs[name] if "failure" not in run]
        dl = downloads.get(name)
        rows.append(summarize(name, ok_runs, dl if dl and "failure" not in dl else None))
    record: dict[str, Any] = {"rows": rows, "runs": runs, "downloads": downloads}
    record["big"] = _big(targets, settings)
    h3 = next((t for t in targets if t.name == "h3"), None)
    if args.profile and h3 is not None and profile.available():
        record["profile"] = profile.profile_h3(h3, settings, RESULTS, stamp)
    elif args.profile:
        progress("  profile: needs py-spy (pip) and h3 among --only")
    record["proxy_final_rss_mib"] = _final_rss(proxy)
    return record


def _final_rss(proxy: Proxy) -> float:
    from .procstat import memory_kib

    return memory_kib(proxy.pid, "VmRSS") / 1024 if proxy.alive() else 0.0


def _servers_and_measure(
    args: argparse.Namespace, settings: Settings, stamp: str
) -> dict[str, Any]:
    """Start the origin and the proxy in a temp dir, measure, stop both whatever happens."""
    with tempfile.TemporaryDirectory(prefix="quicproxy-bench-") as tmp:
        sizes = [size for size in (settings.large_size, settings.big_size) if size]
        origin = start_origin(Path(tmp), sizes, prefer_nginx=args.origin == "nginx")
        try:
            proxy = start_proxy(Path(tmp), origin.port)
            try:
                record = _measure(args, settings, origin, proxy, stamp)
            finally:
                proxy.stop()
            record["contenders"] = {
                name: _contender(name, args, settings, origin, Path(tmp))
                for name in args.contenders
            }
            return record
        finally:
            origin.stop()


def _contender(
    name: str, args: argparse.Namespace, settings: Settings, origin: Origin, tmp: Path
) -> dict[str, Any]:
    """The same small loads and downloads through another proxy (no memory check, no profile)."""
    protocols = [n for n in args.names if n in PROTOCOLS_OF[name]]
    try:
        other = start_contender(name, tmp, origin.port)
    except RuntimeError as exc:
        progress(f"{name}: FAILED to start: {exc}")
        return {"failure": str(exc)[-2000:]}
    if other is None or not protocols:
        progress(f"{name}: not installed (or none of --only), skipped")
        return {"skipped": True}
    progress(f"{name} pid {other.pid} on :{other.port}")
    try:
        targets = [Target(n, origin, other) for n in protocols]
        runs = _loads(targets, settings)
        downloads = _downloads(targets, settings)
    finally:
        other.stop()
    rows = []
    for n in protocols:
        ok_runs = [run for run in runs[n] if "failure" not in run]
        dl = downloads.get(n)
        rows.append(summarize(n, ok_runs, dl if dl and "failure" not in dl else None))
    return {"rows": rows, "runs": runs, "downloads": downloads}


def main(argv: list[str] | None = None) -> int:
    """Run the whole harness; 0 when every scenario produced figures."""
    args = _parse(argv)
    settings = _settings(args)
    missing = [tool for tool in ("h2load", "curl") if not tools.which(tool)]
    if missing:
        print(f"bench: missing {', '.join(missing)} (Debian nghttp2-client, curl)", file=sys.stderr)
        return 2
    started = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started))
    record: dict[str, Any] = {"started": stamp, "settings": asdict(settings)}
    record["machine"] = _machine()
    try:
        record.update(_servers_and_measure(args, settings, stamp))
    except RuntimeError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    record["machine"]["loadavg_end"] = os.getloadavg()
    record["elapsed_s"] = time.time() - started
    print(table(record["rows"]))
    for name, other in record.get("contenders", {}).items():
        if other.get("rows"):
            print(f"\n{name}, same load:\n{table(other['rows'])}")
            print(f"\nquicproxy / {name}:\n{ratios(record['rows'], other['rows'])}")
    big = record.get("big")
    if big and "failure" not in big:
        print(
            f"\n{big['protocol']} {settings.big_size // MIB} MiB download through the proxy:"
            f" {big['mb_per_s']:.1f} MB/s, proxy peak RSS {big['peak_rss_mib']:.1f} MiB"
            f" (start {big['start_rss_mib']:.1f}, growth {big['rss_growth_mib']:.1f} MiB,"
            f" limit {big['growth_limit_mib']}): {'bounded' if big['bounded'] else 'NOT BOUNDED'}"
        )
    if record.get("profile"):
        profile.print_profile(record["profile"])
    path = write_json(record, started)
    print(f"\n{record['elapsed_s']:.0f} s; results in {path.relative_to(ROOT)}")
    return 0 if _complete(record) else 1


def _complete(record: dict[str, Any]) -> bool:
    scenarios = [run for runs in record["runs"].values() for run in runs]
    scenarios += list(record["downloads"].values())
    for other in record.get("contenders", {}).values():
        scenarios += [run for runs in other.get("runs", {}).values() for run in runs]
        scenarios += list(other.get("downloads", {}).values())
    if record.get("big"):
        scenarios.append(record["big"])
    return all("failure" not in s and s.get("ok", True) for s in scenarios)


if __name__ == "__main__":
    sys.exit(main())
