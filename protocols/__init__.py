"""Sans-IO HTTP/1.1, HTTP/2 and HTTP/3 adapters that turn wire bytes into normalized stream events.

Imports only h11, h2, aioquic, pylsqpack, cryptography (the token AEAD of ``quic_tokens``) and
the standard library: never asyncio, socket or quicproxy. aioquic's private names are used only
in ``protocols.engines.aioquic``.
"""
