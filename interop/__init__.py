"""quicproxy's endpoint for the QUIC interop runner (run from the repository root)."""
