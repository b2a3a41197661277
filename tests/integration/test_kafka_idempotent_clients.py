"""Idempotent Kafka producers through the Kafka listener (issue 13, scope 3): the same
Produce frames sent twice are stored once; kafka-python 3.0.12 (idempotence on by
default), confluent-kafka with enable.idempotence=true and Apache Kafka's own Java
producer tools produce every record exactly once."""

from __future__ import annotations

import socket
import time

import pytest
from confluent_kafka import Producer as ConfluentProducer
from kafka import KafkaProducer as KpProducer
from kafka.record.default_records import DefaultRecordBatchBuilder as KpBuilder
from kio.schema.errors import ErrorCode

from labkit.testing import BrokerProcess
from labkit.testing.apache_kafka import run_tool
from tests.integration.client_helpers import create_topic
from tests.integration.test_kafka_produce_fetch import labkit_read
from tests.raw_connections import KafkaConnection

pytestmark = pytest.mark.usefixtures("kafka_python_garbage")

WAIT_S = 30
NOW = int(time.time() * 1000)


@pytest.fixture(scope="module")
def kafka_broker(tmp_path_factory):
    with BrokerProcess(data_dir=tmp_path_factory.mktemp("kafka-idempotent")) as proc:
        yield proc


def idempotent_batch(values, producer_id: int, sequence: int, epoch: int = 0) -> bytes:
    builder = KpBuilder(
        magic=2,
        compression_type=0,
        is_transactional=False,
        producer_id=producer_id,
        producer_epoch=epoch,
        base_sequence=sequence,
        batch_size=1 << 20,
    )
    for offset, value in enumerate(values):
        builder.append(offset, timestamp=NOW, key=None, value=value, headers=[])
    return bytes(builder.build())


def test_the_same_produce_frames_twice_are_stored_once(kafka_broker, unique_topic):
    create_topic(kafka_broker, unique_topic)
    with socket.create_connection(("127.0.0.1", kafka_broker.port), timeout=WAIT_S) as s:
        conn = KafkaConnection(s)
        first = idempotent_batch([b"a", b"b", b"c"], producer_id=777_000, sequence=0)
        answers = [conn.produce(first, topic=unique_topic) for _ in range(2)]
        assert [(a.error_code, a.base_offset) for a in answers] == [(ErrorCode.none, 0)] * 2
        gap = conn.produce(idempotent_batch([b"x"], 777_000, 5), topic=unique_topic)
        assert gap.error_code == ErrorCode.out_of_order_sequence_number
        following = conn.produce(idempotent_batch([b"x"], 777_000, 3), topic=unique_topic)
        assert (following.error_code, following.base_offset) == (ErrorCode.none, 3)
        bumped = conn.produce(idempotent_batch([b"y"], 777_000, 0, epoch=1), topic=unique_topic)
        assert (bumped.error_code, bumped.base_offset) == (ErrorCode.none, 4)  # a new epoch
        stale = conn.produce(idempotent_batch([b"z"], 777_000, 4, epoch=0), topic=unique_topic)
        assert stale.error_code == ErrorCode.invalid_producer_epoch
    values = [row[3] for row in labkit_read(kafka_broker, unique_topic, 1, 5)]
    assert values == [b"a", b"b", b"c", b"x", b"y"]


def test_kafka_python_with_its_default_idempotence(kafka_broker, unique_topic):
    create_topic(kafka_broker, unique_topic, 3)
    producer = KpProducer(bootstrap_servers=kafka_broker.bootstrap, linger_ms=5)
    assert producer.config["enable_idempotence"] is True
    try:
        futures = [
            producer.send(unique_topic, value=b"kp-%d" % i, partition=i % 3) for i in range(300)
        ]
        producer.flush(WAIT_S)
        offsets = sorted((f.get(WAIT_S).partition, f.get(WAIT_S).offset) for f in futures)
        assert offsets == sorted((p, o) for p in range(3) for o in range(100))
        assert producer._transaction_manager.producer_id_and_epoch.producer_id >= 0
    finally:
        producer.close(5)
    values = sorted(row[3] for row in labkit_read(kafka_broker, unique_topic, 3, 301))
    assert values == sorted(b"kp-%d" % i for i in range(300))


def test_confluent_kafka_with_enable_idempotence(kafka_broker, unique_topic):
    create_topic(kafka_broker, unique_topic, 2)
    producer = ConfluentProducer(
        {"bootstrap.servers": kafka_broker.bootstrap, "enable.idempotence": True}
    )
    errors = []
    for i in range(500):
        producer.produce(
            unique_topic,
            value=b"ck-%d" % i,
            partition=i % 2,
            on_delivery=lambda err, _msg: err and errors.append(err),
        )
        producer.poll(0)
    assert producer.flush(WAIT_S) == 0
    assert errors == []
    values = sorted(row[3] for row in labkit_read(kafka_broker, unique_topic, 2, 501))
    assert values == sorted(b"ck-%d" % i for i in range(500))


def test_apache_kafkas_console_producer_and_perf_test_idempotent_by_default(
    kafka_broker, unique_topic
):
    create_topic(kafka_broker, unique_topic)
    lines = "".join(f"line-{i}\n" for i in range(50))
    done = run_tool(
        "kafka-console-producer.sh",
        "--bootstrap-server",
        kafka_broker.bootstrap,
        "--topic",
        unique_topic,
        "--producer-property",
        "enable.idempotence=true",
        input=lines,
    )
    assert done.returncode == 0, done.stderr
    perf = run_tool(
        "kafka-producer-perf-test.sh",
        "--topic",
        unique_topic,
        "--num-records",
        "20000",
        "--record-size",
        "100",
        "--throughput",
        "-1",
        "--producer-props",
        f"bootstrap.servers={kafka_broker.bootstrap}",
        "acks=all",
        "enable.idempotence=true",
    )
    assert perf.returncode == 0, perf.stderr
    assert "20000 records sent" in perf.stdout, perf.stdout
    rows = labkit_read(kafka_broker, unique_topic, 1, 20051)
    assert [row[3] for row in rows[:50]] == [b"line-%d" % i for i in range(50)]
    assert len(rows) == 20050  # nothing twice


def test_kafka_python_across_a_broker_kill_stores_each_record_once(tmp_path, unique_topic):
    """kafka-python 3.0.12's defaults (idempotence, unlimited retries) while the broker is
    killed (-9) and restarted under load: its retries are recognised, nothing is lost."""
    broker = BrokerProcess(data_dir=tmp_path / "data").start()
    total = 3000
    try:
        create_topic(broker, unique_topic, 2)
        producer = KpProducer(
            bootstrap_servers=broker.bootstrap,
            linger_ms=2,
            request_timeout_ms=5000,
            reconnect_backoff_ms=100,
        )
        try:
            futures = []
            for i in range(total):
                futures.append(producer.send(unique_topic, value=b"kp-%d" % i, partition=i % 2))
                if i == total // 2:
                    broker.kill()
                    broker._fixed_port = True
                    broker.start()
                if i % 300 == 0:
                    time.sleep(0.02)  # spread the sends around the restart
            producer.flush(60)
            offsets = {(f.get(WAIT_S).partition, f.get(WAIT_S).offset) for f in futures}
        finally:
            producer.close(5)
        assert len(offsets) == total
        values = [row[3] for row in labkit_read(broker, unique_topic, 2, total + 1)]
        assert sorted(values) == sorted(b"kp-%d" % i for i in range(total))  # once each
    finally:
        broker.close()
