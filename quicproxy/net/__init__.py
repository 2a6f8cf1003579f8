"""Byte transports: TCP/TLS streams, the UDP endpoint and TLS contexts. Knows no HTTP."""
