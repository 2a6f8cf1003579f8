"""The single byte range StaticFiles takes (RFC 9110 14.1.2)."""

from __future__ import annotations

import pytest

from quicproxy.static import byte_range


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-99", (0, 99)),
        ("bytes=100-", (100, 999)),
        ("bytes=-100", (900, 999)),
        ("bytes=-5000", (0, 999)),  # more than the file: all of it
        ("bytes=990-5000", (990, 999)),  # the end is clipped
        ("bytes=1000-", False),  # starts beyond the end
        ("bytes=5-2", False),
        ("bytes=-0", False),
        ("bytes=0-1,5-6", None),  # several ranges: the whole file
        ("items=0-1", None),
        ("bytes=abc", None),
        ("bytes=1-x", None),
    ],
)
def test_byte_range(header: str, expected: tuple[int, int] | bool | None) -> None:
    assert byte_range(header, 1000) == expected


def test_an_empty_file_has_no_satisfiable_range() -> None:
    assert byte_range("bytes=0-", 0) is False
    assert byte_range("bytes=-1", 0) is False
