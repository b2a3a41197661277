"""Apache Kafka's Connect runtime (4.1.1) against each target: FileStreamSource (a
JSON-lines file of transactions -> a topic) and FileStreamSink (alerts -> a file), with
offsets surviving a restart of the worker, standalone and distributed; ``labkit
connect`` starts a worker without a classpath."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic

from labkit.ecosystem.connect import ConnectWorker, file_sink, file_source

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("kafka_python_garbage")]

# What a Connect worker asks of a broker: its producers (idempotent by default), the sink's
# consumer group and the worker's admin client.
CONNECT_APIS = [0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 22]
DISTRIBUTED_APIS = [*CONNECT_APIS, 19, 32]


def transactions(first: int, count: int) -> list[str]:
    stores = ["Warszawa", "Kraków", "Gdańsk", "Wrocław"]
    return [
        json.dumps(
            {
                "tx_id": f"TX{i:04d}",
                "user_id": f"u{i % 20 + 1:02d}",
                "amount": 100.0 + i,
                "store": stores[i % 4],
                "timestamp": f"2026-01-01T10:00:{i % 60:02d}",
            }
        )
        for i in range(first, first + count)
    ]


def create_topics(bootstrap: str, *names: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, 1, 1) for name in names])
    finally:
        admin.close()


def read_topic(bootstrap: str, topic: str) -> list[str]:
    """Every record's value in the one partition of ``topic``, up to its end offset."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, consumer_timeout_ms=1000)
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        end = consumer.end_offsets([partition])[partition]
        values: list[str] = []
        deadline = time.monotonic() + 60
        while consumer.position(partition) < end and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=1000).values():
                values += [r.value.decode() for r in records]
        return values
    finally:
        consumer.close()


def wait_for(what: str, check, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.25)


def send(bootstrap: str, topic: str, values: list[str]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    try:
        for value in values:
            producer.send(topic, value.encode())
        producer.flush()
    finally:
        producer.close()


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def test_standalone_file_source_and_sink_keep_offsets_across_a_restart(kafka_target, tmp_path):
    kafka_target.require("a Kafka Connect worker (producer, sink consumer group)", CONNECT_APIS)
    bootstrap = kafka_target.bootstrap
    tx_topic, alerts_topic = "connect-sa-transactions", "connect-sa-alerts"
    create_topics(bootstrap, tx_topic, alerts_topic)
    source_file, sink_file = tmp_path / "transactions.jsonl", tmp_path / "alerts.txt"
    first, later = transactions(0, 5), transactions(5, 3)
    source_file.write_text("".join(line + "\n" for line in first), encoding="utf-8")
    workers = [
        file_source("tx-in", source_file, tx_topic),
        file_sink("alerts-out", alerts_topic, sink_file),
    ]
    alerts = ["ALERT: TX0001 | 3500.00 PLN | Kraków | elektronika", "ALERT: TX0004 | 4100.00 PLN"]

    with ConnectWorker(bootstrap, tmp_path / "work", workers) as worker:
        wait_for(
            "the source's 5 lines in the topic", lambda: len(read_topic(bootstrap, tx_topic)) >= 5
        )
        send(bootstrap, alerts_topic, alerts)
        wait_for("the 2 alerts in the sink's file", lambda: len(lines(sink_file)) >= 2)
    assert worker.offsets_file.stat().st_size > 0
    assert read_topic(bootstrap, tx_topic) == first
    assert lines(sink_file) == alerts

    # While the worker is down: 3 more transactions in the file, 1 more alert in the topic.
    with source_file.open("a", encoding="utf-8") as more:
        more.write("".join(line + "\n" for line in later))
    send(bootstrap, alerts_topic, ["ALERT: TX0007 | 3999.00 PLN"])

    with ConnectWorker(bootstrap, tmp_path / "work", workers):
        wait_for("8 lines in the topic", lambda: len(read_topic(bootstrap, tx_topic)) >= 8)
        wait_for("3 alerts in the file", lambda: len(lines(sink_file)) >= 3)
    # Stopped cleanly, so everything it would write is written: each line exactly once.
    assert read_topic(bootstrap, tx_topic) == first + later
    assert lines(sink_file) == [*alerts, "ALERT: TX0007 | 3999.00 PLN"]


def test_distributed_worker_keeps_its_state_in_compacted_topics(kafka_target, tmp_path):
    kafka_target.require("a distributed Connect worker (its group, its topics)", DISTRIBUTED_APIS)
    bootstrap = kafka_target.bootstrap
    tx_topic = "connect-dist-transactions"
    create_topics(bootstrap, tx_topic)
    source_file = tmp_path / "transactions.jsonl"
    first, later = transactions(100, 4), transactions(104, 2)
    source_file.write_text("".join(line + "\n" for line in first), encoding="utf-8")
    connector = [file_source("dist-tx-in", source_file, tx_topic)]
    group = "labkit-connect-dist"

    with ConnectWorker(bootstrap, tmp_path / "w1", connector, mode="distributed", group_id=group):
        wait_for("4 lines in the topic", lambda: len(read_topic(bootstrap, tx_topic)) >= 4)

    internal = [f"{group}-configs", f"{group}-offsets", f"{group}-status"]
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        described = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in internal]
        )
    finally:
        admin.close()
    policies = {name: c["cleanup.policy"]["value"] for name, c in described["topic"].items()}
    assert policies == dict.fromkeys(internal, "compact")

    with source_file.open("a", encoding="utf-8") as more:
        more.write("".join(line + "\n" for line in later))
    # A new worker process with no files of its own: the connector's config and its
    # source offsets come back from the topics.
    with ConnectWorker(bootstrap, tmp_path / "w2", [], mode="distributed", group_id=group) as w2:
        w2.wait_running("dist-tx-in", time.monotonic() + 90)
        wait_for("6 lines in the topic", lambda: len(read_topic(bootstrap, tx_topic)) >= 6)
    assert read_topic(bootstrap, tx_topic) == first + later


def test_labkit_connect_command_runs_a_worker_without_a_classpath(kafka_target, tmp_path):
    kafka_target.require("a Kafka Connect worker (producer)", CONNECT_APIS)
    bootstrap = kafka_target.bootstrap
    topic = "connect-cli-transactions"
    create_topics(bootstrap, topic)
    source_file = tmp_path / "tx.jsonl"
    source_file.write_text("".join(line + "\n" for line in transactions(200, 3)), encoding="utf-8")
    command = [
        sys.executable, "-m", "labkit", "connect", "--bootstrap-server", bootstrap,
        "--file-source", f"{source_file}:{topic}", "--work-dir", str(tmp_path / "work"),
        "--rest-port", "0",
    ]  # fmt: skip
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        start_new_session=True,
    )  # fmt: skip
    try:
        started = proc.stdout.readline()
        assert "connectors file-source-" + topic + " RUNNING" in started, proc.stderr.read()
        wait_for("3 lines in the topic", lambda: len(read_topic(bootstrap, topic)) >= 3)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        _out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    assert read_topic(bootstrap, topic) == transactions(200, 3)
    assert (tmp_path / "work" / "connect.offsets").stat().st_size > 0


def test_labkit_connect_without_a_broker_says_so_at_once(tmp_path):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    result = subprocess.run(
        [sys.executable, "-m", "labkit", "connect", "--bootstrap-server",
         f"127.0.0.1:{closed}", "--file-source", "tx.jsonl:t", "--work-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1
    assert f"no Kafka broker answers at 127.0.0.1:{closed}" in result.stderr
    assert "labkit broker" in result.stderr
