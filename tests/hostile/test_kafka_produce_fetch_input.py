"""Bad record batches in Kafka Produce requests (issue 13): corrupt CRCs, lying record
counts, truncated and random batches, old magic, transactional batches, compressed
bombs. Each gets its error code for its partition, as Apache Kafka answers, and the same
connection's next requests (a good produce, a fetch) and the listener are unharmed.
Also: parked fetches of Kafka connections that went away leave nothing behind."""

from __future__ import annotations

import random
import socket
import struct
import threading
import time

import crc32c
import pytest
from kafka.record.default_records import DefaultRecordBatch as KpBatch
from kafka.record.default_records import DefaultRecordBatchBuilder as KpBuilder
from kio.schema.errors import ErrorCode

from labkit import KafkaAdminClient as LabkitAdmin
from labkit.broker.config import BrokerConfig
from labkit.broker.server import BrokerServer
from labkit.testing import BrokerProcess
from tests.raw_connections import KafkaConnection

MAX_REQUEST = 65536  # socket.request.max.bytes here: also the decompressed budget
WAIT_S = 10  # "answers, does not hang": generous on a shared machine
NOW = int(time.time() * 1000)


@pytest.fixture(scope="module")
def kafka_broker(tmp_path_factory):
    with BrokerProcess(
        data_dir=tmp_path_factory.mktemp("kafka-produce-hostile"),
        config={"socket.request.max.bytes": str(MAX_REQUEST)},
    ) as proc:
        with socket.create_connection(("127.0.0.1", proc.port), timeout=WAIT_S) as sock:
            conn = KafkaConnection(sock)
            conn.metadata_create("bad")  # auto-created, 1 partition
        yield proc


def good_batch(values, *, codec=0) -> bytes:
    builder = KpBuilder(
        magic=2,
        compression_type=codec,
        is_transactional=False,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 24,
    )
    for offset, value in enumerate(values):
        builder.append(offset, timestamp=NOW, key=None, value=value, headers=[])
    return bytes(builder.build())


def recrc(raw) -> bytes:
    raw = bytearray(raw)
    raw[17:21] = struct.pack(">I", crc32c.crc32c(bytes(raw[21:])))
    return bytes(raw)


def with_count(raw, count: int) -> bytes:
    raw = bytearray(raw)
    raw[57:61] = struct.pack(">i", count)
    return recrc(raw)


def flipped(raw) -> bytes:
    raw = bytearray(raw)
    raw[-1] ^= 0x55
    return bytes(raw)


def transactional(raw) -> bytes:
    raw = bytearray(raw)
    raw[22] |= 0x10
    return recrc(raw)


def magic_1(raw) -> bytes:
    raw = bytearray(raw)
    raw[16] = 1
    return bytes(raw)


GOOD = good_batch([b"a", b"b"])
BAD_BATCHES = {
    "crc": (flipped(GOOD), ErrorCode.corrupt_message),
    "count-lies-high": (with_count(GOOD, 1000), ErrorCode.invalid_record),
    "count-lies-low": (with_count(GOOD, 1), ErrorCode.invalid_record),
    "count-negative": (with_count(GOOD, -1), ErrorCode.invalid_record),
    # no whole batch: Kafka's ProduceRequest.validateRecords says INVALID_RECORD
    "truncated": (GOOD[:-3], ErrorCode.invalid_record),
    "header-only": (GOOD[:40], ErrorCode.invalid_record),
    "garbage": (bytes(random.Random(1).randrange(256) for _ in range(200)), None),
    "empty": (b"", ErrorCode.invalid_record),
    "magic-1": (magic_1(GOOD), ErrorCode.invalid_record),
    "transactional": (transactional(GOOD), ErrorCode.invalid_record),
    "bytes-after": (GOOD + b"\0\0\0", ErrorCode.corrupt_message),
    "second-bad": (GOOD + flipped(GOOD), ErrorCode.corrupt_message),
    "gzip-bomb": (
        good_batch([b"\0" * 60_000, b"\0" * 60_000], codec=1),
        ErrorCode.message_too_large,
    ),
    "zstd-unknown-codec": (recrc(bytes(GOOD[:22]) + bytes([GOOD[22] | 7]) + GOOD[23:]), None),
}


@pytest.mark.parametrize("name", list(BAD_BATCHES))
def test_a_bad_batch_gets_its_error_and_the_connection_goes_on(kafka_broker, name):
    records, expected = BAD_BATCHES[name]
    with socket.create_connection(("127.0.0.1", kafka_broker.port), timeout=WAIT_S) as sock:
        conn = KafkaConnection(sock)
        refused = conn.produce(records)
        assert refused.error_code != ErrorCode.none
        if expected is not None:
            assert refused.error_code == expected, refused.error_message
        assert refused.error_message  # says what is wrong
        assert refused.base_offset == -1
        ok = conn.produce(good_batch([name.encode()]))  # the same connection, next request
        assert ok.error_code == ErrorCode.none
        correlation = conn.fetch(ok.base_offset)
        data = conn.receive(1, 12, correlation).responses[0].partitions[0]
        assert data.error_code == ErrorCode.none
        assert [r.value for r in KpBatch(bytes(data.records))][:1] == [name.encode()]
    assert kafka_broker.proc.poll() is None
    assert "Traceback" not in kafka_broker.output()


def test_random_mutations_of_a_batch_never_break_the_connection(kafka_broker):
    rng = random.Random(13)
    with socket.create_connection(("127.0.0.1", kafka_broker.port), timeout=WAIT_S) as sock:
        conn = KafkaConnection(sock)
        for _ in range(150):
            raw = bytearray(good_batch([b"x" * rng.randrange(40)] * rng.randrange(1, 5)))
            for _flip in range(rng.randrange(1, 4)):
                raw[rng.randrange(len(raw))] = rng.randrange(256)
            if rng.random() < 0.7:
                raw = bytearray(recrc(raw))  # reach the checks behind the CRC
            answer = conn.produce(bytes(raw))  # an error or an append: never a hang or close
            assert (answer.error_code == ErrorCode.none) == (answer.base_offset >= 0)
        assert conn.produce(GOOD).error_code == ErrorCode.none
    assert "Traceback" not in kafka_broker.output()


def test_a_failed_acks_0_produce_closes_its_connection_as_kafka_does(kafka_broker):
    with socket.create_connection(("127.0.0.1", kafka_broker.port), timeout=WAIT_S) as sock:
        conn = KafkaConnection(sock)
        conn.produce(GOOD, acks=0)  # no response at all ...
        conn.produce(GOOD, acks=0)
        assert conn.produce(GOOD).error_code == ErrorCode.none  # ... and in order
        conn.produce(flipped(GOOD), acks=0)
        assert sock.recv(1) == b""  # the producer learns that something failed
    assert "a produce with acks=0 failed" in kafka_broker.output()
    with socket.create_connection(("127.0.0.1", kafka_broker.port), timeout=WAIT_S) as sock:
        assert KafkaConnection(sock).produce(GOOD).error_code == ErrorCode.none


def test_parked_fetches_of_closed_kafka_connections_leave_nothing_behind(tmp_path):
    """An inproc DEALER's close is no event for the broker: the fetch stays parked until
    its max_wait (at most fetch.max.wait.max.ms), its answer is dropped by the ROUTER,
    and the listener holds nothing of the connection."""
    config = BrokerConfig.build("127.0.0.1", 0, tmp_path / "d", {"fetch.max.wait.max.ms": "1500"})
    server = BrokerServer(config)
    server.start()
    kafka_port = server.config.port  # the main port, bound on a free one
    loop = threading.Thread(target=server.serve_forever, daemon=True)
    loop.start()
    try:
        with socket.create_connection(("127.0.0.1", kafka_port), timeout=WAIT_S) as sock:
            KafkaConnection(sock).metadata_create("idle")
        for _ in range(30):
            with socket.create_connection(("127.0.0.1", kafka_port), timeout=WAIT_S) as sock:
                KafkaConnection(sock).fetch(0, topic="idle", max_wait_ms=600_000)
            # closed at once: its fetch is parked in the broker
        deadline = time.monotonic() + WAIT_S
        while len(server.parking) < 30 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(server.parking) == 30  # parked, at most 1.5 s (fetch.max.wait.max.ms)
        while (len(server.parking) or server.kafka._by_fd) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(server.parking) == 0
        assert server.kafka._by_fd == {}  # the listener forgot every connection
        with socket.create_connection(("127.0.0.1", kafka_port), timeout=WAIT_S) as sock:
            conn = KafkaConnection(sock)
            assert conn.produce(GOOD, topic="idle").error_code == ErrorCode.none
            data = conn.receive(1, 12, conn.fetch(0, topic="idle")).responses[0].partitions[0]
            assert data.high_watermark == 2
    finally:
        server.request_stop()
        loop.join(timeout=30)
    assert not loop.is_alive()


def test_a_client_that_resets_its_connection_is_a_client_leaving_not_bad_input(kafka_broker):
    sock = socket.create_connection(("127.0.0.1", kafka_broker.port), timeout=WAIT_S)
    peer = f"127.0.0.1:{sock.getsockname()[1]}"
    KafkaConnection(sock).fetch(10**6, max_wait_ms=300)  # answered after the reset
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()  # RST: the listener reads ECONNRESET or writes into EPIPE
    with socket.create_connection(("127.0.0.1", kafka_broker.port), timeout=WAIT_S) as s:
        time.sleep(1.0)  # past the parked fetch's answer
        assert KafkaConnection(s).produce(GOOD).error_code == ErrorCode.none
    assert f"closed the Kafka connection from {peer}" not in kafka_broker.output()


def test_a_kafka_client_over_its_quota_gets_throttle_time_as_kafka_says(kafka_broker):
    """Client quotas apply per Kafka client.id through the listener (KIP-219)."""
    admin = LabkitAdmin(bootstrap_servers=kafka_broker.bootstrap)
    try:
        admin.alter_client_quotas(
            [{"entity": {"client-id": "slow-kafka"}, "ops": {"producer_byte_rate": 2048}}]
        )
    finally:
        admin.close()
    with socket.create_connection(("127.0.0.1", kafka_broker.port), timeout=WAIT_S) as sock:
        conn = KafkaConnection(sock, client_id="slow-kafka")
        throttles = []
        while not any(throttles) and len(throttles) < 10:  # ~4 KB/s over the quota window
            assert conn.produce(good_batch([b"q" * 10_000])).error_code == ErrorCode.none
            throttles.append(conn.last.throttle_time)
    assert any(throttles), throttles
