"""Verdicts for one cell: the files byte for byte, then the case's own property, from what the
relay saw on the wire and from the aioquic qlogs of whichever side is quicproxy.

Each check returns None when it holds, else a short reason.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interop.observe import HelloPair, Observer
from interop.relay import Counters
from interop.wire import EXT_PRE_SHARED_KEY

Event = dict[str, Any]


@dataclass(slots=True)
class Evidence:
    """What a cell left behind."""

    www: Path
    downloads: Path
    files: list[str]
    observer: Observer
    counters: Counters
    traces: list[tuple[str, list[Event]]] = field(default_factory=list)  # (vantage, events)
    chain_bytes: int = 0


def load_qlogs(*dirs: Path, limit: int = 200) -> list[tuple[str, list[Event]]]:
    """(vantage point type, events) of every qlog trace in ``dirs``."""
    traces: list[tuple[str, list[Event]]] = []
    for directory in dirs:
        for path in sorted(directory.glob("*.qlog"))[:limit] if directory.is_dir() else []:
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            for trace in data.get("traces", []):
                vantage = str(trace.get("vantage_point", {}).get("type", ""))
                traces.append((vantage, list(trace.get("events", []))))
    return traces


def check_files(ev: Evidence) -> str | None:
    """Every file downloaded, byte for byte."""
    missing = [n for n in ev.files if not (ev.downloads / n).is_file()]
    if missing:
        return f"{len(missing)}/{len(ev.files)} files missing"
    for name in ev.files:
        if (ev.downloads / name).read_bytes() != (ev.www / name).read_bytes():
            return f"{name[:20]} differs"
    return None


def _frames(ev: Evidence, event: str) -> Iterator[tuple[str, Event]]:
    """(packet type, frame) of every frame in ``transport:<event>`` events of every trace."""
    for _, events in ev.traces:
        for e in events:
            if e.get("name") == f"transport:{event}":
                kind = str(e.get("data", {}).get("header", {}).get("packet_type", ""))
                for frame in e.get("data", {}).get("frames", []):
                    yield kind, frame


def _handshakes(ev: Evidence, expected: int) -> str | None:
    got = len(ev.observer.handshakes())
    return None if got == expected else f"{got} handshakes, expected {expected}"


def _types(ev: Evidence, key: str) -> int:
    return ev.observer.types.get(key, 0)


# -- per-case properties ------------------------------------------------------------------------


def one_handshake(ev: Evidence) -> str | None:
    return _handshakes(ev, 1)


def handshake(ev: Evidence) -> str | None:
    if _types(ev, "s2c v1 retry") or _types(ev, "s2c v2 retry"):
        return "unexpected Retry"
    return _handshakes(ev, 1)


def longrtt(ev: Evidence) -> str | None:
    if ev.observer.initials_before_reply < 2:
        return "client sent its ClientHello only once"
    return _handshakes(ev, 1)


def chacha20(ev: Evidence) -> str | None:
    offered = {pair.client.ciphers for pair in ev.observer.hellos.values()}
    if offered != {(0x1303,)}:
        return f"offered suites {sorted(offered)}"
    return _handshakes(ev, 1)


def multiplexing(ev: Evidence) -> str | None:
    for vantage, events in ev.traces:
        for e in events:
            data = e.get("data", {})
            if e.get("name") == "transport:parameters_set" and data.get("owner") == "local":
                limit = data.get("initial_max_streams_bidi")
                if vantage == "server" and isinstance(limit, int) and limit > 1000:
                    return f"server stream limit {limit} > 1000"
    return _handshakes(ev, 1)


def retry(ev: Evidence) -> str | None:
    if not (_types(ev, "s2c v1 retry") or _types(ev, "s2c v2 retry")):
        return "no Retry seen"
    return _handshakes(ev, 1)


def resumption(ev: Evidence) -> str | None:
    pairs = ev.observer.handshakes()
    if len(pairs) != 2:
        return f"{len(pairs)} handshakes, expected 2"
    if _resumed(pairs[0]) or not _resumed(pairs[1]):
        return "second handshake not resumed"
    return None


def _resumed(pair: HelloPair) -> bool:
    return bool(pair.server and EXT_PRE_SHARED_KEY in pair.server.extensions)


def zerortt(ev: Evidence) -> str | None:
    reason = resumption(ev)
    if reason:
        return reason
    early = [s for s in ev.observer.clients.values() if s.zero_rtt_bytes]
    if not early:
        return "no 0-RTT packets"
    # 1-RTT bytes of the connection that used 0-RTT only: the first connection's padded
    # datagrams say nothing about where the requests of the second one went
    one_rtt = sum(s.one_rtt_bytes for s in early)
    if one_rtt > 0.5 * 250 * 40:
        return f"{one_rtt} bytes of client 1-RTT"
    return None


def http3(ev: Evidence) -> str | None:
    alpns = {pair.client.alpn for pair in ev.observer.hellos.values()}
    if alpns != {("h3",)}:
        return f"ALPN offered {sorted(alpns)}"
    return _handshakes(ev, 1)


def keyupdate(ev: Evidence) -> str | None:
    """A qlog shows a key update answered: the peer's phase change followed by packets sent in
    the new phase, or our own update followed by packets the peer protected with the new keys."""
    for _, events in ev.traces:
        update = ""
        for e in events:
            name = e.get("name")
            if name == "security:key_updated":
                trigger = e.get("data", {}).get("trigger")
                if trigger in ("remote_update", "local_update"):
                    update = str(trigger)
            elif update and _is_1rtt(e):
                wanted = "packet_sent" if update == "remote_update" else "packet_received"
                if name == f"transport:{wanted}":
                    return _handshakes(ev, 1)
    return "no key update in the qlogs" if ev.traces else "no qlog to check the key update"


def _is_1rtt(e: Event) -> bool:
    return bool(e.get("data", {}).get("header", {}).get("packet_type") == "1RTT")


def ecn(ev: Evidence) -> str | None:
    """Both sides mark ECT (and nothing is CE), and quicproxy's side reports the marks it got in
    ACK_ECN frames
    (the peer's ACK_ECN frames are encrypted; ngtcp2 validates ours, see the tests)."""
    for direction in ("c2s", "s2c"):
        marks = ev.observer.ecn[direction]
        if not (marks[1] or marks[2]):
            return f"no ECT marks {direction}"
        if marks[3]:
            return f"{direction}: CE marks on an uncongested path ({marks})"
    reported = any(
        frame.get("frame_type") == "ack" and frame.get("ect0", 0) > 0
        for _, frame in _frames(ev, "packet_sent")
    )
    if ev.traces and not reported:
        return "no ACK_ECN with ECT(0) counts in quicproxy's qlog"
    return _handshakes(ev, 1)


def amplificationlimit(ev: Evidence) -> str | None:
    records = [
        s.amplification for s in ev.observer.clients.values() if s.amplification.client_bytes
    ]
    if any(a.violated for a in records):
        return "server exceeded 4x before validation"
    if not records:
        return "no client Initial seen"
    sent = max(
        (int(f.get("offset", 0)) + int(f.get("length", 0)) for kind, f in _crypto(ev, "handshake")),
        default=0,
    )
    if ev.traces and sent < ev.chain_bytes:
        return f"{sent} B of Handshake CRYPTO < chain {ev.chain_bytes} B"
    return _handshakes(ev, 1)


def _crypto(ev: Evidence, packet_type: str) -> Iterator[tuple[str, Event]]:
    for event in ("packet_sent", "packet_received"):
        for kind, frame in _frames(ev, event):
            if kind == packet_type and frame.get("frame_type") == "crypto":
                yield kind, frame


def multiconnect(ev: Evidence) -> str | None:
    return _handshakes(ev, len(ev.files))


def blackhole(ev: Evidence) -> str | None:
    if not ev.counters.blackholed:
        return "blackhole never hit the transfer"
    return _handshakes(ev, 1)


def transferloss(ev: Evidence) -> str | None:
    if not sum(ev.counters.dropped.values()):
        return "nothing was dropped"
    return _handshakes(ev, 1)


def transfercorruption(ev: Evidence) -> str | None:
    if not sum(ev.counters.corrupted.values()):
        return "nothing was corrupted"
    return _handshakes(ev, 1)


def ipv6(ev: Evidence) -> str | None:
    if not ev.observer.server_paths or any(":" not in h for h, _ in ev.observer.server_paths):
        return "not IPv6 end to end"
    return _handshakes(ev, 1)


def v2(ev: Evidence) -> str | None:
    need = ("c2s v1 initial", "s2c v2 initial", "c2s v2 handshake", "s2c v2 handshake")
    for key in need:
        if not _types(ev, key):
            return f"no {key} packets"
    for key in ("c2s v1 handshake", "s2c v1 handshake"):
        if _types(ev, key):
            return f"{key} packets seen"
    return None


def _path_validation(ev: Evidence) -> bool:
    for event in ("packet_sent", "packet_received"):
        for _, frame in _frames(ev, event):
            if frame.get("frame_type") in ("path_challenge", "path_response"):
                return True
    return False


def rebind_port(ev: Evidence) -> str | None:
    if not ev.counters.rebinds:
        return "transfer ended before the first rebind"
    if len(ev.observer.server_paths) < 2:
        return "server never sent to a new path"
    if ev.traces and not _path_validation(ev):
        return "no PATH_CHALLENGE in the qlogs"
    return _handshakes(ev, 1)


def rebind_addr(ev: Evidence) -> str | None:
    if len({host for host, _ in ev.observer.server_paths}) < 2:
        return "server never sent to a new address"
    return rebind_port(ev)


def connectionmigration(ev: Evidence) -> str | None:
    total = sum((ev.www / n).stat().st_size for n in ev.files)
    if ev.counters.bytes["s2c"] >= total:
        return "all data came through the original path"
    if not _path_validation(ev):
        return "no path validation in the qlogs"
    return None


CHECKS: dict[str, Callable[[Evidence], str | None]] = {
    "handshake": handshake,
    "transfer": one_handshake,
    "longrtt": longrtt,
    "chacha20": chacha20,
    "multiplexing": multiplexing,
    "retry": retry,
    "resumption": resumption,
    "zerortt": zerortt,
    "http3": http3,
    "blackhole": blackhole,
    "keyupdate": keyupdate,
    "ecn": ecn,
    "amplificationlimit": amplificationlimit,
    "handshakeloss": multiconnect,
    "transferloss": transferloss,
    "handshakecorruption": multiconnect,
    "transfercorruption": transfercorruption,
    "ipv6": ipv6,
    "v2": v2,
    "rebind-port": rebind_port,
    "rebind-addr": rebind_addr,
    "connectionmigration": connectionmigration,
}


def verdict(case: str, ev: Evidence) -> str | None:
    """None when the files match and the case's property holds; else the reason."""
    return check_files(ev) or CHECKS.get(case, one_handshake)(ev)
