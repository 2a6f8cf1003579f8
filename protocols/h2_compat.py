"""The only module that touches h2's private state: its per-stream content-length check, off.

h2 checks a stream's DATA against its content-length itself, but as a connection error: a
mismatch, or two differing content-length fields, raises inside ``receive_data`` and queues a
GOAWAY, killing every other stream of the connection. RFC 9113 section 8.1.1 makes it an
error of that stream only, so both adapter roles count the body themselves
(``protocols._message_checks.BodyMeter``) and ``MeterlessH2Connection`` switches h2's check
off on every stream it opens. ``check_compat`` verifies the private names used here (listed
in ``H2_PRIVATE_STATE``) and that the switch works; a unit test pins the tested h2 versions.
"""

from __future__ import annotations

from collections.abc import Iterable

import h2
from h2.config import H2Configuration
from h2.connection import AllowedStreamIDs, H2Connection
from h2.events import DataReceived
from h2.exceptions import ProtocolError as H2ProtocolError
from h2.stream import H2Stream

__all__ = ["H2_PRIVATE_STATE", "TESTED_H2_VERSIONS", "MeterlessH2Connection", "check_compat"]

TESTED_H2_VERSIONS = frozenset({"4.4.1"})

H2_PRIVATE_STATE = {
    H2Connection: ["_begin_new_stream"],
    H2Stream: ["_initialize_content_length", "_track_content_length"],
}
"""The private h2 names this module relies on, by class."""

_PRIVATE_INSTANCE_STATE = ["_expected_content_length"]  # None: h2 never compares the length


def _no_declared_length(headers: Iterable[tuple[bytes, bytes]]) -> None:
    """Stands in for ``H2Stream._initialize_content_length``: nothing is declared to h2."""


class MeterlessH2Connection(H2Connection):
    """An H2Connection whose streams never check DATA against content-length (the owner
    does)."""

    def _begin_new_stream(self, stream_id: int, allowed_ids: AllowedStreamIDs) -> H2Stream:
        stream = super()._begin_new_stream(stream_id, allowed_ids)
        stream._expected_content_length = None
        stream._initialize_content_length = _no_declared_length  # type: ignore[method-assign]
        return stream


def check_compat() -> None:
    """Raise RuntimeError naming every private h2 name this module needs but lacks, or when
    switching the check off no longer lets a body longer than its content-length through."""
    missing = [
        f"{cls.__name__}.{name}"
        for cls, names in H2_PRIVATE_STATE.items()
        for name in names
        if not callable(getattr(cls, name, None))
    ]
    stream = H2Stream(1, config=H2Configuration(), inbound_window_size=1, outbound_window_size=1)
    missing += [f"H2Stream.{n}" for n in _PRIVATE_INSTANCE_STATE if not hasattr(stream, n)]
    if missing:
        raise RuntimeError(f"h2 {h2.__version__} lacks {', '.join(missing)}")
    client = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    server = MeterlessH2Connection(H2Configuration(client_side=False, header_encoding=None))
    client.initiate_connection()
    server.initiate_connection()
    head = [(b":method", b"POST"), (b":scheme", b"https"), (b":authority", b"a"), (b":path", b"/")]
    client.send_headers(1, [*head, (b"content-length", b"1"), (b"content-length", b"2")])
    client.send_data(1, b"abc", end_stream=True)
    try:
        events = server.receive_data(client.data_to_send())
    except H2ProtocolError as exc:
        raise RuntimeError(f"h2 {h2.__version__} still checks content-length: {exc}") from exc
    if b"".join(e.data or b"" for e in events if isinstance(e, DataReceived)) != b"abc":
        raise RuntimeError(f"h2 {h2.__version__}: the body did not come through whole")
