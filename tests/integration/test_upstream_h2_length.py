"""An HTTP/2 upstream whose response body disagrees with its content-length fails that one
request (its client stream is reset: the head went out already) and never the others sharing
the upstream connection."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import h2.connection
import h2.events
import pytest

from tests.support.h2origin import H2cOrigin
from tests.support.procs import CURL, ProxyProcess, curl, proxy_args, run_proxy

pytestmark = pytest.mark.skipif(CURL is None, reason="curl is not installed")


class LyingH2Origin(H2cOrigin):
    """``/short`` promises 10 bytes and sends 5; ``/long`` promises 2 and sends 5; anything
    else gets ``200 ok`` after ``delay`` seconds."""

    def on_request(
        self, conn: h2.connection.H2Connection, event: h2.events.RequestReceived
    ) -> bool:
        lies = {b"/short": "10", b"/long": "2"}
        path = dict(event.headers)[b":path"]
        if path not in lies:
            return False
        conn.send_headers(event.stream_id, [(":status", "200"), ("content-length", lies[path])])
        conn.send_data(event.stream_id, b"hello", end_stream=True)
        return True


@pytest.fixture(scope="module")
def lying() -> Iterator[LyingH2Origin]:
    with LyingH2Origin(delay=0.5) as origin:
        yield origin


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory, lying: LyingH2Origin) -> Iterator[ProxyProcess]:
    from quicproxy.devcerts import ensure_dev_certs

    tmp = tmp_path_factory.mktemp("h2-length")
    certs = ensure_dev_certs(tmp / "certs")
    upstream = f'addresses = ["http://127.0.0.1:{lying.port}"]\nprotocol = "h2"\nmax_retries = 0'
    with run_proxy(proxy_args(tmp / "proxy.toml", certs, upstream)) as running:
        yield running


def _get(port: int, path: str) -> tuple[int, bytes]:
    """curl's exit status and the body it received."""
    result = curl("--http2", "-o", "-", f"https://127.0.0.1:{port}{path}")
    return result.returncode, result.stdout


@pytest.mark.parametrize("lie", ["/short", "/long"])
def test_a_lying_response_fails_alone(proxy: ProxyProcess, lying: LyingH2Origin, lie: str) -> None:
    with ThreadPoolExecutor(2) as pool:
        honest = pool.submit(_get, proxy.port, "/honest")  # answered 0.5 s later
        time.sleep(0.2)  # on the same upstream connection by now
        liar = pool.submit(_get, proxy.port, lie)
        code, body = liar.result(20)
        assert code != 0 and body != b"hello"  # the head went out: reset, never a clean end
        assert honest.result(20) == (0, b"ok")
    assert lying.connections == 1  # the shared upstream connection survived the bad stream
