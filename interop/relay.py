"""A UDP relay between a QUIC client and server that reproduces the interop runner's network
conditions: delay, bursty loss, corruption, a drop list, blackholes and client rebinding.

    python -m interop.relay --listen 127.0.0.1:4434 --server 127.0.0.1:4433 --loss 2 --burst 3

Each client address gets its own upstream-facing socket. The relay also watches the packets (long
header types and versions, the TLS hellos of Initial packets, ECN marks, the server's
amplification before address validation); see :class:`interop.observe.Observer`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import random
import signal
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from interop.observe import Observer

Addr = tuple[str, int]
MAX_DATAGRAM = 65535
READ_BATCH = 64  # datagrams read per wake-up, so one busy socket cannot starve the loop
MAX_SESSIONS = 512
MAX_PENDING = 20000  # delayed datagrams in flight


@dataclass(frozen=True, slots=True)
class Impairment:
    """Loss and corruption for one direction: rates in percent, bursts in datagrams."""

    loss: float = 0.0
    corrupt: float = 0.0
    burst: int = 1


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """What the relay does; the defaults forward everything untouched."""

    server: Addr
    listen: Addr = ("127.0.0.1", 0)
    delay_ms: float = 0.0
    to_server: Impairment = Impairment()
    to_client: Impairment = Impairment()
    drops_to_server: frozenset[int] = frozenset()  # 1-based indices of client datagrams
    blackhole_on: float = 0.0  # seconds of service, then ...
    blackhole_off: float = 0.0  # ... seconds of dropping everything (0: never)
    rebind_first: float = 0.0  # seconds after the first datagram (0: never rebind)
    rebind_every: float = 0.0
    rebind_addr: bool = False  # alternate the source address 127.0.0.1 / 127.0.0.2
    seed: int | None = None


@dataclass(slots=True)
class Counters:
    """Per-direction traffic and what the relay did to it."""

    datagrams: dict[str, int] = field(default_factory=lambda: {"c2s": 0, "s2c": 0})
    bytes: dict[str, int] = field(default_factory=lambda: {"c2s": 0, "s2c": 0})
    dropped: dict[str, int] = field(default_factory=lambda: {"c2s": 0, "s2c": 0})
    corrupted: dict[str, int] = field(default_factory=lambda: {"c2s": 0, "s2c": 0})
    listed_drops: int = 0
    blackholed: int = 0
    overflow: int = 0
    send_errors: int = 0
    rebinds: int = 0
    sessions: int = 0


class _Burst:
    """Bernoulli events that come in bursts of 1..burst, averaging ``rate`` percent."""

    def __init__(self, rate: float, burst: int, rng: random.Random) -> None:
        burst = max(1, burst)
        self.start = min(1.0, rate / 100 / ((burst + 1) / 2)) if rate > 0 else 0.0
        self.burst = burst
        self.left = 0
        self.rng = rng

    def hit(self) -> bool:
        if self.left > 0:
            self.left -= 1
            return True
        if self.start and self.rng.random() < self.start:
            self.left = self.rng.randint(1, self.burst) - 1
            return True
        return False


class _Session:
    """One client address and its upstream-facing socket."""

    def __init__(self, client: Addr, sock: socket.socket) -> None:
        self.client = client
        self.sock = sock
        self.binds = 0


class Relay:
    """The relay; ``await start()``, then ``close()``. ``port`` is where clients send."""

    def __init__(self, config: RelayConfig) -> None:
        self.config = config
        self.counters = Counters()
        self.observer = Observer()
        self.rng = random.Random(config.seed)
        self._loss = {
            "c2s": _Burst(config.to_server.loss, config.to_server.burst, self.rng),
            "s2c": _Burst(config.to_client.loss, config.to_client.burst, self.rng),
        }
        self._corrupt = {
            "c2s": _Burst(config.to_server.corrupt, config.to_server.burst, self.rng),
            "s2c": _Burst(config.to_client.corrupt, config.to_client.burst, self.rng),
        }
        self._family = socket.AF_INET6 if ":" in config.listen[0] else socket.AF_INET
        self._sock: socket.socket | None = None
        self._sessions: dict[Addr, _Session] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = 0.0  # monotonic time of the first client datagram
        self._pending: set[asyncio.TimerHandle] = set()
        self._rebinder: asyncio.TimerHandle | None = None
        self._client_index = 0

    @property
    def port(self) -> int:
        assert self._sock is not None
        return int(self._sock.getsockname()[1])

    async def start(self) -> Relay:
        """Bind the listening socket and start reading."""
        self._loop = asyncio.get_running_loop()
        self._sock = self._socket(self.config.listen)
        self._loop.add_reader(self._sock, self._from_client)
        return self

    async def __aenter__(self) -> Relay:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop reading, drop what is delayed, close every socket. Idempotent."""
        for handle in self._pending:
            handle.cancel()
        self._pending.clear()
        if self._rebinder is not None:
            self._rebinder.cancel()
            self._rebinder = None
        for session in self._sessions.values():
            self._close_socket(session.sock)
        self._sessions.clear()
        if self._sock is not None:
            self._close_socket(self._sock)
            self._sock = None

    def snapshot(self) -> dict[str, object]:
        """Counters and observations as plain data (JSON-ready)."""
        counters = {name: getattr(self.counters, name) for name in Counters.__slots__}
        return {"counters": counters, **self.observer.snapshot()}

    # -- sockets -------------------------------------------------------------------------------

    def _socket(self, addr: Addr) -> socket.socket:
        family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
            if family == socket.AF_INET:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_RECVTOS, 1)
            else:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVTCLASS, 1)
            sock.bind(addr)
        except OSError:
            sock.close()
            raise
        return sock

    def _close_socket(self, sock: socket.socket) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(sock)
        sock.close()

    def _upstream_host(self, binds: int) -> str:
        if self._family == socket.AF_INET6:
            return "::1"
        if self.config.rebind_addr and binds % 2:
            return "127.0.0.2"
        return "127.0.0.1"

    def _read(self, sock: socket.socket) -> list[tuple[bytes, int, Addr]]:
        """Up to READ_BATCH datagrams with their TOS/traffic class byte."""
        got: list[tuple[bytes, int, Addr]] = []
        for _ in range(READ_BATCH):
            try:
                data, ancdata, _flags, addr = sock.recvmsg(MAX_DATAGRAM, 64)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # e.g. ICMP port unreachable reported on this socket
                continue
            tos = 0
            for level, kind, value in ancdata:
                if (level, kind) in (
                    (socket.IPPROTO_IP, socket.IP_TOS),
                    (socket.IPPROTO_IPV6, socket.IPV6_TCLASS),
                ) and value:
                    tos = value[0] if len(value) == 1 else int.from_bytes(value[:4], "little")
            got.append((data, tos & 0xFF, (str(addr[0]), int(addr[1]))))
        return got

    def _send(self, sock: socket.socket | None, data: bytes, tos: int, addr: Addr) -> None:
        if sock is None or sock.fileno() < 0:
            self.counters.send_errors += 1
            return
        try:
            if tos & 3:
                if sock.family == socket.AF_INET:
                    cmsg = (socket.IPPROTO_IP, socket.IP_TOS, struct.pack("i", tos))
                else:
                    cmsg = (socket.IPPROTO_IPV6, socket.IPV6_TCLASS, struct.pack("i", tos))
                sock.sendmsg([data], [cmsg], 0, addr)
            else:
                sock.sendto(data, addr)
        except OSError:
            self.counters.send_errors += 1

    # -- the two directions ---------------------------------------------------------------------

    def _from_client(self) -> None:
        assert self._sock is not None
        for data, tos, addr in self._read(self._sock):
            if not self._started:
                self._started = time.monotonic()
                self._schedule_rebind()
            session = self._session(addr)
            if session is None:
                self.counters.overflow += 1
                continue
            self._client_index += 1
            self._account("c2s", addr, data, tos)
            if self._client_index in self.config.drops_to_server:
                self.counters.listed_drops += 1
                continue
            self._forward("c2s", data, tos, functools.partial(self._to_server, session))

    def _to_server(self, session: _Session, data: bytes, tos: int) -> None:
        with contextlib.suppress(Exception):
            self.observer.delivered_to_server(session.client, data)
        self._send(session.sock, data, tos, self.config.server)

    def _from_server(self, session: _Session, sock: socket.socket) -> None:
        for data, tos, _addr in self._read(sock):
            with contextlib.suppress(Exception):
                self.observer.from_server(session.client, data, sock.getsockname())
            self._account("s2c", session.client, data, tos)
            self._forward("s2c", data, tos, functools.partial(self._to_client, session.client))

    def _to_client(self, client: Addr, data: bytes, tos: int) -> None:
        self.observer.replied = True
        self._send(self._sock, data, tos, client)

    def _account(self, direction: str, client: Addr, data: bytes, tos: int) -> None:
        self.counters.datagrams[direction] += 1
        self.counters.bytes[direction] += len(data)
        try:
            self.observer.seen(direction, client, data, tos)
        except Exception:  # an observation bug must never stop the traffic
            self.observer.errors += 1

    def _forward(
        self, direction: str, data: bytes, tos: int, deliver: Callable[[bytes, int], None]
    ) -> None:
        """Apply blackhole, loss, corruption and delay, then ``deliver``."""
        if self._blackholed():
            self.counters.blackholed += 1
            return
        if self._loss[direction].hit():
            self.counters.dropped[direction] += 1
            return
        if data and self._corrupt[direction].hit():
            self.counters.corrupted[direction] += 1
            index = self.rng.randrange(len(data))
            flipped = data[index] ^ self.rng.randint(1, 255)
            data = data[:index] + bytes([flipped]) + data[index + 1 :]
        if self.config.delay_ms <= 0:
            deliver(data, tos)
            return
        if len(self._pending) >= MAX_PENDING or self._loop is None:
            self.counters.overflow += 1
            return
        handles: list[asyncio.TimerHandle] = []

        def fire() -> None:
            self._pending.discard(handles[0])
            deliver(data, tos)

        handles.append(self._loop.call_later(self.config.delay_ms / 1000, fire))
        self._pending.add(handles[0])

    def _blackholed(self) -> bool:
        on, off = self.config.blackhole_on, self.config.blackhole_off
        if off <= 0 or not self._started:
            return False
        return (time.monotonic() - self._started) % (on + off) >= on

    # -- sessions and rebinding -----------------------------------------------------------------

    def _session(self, client: Addr) -> _Session | None:
        session = self._sessions.get(client)
        if session is not None:
            return session
        if len(self._sessions) >= MAX_SESSIONS:
            return None
        try:
            sock = self._socket((self._upstream_host(0), 0))
        except OSError:
            return None
        session = _Session(client, sock)
        self._sessions[client] = session
        self.counters.sessions += 1
        self._watch(session)
        return session

    def _watch(self, session: _Session) -> None:
        assert self._loop is not None
        sock = session.sock
        self._loop.add_reader(sock, self._from_server, session, sock)

    def _schedule_rebind(self) -> None:
        if self.config.rebind_first <= 0 or self._loop is None:
            return
        self._rebinder = self._loop.call_later(self.config.rebind_first, self._rebind)

    def _rebind(self) -> None:
        """Give every session a new upstream socket (new port, maybe a new address)."""
        for session in list(self._sessions.values()):
            try:
                sock = self._socket((self._upstream_host(session.binds + 1), 0))
            except OSError:
                continue
            self._close_socket(session.sock)
            session.sock = sock
            session.binds += 1
            self.counters.rebinds += 1
            self._watch(session)
        if self.config.rebind_every > 0 and self._loop is not None:
            self._rebinder = self._loop.call_later(self.config.rebind_every, self._rebind)


# -- command line -------------------------------------------------------------------------------


def _addr(text: str) -> Addr:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def parse_args(argv: list[str] | None = None) -> RelayConfig:
    """The relay's command line, as a :class:`RelayConfig`."""
    p = argparse.ArgumentParser(prog="python -m interop.relay", description=__doc__)
    p.add_argument("--listen", type=_addr, default=("127.0.0.1", 0))
    p.add_argument("--server", type=_addr, required=True)
    p.add_argument("--delay-ms", type=float, default=0.0)
    p.add_argument("--loss", type=float, default=0.0, help="percent, both directions")
    p.add_argument("--corrupt", type=float, default=0.0, help="percent, both directions")
    p.add_argument("--burst", type=int, default=1)
    p.add_argument("--drops-to-server", default="", help="e.g. 2,3,4,5,6,7")
    p.add_argument("--blackhole", default="", help="ON,OFF seconds, e.g. 5,2")
    p.add_argument("--rebind", default="", help="FIRST,EVERY seconds, e.g. 1,5")
    p.add_argument("--rebind-addr", action="store_true")
    p.add_argument("--seed", type=int)
    a = p.parse_args(argv)
    side = Impairment(a.loss, a.corrupt, a.burst)
    on, off = (float(x) for x in a.blackhole.split(",")) if a.blackhole else (0.0, 0.0)
    first, every = (float(x) for x in a.rebind.split(",")) if a.rebind else (0.0, 0.0)
    drops = frozenset(int(x) for x in a.drops_to_server.split(",") if x)
    return RelayConfig(
        a.server, a.listen, a.delay_ms, side, side, drops, on, off, first, every,
        a.rebind_addr, a.seed,
    )  # fmt: skip


async def _main(config: RelayConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Relay(config) as relay:
        print(f"relay listening on {config.listen[0]}:{relay.port}", flush=True)
        await stop.wait()
        print(json.dumps(relay.snapshot(), indent=1, default=str), flush=True)


def main(argv: list[str] | None = None) -> None:
    """Run until SIGINT/SIGTERM, then print the counters as JSON."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(parse_args(argv)))


if __name__ == "__main__":
    main()
