"""Protocol error codes shared by all adapters, with their HTTP status hint and wire reset codes."""

from __future__ import annotations

import enum

__all__ = ["ErrorCode", "LocalProtocolError", "RemoteProtocolError"]


class ErrorCode(enum.Enum):
    """A protocol-neutral error, mapped onto HTTP/2 and HTTP/3 error codes.

    Each member's value is ``(h2_code, h3_code, status_hint)``; the status hint is what a server
    answers when the error concerns a request it has not answered yet (0: nothing to answer).
    """

    NO_ERROR = (0x0, 0x100, 0)
    PROTOCOL_ERROR = (0x1, 0x101, 400)
    INTERNAL_ERROR = (0x2, 0x102, 500)
    FLOW_CONTROL_ERROR = (0x3, 0x103, 0)
    STREAM_CLOSED = (0x5, 0x102, 0)  # HTTP/3 has no such code: H3_INTERNAL_ERROR
    FRAME_SIZE_ERROR = (0x6, 0x106, 400)
    REFUSED_STREAM = (0x7, 0x10B, 503)
    CANCEL = (0x8, 0x10C, 0)
    COMPRESSION_ERROR = (0x9, 0x200, 400)
    CONNECT_ERROR = (0xA, 0x10F, 502)
    ENHANCE_YOUR_CALM = (0xB, 0x107, 429)
    HEADERS_TOO_LARGE = (0x1, 0x101, 431)
    MESSAGE_ERROR = (0x1, 0x10E, 400)

    @property
    def h2_code(self) -> int:
        """The HTTP/2 RST_STREAM / GOAWAY code."""
        return self.value[0]

    @property
    def h3_code(self) -> int:
        """The HTTP/3 application error code for RESET_STREAM / STOP_SENDING / CONNECTION_CLOSE."""
        return self.value[1]

    @property
    def status_hint(self) -> int:
        """The HTTP status a server answers with for this error, or 0 when none applies."""
        return self.value[2]

    @classmethod
    def from_h2(cls, code: int) -> ErrorCode:
        """Map an HTTP/2 error code received from a peer."""
        for member in cls:
            if member.h2_code == code:
                return member
        return cls.INTERNAL_ERROR

    @classmethod
    def from_h3(cls, code: int) -> ErrorCode:
        """Map an HTTP/3 error code received from a peer."""
        for member in cls:
            if member.h3_code == code:
                return member
        return cls.INTERNAL_ERROR


class LocalProtocolError(Exception):
    """We were asked to send something the protocol does not allow."""

    def __init__(self, message: str, code: ErrorCode = ErrorCode.INTERNAL_ERROR) -> None:
        super().__init__(message)
        self.code = code


class RemoteProtocolError(Exception):
    """The peer sent something the protocol does not allow."""

    def __init__(self, message: str, code: ErrorCode = ErrorCode.PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.code = code
