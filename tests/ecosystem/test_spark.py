"""Spark Structured Streaming (pyspark 4.2.0 + spark-sql-kafka-0-10 4.2.0) runs the
course's lab against each target: Kafka source, from_json, a watermark and tumbling
windows per store through foreachBatch, and alerts written back with the Kafka sink."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timedelta

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from labkit.ecosystem import spark_transactions

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("kafka_python_garbage")]

# Spark's Kafka source (an admin client for offsets, an assigned consumer) and sink (an
# idempotent producer, Kafka's default since 3.0).
SPARK_APIS = [0, 1, 2, 3, 22]

T0 = datetime(2026, 1, 1, 10, 0, 0)
# (seconds after T0, store, amount) in topic order; read 4 per micro-batch. Batch 3's
# first event (10:00:05, 3100 PLN) is late: older than the watermark by then.
EVENTS = [
    (1, "Warszawa", 100), (2, "Kraków", 200), (3, "Warszawa", 3500), (8, "Gdańsk", 50),
    (11, "Warszawa", 10), (12, "Kraków", 4000), (15, "Warszawa", 20), (19, "Gdańsk", 30),
    (22, "Kraków", 5000), (25, "Warszawa", 1), (28, "Gdańsk", 5), (40, "Wrocław", 7),
    (5, "Warszawa", 3100), (41, "Wrocław", 3), (47, "Kraków", 2), (52, "Warszawa", 9),
]  # fmt: skip

# Windows whose end the watermark (newest event time - 5 s) passed: written once each.
# The late 3100 PLN is in no window; 10:00:40-50 is still open when the input ends.
EXPECTED_WINDOWS = [
    ("10:00:00", "10:00:10", "Gdańsk", 1, 50.0),
    ("10:00:00", "10:00:10", "Kraków", 1, 200.0),
    ("10:00:00", "10:00:10", "Warszawa", 2, 3600.0),
    ("10:00:10", "10:00:20", "Gdańsk", 1, 30.0),
    ("10:00:10", "10:00:20", "Kraków", 1, 4000.0),
    ("10:00:10", "10:00:20", "Warszawa", 2, 30.0),
    ("10:00:20", "10:00:30", "Gdańsk", 1, 5.0),
    ("10:00:20", "10:00:30", "Kraków", 1, 5000.0),
    ("10:00:20", "10:00:30", "Warszawa", 1, 1.0),
]
# Alerts have no state: the late transaction is alerted too.
EXPECTED_ALERTS = [
    ("u03", "ALERT: TX0002 | 3500.00 PLN | Warszawa | elektronika"),
    ("u06", "ALERT: TX0005 | 4000.00 PLN | Kraków | elektronika"),
    ("u09", "ALERT: TX0008 | 5000.00 PLN | Kraków | elektronika"),
    ("u13", "ALERT: TX0012 | 3100.00 PLN | Warszawa | elektronika"),
]


@pytest.fixture(scope="module")
def spark():
    """One local[2] session for the module: starting Spark costs ~15-30 s here."""
    from labkit.ecosystem.spark import session

    spark = session("labkit-tests")
    yield spark
    spark.stop()
    _stop_the_jvm()


def _stop_the_jvm() -> None:
    """End Spark's JVM, not only its session: pyspark keeps the JVM for the next session,
    and the Kafka producer Spark's sink caches in it went on reconnecting every second to
    the stopped Kafka for the rest of the test run (its warnings in later tests' output)."""
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    if gateway is None:
        return
    proc = getattr(gateway, "proc", None)
    gateway.shutdown()
    SparkContext._gateway = SparkContext._jvm = None
    if proc is not None:
        proc.stdin.close()  # the gateway server exits at the end of its stdin
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def produce_transactions(bootstrap: str, topic: str) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    try:
        for i, (seconds, store, amount) in enumerate(EVENTS):
            tx = {
                "tx_id": f"TX{i:04d}",
                "user_id": f"u{i + 1:02d}",
                "amount": amount,
                "store": store,
                "category": "elektronika",
                "timestamp": (T0 + timedelta(seconds=seconds)).isoformat(),
            }
            producer.send(topic, json.dumps(tx).encode())
        producer.flush()
    finally:
        producer.close()


def read_all(bootstrap: str, topic: str) -> list[tuple[str, str]]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, consumer_timeout_ms=1000)
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        end = consumer.end_offsets([partition])[partition]
        found: list[tuple[str, str]] = []
        while consumer.position(partition) < end:
            for records in consumer.poll(timeout_ms=1000).values():
                found += [(r.key.decode(), r.value.decode()) for r in records]
        return found
    finally:
        consumer.close()


def test_course_spark_lab_windows_and_alerts(kafka_target, spark, tmp_path):
    kafka_target.require("Spark's Kafka source and sink", SPARK_APIS)
    bootstrap = kafka_target.bootstrap
    topic, alerts_topic = "spark-transactions", "spark-alerts"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, 1, 1), NewTopic(alerts_topic, 1, 1)])
    finally:
        admin.close()
    produce_transactions(bootstrap, topic)

    batches: list[tuple[int, list[dict]]] = []
    queries = spark_transactions.start(
        spark,
        bootstrap,
        tmp_path / "checkpoints",
        lambda rows, batch_id: batches.append((batch_id, rows)),
        topic=topic,
        alerts_topic=alerts_topic,
        available_now=True,
        max_per_batch=4,
    )
    for query in queries:
        assert query.awaitTermination(240), f"query {query.name} still running after 240 s"
        assert query.exception() is None

    written = [
        (r["window_start"], r["window_end"], r["store"], r["count"], r["total"])
        for _, rows in batches
        for r in rows
    ]
    assert sorted(written) == EXPECTED_WINDOWS  # each finished window once, none open
    assert len({batch_id for batch_id, _ in batches}) >= 4  # 16 records, 4 per batch
    assert read_all(bootstrap, alerts_topic) == EXPECTED_ALERTS
