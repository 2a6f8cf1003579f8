"""Request rules: dot-segment removal, paths above the root, CONNECT and declared body size."""

from __future__ import annotations

import pytest

from quicproxy.request_rules import check_request, normalize_target, remove_dot_segments


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/", "/"),
        ("/a/b/c", "/a/b/c"),
        ("/a/./b", "/a/b"),
        ("/a/../b", "/b"),
        ("/a/b/..", "/a/"),
        ("/a/b/.", "/a/b/"),
        ("/a/%2e%2E/b", "/b"),
        ("/a/%2E/b", "/a/b"),
        ("/a//../b", "/a/b"),  # an empty segment is a segment: only it is removed
        ("/a/..b/c", "/a/..b/c"),  # not a dot-segment
        ("/.well-known/x", "/.well-known/x"),
    ],
)
def test_remove_dot_segments(path: str, expected: str) -> None:
    assert remove_dot_segments(path) == expected


@pytest.mark.parametrize("path", ["/..", "/../etc/passwd", "/a/../../b", "/%2e%2e/x", "/a/%2E./.."])
def test_climbing_above_the_root_is_refused(path: str) -> None:
    assert remove_dot_segments(path) is None
    assert normalize_target(path) is None


def test_the_query_is_kept_as_sent() -> None:
    assert normalize_target("/a/../b?x=/../y") == "/b?x=/../y"
    assert normalize_target("/b?x=/../y") == "/b?x=/../y"


def test_check_request_answers() -> None:
    assert check_request("GET", "/a/../b", None, normalize=True, max_body=0) == ("/b", None)
    assert check_request("GET", "/a/../b", None, normalize=False, max_body=0) == ("/a/../b", None)
    _, refusal = check_request("GET", "/../x", None, normalize=True, max_body=0)
    assert refusal is not None and refusal.status == 400
    _, refusal = check_request("CONNECT", "example.com:443", None, normalize=True, max_body=0)
    assert refusal is not None and refusal.status == 501
    _, refusal = check_request("POST", "/up", "1001", normalize=True, max_body=1000)
    assert refusal is not None and refusal.status == 413
    assert check_request("POST", "/up", "1000", normalize=True, max_body=1000)[1] is None
    assert check_request("POST", "/up", "10000", normalize=True, max_body=0)[1] is None
