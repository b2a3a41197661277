"""The Kafka listener's Fetch read-ahead (labkit/kafka/read_ahead.py) over real sockets:
a consumer catching up is answered from it, and the answers are the broker's answers.

The broker runs in this process so the tests can read the listener's counters and
shorten its age limit."""

from __future__ import annotations

import threading
import time

import pytest
from kafka import KafkaConsumer as KafkaPythonConsumer
from kafka import TopicPartition
from kafka.record import MemoryRecords

from labkit import KafkaAdminClient as LabkitAdmin
from labkit import KafkaProducer as LabkitProducer
from labkit import NewTopic
from labkit.broker.config import BrokerConfig
from labkit.broker.server import BrokerServer
from labkit.kafka import read_ahead
from tests.raw_connections import KafkaConnection

pytestmark = pytest.mark.usefixtures("kafka_python_garbage")

RECORDS = 600
BATCH = 20  # records per produced batch: one flush each
SMALL_FETCH = 1024  # partition_max_bytes: an answer of ~3 batches, ~10 answers in all


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    config = BrokerConfig.build("127.0.0.1", 0, tmp_path_factory.mktemp("read-ahead"))
    broker = BrokerServer(config)
    broker.start()
    loop = threading.Thread(target=broker.serve_forever, daemon=True)
    loop.start()
    yield broker
    broker.request_stop()
    loop.join(timeout=30)


@pytest.fixture
def topic(server, unique_topic):
    """``unique_topic`` holding RECORDS values b"v0".. in batches of BATCH."""
    bootstrap = f"127.0.0.1:{server.config.port}"
    admin = LabkitAdmin(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(unique_topic, 1, 1)])
    finally:
        admin.close()
    producer = LabkitProducer(bootstrap_servers=bootstrap, linger_ms=0)
    try:
        for start in range(0, RECORDS, BATCH):
            for i in range(start, start + BATCH):
                producer.send(unique_topic, b"v%d" % i, partition=0)
            producer.flush()
    finally:
        producer.close()
    return unique_topic


def counters(server) -> tuple[int, int]:
    stats = server.kafka.stats
    return stats["read_aheads"], stats["read_aheads_used"]


def fetch(conn: KafkaConnection, topic: str, offset: int, part_max: int = SMALL_FETCH):
    """One Fetch v12 of partition 0: (high watermark, [(offset, value)])."""
    response = conn.receive(1, 12, conn.fetch(offset, topic, partition_max_bytes=part_max))
    partition = response.responses[0].partitions[0]
    assert partition.error_code.value == 0
    records = MemoryRecords(partition.records or b"")
    out = []
    while True:
        batch = records.next_batch()
        if batch is None:
            return partition.high_watermark, out
        out.extend((record.offset, record.value) for record in batch)


def test_kafka_python_catching_up_reads_everything_through_the_read_ahead(server, topic):
    sent, used = counters(server)
    consumer = KafkaPythonConsumer(
        bootstrap_servers=f"127.0.0.1:{server.config.port}",
        enable_auto_commit=False,
        max_partition_fetch_bytes=SMALL_FETCH,
    )
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        got = []
        deadline = time.monotonic() + 30
        while len(got) < RECORDS and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                got.extend((r.offset, r.value) for r in records)
    finally:
        consumer.close()
    assert got == [(i, b"v%d" % i) for i in range(RECORDS)]
    now_sent, now_used = counters(server)
    # ~10 answers: all but the first could come from a read-ahead; allow a few misses
    assert now_used - used >= 5, "kafka-python's fetches missed the read-ahead"
    assert now_sent - sent >= now_used - used


def test_an_answer_from_the_read_ahead_is_what_the_broker_answers(server, topic):
    conn = KafkaConnection.connect(server.config.port)
    fresh = KafkaConnection.connect(server.config.port)
    try:
        _, first = fetch(conn, topic, 0)
        _, used = counters(server)
        nxt = first[-1][0] + 1
        high, ahead = fetch(conn, topic, nxt)
        assert counters(server)[1] == used + 1  # answered from the read-ahead
        direct_high, direct = fetch(fresh, topic, nxt)  # a connection with no read-ahead
        assert counters(server)[1] == used + 1
    finally:
        conn.close()
        fresh.close()
    assert ahead == direct
    assert ahead[0][0] == nxt
    assert high == direct_high == RECORDS


def test_a_seek_drops_the_read_ahead(server, topic):
    conn = KafkaConnection.connect(server.config.port)
    try:
        fetch(conn, topic, 0)
        sent, used = counters(server)
        _, records = fetch(conn, topic, 300)  # not where the last answer ended
        assert counters(server)[1] == used
        assert counters(server)[0] == sent + 1  # and a read-ahead from 300's answer on
    finally:
        conn.close()
    assert records[0] == (300, b"v300")


def test_a_consumer_at_the_end_gets_no_read_ahead(server, topic):
    conn = KafkaConnection.connect(server.config.port)
    try:
        sent, _ = counters(server)
        high, records = fetch(conn, topic, 0, part_max=1 << 20)  # everything in one answer
        assert len(records) == RECORDS == high
        assert counters(server)[0] == sent  # nothing waits: nothing to read ahead
    finally:
        conn.close()


def test_an_old_read_ahead_is_not_used_and_the_answer_is_fresh(server, topic, monkeypatch):
    monkeypatch.setattr(read_ahead, "MAX_AGE_S", 0.05)
    conn = KafkaConnection.connect(server.config.port)
    try:
        _, first = fetch(conn, topic, 0)
        _, used = counters(server)
        producer = LabkitProducer(bootstrap_servers=f"127.0.0.1:{server.config.port}")
        producer.send(topic, b"late", partition=0)
        producer.flush()
        producer.close()
        time.sleep(0.2)
        high, _ = fetch(conn, topic, first[-1][0] + 1)
        assert counters(server)[1] == used
    finally:
        conn.close()
    assert high == RECORDS + 1  # the broker's high watermark now, not the read-ahead's


def test_no_read_ahead_past_the_listeners_budget(server, topic, monkeypatch):
    monkeypatch.setattr(read_ahead, "BUDGET_BYTES", 0)
    conn = KafkaConnection.connect(server.config.port)
    try:
        sent, used = counters(server)
        offset, got = 0, []
        while offset < RECORDS:
            _, records = fetch(conn, topic, offset)
            got.extend(records)
            offset = records[-1][0] + 1
        assert counters(server) == (sent, used)
    finally:
        conn.close()
    assert got == [(i, b"v%d" % i) for i in range(RECORDS)]


def test_a_connection_whose_read_aheads_keep_missing_gets_no_more(server, topic):
    """A consumer that seeks (or fetches its partitions in turns) would have the broker
    read every answer twice: after MAX_MISSES more misses than hits, no more read-aheads."""
    conn = KafkaConnection.connect(server.config.port)
    try:
        sent_each = []
        for offset in (0, 300, 100, 200, 400, 500):
            before, _ = counters(server)
            _, records = fetch(conn, topic, offset)
            assert records[0] == (offset, b"v%d" % offset)
            sent_each.append(counters(server)[0] - before)
    finally:
        conn.close()
    # the first answer's read-ahead, then one after each of MAX_MISSES misses; no more
    sent = 1 + read_ahead.MAX_MISSES
    assert sent_each == [1] * sent + [0] * (6 - sent)
