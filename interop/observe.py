"""What the relay learns from the packets it forwards, for the runner's checks.

Long-header types and versions per direction, ECN marks, the TLS ClientHello and ServerHello of
each connection (decrypted from Initial packets), 0-RTT and 1-RTT bytes per client, the server
paths used, and the server's amplification before the client's address is validated (the
interop runner's rule: 3x, letting 3x..4x slide; unlike the runner, which counts only the client's
Initial packets, every client datagram counts, as RFC 9000 section 8.1 says).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from interop import wire

Addr = tuple[str, int]
MAX_TRACKED = 4096  # connections / clients remembered; beyond this, new ones are not inspected
VERSIONS = {wire.V1: "v1", wire.V2: "v2", 0: "vn"}


@dataclass(slots=True)
class HelloPair:
    """One handshake attempt: keyed by the connection ID its Initial keys come from."""

    client: wire.Hello
    client_scid: bytes
    server: wire.Hello | None = None
    server_scid: bytes = b""
    tries: int = 0


@dataclass(slots=True)
class Amplification:
    """The runner's amplification check for one client, on the server side of the relay."""

    client_bytes: int = 0
    server_bytes: int = 0
    allowed: int = 0
    tolerance: int = 0
    validated: bool = False
    violated: bool = False
    slid: bool = False  # between 3x and 4x: the runner lets it pass
    server_cids: set[bytes] = field(default_factory=set)

    def client(self, data: bytes) -> None:
        if self.validated or self.violated:
            return
        packets = wire.split(data, limit=1)
        if not packets:
            return
        first = packets[0]
        if first.kind == "handshake" or (
            first.kind == "initial" and first.dcid in self.server_cids
        ):
            self.validated = True
        else:  # RFC 9000 8.1: every datagram counts, even one the server cannot decrypt yet
            self.client_bytes += len(data)
            self.allowed += 3 * len(data)
            self.tolerance += 4 * len(data)

    def server(self, data: bytes) -> None:
        if self.validated or self.violated:
            return
        for packet in wire.split(data, limit=4):
            if packet.kind == "initial" and len(packet.scid) >= 8:
                self.server_cids.add(packet.scid)
        self.server_bytes += len(data)
        if len(data) >= self.tolerance:
            self.violated = True
        elif len(data) > self.allowed:
            self.slid = True
        self.allowed -= len(data)
        self.tolerance -= len(data)


@dataclass(slots=True)
class ClientStats:
    zero_rtt_bytes: int = 0
    one_rtt_bytes: int = 0
    amplification: Amplification = field(default_factory=Amplification)


class Observer:
    """Fed by the relay with every datagram (before impairment) and every delivery."""

    def __init__(self) -> None:
        self.types: Counter[str] = Counter()
        self.ecn: dict[str, list[int]] = {"c2s": [0, 0, 0, 0], "s2c": [0, 0, 0, 0]}
        self.hellos: dict[bytes, HelloPair] = {}
        self.keys: dict[bytes, bytes] = {}  # client SCID -> connection ID of its Initial keys
        self.clients: dict[Addr, ClientStats] = {}
        self.server_paths: set[Addr] = set()
        self.initials_before_reply = 0  # client Initial packets before the server's first reply
        self.replied = False  # set by the relay when a server datagram reaches the client
        self.errors = 0

    def seen(self, direction: str, client: Addr, data: bytes, tos: int) -> None:
        """A datagram as the relay received it."""
        self.ecn[direction][tos & 3] += 1
        stats = self._client(client)
        for packet in wire.split(data):
            version = VERSIONS.get(packet.version, hex(packet.version))
            name = packet.kind if packet.kind in ("1rtt", "invalid") else f"{version} {packet.kind}"
            self.types[f"{direction} {name}"] += 1
            if stats is not None and direction == "c2s":
                if packet.kind == "0rtt":
                    stats.zero_rtt_bytes += packet.size
                elif packet.kind == "1rtt":
                    stats.one_rtt_bytes += packet.size
            if packet.kind == "initial":
                if direction == "c2s" and not self.replied:
                    self.initials_before_reply += 1
                self._initial(direction, data, packet)
            elif packet.kind == "retry" and direction == "s2c":
                self.keys.pop(packet.dcid, None)  # the client's next Initial uses new keys

    def delivered_to_server(self, client: Addr, data: bytes) -> None:
        stats = self._client(client)
        if stats is not None:
            stats.amplification.client(data)

    def from_server(self, client: Addr, data: bytes, local: Addr) -> None:
        if len(self.server_paths) < MAX_TRACKED:
            self.server_paths.add((str(local[0]), int(local[1])))
        stats = self._client(client)
        if stats is not None:
            stats.amplification.server(data)

    def _client(self, client: Addr) -> ClientStats | None:
        stats = self.clients.get(client)
        if stats is None and len(self.clients) < MAX_TRACKED:
            stats = self.clients[client] = ClientStats()
        return stats

    def _initial(self, direction: str, data: bytes, packet: wire.Packet) -> None:
        if direction == "c2s":
            if packet.dcid in self.hellos or len(self.hellos) >= MAX_TRACKED:
                return
            hello = self._hello(data, packet, packet.dcid, from_client=True)
            if hello is not None and hello.kind == 1:
                self.hellos[packet.dcid] = HelloPair(hello, packet.scid)
                self.keys[packet.scid] = packet.dcid
            return
        pair = self.hellos.get(self.keys.get(packet.dcid, b""))
        if pair is None or pair.server is not None or pair.tries >= 4:
            return
        pair.tries += 1
        key_cid = self.keys[packet.dcid]
        hello = self._hello(data, packet, key_cid, from_client=False)
        if hello is not None and hello.kind == 2:
            pair.server, pair.server_scid = hello, packet.scid

    @staticmethod
    def _hello(
        data: bytes, packet: wire.Packet, key_cid: bytes, *, from_client: bool
    ) -> wire.Hello | None:
        frames = wire.decrypt_initial(data, packet, key_cid, from_client=from_client)
        if frames is None:
            return None
        return wire.parse_hello(wire.contiguous(wire.crypto_data(frames)))

    # -- results -------------------------------------------------------------------------------

    def handshakes(self) -> list[HelloPair]:
        """Handshakes the server answered with a ServerHello, in order."""
        return [pair for pair in self.hellos.values() if pair.server is not None]

    def snapshot(self) -> dict[str, object]:
        """Observations as plain data."""
        amp = [s.amplification for s in self.clients.values()]
        return {
            "types": dict(sorted(self.types.items())),
            "ecn": self.ecn,
            "handshakes": [
                {
                    "offered": [hex(c) for c in pair.client.ciphers],
                    "alpn": list(pair.client.alpn),
                    "psk_offered": wire.EXT_PRE_SHARED_KEY in pair.client.extensions,
                    "cipher": hex(pair.server.ciphers[0]) if pair.server else None,
                    "resumed": bool(
                        pair.server and wire.EXT_PRE_SHARED_KEY in pair.server.extensions
                    ),
                }
                for pair in self.hellos.values()
            ],
            "zero_rtt_bytes": sum(s.zero_rtt_bytes for s in self.clients.values()),
            "server_paths": sorted(self.server_paths),
            "amplification": [
                {
                    "client": a.client_bytes,
                    "server": a.server_bytes,
                    "validated": a.validated,
                    "violated": a.violated,
                    "slid": a.slid,
                }
                for a in amp
                if a.client_bytes
            ],
            "observe_errors": self.errors,
        }
