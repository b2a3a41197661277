"""The Produce fast path (labkit/kafka/batch_runs.py) against the reference reader.

Every batch is read twice, by ``batches._read_records`` with the runs (the fast path,
then the reference loop for what it leaves) and without (the reference loop alone): the
two must give the same records, or the same error. Batches come from kafka-python's
builder and from labkit's own (``labkit_to_kafka``), then some are broken byte by byte.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.record.default_records import DefaultRecordBatchBuilder as KpBuilder

from labkit.errors import InvalidRecordError
from labkit.kafka import batch_runs
from labkit.kafka import batches as kb
from labkit.protocol import records

BASE_TS = 1_765_000_000_000


def kafka_records(recs) -> tuple[bytes, int, int]:
    """(records bytes, count, base timestamp) of a Kafka batch of ``recs``
    [(timestamp, key, value, headers)] built by kafka-python."""
    builder = KpBuilder(
        magic=2,
        compression_type=0,
        is_transactional=False,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 26,
    )
    for offset, (ts, key, value, headers) in enumerate(recs):
        builder.append(offset, timestamp=ts, key=key, value=value, headers=headers)
    raw = bytes(builder.build())
    return raw[61:], len(recs), kb.read_kafka_header(raw).base_timestamp


def outcome(data: bytes, count: int, base: int, runs: bool):
    try:
        got = kb._read_records(data, count, base, runs=runs)
    except (InvalidRecordError, IndexError) as exc:  # IndexError: kafka_to_labkit reports it
        return type(exc), str(exc)
    if got.value_lengths is not None:  # known when the runs read every record
        assert got.value_lengths == [-1 if v is None else len(v) for v in got.values]
    return got._replace(value_lengths=None)


def assert_same(data: bytes, count: int, base: int):
    fast = outcome(data, count, base, True)
    assert fast == outcome(data, count, base, False)
    return fast


# records in runs: a few shapes one after another, each repeated
shapes = st.tuples(
    st.sampled_from([None, b"", b"k", b"key-0123456789" * 10]),  # key (None: null)
    st.sampled_from([None, 0, 1, 62, 63, 64, 100, 300, 8191, 8192]),  # value size
    st.sampled_from([0, 1, 63, 64, 65, 8191, 8192, 1 << 20]),  # timestamp step (ms)
    st.booleans(),  # headers
)
runs_of_records = st.lists(st.tuples(shapes, st.integers(1, 80)), min_size=1, max_size=4)


def expand(runs, seed: int):
    rng = random.Random(seed)
    recs = []
    ts = BASE_TS
    for (key, size, step, headers), repeat in runs:
        for _ in range(repeat):
            value = None if size is None else rng.randbytes(size)
            recs.append((ts, key, value, [("h", b"x")] if headers else []))
            ts += rng.choice((0, step))
    return recs


@settings(max_examples=150, deadline=None)
@given(runs_of_records, st.integers(0, 1000))
def test_runs_of_shapes_read_as_the_reference_reads_them(runs, seed):
    data, count, base = kafka_records(expand(runs, seed))
    got = assert_same(data, count, base)
    assert len(got.values) == count


@settings(max_examples=150, deadline=None)
@given(runs_of_records, st.integers(0, 1000), st.data())
def test_broken_bytes_give_the_reference_readers_answer(runs, seed, data_strategy):
    data, count, base = kafka_records(expand(runs, seed))
    broken = bytearray(data)
    for _ in range(data_strategy.draw(st.integers(1, 3))):
        at = data_strategy.draw(st.integers(0, len(broken) - 1))
        broken[at] = data_strategy.draw(st.integers(0, 255))
    cut = data_strategy.draw(st.integers(0, 8))
    claimed = count + data_strategy.draw(st.sampled_from([0, 0, 0, -1, 1]))
    assert_same(bytes(broken[: len(broken) - cut]), max(claimed, 0), base)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.none() | st.binary(max_size=3), min_size=1, max_size=300),
    st.binary(min_size=1, max_size=40),
    st.integers(0, 300),
)
def test_labkit_built_batches_and_single_byte_changes_agree(values, value, step):
    """labkit's own builder (the Fetch direction) makes canonical batches; a byte changed
    anywhere (a varint made long, a length off by one) must not fool the runs."""
    timestamps = [BASE_TS + i * step // 7 for i in range(len(values))]
    stored = records.encode_batch(timestamps, None, [value] * len(values))
    raw = kb.labkit_to_kafka(stored)
    data, count, base = raw[61:], len(values), BASE_TS
    assert_same(data, count, base)
    rng = random.Random(len(values) * 31 + step)
    for _ in range(20):
        broken = bytearray(data)
        broken[rng.randrange(len(broken))] ^= rng.choice((0x01, 0x80, 0xFF, 0x7F))
        assert_same(bytes(broken), count, base)


def test_a_producers_batch_is_read_by_the_runs_whole():
    """What librdkafka sends at speed: 5,000 records of 100 B, no keys, timestamps a few
    ms apart (offset deltas of one and two bytes, timestamp deltas of one and two)."""
    rng = random.Random(5)
    recs = [(BASE_TS + i // 40, None, rng.randbytes(100), []) for i in range(5000)]
    data, count, base = kafka_records(recs)
    runs = batch_runs.read_runs(data, count)
    assert (runs.read, runs.pos) == (count, len(data))
    assert runs.values == [value for _ts, _key, value, _headers in recs]
    assert_same(data, count, base)


def test_records_past_65536_and_after_a_short_run_are_left_to_the_reference():
    """Offset deltas of one, two and three bytes are read by the runs (librdkafka sends
    up to 10,000 records a batch); record 65,536 on, the reference reader."""
    count = batch_runs.LAST_OFFSET + 500
    stored = records.encode_batch([BASE_TS] * count, [b"k"] * count, [b"v" * 10] * count)
    data = kb.labkit_to_kafka(stored)[61:]
    assert batch_runs.read_runs(data, count).read == batch_runs.LAST_OFFSET
    assert len(assert_same(data, count, BASE_TS).values) == count
    rng = random.Random(6)
    mixed = [(BASE_TS, None, rng.randbytes(rng.randint(1, 50)), []) for _ in range(300)]
    data, count, base = kafka_records(mixed)
    assert batch_runs.read_runs(data, count).read < batch_runs.MIN_RUN
    assert_same(data, count, base)


def test_a_batch_of_10000_records_is_read_whole_by_the_runs():
    rng = random.Random(7)
    recs = [(BASE_TS + i // 300, None, rng.randbytes(100), []) for i in range(10_000)]
    data, count, base = kafka_records(recs)
    assert batch_runs.read_runs(data, count).read == count
    assert_same(data, count, base)


@pytest.mark.parametrize("headers_at", [0, 40, 299])
def test_a_record_with_headers_ends_the_runs(headers_at):
    recs = [(BASE_TS, None, b"v" * 20, []) for _ in range(300)]
    recs[headers_at] = (BASE_TS, None, b"v" * 20, [("trace", b"1")])
    data, count, base = kafka_records(recs)
    assert batch_runs.read_runs(data, count).read == headers_at
    assert assert_same(data, count, base)[4][headers_at] == [("trace", b"1")]
