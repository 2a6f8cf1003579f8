"""quicproxy: an HTTP/3-first reverse proxy and proxy framework."""

from .errors import ErrorKind, ErrorSource, ProxyError
from .hooks import ProxyHttp
from .http import RequestHeader, ResponseHeader
from .session import DownstreamInfo, Session
from .upstream.peer import HttpPeer, Timeouts

__version__ = "0.1.0"

__all__ = [
    "DownstreamInfo",
    "ErrorKind",
    "ErrorSource",
    "HttpPeer",
    "ProxyError",
    "ProxyHttp",
    "RequestHeader",
    "ResponseHeader",
    "Session",
    "Timeouts",
    "__version__",
]
