"""BodyChannel: bounded queue with credit-back."""

from __future__ import annotations

import asyncio

import pytest

from quicproxy.body import BodyChannel


async def test_feed_read_release_credits_back() -> None:
    credited: list[int] = []
    channel = BodyChannel(credited.append, high_water=10, low_water=4)
    channel.feed(b"0123456789")
    channel.feed(b"ab")
    assert channel.above_high_water
    assert await channel.read() == b"0123456789"
    assert credited == []  # nothing credited before the next hop accepted it
    channel.release(10)
    assert credited == [10]
    assert not channel.above_high_water
    channel.feed_trailers([(b"x", b"1")])
    channel.feed_end()
    assert await channel.read() == b"ab"
    assert await channel.read() is None
    assert channel.finished and channel.trailers == [(b"x", b"1")]


async def test_reader_waits_then_wakes_on_feed() -> None:
    channel = BodyChannel()
    reader = asyncio.create_task(channel.read())
    await asyncio.sleep(0)
    assert not reader.done()
    channel.feed(b"x")
    assert await asyncio.wait_for(reader, 1) == b"x"


async def test_abort_fails_a_waiting_reader() -> None:
    channel = BodyChannel()
    reader = asyncio.create_task(channel.read())
    await asyncio.sleep(0)
    channel.abort(ConnectionResetError("gone"))
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(reader, 1)


async def test_abort_after_complete_body_is_ignored() -> None:
    channel = BodyChannel()
    channel.feed_end()
    channel.abort(ConnectionResetError("late"))
    assert await channel.read() is None


async def test_a_connection_lost_after_the_end_does_not_truncate_unread_chunks() -> None:
    """An upstream that sends a whole response and closes in the same read: the reader still
    gets every chunk and a clean end, not an error in place of the end."""
    channel = BodyChannel()
    channel.feed(b"first")
    channel.feed(b"last")
    channel.feed_end()
    channel.abort(ConnectionResetError("upstream closed the connection"))
    assert await channel.read() == b"first"
    assert await channel.read() == b"last"
    assert await channel.read() is None


async def test_bytes_over_the_limit_fail_the_reader_and_are_credited_back() -> None:
    credited: list[int] = []
    channel = BodyChannel(credited.append)
    channel.set_limit(10, ValueError("too large"))
    channel.feed(b"x" * 8)
    channel.feed(b"y" * 8)
    assert channel.received == 16
    assert credited == [8]  # the dropped chunk, at once
    assert await channel.read() == b"x" * 8
    with pytest.raises(ValueError, match="too large"):
        await channel.read()
