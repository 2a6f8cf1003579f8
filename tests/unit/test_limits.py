"""One limits object: ``[limits]`` builds the ConnectionLimits the adapters take, whose
defaults are written once."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from protocols.limits import DEFAULT_LIMITS, DEFAULT_STREAM_BUFFER, ConnectionLimits
from quicproxy.config import LimitsConfig
from quicproxy.upstream.limits import UpstreamLimits

ROOT = Path(__file__).resolve().parents[2]
LITERAL = re.compile(r"256\s*\*\s*1024|262144")


def test_the_stream_buffer_default_is_written_once() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for package in ("quicproxy", "protocols")
        for path in sorted((ROOT / package).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if LITERAL.search(line)
    ]
    assert found == ["protocols/limits.py:14"], found


def test_the_config_object_is_the_adapters_object_with_the_same_defaults() -> None:
    config = LimitsConfig()
    assert isinstance(config, ConnectionLimits)
    for item in dataclasses.fields(ConnectionLimits):
        assert getattr(config, item.name) == getattr(DEFAULT_LIMITS, item.name), item.name
    assert UpstreamLimits().stream_buffer == DEFAULT_STREAM_BUFFER
    assert UpstreamLimits.from_config(LimitsConfig(stream_buffer=65536)).stream_buffer == 65536
