"""Kafka producers and consumers through the Kafka listener (issue 13): kafka-python,
confluent-kafka (librdkafka) and aiokafka against a real broker process, checked with
labkit's own client over ZeroMQ, and the other way round."""

from __future__ import annotations

import asyncio
import time

import pytest
from confluent_kafka import Consumer as ConfluentConsumer
from confluent_kafka import Producer as ConfluentProducer
from confluent_kafka import TopicPartition as ConfluentPartition
from kafka import KafkaConsumer as KpConsumer
from kafka import KafkaProducer as KpProducer
from kafka.structs import TopicPartition

from labkit import KafkaConsumer as LabkitConsumer
from labkit import KafkaProducer as LabkitProducer
from labkit import TopicPartition as LabkitPartition
from labkit.testing import BrokerProcess
from labkit.testing.apache_kafka import run_tool
from tests.integration.client_helpers import create_topic

pytestmark = pytest.mark.usefixtures("kafka_python_garbage")

WAIT_S = 20  # generous: the machine is shared


@pytest.fixture(scope="module")
def kafka_broker(tmp_path_factory):
    with BrokerProcess(data_dir=tmp_path_factory.mktemp("kafka-produce-fetch")) as proc:
        yield proc


def labkit_read(broker, topic: str, partitions: int, count: int) -> list[tuple]:
    """(partition, offset, key, value, headers) of ``count`` records, read over ZeroMQ."""
    consumer = LabkitConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    try:
        tps = [LabkitPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out: list[tuple] = []
        deadline = time.monotonic() + WAIT_S
        while len(out) < count and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                out += [
                    (r.partition, r.offset, r.key, r.value, list(r.headers or [])) for r in records
                ]
        return sorted(out)
    finally:
        consumer.close()


def kp_read(broker, tps, count: int, **config) -> list:
    """kafka-python consumer without a group: assign, seek to the beginning, read."""
    consumer = KpConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False, **config)
    try:
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        return sorted(_kp_poll(consumer, count))
    finally:
        consumer.close()


def _kp_poll(consumer, count: int) -> list[tuple]:
    out: list[tuple] = []
    deadline = time.monotonic() + WAIT_S
    while len(out) < count and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            out += [(r.partition, r.offset, r.key, r.value, list(r.headers)) for r in records]
    return out


# -- kafka-python -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("acks", "compression"), [(0, None), (1, None), ("all", None), ("all", "gzip")]
)
def test_kafka_python_produces_what_labkit_and_kafka_python_read_back(
    kafka_broker, unique_topic, acks, compression
):
    create_topic(kafka_broker, unique_topic, 3)
    producer = KpProducer(
        bootstrap_servers=kafka_broker.bootstrap,
        acks=acks,
        compression_type=compression,
        enable_idempotence=False,  # InitProducerId is another slice of issue 13
        linger_ms=5,
    )
    sent = []
    try:
        for i in range(60):
            key = None if i % 7 == 0 else b"key-%d" % (i % 5)
            headers = [("n", b"%d" % i)] if i % 2 else []
            future = producer.send(
                unique_topic, key=key, value=b"value-%d" % i, headers=headers, partition=i % 3
            )
            sent.append((i % 3, key, b"value-%d" % i, headers, future))
        producer.flush(WAIT_S)
        if acks != 0:  # acks=0 futures resolve with offset -1, as with Kafka
            offsets = [future.get(WAIT_S).offset for *_rest, future in sent]
            assert sorted(offsets) == sorted([o for p in range(3) for o in range(20)])
    finally:
        producer.close()
    expected = {value: (partition, key, headers) for partition, key, value, headers, _f in sent}
    by_labkit = labkit_read(kafka_broker, unique_topic, 3, 60)
    assert {v: (p, k, h) for p, _o, k, v, h in by_labkit} == expected
    assert len(by_labkit) == 60
    tps = [TopicPartition(unique_topic, p) for p in range(3)]
    by_kafka_python = kp_read(kafka_broker, tps, 60)
    assert by_kafka_python == by_labkit  # same offsets, keys, values, headers


def test_kafka_python_consumer_seeks_finds_times_and_reads_from_latest(kafka_broker, unique_topic):
    create_topic(kafka_broker, unique_topic, 1)
    tp = TopicPartition(unique_topic, 0)
    producer = LabkitProducer(bootstrap_servers=kafka_broker.bootstrap)  # labkit writes...
    base_ts = int(time.time() * 1000) - 60_000
    for i in range(10):
        producer.send(unique_topic, value=b"r%d" % i, timestamp_ms=base_ts + i * 1000)
    producer.flush()
    consumer = KpConsumer(  # ... and kafka-python reads
        bootstrap_servers=kafka_broker.bootstrap,
        enable_auto_commit=False,
        fetch_max_wait_ms=300,
    )
    try:
        assert consumer.end_offsets([tp]) == {tp: 10}
        assert consumer.beginning_offsets([tp]) == {tp: 0}
        found = consumer.offsets_for_times({tp: base_ts + 4500})[tp]
        assert (found.offset, found.timestamp) == (5, base_ts + 5000)
        consumer.assign([tp])
        consumer.seek(tp, 7)
        assert [r[3] for r in _kp_poll(consumer, 3)] == [b"r7", b"r8", b"r9"]
        consumer.seek_to_end(tp)
        assert consumer.position(tp) == 10
        assert consumer.poll(timeout_ms=300) == {}  # a long poll that found nothing
        producer.send(unique_topic, value=b"late")
        producer.flush()
        late = _kp_poll(consumer, 1)
        assert [(r[1], r[3]) for r in late] == [(10, b"late")]
    finally:
        consumer.close()
        producer.close()


def test_a_fetch_short_of_min_bytes_waits_in_the_broker_for_max_wait(kafka_broker, unique_topic):
    create_topic(kafka_broker, unique_topic, 1)
    producer = LabkitProducer(bootstrap_servers=kafka_broker.bootstrap)
    producer.send(unique_topic, value=b"small")
    producer.flush()
    producer.close()
    tp = TopicPartition(unique_topic, 0)
    consumer = KpConsumer(
        bootstrap_servers=kafka_broker.bootstrap,
        enable_auto_commit=False,
        fetch_min_bytes=1_000_000,  # never reached: the broker answers at max_wait
        fetch_max_wait_ms=1500,
    )
    try:
        consumer.assign([tp])
        consumer.seek(tp, 0)
        assert consumer.position(tp) == 0
        started = time.monotonic()
        got = _kp_poll(consumer, 1)
        waited = time.monotonic() - started
    finally:
        consumer.close()
    assert [r[3] for r in got] == [b"small"]
    assert 1.0 <= waited < WAIT_S  # parked, not answered at once (min_bytes honoured)


def test_a_record_larger_than_max_partition_fetch_bytes_still_comes_back(
    kafka_broker, unique_topic
):
    create_topic(kafka_broker, unique_topic, 1)
    producer = KpProducer(bootstrap_servers=kafka_broker.bootstrap, enable_idempotence=False)
    try:
        producer.send(unique_topic, value=b"x" * 50_000).get(WAIT_S)
        producer.send(unique_topic, value=b"y" * 50_000).get(WAIT_S)
    finally:
        producer.close()
    tp = TopicPartition(unique_topic, 0)
    got = kp_read(kafka_broker, [tp], 2, max_partition_fetch_bytes=1024, fetch_max_bytes=1024)
    assert [(r[1], len(r[3])) for r in got] == [(0, 50_000), (1, 50_000)]


def test_a_consumer_past_the_end_resets_as_its_auto_offset_reset_says(kafka_broker, unique_topic):
    create_topic(kafka_broker, unique_topic, 1)
    producer = LabkitProducer(bootstrap_servers=kafka_broker.bootstrap)
    for i in range(3):
        producer.send(unique_topic, value=b"v%d" % i)
    producer.flush()
    producer.close()
    tp = TopicPartition(unique_topic, 0)
    consumer = KpConsumer(
        bootstrap_servers=kafka_broker.bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        consumer.assign([tp])
        consumer.seek(tp, 1000)  # OFFSET_OUT_OF_RANGE from the broker, then the reset
        assert [r[1] for r in _kp_poll(consumer, 3)] == [0, 1, 2]
    finally:
        consumer.close()


# -- confluent-kafka (librdkafka) -------------------------------------------------------


def test_confluent_kafka_produces_and_consumes_with_assign(kafka_broker, unique_topic):
    create_topic(kafka_broker, unique_topic, 2)
    producer = ConfluentProducer(
        {
            "bootstrap.servers": kafka_broker.bootstrap,
            "enable.idempotence": False,
            "acks": "all",
            "compression.type": "gzip",
            "linger.ms": 5,
        }
    )
    reports = []
    for i in range(200):
        producer.produce(
            unique_topic,
            key=b"k%d" % i,
            value=b"c%d" % i,
            partition=i % 2,
            headers=[("i", b"%d" % i)],
            on_delivery=lambda err, msg: reports.append((err, msg.partition(), msg.offset())),
        )
    assert producer.flush(WAIT_S) == 0
    assert [r for r in reports if r[0] is not None] == []
    assert sorted(r[1:] for r in reports) == sorted((p, o) for p in range(2) for o in range(100))
    by_labkit = labkit_read(kafka_broker, unique_topic, 2, 200)
    assert len(by_labkit) == 200
    # librdkafka asks for no coordinator with assign() and no commits (group.id is
    # required by the client's config only)
    consumer = ConfluentConsumer(
        {
            "bootstrap.servers": kafka_broker.bootstrap,
            "group.id": "never-used",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 200,
        }
    )
    try:
        consumer.assign(
            [ConfluentPartition(unique_topic, 0, 90), ConfluentPartition(unique_topic, 1, 0)]
        )
        got = []
        deadline = time.monotonic() + WAIT_S
        while len(got) < 110 and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            got.append((msg.partition(), msg.offset(), msg.key(), msg.value(), msg.headers()))
    finally:
        consumer.close()
    wanted = [(p, o, k, v, [(hk, hv) for hk, hv in h]) for p, o, k, v, h in by_labkit]
    wanted = [row for row in wanted if row[0] == 1 or row[1] >= 90]
    assert sorted((p, o, k, v, list(h)) for p, o, k, v, h in got) == wanted


# -- aiokafka ---------------------------------------------------------------------------


def test_aiokafka_produces_and_consumes_with_assign(kafka_broker, unique_topic):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.structs import TopicPartition as AioPartition

    create_topic(kafka_broker, unique_topic, 1)

    async def scenario():
        producer = AIOKafkaProducer(
            bootstrap_servers=kafka_broker.bootstrap, enable_idempotence=False, acks="all"
        )
        await producer.start()
        try:
            offsets = [
                (await producer.send_and_wait(unique_topic, b"a%d" % i, key=b"k")).offset
                for i in range(5)
            ]
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=kafka_broker.bootstrap, enable_auto_commit=False
        )
        await consumer.start()
        try:
            tp = AioPartition(unique_topic, 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            got = []
            deadline = time.monotonic() + WAIT_S
            while len(got) < 5 and time.monotonic() < deadline:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    got += [(r.offset, r.key, r.value) for r in records]
        finally:
            await consumer.stop()
        return offsets, got

    offsets, got = asyncio.run(scenario())
    assert offsets == [0, 1, 2, 3, 4]
    assert got == [(i, b"k", b"a%d" % i) for i in range(5)]
    assert [(o, k, v) for _p, o, k, v, _h in labkit_read(kafka_broker, unique_topic, 1, 5)] == got


# -- durability -------------------------------------------------------------------------


def test_acks_all_through_the_listener_survives_kill_9(tmp_path):
    """Every record confluent-kafka saw acknowledged with acks=all is there after SIGKILL."""
    broker = BrokerProcess(data_dir=tmp_path)
    broker.start()
    try:
        create_topic(broker, "crash", 1)
        producer = ConfluentProducer(
            {
                "bootstrap.servers": broker.bootstrap,
                "enable.idempotence": False,
                "acks": "all",
                "linger.ms": 1,
                "message.timeout.ms": 3000,
                "retries": 0,
            }
        )
        acked: dict[int, bytes] = {}

        def delivered(err, msg):
            if err is None:
                acked[msg.offset()] = msg.value()

        sent = 0
        deadline = time.monotonic() + WAIT_S
        # SIGKILL once some records are acknowledged, with more in flight
        while broker.proc.poll() is None and time.monotonic() < deadline:
            try:
                producer.produce("crash", value=b"v%d" % sent, on_delivery=delivered)
                sent += 1
            except BufferError:
                pass
            producer.poll(0.001)
            if len(acked) >= 200:
                broker.proc.kill()
        broker.proc.wait(10)
        producer.flush(5)
        assert len(acked) >= 200, "the broker was not killed under load"
        broker.start()
        stored = {o: v for _p, o, _k, v, _h in labkit_read(broker, "crash", 1, len(acked))}
        missing = {o: v for o, v in acked.items() if stored.get(o) != v}
        assert missing == {}
    finally:
        broker.close()


# -- Apache Kafka's own console tools (Java client 4.1.1) -----------------------------------


def test_apache_kafkas_console_producer_and_consumer_work_through_the_listener(
    kafka_broker, unique_topic
):
    create_topic(kafka_broker, unique_topic, 1)
    produced = run_tool(
        "kafka-console-producer.sh",
        "--bootstrap-server",
        kafka_broker.bootstrap,
        "--topic",
        unique_topic,
        # the Java producer's default idempotence needs InitProducerId (another slice)
        "--producer-property",
        "enable.idempotence=false",
        "--property",
        "parse.key=true",
        input="k1\tone\nk2\ttwo\nk3\tthree\n",
    )
    assert produced.returncode == 0, produced.stderr
    rows = labkit_read(kafka_broker, unique_topic, 1, 3)
    assert [(o, k, v) for _p, o, k, v, _h in rows] == [
        (0, b"k1", b"one"),
        (1, b"k2", b"two"),
        (2, b"k3", b"three"),
    ]
    consumed = run_tool(
        "kafka-console-consumer.sh",
        "--bootstrap-server",
        kafka_broker.bootstrap,
        "--topic",
        unique_topic,
        "--partition",
        "0",
        "--offset",
        "earliest",
        "--max-messages",
        "3",
        "--property",
        "print.key=true",
        "--timeout-ms",
        "30000",
    )
    assert consumed.returncode == 0, consumed.stderr
    assert consumed.stdout.splitlines() == ["k1\tone", "k2\ttwo", "k3\tthree"]
