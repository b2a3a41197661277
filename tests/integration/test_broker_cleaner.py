"""Retention and compaction run by the broker's cleaner thread, seen over the wire:
the log start offset moves, a lagging fetch gets OFFSET_OUT_OF_RANGE, a compacted
topic keeps the last value per key."""

from __future__ import annotations

import time

from labkit.protocol.records import decode_batch, encode_batch, split_batches
from labkit.testing import BrokerProcess, RawClient


def now_ms():
    return time.time_ns() // 1_000_000


def earliest(client, topic):
    header, _ = client.request("list_offsets", {"partitions": [[topic, 0, -2]]})
    return header["partitions"][0][3]


def wait_until(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def read_all(client, topic):
    """{key: value} and the record count, reading partition 0 from its start."""
    offset = earliest(client, topic)
    table, count = {}, 0
    while True:
        header, payloads = client.request(
            "fetch",
            {
                "max_wait_ms": 0,
                "min_bytes": 1,
                "max_bytes": 1 << 20,
                "partitions": [[topic, 0, offset, 1 << 20]],
            },
        )
        row = header["partitions"][0]
        assert row[2] == 0, row
        if not payloads[0]:
            return table, count
        for start, _end in split_batches(payloads[0]):
            batch = decode_batch(payloads[0], start)
            for off, key, value in zip(batch.offsets, batch.keys, batch.values, strict=True):
                if off < offset:
                    continue
                count += 1
                if value is None:
                    table.pop(key, None)
                else:
                    table[key] = value
                offset = off + 1


def test_short_retention_drops_old_segments_and_moves_the_log_start(broker):
    with RawClient(broker.bootstrap) as client:
        header, _ = client.request(
            "create_topics",
            {
                "topics": [
                    {
                        "name": "short",
                        "num_partitions": 1,
                        "replication_factor": 1,
                        "configs": {"retention.ms": "1000", "segment.bytes": "512"},
                    }
                ]
            },
        )
        assert header["topics"][0]["error"] == 0
        for i in range(6):  # each ~500-byte batch fills a segment
            header, _ = client.request(
                "produce",
                {"acks": 1, "targets": [["short", 0]]},
                [encode_batch([now_ms()], None, [b"%d" % i + b"." * 420])],
            )
            assert header["results"][0][1] == 0
        assert earliest(client, "short") == 0
        assert wait_until(lambda: earliest(client, "short") >= 5), broker.output()
        header, _ = client.request(
            "fetch",
            {
                "max_wait_ms": 0,
                "min_bytes": 1,
                "max_bytes": 1 << 20,
                "partitions": [["short", 0, 0, 1 << 20]],
            },
        )
        assert header["partitions"][0][2] == 1  # the consumer below the start must reset
        assert header["partitions"][0][4] >= 5  # ...and is told where the log starts now
    assert "log start offset is now" in broker.output()


def test_compaction_keeps_the_last_value_per_key(tmp_path):
    with (
        BrokerProcess(data_dir=tmp_path / "d", config={"log.cleaner.backoff.ms": "200"}) as broker,
        RawClient(broker.bootstrap) as client,
    ):
        header, _ = client.request(
            "create_topics",
            {
                "topics": [
                    {
                        "name": "table",
                        "num_partitions": 1,
                        "replication_factor": 1,
                        "configs": {
                            "cleanup.policy": "compact",
                            "segment.bytes": "512",
                            "delete.retention.ms": "0",
                        },
                    }
                ]
            },
        )
        assert header["topics"][0]["error"] == 0
        expected = {}
        produced = 0
        for round_ in range(8):
            keys = [b"k%d" % k for k in range(4)]
            values = [b"v%d-%d" % (round_, k) if (round_, k) != (7, 0) else None for k in range(4)]
            client.request(
                "produce",
                {"acks": 1, "targets": [["table", 0]]},
                [encode_batch([now_ms()] * 4, keys, values)],
            )
            produced += 4
            for key, value in zip(keys, values, strict=True):
                if value is None:
                    expected.pop(key, None)
                else:
                    expected[key] = value
        assert wait_until(lambda: read_all(client, "table")[1] < produced), broker.output()
        table, _count = read_all(client, "table")
        assert table == expected
        header, _ = client.request("list_offsets", {"partitions": [["table", 0, -1]]})
        assert header["partitions"][0][3] == produced  # offsets never change
