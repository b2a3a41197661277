"""labkit's console tools (installed as kafka-*.sh) against Apache Kafka 4.1.1 (KRaft).

Each tool runs as a student runs it, in a subprocess, with its main commands; what it
did is read back from the broker with kafka-python itself, not with the tool.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import kafka
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("kafka_python_garbage")]
BIN = Path(sys.executable).parent
TIMEOUT_S = 120


def tool(script: str, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "LABKIT_BOOTSTRAP"}
    return subprocess.run(
        [str(BIN / script), *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        input=input,
        env=dict(environ, PYTHONUNBUFFERED="1"),
    )


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def admin(apache_kafka):
    client = kafka.KafkaAdminClient(bootstrap_servers=apache_kafka.bootstrap)
    yield client
    client.close()


def end_offsets(bootstrap: str, topic: str, count: int) -> list[int]:
    tps = [kafka.TopicPartition(topic, p) for p in range(count)]
    with kafka.KafkaConsumer(bootstrap_servers=bootstrap) as consumer:
        ends = consumer.end_offsets(tps)
        starts = consumer.beginning_offsets(tps)
    return [ends[tp] - starts[tp] for tp in tps]


def test_topics_create_list_describe_alter_delete(apache_kafka, admin, unique_topic):
    boot = ("--bootstrap-server", apache_kafka.bootstrap)
    created = ok(
        tool("kafka-topics.sh", *boot, "--create", "--topic", unique_topic, "--partitions", "2")
    )
    assert created.strip() == f"Created topic {unique_topic}."
    (described,) = admin.describe_topics([unique_topic])
    assert len(described["partitions"]) == 2
    assert unique_topic in ok(tool("kafka-topics.sh", *boot, "--list")).split()

    ok(tool("kafka-topics.sh", *boot, "--alter", "--topic", unique_topic, "--partitions", "3"))
    text = ok(tool("kafka-topics.sh", *boot, "--describe", "--topic", unique_topic))
    assert f"Topic: {unique_topic}\t" in text
    assert "PartitionCount: 3" in text
    assert [line.split("Partition: ")[1].split()[0] for line in text.splitlines()[1:]] == [
        "0",
        "1",
        "2",
    ]
    # labkit's extras, from each partition's leader
    assert all("LogStartOffset: 0\tLogEndOffset: 0" in line for line in text.splitlines()[1:])

    again = tool("kafka-topics.sh", *boot, "--create", "--topic", unique_topic)
    assert again.returncode == 1
    assert f"Topic '{unique_topic}' already exists." in again.stdout + again.stderr

    ok(tool("kafka-topics.sh", *boot, "--delete", "--topic", unique_topic))
    deadline = time.monotonic() + 30
    while unique_topic in admin.list_topics() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert unique_topic not in admin.list_topics()
    missing = tool("kafka-topics.sh", *boot, "--describe", "--topic", unique_topic)
    assert missing.returncode == 1
    assert "does not exist" in missing.stdout + missing.stderr


def test_console_producer_and_consumer_with_keys_and_a_group(apache_kafka, admin, unique_topic):
    boot = ("--bootstrap-server", apache_kafka.bootstrap)
    ok(tool("kafka-topics.sh", *boot, "--create", "--topic", unique_topic, "--partitions", "1"))
    lines = 'anna:{"amount": 12}\nbartek:{"amount": 3400}\nanna:{"amount": 7}\n'
    props = ("--property", "parse.key=true", "--property", "key.separator=:")
    ok(tool("kafka-console-producer.sh", *boot, "--topic", unique_topic, *props, input=lines))

    with kafka.KafkaConsumer(
        unique_topic, bootstrap_servers=apache_kafka.bootstrap, auto_offset_reset="earliest"
    ) as check:
        stored, deadline = [], time.monotonic() + 30
        while len(stored) < 3 and time.monotonic() < deadline:
            for batch in check.poll(timeout_ms=500).values():
                stored.extend((r.key, r.value) for r in batch)
    assert stored == [
        (b"anna", b'{"amount": 12}'),
        (b"bartek", b'{"amount": 3400}'),
        (b"anna", b'{"amount": 7}'),
    ]

    group = f"{unique_topic}-g"
    consumed = tool(
        "kafka-console-consumer.sh",
        *boot,
        "--topic",
        unique_topic,
        "--from-beginning",
        "--max-messages",
        "3",
        "--group",
        group,
        "--property",
        "print.key=true",
    )
    assert ok(consumed).splitlines() == [
        'anna\t{"amount": 12}',
        'bartek\t{"amount": 3400}',
        'anna\t{"amount": 7}',
    ]
    assert "Processed a total of 3 messages" in consumed.stderr
    committed = admin.list_group_offsets({group: None})[group]
    assert committed[kafka.TopicPartition(unique_topic, 0)].offset == 3


def test_consumer_groups_list_describe_reset_delete(apache_kafka, admin, unique_topic):
    boot = ("--bootstrap-server", apache_kafka.bootstrap)
    group = f"{unique_topic}-g"
    admin.create_topics([kafka.admin.NewTopic(unique_topic, 2, 1)])
    with kafka.KafkaProducer(bootstrap_servers=apache_kafka.bootstrap) as producer:
        for n in range(6):
            producer.send(unique_topic, b"%d" % n, partition=n % 2)
        producer.flush()
    ok(
        tool(
            "kafka-console-consumer.sh",
            *boot,
            "--topic",
            unique_topic,
            "--from-beginning",
            "--max-messages",
            "6",
            "--group",
            group,
        )
    )
    assert group in ok(tool("kafka-consumer-groups.sh", *boot, "--list")).split()
    described = ok(tool("kafka-consumer-groups.sh", *boot, "--describe", "--group", group))
    rows = [line.split() for line in described.splitlines() if line.startswith(group)]
    assert sorted((r[1], r[2], r[3], r[4], r[5]) for r in rows) == [
        (unique_topic, "0", "3", "3", "0"),
        (unique_topic, "1", "3", "3", "0"),
    ]

    reset = ("--group", group, "--reset-offsets", "--topic", unique_topic)
    dry = ok(tool("kafka-consumer-groups.sh", *boot, *reset, "--to-earliest", "--dry-run"))
    assert sorted(line.split()[1:4] for line in dry.splitlines() if line.startswith(group)) == [
        [unique_topic, "0", "0"],
        [unique_topic, "1", "0"],
    ]
    committed = admin.list_group_offsets({group: None})[group]
    assert {tp.partition: om.offset for tp, om in committed.items()} == {0: 3, 1: 3}  # dry run
    ok(tool("kafka-consumer-groups.sh", *boot, *reset, "--shift-by", "-2", "--execute"))
    committed = admin.list_group_offsets({group: None})[group]
    assert {tp.partition: om.offset for tp, om in committed.items()} == {0: 1, 1: 1}

    deleted = ok(tool("kafka-consumer-groups.sh", *boot, "--delete", "--group", group))
    assert "successful" in deleted
    assert group not in [g["group_id"] for g in admin.list_groups()]
    missing = tool("kafka-consumer-groups.sh", *boot, "--describe", "--group", group)
    assert missing.returncode == 1
    assert f"Consumer group '{group}' does not exist." in missing.stderr


def test_configs_alter_describe_and_delete_a_topic_config(apache_kafka, admin, unique_topic):
    boot = ("--bootstrap-server", apache_kafka.bootstrap)
    admin.create_topics([kafka.admin.NewTopic(unique_topic, 1, 1)])
    entity = ("--entity-type", "topics", "--entity-name", unique_topic)
    ok(tool("kafka-configs.sh", *boot, *entity, "--alter", "--add-config", "retention.ms=3600000"))

    def topic_configs() -> dict:
        resource = kafka.admin.ConfigResource(kafka.admin.ConfigResourceType.TOPIC, unique_topic)
        answer = admin.describe_configs([resource])  # only values set on the topic
        return {k: v["value"] for k, v in answer["topic"].get(unique_topic, {}).items()}

    assert topic_configs() == {"retention.ms": "3600000"}
    described = ok(tool("kafka-configs.sh", *boot, *entity, "--describe"))
    assert "retention.ms=3600000" in described
    ok(tool("kafka-configs.sh", *boot, *entity, "--alter", "--delete-config", "retention.ms"))
    assert topic_configs() == {}

    quotas = tool(
        "kafka-configs.sh", *boot, "--entity-type", "clients", "--entity-name", "x", "--describe"
    )
    assert quotas.returncode == 1
    assert "labkit-only" in quotas.stderr


def test_delete_records_moves_the_log_start(apache_kafka, admin, unique_topic, tmp_path):
    admin.create_topics([kafka.admin.NewTopic(unique_topic, 1, 1)])
    with kafka.KafkaProducer(bootstrap_servers=apache_kafka.bootstrap) as producer:
        for n in range(5):
            producer.send(unique_topic, b"%d" % n)
        producer.flush()
    plan = tmp_path / "offsets.json"
    plan.write_text(
        json.dumps({"partitions": [{"topic": unique_topic, "partition": 0, "offset": 3}]})
    )
    out = ok(
        tool(
            "kafka-delete-records.sh",
            "--bootstrap-server",
            apache_kafka.bootstrap,
            "--offset-json-file",
            str(plan),
        )
    )
    assert f"partition: {unique_topic}-0\tlow_watermark: 3" in out
    assert end_offsets(apache_kafka.bootstrap, unique_topic, 1) == [2]
