"""Fuzzing the QUIC datagram side: QuicRouter and QuicServerConnection never raise.

Random datagrams, real client Initials with mutated bytes, and whole handshakes whose client
datagrams are mutated, dropped or repeated on their way to the router.
"""

from __future__ import annotations

from typing import Any

from aioquic.h3.connection import H3Connection
from aioquic.quic.connection import QuicConnection
from hypothesis import given
from hypothesis import strategies as st

from protocols.quic_router import AddressValidation, QuicRouter

from .mutate import apply_ops, examples, mutation_ops
from .quic_pump import (
    CLIENT_ADDR,
    SERVER_ADDR,
    Pump,
    TamperingClient,
    check_result,
    client_configuration,
    server_configuration,
)

VERSIONS = [0x00000001, 0x6B3343CF, 0x00000000, 0x1A2A3A4A, 0xFF00001D]


def long_header(first: int, version: int, dcid: bytes, scid: bytes, rest: bytes) -> bytes:
    return (
        bytes([0x80 | 0x40 | first])
        + version.to_bytes(4, "big")
        + bytes([len(dcid)])
        + dcid
        + bytes([len(scid)])
        + scid
        + rest
    )


datagrams = st.one_of(
    st.binary(max_size=1500),
    st.builds(
        long_header,
        st.integers(0, 63),
        st.sampled_from(VERSIONS),
        st.binary(max_size=21),
        st.binary(max_size=21),
        st.binary(max_size=1300),
    ),
    st.builds(
        lambda cid, rest: b"\x40" + cid + rest,  # a short header: an unknown connection
        st.binary(min_size=8, max_size=8),
        st.binary(max_size=100),
    ),
)
validations = st.sampled_from(
    [AddressValidation(), AddressValidation(retry="always"), AddressValidation(retry="auto")]
)


@given(packets=st.lists(datagrams, min_size=1, max_size=8), validation=validations)
@examples(1.0)
def test_router_survives_random_datagrams(
    certificate: Any, packets: list[bytes], validation: AddressValidation
) -> None:
    router = QuicRouter(server_configuration(certificate), validation=validation)
    now = 1.0
    for packet in packets:
        check_result(router.receive_datagram(packet, CLIENT_ADDR, now))
        now += 0.01


@given(
    ops=mutation_ops(max_ops=3),
    header_ops=st.lists(
        st.tuples(st.just("flip"), st.integers(0, 60), st.integers(1, 255)), max_size=3
    ),
    validation=validations,
    again=st.booleans(),
)
@examples(1.0)
def test_router_survives_mutated_client_initials(
    certificate: Any,
    ops: list[Any],
    header_ops: list[Any],
    validation: AddressValidation,
    again: bool,
) -> None:
    router = QuicRouter(server_configuration(certificate), validation=validation)
    client = QuicConnection(configuration=client_configuration("h3"))
    client.connect(SERVER_ADDR, now=1.0)
    (initial, _), *_ = client.datagrams_to_send(1.0)
    mutated = apply_ops(apply_ops(initial, header_ops), ops)
    result = check_result(router.receive_datagram(mutated, CLIENT_ADDR, 1.0))
    if again:  # the genuine Initial after the mutated one (a retransmission)
        check_result(router.receive_datagram(initial, CLIENT_ADDR, 1.1))
    if result.connection is not None:
        result.connection.datagrams_to_send(1.2)
        result.connection.handle_timer(100.0)


datagram_plan = st.dictionaries(
    st.integers(0, 12),
    st.sampled_from(["drop", "repeat"]) | mutation_ops(max_ops=2),
    max_size=4,
)


@given(plan=datagram_plan, validation=validations, alpn=st.sampled_from(["h3", "hq-interop"]))
@examples(0.6)
def test_handshake_with_mutated_datagrams_never_raises(
    certificate: Any, plan: dict[int, Any], validation: AddressValidation, alpn: str
) -> None:
    client = TamperingClient(alpn)
    pump = Pump(QuicRouter(server_configuration(certificate), validation=validation), client, plan)
    if alpn == "h3":
        pump.http = H3Connection(client)
    pump.run()
    sid = client.get_next_available_stream_id()
    client.send_stream_data(sid, b"GET /\r\n" if alpn != "h3" else b"\x01\x00", end_stream=True)
    pump.run()
    pump.finish()
