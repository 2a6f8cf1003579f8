"""H1Scanner: walks HTTP/1.1 bytes ahead of h11 and stops at the first broken rule.

The scanner follows message framing itself (heads line by line, Content-Length bodies skipped
by count, chunked bodies chunk by chunk, the data of each chunk skipped unread) and applies the
rules of ``h1_rules`` to every line. ``feed`` returns the bytes h11 may see: all of them, or, on
a violation, those before the start of the offending message, so that none of it is parsed.
"""

from __future__ import annotations

from .h1_rules import (
    BODY_CHUNKED,
    BODY_UNTIL_CLOSE,
    INTERIM,
    H1Violation,
    HeadFacts,
    Violation,
    check_chunk_line,
    check_field_line,
    check_field_lines,
    check_request_line,
    check_status_line,
    request_body,
    response_body,
)

__all__ = ["DATA_AFTER_RESPONSE", "H1Scanner"]

DATA_AFTER_RESPONSE = "data after the response"

_HEAD = 0  # a head's lines (request or status line, then field lines)
_LENGTH = 1  # Content-Length body bytes
_CHUNK_SIZE = 2  # a chunk-size line
_CHUNK_DATA = 3  # chunk data bytes
_CHUNK_END = 4  # the CRLF after chunk data
_TRAILERS = 5  # trailer field lines
_UNTIL_CLOSE = 6  # a response body delimited by the end of the connection
_IDLE = 7  # client role: no request outstanding, nothing may arrive
_CR, _LF = 13, 10
_MAX_CHUNK_LINE = 4096
_MAX_LEADING_EMPTY_LINES = 1  # RFC 9112 2.2: a server SHOULD ignore at least one


class H1Scanner:
    """Validates one direction of an HTTP/1.1 connection: requests (``server``) or responses.

    ``message`` counts the messages scanned so far (1 for the first; in server role it is the
    stream id the adapter gives that request); after a violation, ``violation`` is set,
    ``violation_message`` says which message broke it, and every later ``feed`` returns ``b""``.
    """

    def __init__(self, *, server: bool, max_line: int, max_head: int, max_fields: int) -> None:
        self._server = server
        self._max_line = max_line
        self._max_head = max_head
        self._max_fields = max_fields
        self._state = _HEAD if server else _IDLE
        self._line = bytearray()  # a line not complete yet
        self._facts = HeadFacts()
        self._start_line: tuple[bytes, bytes, bytes] | int | None = None
        self._head_size = 0  # bytes of the current head (or trailer section) so far
        self._remaining = 0  # body or chunk bytes still to skip
        self._crlf = 0  # bytes of a chunk's closing CRLF seen
        self._empty_lines = 0  # empty lines skipped before the request line
        self._cr_pending = False  # a skipped CR waits for its LF
        self._method = b""  # client role: the outstanding request's method
        self.message = 1
        self.violation: Violation | None = None
        self.violation_message = 0

    @property
    def reading_head(self) -> bool:
        """True while part of a head has arrived and it is not complete."""
        if self.violation is not None or self._state != _HEAD:
            return False
        return bool(self._head_size or self._line or self._cr_pending or self._empty_lines)

    def expect_response(self, method: bytes) -> None:
        """Client role: a request went out; its response may arrive now."""
        self._method = method
        if self._state == _IDLE:
            self._state = _HEAD

    def feed(self, data: bytes) -> bytes:
        """Scan ``data``; return the part h11 may parse (``data`` itself when all is well)."""
        if self.violation is not None:
            return b""
        n = len(data)
        i = 0
        message_start = 0  # where the message being scanned began in ``data``
        kept: list[tuple[int, int]] | None = None  # ranges to keep when bytes are skipped
        segment = 0
        try:
            while i < n:
                state = self._state
                if state in (_LENGTH, _CHUNK_DATA):
                    take = min(self._remaining, n - i)
                    i += take
                    self._remaining -= take
                    if self._remaining:
                        continue
                    if state == _LENGTH:
                        self._end_message()
                        message_start = i
                    else:
                        self._state, self._crlf = _CHUNK_END, 0
                elif state == _CHUNK_END:
                    if data[i] != (_CR if self._crlf == 0 else _LF):
                        raise H1Violation(400, "chunk data not followed by CRLF")
                    i += 1
                    self._crlf += 1
                    if self._crlf == 2:
                        self._state = _CHUNK_SIZE
                elif state == _UNTIL_CLOSE:
                    i = n
                elif state == _IDLE:
                    raise H1Violation(502, DATA_AFTER_RESPONSE)
                elif state == _HEAD and self._at_request_start() and self._skip_empty(data[i]):
                    kept = kept if kept is not None else []
                    if i > segment:
                        kept.append((segment, i))
                    i += 1
                    segment = i
                elif state == _HEAD and (end := self._whole_head(data, i)) > 0:
                    i = end
                    if self._head_done():
                        message_start = i
                else:
                    end = data.find(b"\n", i)
                    if end < 0:
                        self._line += data[i:]
                        self._check_partial()
                        i = n
                        continue
                    if self._line:
                        self._line += data[i : end + 1]
                        line = bytes(self._line)
                        self._line.clear()
                    else:
                        line = data[i : end + 1]
                    i = end + 1
                    if self._on_line(line):
                        message_start = i
        except H1Violation as exc:
            self.violation = exc.violation
            self.violation_message = self.message
            n = message_start
        if kept is None:
            return data if n == len(data) else data[:n]
        kept.append((segment, max(segment, n)))
        return b"".join(data[start : min(end, n)] for start, end in kept if start < n)

    # -- heads ---------------------------------------------------------------------------------

    def _whole_head(self, data: bytes, i: int) -> int:
        """Fast path for a head that is complete in ``data`` from ``i``: all its lines at once.
        Returns where the head ends, or -1 to take the line-by-line path (a head in pieces, or
        one with a bare CR or LF, which that path names)."""
        if self._line or self._head_size or self._start_line is not None or self._cr_pending:
            return -1
        end = data.find(b"\r\n\r\n", i)
        if end < 0 or end + 4 - i > self._max_head:
            return -1
        head = data[i:end]
        lines = head.split(b"\r\n")
        breaks = len(lines) - 1
        if head.count(b"\n") != breaks or head.count(b"\r") != breaks:
            return -1
        self._start(lines[0])
        if breaks > self._max_fields:
            raise H1Violation(431, "too many header fields")
        check_field_lines(lines[1:], self._facts)
        return end + 4

    def _at_request_start(self) -> bool:
        return self._server and not self._head_size and not self._line

    def _skip_empty(self, byte: int) -> bool:
        """Empty lines before a request line are skipped (never given to h11)."""
        if self._cr_pending:
            if byte != _LF:
                raise H1Violation(400, "bare CR")
            self._cr_pending = False
            self._empty_lines += 1
            if self._empty_lines > _MAX_LEADING_EMPTY_LINES:
                raise H1Violation(400, "empty line before the request line")
            return True
        if byte == _LF:
            raise H1Violation(400, "bare LF")
        if byte == _CR:
            self._cr_pending = True
            return True
        return False

    def _check_partial(self) -> None:
        """Limits, checked while a line trickles in: a huge head never buffers past them."""
        size = len(self._line)
        if self._state == _CHUNK_SIZE:
            if size > _MAX_CHUNK_LINE:
                raise H1Violation(400, "chunk size line too long")
            return
        if self._state == _HEAD and self._start_line is None and size > self._max_line + 1:
            raise self._too_long()
        if self._head_size + size > self._max_head:
            raise self._too_large()

    def _too_long(self) -> H1Violation:
        if self._server:
            return H1Violation(414, "request line too long")
        return H1Violation(502, "status line too long")

    def _too_large(self) -> H1Violation:
        section = "trailer" if self._state == _TRAILERS else "header"
        return H1Violation(431, f"{section} section too large")

    def _on_line(self, line: bytes) -> bool:
        """Apply the rules to one complete line; True when it ended a message."""
        if line[-2:-1] != b"\r":
            raise H1Violation(400, "bare LF")
        content = line[:-2]
        state = self._state
        if state == _CHUNK_SIZE:
            if len(content) > _MAX_CHUNK_LINE:
                raise H1Violation(400, "chunk size line too long")
            size = check_chunk_line(content)
            if size:
                self._state, self._remaining = _CHUNK_DATA, size
            else:
                self._state, self._head_size, self._facts = _TRAILERS, 0, HeadFacts()
            return False
        self._head_size += len(line)
        if self._head_size > self._max_head:
            raise self._too_large()
        if state == _TRAILERS:
            if not content:
                self._end_message()
                return True
            self._field(content, False)
            return False
        if self._start_line is None:
            self._start(content)
            return False
        if content:
            self._field(content, self._facts.fields == 0)
            return False
        return self._head_done()

    def _start(self, content: bytes) -> None:
        if self._server:
            if len(content) > self._max_line:
                raise self._too_long()
            self._start_line = check_request_line(content)
            self._facts.version = self._start_line[2]
        else:
            self._start_line = check_status_line(content)

    def _field(self, content: bytes, first: bool) -> None:
        name, value = check_field_line(content, first)
        self._facts.add(name, value)
        if self._facts.fields > self._max_fields:
            section = "trailer" if self._state == _TRAILERS else "header"
            raise H1Violation(431, f"too many {section} fields")

    def _head_done(self) -> bool:
        """The empty line after a head: decide the body framing."""
        start = self._start_line
        if isinstance(start, tuple):
            length = request_body(self._facts, start[0], start[1])
        else:
            assert start is not None
            length = response_body(self._facts, start, self._method)
        self._start_line, self._head_size, self._facts = None, 0, HeadFacts()
        if length == INTERIM:
            self.message += 1
            return True
        if length == BODY_CHUNKED:
            self._state = _CHUNK_SIZE
        elif length == BODY_UNTIL_CLOSE:
            self._state = _UNTIL_CLOSE
        elif length > 0:
            self._state, self._remaining = _LENGTH, length
        else:
            self._end_message()
            return True
        return False

    def _end_message(self) -> None:
        self._state = _HEAD if self._server else _IDLE
        self._head_size, self._empty_lines, self._facts = 0, 0, HeadFacts()
        self.message += 1
