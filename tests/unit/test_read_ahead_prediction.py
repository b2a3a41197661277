"""read_ahead.py: which fetch a Kafka consumer will send next, and when there is none."""

from __future__ import annotations

from labkit.kafka import read_ahead
from labkit.protocol.records import encode_batch


def batches(first: int, count: int, per_batch: int = 5) -> bytes:
    """Labkit batches holding offsets first .. first+count-1."""
    return b"".join(
        encode_batch(
            list(range(1000, 1000 + per_batch)), None, [b"v"] * per_batch, base_offset=start
        )
        for start in range(first, first + count, per_batch)
    )


def header(*rows) -> dict:
    return {
        "max_wait_ms": 500,
        "min_bytes": 1,
        "max_bytes": 1 << 20,
        "partitions": [list(row) for row in rows],
        "client_id": "c",
    }


def reply(*rows) -> dict:
    """rows: (topic, partition, error, high watermark, log start)."""
    return {"partitions": [list(row) for row in rows]}


def test_the_next_fetch_moves_each_answered_partition_past_its_last_batch():
    asked = header(["t", 0, 0, 4096, -1], ["t", 1, 7, 4096, -1], ["u", 0, 3, 4096, 5])
    answer = reply(["t", 0, 0, 100, 0], ["t", 1, 0, 7, 0], ["u", 0, 0, 50, 0])
    nxt = read_ahead.next_fetch(asked, answer, [batches(0, 20), b"", batches(3, 10)])
    assert nxt is not None
    assert nxt["partitions"] == [
        ["t", 0, 20, 4096, -1],
        ["t", 1, 7, 4096, -1],
        ["u", 0, 13, 4096, 5],
    ]
    assert (nxt["max_wait_ms"], nxt["min_bytes"]) == (0, 0)  # never parked
    assert nxt["client_id"] == "c"
    assert nxt["max_bytes"] == 1 << 20
    assert asked["partitions"][0][2] == 0  # the request sent is left as it was


def test_nothing_to_read_ahead_when_every_answered_partition_reached_its_high_watermark():
    asked = header(["t", 0, 0, 4096, -1], ["t", 1, 0, 4096, -1])
    answer = reply(["t", 0, 0, 20, 0], ["t", 1, 0, 0, 0])
    assert read_ahead.next_fetch(asked, answer, [batches(0, 20), b""]) is None


def test_no_read_ahead_after_an_error_a_throttle_or_an_answer_that_does_not_match():
    asked = header(["t", 0, 0, 4096, -1])
    data = [batches(0, 10)]
    ok = reply(["t", 0, 0, 100, 0])
    assert read_ahead.next_fetch(asked, ok, data) is not None
    assert read_ahead.next_fetch(asked, reply(["t", 0, 1, 100, 0]), data) is None
    assert read_ahead.next_fetch(asked, {**ok, "error": 3}, data) is None
    assert read_ahead.next_fetch(asked, {**ok, "throttle_time_ms": 200}, data) is None
    assert read_ahead.next_fetch(asked, None, data) is None
    assert read_ahead.next_fetch(asked, ok, []) is None  # a payload per partition, or none
    garbage = [b"\xff" * 40]  # bytes that do not frame: the partition stays where it was
    assert read_ahead.next_fetch(asked, ok, garbage) is None


def test_the_key_ignores_how_long_to_wait_but_not_what_to_read():
    a = header(["t", 0, 20, 4096, -1])
    assert read_ahead.key(a) == read_ahead.key({**a, "max_wait_ms": 0, "min_bytes": 0})
    assert read_ahead.key(a) != read_ahead.key(header(["t", 0, 21, 4096, -1]))
    assert read_ahead.key(a) != read_ahead.key(header(["t", 0, 20, 1024, -1]))
    assert read_ahead.key(a) != read_ahead.key({**a, "max_bytes": 10})


def test_a_read_ahead_answer_is_kept_only_with_records_and_no_error():
    data = [batches(0, 5)]
    assert read_ahead.usable(reply(["t", 0, 0, 9, 0]), data)
    assert not read_ahead.usable(reply(["t", 0, 0, 9, 0]), [b""])
    assert not read_ahead.usable(reply(["t", 0, 6, 9, 0]), data)
    assert not read_ahead.usable({**reply(["t", 0, 0, 9, 0]), "throttle_time_ms": 5}, data)
    assert not read_ahead.usable(None, data)
