"""The built-in demo origin: a small HTTP/1.1 server used by `quicproxy demo` and the tests."""

from __future__ import annotations

from quicproxy.demo.origin import DemoOrigin, Exchange, SeenRequest

__all__ = ["DemoOrigin", "Exchange", "SeenRequest"]
