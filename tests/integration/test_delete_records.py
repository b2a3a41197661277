"""DeleteRecords end to end: KafkaAdminClient.delete_records and `labkit delete-records`
against the real broker process; a consumer below the new start is out of range and
resets; the start stays moved after a restart (also after a kill)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from labkit import KafkaAdminClient, KafkaConsumer, KafkaProducer, NewTopic, TopicPartition
from labkit.errors import (
    BrokerResponseError,
    OffsetOutOfRangeError,
    PolicyViolationError,
    UnknownTopicOrPartitionError,
)

TIMEOUT_S = 60


def produce(bootstrap: str, topic: str, count: int, partition: int = 0) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    for i in range(count):  # one batch each: offsets and batches line up
        producer.send(topic, f"v{i}".encode(), partition=partition).get(timeout=10)
    producer.close()


def start_of(bootstrap: str, tp: TopicPartition) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        return consumer.beginning_offsets([tp])[tp]
    finally:
        consumer.close()


def test_delete_fetch_below_and_restart(broker):
    topic = "deleted"
    tp = TopicPartition(topic, 0)
    with KafkaAdminClient(bootstrap_servers=broker.bootstrap) as admin:
        admin.create_topics([NewTopic(topic, 1, 1)])
        produce(broker.bootstrap, topic, 10)
        assert admin.delete_records({tp: 4}) == {
            tp: {"partition_index": 0, "low_watermark": 4, "error_code": 0}
        }
    assert start_of(broker.bootstrap, tp) == 4

    # a consumer positioned below the start is out of range: with a reset policy it resets
    strict = KafkaConsumer(
        bootstrap_servers=broker.bootstrap, auto_offset_reset="none", consumer_timeout_ms=5000
    )
    strict.assign([tp])
    strict.seek(tp, 2)
    with pytest.raises(OffsetOutOfRangeError):  # noqa: PT012 - polls until the error arrives
        for _ in range(50):
            strict.poll(timeout_ms=200)
    strict.close()
    resetting = KafkaConsumer(
        bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=5000
    )
    resetting.assign([tp])
    resetting.seek(tp, 1)
    got = []
    for record in resetting:
        got.append(record.offset)
        if len(got) == 6:
            break
    resetting.close()
    assert got == [4, 5, 6, 7, 8, 9]

    broker.restart()
    assert start_of(broker.bootstrap, tp) == 4
    broker.kill()
    broker.start()
    assert start_of(broker.bootstrap, tp) == 4
    with KafkaAdminClient(bootstrap_servers=broker.bootstrap) as admin:  # -1: everything
        assert admin.delete_records({tp: -1})[tp]["low_watermark"] == 10


def test_errors_are_kafkas(broker):
    with KafkaAdminClient(bootstrap_servers=broker.bootstrap) as admin:
        admin.create_topics(
            [
                NewTopic("t", 2, 1),
                NewTopic("kept", 1, 1, topic_configs={"cleanup.policy": "compact"}),
            ]
        )
        produce(broker.bootstrap, "t", 3)
        with pytest.raises(OffsetOutOfRangeError, match="-1 means"):
            admin.delete_records({TopicPartition("t", 0): 4})
        with pytest.raises(UnknownTopicOrPartitionError):
            admin.delete_records({TopicPartition("t", 7): 0})
        with pytest.raises(PolicyViolationError, match=r"cleanup\.policy"):
            admin.delete_records({TopicPartition("kept", 0): 0})
        with pytest.raises(BrokerResponseError, match=r"nope\(partition=0\).*, t\(partition=0\)"):
            admin.delete_records({TopicPartition("t", 0): 9, TopicPartition("nope", 0): 0})
        # nothing moved by the failed requests; an offset below the start changes nothing
        assert (
            admin.delete_records({TopicPartition("t", 0): 2})[TopicPartition("t", 0)][
                "low_watermark"
            ]
            == 2
        )
        assert (
            admin.delete_records({TopicPartition("t", 0): 1})[TopicPartition("t", 0)][
                "low_watermark"
            ]
            == 2
        )


def test_the_console_tool_prints_kafkas_lines(broker, tmp_path):
    with KafkaAdminClient(bootstrap_servers=broker.bootstrap) as admin:
        admin.create_topics([NewTopic("cli", 1, 1)])
    produce(broker.bootstrap, "cli", 5)
    spec = tmp_path / "offsets.json"
    spec.write_text(
        json.dumps(
            {
                "partitions": [
                    {"topic": "cli", "partition": 0, "offset": 3},
                    {"topic": "cli", "partition": 5, "offset": 0},
                ],
                "version": 1,
            }
        )
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "labkit",
            "delete-records",
            "--bootstrap-server",
            broker.bootstrap,
            "--offset-json-file",
            str(spec),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    lines = result.stdout.splitlines()
    assert lines[:3] == [
        "Executing records delete operation",
        "Records delete operation completed:",
        "partition: cli-0\tlow_watermark: 3",
    ]
    assert lines[3].startswith("partition: cli-5\terror: UnknownTopicOrPartitionError: ")
    assert result.returncode == 1
    assert start_of(broker.bootstrap, TopicPartition("cli", 0)) == 3


def test_a_parked_fetch_below_the_new_start_is_answered_out_of_range(broker):
    from labkit.testing.broker import RawClient

    with KafkaAdminClient(bootstrap_servers=broker.bootstrap) as admin:
        admin.create_topics([NewTopic("parked", 1, 1)])
        produce(broker.bootstrap, "parked", 6)
        with RawClient(broker.bootstrap) as raw:
            # wants far more bytes than exist: parked for up to 30 s
            rid = raw.send(
                "fetch",
                {
                    "max_wait_ms": 30_000,
                    "min_bytes": 1 << 20,
                    "partitions": [["parked", 0, 1, 1 << 20]],
                },
            )
            with pytest.raises(TimeoutError):
                raw.wait_for(rid, timeout=0.5)  # really parked
            admin.delete_records({TopicPartition("parked", 0): 4})
            header, _payloads = raw.wait_for(rid, timeout=20)  # not after the full 30 s
    assert header["partitions"] == [["parked", 0, 1, 6, 4]]  # OFFSET_OUT_OF_RANGE, hw, start
