"""Shared fixtures: one demo origin and real ``quicproxy run`` subprocesses in front of it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.procs import ProxyProcess, ThreadedOrigin, proxy_in_front


@pytest.fixture(scope="session")
def proxy_cert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the proxies create (once) and reuse their development certificates."""
    return tmp_path_factory.mktemp("proxy-certs")


@pytest.fixture(scope="module")
def demo_origin() -> Iterator[ThreadedOrigin]:
    """The demo origin (HTTP/1.1, cleartext) on 127.0.0.1, in a thread of the test process."""
    with ThreadedOrigin() as origin:
        yield origin


def _start(
    tmp_path_factory: pytest.TempPathFactory,
    origin: ThreadedOrigin,
    cert_dir: Path,
    name: str,
    extra: str = "",
) -> Iterator[ProxyProcess]:
    with proxy_in_front(
        origin.port, tmp_path_factory.mktemp(name), cert_dir=cert_dir, extra=extra
    ) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def proxy(
    tmp_path_factory: pytest.TempPathFactory, demo_origin: ThreadedOrigin, proxy_cert_dir: Path
) -> Iterator[ProxyProcess]:
    """``quicproxy run`` with the default forwarding policy (no trusted proxies)."""
    yield from _start(tmp_path_factory, demo_origin, proxy_cert_dir, "proxy")


@pytest.fixture(scope="module")
def trusting_proxy(
    tmp_path_factory: pytest.TempPathFactory, demo_origin: ThreadedOrigin, proxy_cert_dir: Path
) -> Iterator[ProxyProcess]:
    """A second proxy that trusts 127.0.0.1 as a proxy in front of it."""
    extra = '\n[forwarding]\ntrusted_proxies = ["127.0.0.1/32"]\n'
    yield from _start(tmp_path_factory, demo_origin, proxy_cert_dir, "trusting-proxy", extra)
