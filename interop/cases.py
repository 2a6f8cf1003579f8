"""The interop test cases run locally: files, network conditions, connections and timeouts.

Sizes follow the interop runner; ``quick`` sizes are for CI. The runner's 10 Mbps link is not
emulated (the relay has no bandwidth cap), so transfers here are far faster; the blackhole and
rebinding timings are scaled down so that they still fall inside a 10 MB transfer.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass, field
from typing import Any

KB = 1 << 10
MB = 1 << 20
CHACHA = "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+CHACHA20-POLY1305"


@dataclass(frozen=True, slots=True)
class Case:
    """One interop test case.

    ``connections``: "one" (all files on one connection), "two" (the first file, then the rest
    on a resumed connection) or "each" (one connection per file). ``relay`` holds
    :class:`interop.relay.RelayConfig` fields. ``sizes`` / ``quick_sizes`` list file sizes;
    ``name_len`` > 0 gives random lowercase names of that length.
    """

    name: str
    sizes: tuple[int, ...]
    quick_sizes: tuple[int, ...] | None = None
    server_test: str = ""
    client_test: str = ""
    connections: str = "one"
    relay: dict[str, Any] = field(default_factory=dict)
    timeout: float = 60.0
    name_len: int = 0
    ipv6: bool = False
    cert_chain: int = 0  # certificates in the server's chain (0: the usual leaf + CA)

    @property
    def server_testcase(self) -> str:
        return self.server_test or self.name

    @property
    def client_testcase(self) -> str:
        return self.client_test or self.name

    def files(self, quick: bool, rng: random.Random) -> list[tuple[str, int]]:
        """(name, size) of the files to serve and download."""
        sizes = self.quick_sizes if quick and self.quick_sizes is not None else self.sizes
        out: list[tuple[str, int]] = []
        for index, size in enumerate(sizes):
            if self.name_len:
                name = "".join(rng.choice(string.ascii_lowercase) for _ in range(self.name_len))
            else:
                name = f"{self.name}-{index}.bin"
            out.append((name, size))
        return out


LINK = {"delay_ms": 15.0}  # the runner's usual 15 ms one-way delay
LOSSY = {**LINK, "burst": 3}

CASES: tuple[Case, ...] = (
    Case("handshake", (1 * KB,)),
    Case("transfer", (2 * MB, 3 * MB, 5 * MB), (256 * KB, 512 * KB, 1 * MB)),
    Case("longrtt", (1 * KB,), server_test="handshake", relay={"delay_ms": 750.0}),
    Case("chacha20", (3 * MB,), (512 * KB,)),
    Case("multiplexing", (32,) * 1999, (32,) * 300, server_test="transfer",
         client_test="transfer"),
    Case("retry", (10 * KB,)),
    Case("resumption", (5 * KB, 10 * KB), connections="two"),
    Case("zerortt", (32,) * 40, connections="two", name_len=250),
    Case("http3", (5 * KB, 10 * KB, 500 * KB)),
    Case("blackhole", (10 * MB,), (3 * MB,), server_test="transfer", client_test="transfer",
         relay={**LINK, "blackhole_on": 1.0, "blackhole_off": 0.5}, timeout=90),
    Case("keyupdate", (3 * MB,), (512 * KB,), server_test="transfer"),
    Case("ecn", (100 * KB,)),
    Case("amplificationlimit", (5 * KB,), server_test="transfer", client_test="transfer",
         relay={**LINK, "drops": (2, 3, 4, 5, 6, 7)}, cert_chain=9),
    Case("handshakeloss", (1 * KB,) * 50, (1 * KB,) * 10, server_test="multiconnect",
         client_test="multiconnect", connections="each",
         relay={**LOSSY, "loss": 30.0}, timeout=300),
    Case("transferloss", (2 * MB,), (512 * KB,), server_test="transfer", client_test="transfer",
         relay={**LOSSY, "loss": 2.0}),
    Case("handshakecorruption", (1 * KB,) * 50, (1 * KB,) * 10, server_test="multiconnect",
         client_test="multiconnect", connections="each",
         relay={**LOSSY, "corrupt": 30.0}, timeout=300),
    Case("transfercorruption", (2 * MB,), (512 * KB,), server_test="transfer",
         client_test="transfer", relay={**LOSSY, "corrupt": 2.0}),
    Case("ipv6", (5 * KB, 10 * KB), server_test="transfer", client_test="transfer", ipv6=True),
    Case("v2", (1 * KB,)),
    Case("rebind-port", (10 * MB,), (4 * MB,), server_test="transfer", client_test="transfer",
         relay={**LINK, "rebind_first": 0.3, "rebind_every": 0.8}, timeout=90),
    Case("rebind-addr", (10 * MB,), (4 * MB,), server_test="transfer", client_test="transfer",
         relay={**LINK, "rebind_first": 0.3, "rebind_every": 0.8, "rebind_addr": True},
         timeout=90),
    Case("connectionmigration", (2 * MB,), client_test="transfer", relay=LINK),
)  # fmt: skip

BY_NAME = {case.name: case for case in CASES}

QUICK = (
    "handshake",
    "transfer",
    "retry",
    "resumption",
    "zerortt",
    "http3",
    "v2",
    "transferloss",
    "rebind-port",
    "amplificationlimit",
    "ecn",
    "connectionmigration",
)
