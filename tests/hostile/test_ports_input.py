"""Bad input around the two ports (issue 13, items 4-5): labkit's bootstrap request
malformed on the Kafka port, Kafka frames and random bytes on the ZeroMQ port, and
servers that answer labkit's client with garbage. The broker closes only the bad
connection and keeps serving both protocols; the client fails with a sentence, not a
hang."""

from __future__ import annotations

import random
import socket
import struct
import time

import pytest
from kafka import KafkaAdminClient as KafkaPythonAdmin

from labkit import KafkaAdminClient, NoBrokersAvailable
from labkit.protocol import bootstrap as wire
from labkit.testing import RawClient
from tests.raw_connections import closed_by_broker, frame, scripted_server

pytestmark = pytest.mark.usefixtures("kafka_python_garbage")

BOUND_S = 10  # "is closed / fails, does not hang": generous on a loaded machine


def both_protocols_answer(broker) -> None:
    admin = KafkaPythonAdmin(bootstrap_servers=broker.bootstrap)
    try:
        assert isinstance(admin.list_topics(), list)
    finally:
        admin.close()
    with RawClient(broker.bootstrap) as raw:
        header, _ = raw.request("api_versions", {}, timeout=BOUND_S)
        assert header["error"] == 0


@pytest.mark.parametrize(
    "request_bytes",
    [
        frame(wire.KEY_BYTES),  # truncated header
        frame(struct.pack(">hhih", wire.KEY, 0, 1, 500) + b"short"),  # client id length lies
        frame(struct.pack(">hhih", wire.KEY, 0, 1, -7)),  # a negative length
        frame(struct.pack(">hhih", wire.KEY, 0, 1, 1) + b"xy"),  # bytes left over
    ],
    ids=["truncated", "lying-length", "negative-length", "trailing-bytes"],
)
def test_a_malformed_bootstrap_request_closes_only_its_connection(shared_broker, request_bytes):
    with socket.create_connection(("127.0.0.1", shared_broker.port), timeout=BOUND_S) as sock:
        sock.sendall(request_bytes)
        assert closed_by_broker(sock)
    both_protocols_answer(shared_broker)


def test_an_unknown_bootstrap_version_gets_error_35_and_the_versions(shared_broker):
    with socket.create_connection(("127.0.0.1", shared_broker.port), timeout=BOUND_S) as sock:
        sock.sendall(wire.encode_request(99, "future", version=3))
        size = struct.unpack(">i", sock.recv(4))[0]
        body = b""
        while len(body) < size:
            body += sock.recv(size - len(body))
    correlation, error, answer = wire.decode_response(body)
    assert (correlation, error, answer["versions"]) == (99, wire.UNSUPPORTED_VERSION, [0, 0])


def test_many_bootstrap_requests_on_one_connection_are_answered_in_order(shared_broker):
    with socket.create_connection(("127.0.0.1", shared_broker.port), timeout=BOUND_S) as sock:
        sock.sendall(b"".join(wire.encode_request(n, "again") for n in range(50)))
        seen = []
        buffer = b""
        while len(seen) < 50:
            buffer += sock.recv(65536)
            while len(buffer) >= 4 and len(buffer) >= 4 + struct.unpack_from(">i", buffer)[0]:
                size = struct.unpack_from(">i", buffer)[0]
                seen.append(wire.decode_response(buffer[4 : 4 + size])[0])
                buffer = buffer[4 + size :]
    assert seen == list(range(50))


def test_garbage_on_the_zeromq_port_is_survived(broker):
    rng = random.Random(13)
    payloads = [
        bytes(rng.getrandbits(8) for _ in range(4096)),
        wire.encode_request(1, "wrong port"),  # labkit's Kafka-framed request on ZeroMQ
        frame(struct.pack(">hhih", 18, 0, 1, 1) + b"x"),  # a Kafka ApiVersions
    ]
    for payload in payloads:
        with socket.create_connection(("127.0.0.1", broker.zmq_port), timeout=BOUND_S) as raw:
            raw.sendall(payload)
    both_protocols_answer(broker)


def test_garbage_on_the_kafka_port_is_survived(broker):
    rng = random.Random(17)
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", broker.port), timeout=BOUND_S) as raw:
            raw.sendall(bytes(rng.getrandbits(8) for _ in range(4096)))
    with socket.create_connection(("127.0.0.1", broker.port), timeout=BOUND_S) as raw:
        raw.sendall(b"\xff" + b"\x00" * 8 + b"\x7f")  # a ZMTP greeting on the Kafka port
    both_protocols_answer(broker)


@pytest.mark.parametrize(
    "answer",
    [
        b"SSH-2.0-OpenSSH_9.2\r\n",  # a banner: another service
        struct.pack(">i", 1 << 30),  # a size far past any bootstrap answer
        frame(struct.pack(">ihh", 0x4C4B, 0, 4) + b"nope"),  # not JSON
        frame(struct.pack(">ihh", 0x4C4B, 0, 2) + b"[]"),  # JSON, not an object
        frame(struct.pack(">ihh", 1, 0, 2) + b"{}"),  # another correlation id
        wire.encode_response(0x4C4B, 0, {"zmq_port": 70000}),  # not a port
        wire.encode_response(0x4C4B, 0, {"zmq_port": 9192, "zmq_host": 5}),  # not a host
    ],
    ids=["banner", "huge-size", "not-json", "not-object", "wrong-id", "bad-port", "bad-host"],
)
def test_a_server_answering_garbage_fails_fast_with_what_it_did(answer):
    with scripted_server(answer) as address:
        started = time.monotonic()
        with pytest.raises(NoBrokersAvailable) as info:
            KafkaAdminClient(bootstrap_servers=address, request_timeout_ms=180_000)
        assert time.monotonic() - started < 60  # no waiting for request_timeout_ms
    assert f"{address} accepted the connection but does not speak labkit's protocol" in str(
        info.value
    )


def test_a_server_that_never_finishes_its_answer_is_given_up_on():
    partial = wire.encode_response(0x4C4B, 0, {"zmq_port": 9192})[:-3]
    with scripted_server(partial) as address:
        started = time.monotonic()
        with pytest.raises(NoBrokersAvailable) as info:
            KafkaAdminClient(bootstrap_servers=address, request_timeout_ms=3000)
        waited = time.monotonic() - started
    assert waited < 60
    assert f"{address} accepted the connection but did not answer" in str(info.value)
