"""QUIC engines: the packages that adapt one QUIC library to what protocols/ needs from it.

An engine is a sibling package here (``aioquic/`` today; ``qh3/``, an aioquic fork with nearly
the same API, later) and the ONLY code that imports its library's private modules or touches
its private state. Everything else in the tree uses the library's public API (connection,
events, configuration, packet and buffer modules) plus the small interface an engine offers,
``protocols.engines.base.Engine``:

- ``check_compat()`` and ``TESTED_VERSIONS``: refuse (``EngineCompatError``) an untested
  library version or one that lacks the private state the engine relies on; the server calls
  it at start;
- connection classes: ``GatedQuicConnection`` (receive credit granted as data is consumed),
  ``EcnQuicConnection`` (ECN counts and ACK_ECN), ``ServerQuicConnection`` (NEW_TOKEN,
  preferred_address, steered connection IDs, stateless reset tokens);
- ``CompatH3Connection`` and ``StreamMessageError``: HTTP/3 with stream-scoped message errors,
  field-section limits, idle-frame budgets and GOAWAY;
- probes of state the library does not expose: ``stream_send_buffered``,
  ``unacknowledged_data``, ``peer_bidi_stream_credit``, ``handshake_complete``,
  ``smoothed_rtt``, ``connection_version``, ``h0_buffered``, ``h0_release``.

This package imports no engine itself, so importing ``protocols.engines.base`` is cheap.
"""

from __future__ import annotations
