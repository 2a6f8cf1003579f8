"""StaticFiles through a real server: files, HEAD, 404, 405 and no escape from the root."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

from quicproxy.config import Config, ListenConfig, TlsConfig
from quicproxy.devcerts import ensure_dev_certs
from quicproxy.server import ProxyServer
from quicproxy.static import StaticFiles


async def test_static_files_over_http2(tmp_path: Path) -> None:
    import httpx

    root = tmp_path / "www"
    (root / "sub").mkdir(parents=True)
    data = os.urandom(200_000)
    (root / "data.bin").write_bytes(data)
    (root / "sub" / "index.html").write_text("<p>index</p>")
    (tmp_path / "secret.txt").write_text("outside the root")
    certs = ensure_dev_certs(tmp_path / "certs")
    config = Config(
        listen=(ListenConfig("127.0.0.1", 0, True, False),),
        upstreams=(),
        routes=(),
        tls=TlsConfig(certs.cert, certs.key),
    )
    server = ProxyServer(config, StaticFiles(root))
    await server.start()
    port = server.addresses[0][1]
    try:
        async with httpx.AsyncClient(
            http2=True,
            verify=ssl.create_default_context(cafile=str(certs.ca_cert)),
            base_url=f"https://localhost:{port}",
        ) as client:
            response = await client.get("/data.bin")
            assert response.http_version == "HTTP/2"
            assert response.content == data
            assert response.headers["content-length"] == str(len(data))
            head = await client.head("/data.bin")
            assert head.status_code == 200 and head.content == b""
            assert (await client.get("/sub/")).text == "<p>index</p>"
            assert (await client.get("/nope")).status_code == 404
            assert (await client.get("/../secret.txt")).status_code == 404
            # above the root: the proxy refuses it (400) before StaticFiles sees it
            assert (await client.get("/%2e%2e/secret.txt")).status_code == 400
            post = await client.post("/data.bin", content=b"x")
            assert post.status_code == 405 and post.headers["allow"] == "GET, HEAD"
    finally:
        await server.close()
