"""PartitionLog: append, read from any offset, roll, restart, offset_for_timestamp."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labkit.errors import (
    CorruptRecordError,
    KafkaStorageError,
    MessageSizeTooLargeError,
    OffsetOutOfRangeError,
)
from labkit.log import LogConfig, PartitionLog
from labkit.protocol import records
from labkit.testing.clock import FakeClock

T0 = 1_700_000_000_000


def batch(values, ts=T0, keys=None, timestamps=None):
    """A produced batch (base offset 0) and its validated header."""
    values = [v if isinstance(v, bytes) or v is None else str(v).encode() for v in values]
    timestamps = timestamps or [ts] * len(values)
    data = records.encode_batch(timestamps, keys, values)
    return data, records.validate_batch(data)


def decode_all(data: bytes):
    """(offset, value) of every record in a read result (which must be whole batches)."""
    out = []
    spans = records.split_batches(data)
    assert not spans or spans[-1][1] == len(data), "read returned a partial batch"
    for start, _end in spans:
        records.validate_batch(data, start, produced=False)
        b = records.decode_batch(data, start)
        out.extend(zip(b.offsets, b.values, strict=True))
    return out


def read_all(plog: PartitionLog, start: int | None = None, max_bytes: int = 1 << 20):
    offset = plog.log_start_offset if start is None else start
    out = []
    while offset < plog.log_end_offset:
        got = [r for r in decode_all(plog.read(offset, max_bytes)) if r[0] >= offset]
        if not got:
            break
        out.extend(got)
        offset = got[-1][0] + 1
    return out


@pytest.fixture
def clock():
    return FakeClock(start_ms=T0)


def open_log(path, clock, **config):
    return PartitionLog.open(path, LogConfig(**config), clock)


def test_new_log_is_empty_and_kafka_named(tmp_path, clock):
    plog = open_log(tmp_path / "t-0", clock)
    assert (plog.log_start_offset, plog.log_end_offset) == (0, 0)
    assert plog.read(0, 1000) == b""
    assert sorted(p.name for p in (tmp_path / "t-0").iterdir()) == [
        "00000000000000000000.index",
        "00000000000000000000.log",
        "00000000000000000000.timeindex",
    ]
    plog.close()


def test_append_assigns_offsets_and_stamps_them(tmp_path, clock):
    plog = open_log(tmp_path / "t-0", clock)
    assert plog.append(*batch(["a", "b", "c"])) == 0
    assert plog.append(*batch(["d"])) == 3
    assert plog.log_end_offset == 4
    data = plog.read(0, 1 << 20)
    assert records.read_header(data).base_offset == 0
    assert decode_all(data) == [(0, b"a"), (1, b"b"), (2, b"c"), (3, b"d")]
    plog.close()


def test_append_keeps_the_batch_bytes_except_the_base_offset(tmp_path, clock):
    plog = open_log(tmp_path / "t-0", clock)
    plog.append(*batch(["x"]))
    data, header = batch(["payload"], keys=[b"k"])
    plog.append(data, header)
    stored = plog.read(1, 1 << 20)
    assert stored[8:] == data[8:]
    assert records.read_header(stored).base_offset == 1
    plog.close()


def test_read_from_every_offset_across_segments(tmp_path, clock):
    plog = open_log(tmp_path / "t-0", clock, segment_bytes=600, index_interval_bytes=150)
    expected = []
    for i in range(40):
        values = [f"v{i}-{j}" for j in range(i % 4 + 1)]
        base = plog.append(*batch(values))
        expected.extend((base + j, v.encode()) for j, v in enumerate(values))
    assert len(plog.segments()) > 3
    for offset in range(plog.log_end_offset):
        got = decode_all(plog.read(offset, 200))
        assert got, offset
        first = next(r for r in got if r[0] >= offset)
        assert first == expected[offset]
        assert got[0][0] <= offset  # the first batch holds the offset (or starts before it)
    assert read_all(plog) == expected
    plog.close()


def test_read_returns_whole_batches_within_max_bytes(tmp_path, clock):
    plog = open_log(tmp_path / "t-0", clock, index_interval_bytes=100)
    sizes = []
    for i in range(20):
        data, header = batch([f"value-{i}" * 5] * 3)
        plog.append(data, header)
        sizes.append(len(data))
    data = plog.read(0, sizes[0] * 5 + 10)
    assert len(data) == sum(sizes[:5])
    assert len(decode_all(data)) == 15


def test_read_returns_one_whole_batch_even_if_larger_than_max_bytes(tmp_path, clock):
    plog = open_log(tmp_path / "t-0", clock)
    data, header = batch(["x" * 5000])
    plog.append(data, header)
    plog.append(*batch(["y"]))
    assert plog.read(0, 10) == plog.read(0, len(data))
    assert len(plog.read(0, 10)) == len(data)


def test_read_out_of_range(tmp_path, clock):
    plog = open_log(tmp_path / "t-0", clock)
    plog.append(*batch(["a", "b"]))
    assert plog.read(2, 100) == b""
    with pytest.raises(OffsetOutOfRangeError) as info:
        plog.read(3, 100)
    assert "[0, 2]" in str(info.value)
    with pytest.raises(OffsetOutOfRangeError):
        plog.read(-1, 100)


def test_roll_by_size(tmp_path, clock):
    plog = open_log(tmp_path / "t-0", clock, segment_bytes=500)
    for i in range(10):
        plog.append(*batch([f"record-{i}" * 10]))
    segs = plog.segments()
    assert len(segs) > 2
    assert all(s.size_bytes <= 500 for s in segs)
    assert [s.base_offset for s in segs] == sorted(s.base_offset for s in segs)
    assert segs[-1].active
    assert not any(s.active for s in segs[:-1])
    names = sorted(p.name for p in (tmp_path / "t-0").glob("*.log"))
    assert names == [f"{s.base_offset:020d}.log" for s in segs]


def test_a_batch_larger_than_a_segment_gets_a_segment_of_its_own(tmp_path, clock):
    plog = open_log(tmp_path / "t-0", clock, segment_bytes=100)
    plog.append(*batch(["a"]))
    plog.append(*batch(["b" * 300]))
    plog.append(*batch(["c"]))
    assert [s.base_offset for s in plog.segments()] == [0, 1, 2]
    assert [v for _, v in read_all(plog)] == [b"a", b"b" * 300, b"c"]


def test_roll_by_age_uses_the_clock(tmp_path, clock):
    plog = open_log(tmp_path / "t-0", clock, segment_ms=1000)
    plog.append(*batch(["a"]))
    clock.advance(0.5)
    plog.append(*batch(["b"]))
    assert len(plog.segments()) == 1
    clock.advance(0.5)
    plog.append(*batch(["c"]))
    assert [s.base_offset for s in plog.segments()] == [0, 2]
    clock.advance(10)  # an idle log does not roll by itself...
    assert len(plog.segments()) == 2
    plog.append(*batch(["d"]))  # ...only when the next batch comes
    assert [s.base_offset for s in plog.segments()] == [0, 2, 3]


def test_max_message_bytes(tmp_path, clock):
    plog = open_log(tmp_path / "t-0", clock, max_message_bytes=200)
    plog.append(*batch(["small"]))
    with pytest.raises(MessageSizeTooLargeError) as info:
        plog.append(*batch(["x" * 500]))
    assert "max.message.bytes=200" in str(info.value)
    assert plog.log_end_offset == 1


def test_header_that_disagrees_with_the_bytes_is_rejected(tmp_path, clock):
    plog = open_log(tmp_path / "t-0", clock)
    data, header = batch(["abc"])
    with pytest.raises(CorruptRecordError):
        plog.append(data + b"extra", header)
    assert plog.log_end_offset == 0


def test_restart_keeps_data_offsets_and_segments(tmp_path, clock):
    plog = open_log(tmp_path / "t-0", clock, segment_bytes=400, index_interval_bytes=64)
    for i in range(30):
        plog.append(*batch([f"v{i}"] * 2))
    before = read_all(plog)
    segments = [(s.base_offset, s.size_bytes, s.last_timestamp) for s in plog.segments()]
    plog.close()
    with pytest.raises(KafkaStorageError):
        plog.append(*batch(["closed"]))
    plog = open_log(tmp_path / "t-0", clock, segment_bytes=400, index_interval_bytes=64)
    assert read_all(plog) == before
    assert [(s.base_offset, s.size_bytes, s.last_timestamp) for s in plog.segments()] == segments
    assert plog.append(*batch(["after"])) == 60
    plog.close()


def test_missing_index_files_are_rebuilt(tmp_path, clock):
    d = tmp_path / "t-0"
    plog = open_log(d, clock, segment_bytes=600, index_interval_bytes=100)
    for i in range(40):
        plog.append(*batch([f"v{i}"] * 3, ts=T0 + i))
    before = read_all(plog)
    plog.close()
    index_bytes = {p.name: p.read_bytes() for p in d.glob("*index")}
    assert any(index_bytes.values())
    for p in d.glob("*index"):
        p.unlink()
    plog = open_log(d, clock, segment_bytes=600, index_interval_bytes=100)
    assert read_all(plog) == before
    for offset in range(0, 120, 7):
        assert (
            next(r for r in decode_all(plog.read(offset, 100)) if r[0] >= offset) == before[offset]
        )
    assert plog.offset_for_timestamp(T0 + 20) == (60, T0 + 20)
    sealed = [s for s in plog.segments() if not s.active]
    for s in sealed:  # rebuilt files are identical to the ones written at roll
        stem = f"{s.base_offset:020d}"
        assert (d / f"{stem}.index").read_bytes() == index_bytes[f"{stem}.index"]
        assert (d / f"{stem}.timeindex").read_bytes() == index_bytes[f"{stem}.timeindex"]


def test_garbage_index_files_are_rebuilt(tmp_path, clock):
    d = tmp_path / "t-0"
    plog = open_log(d, clock, segment_bytes=600, index_interval_bytes=100)
    for i in range(40):
        plog.append(*batch([f"v{i}"] * 3, ts=T0 + i))
    before = read_all(plog)
    plog.close()
    first = d / "00000000000000000000.index"
    first.write_bytes(b"\x01\x00\x00\x00\x10\x00\x00\x00" * 3)  # entries that do not increase
    (d / "00000000000000000000.timeindex").write_bytes(b"junk")
    plog = open_log(d, clock, segment_bytes=600, index_interval_bytes=100)
    assert read_all(plog) == before
    assert plog.offset_for_timestamp(T0 + 3) == (9, T0 + 3)


def test_offset_for_timestamp(tmp_path, clock):
    plog = open_log(tmp_path / "t-0", clock, segment_bytes=700, index_interval_bytes=100)
    # timestamps rise by 10 per record, with one record out of order per batch
    expected = []
    for i in range(30):
        ts = [T0 + 30 * i, T0 + 30 * i + 20, T0 + 30 * i + 10]
        base = plog.append(*batch(["a", "b", "c"], timestamps=ts))
        expected.extend(zip(range(base, base + 3), ts, strict=True))
    assert len(plog.segments()) > 2
    for target in range(T0 - 5, T0 + 30 * 30 + 5, 7):
        want = next(((o, t) for o, t in expected if t >= target), None)
        assert plog.offset_for_timestamp(target) == want, target
    assert plog.offset_for_timestamp(T0 + 10**9) is None


def test_offset_for_timestamp_after_restart_uses_sealed_segments(tmp_path, clock):
    plog = open_log(tmp_path / "t-0", clock, segment_bytes=300)
    for i in range(20):
        plog.append(*batch([f"r{i}"], ts=T0 + 1000 * i))
    plog.close()
    plog = open_log(tmp_path / "t-0", clock, segment_bytes=300)
    assert plog.offset_for_timestamp(T0 + 12_500) == (13, T0 + 13_000)
    assert plog.offset_for_timestamp(0) == (0, T0)


def test_segments_info(tmp_path, clock):
    plog = open_log(tmp_path / "t-0", clock, segment_bytes=300)
    assert plog.segments()[0].first_timestamp == -1  # empty
    for i in range(6):
        plog.append(*batch([f"record-{i}" * 5], ts=T0 + i))
    infos = plog.segments()
    assert infos[0].first_timestamp == T0
    assert all(s.first_timestamp <= s.last_timestamp for s in infos)
    assert infos[-1].next_offset == plog.log_end_offset == 6
    assert sum(s.size_bytes for s in infos) == plog.size_bytes()
    assert all(s.path.exists() for s in infos)


def test_update_config_applies_to_the_next_append(tmp_path, clock):
    plog = open_log(tmp_path / "t-0", clock)
    plog.append(*batch(["a" * 100]))
    plog.update_config(LogConfig(segment_bytes=100))
    assert plog.config.segment_bytes == 100
    plog.append(*batch(["b" * 100]))
    assert len(plog.segments()) == 2


def test_flush_and_delete(tmp_path, clock):
    plog = open_log(tmp_path / "t-0", clock, segment_bytes=200)
    for i in range(5):
        plog.append(*batch([f"v{i}" * 20]))
    plog.flush()
    plog.flush()  # nothing pending: fine
    plog.delete()
    assert not (tmp_path / "t-0").exists()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    sizes=st.lists(st.tuples(st.integers(1, 5), st.integers(0, 300)), min_size=1, max_size=30),
    segment_bytes=st.integers(100, 3000),
    interval=st.integers(0, 600),
    max_bytes=st.integers(1, 2000),
)
def test_any_log_reads_back_from_any_offset(
    tmp_path_factory, sizes, segment_bytes, interval, max_bytes
):
    clock = FakeClock(start_ms=T0)
    plog = open_log(
        tmp_path_factory.mktemp("p"),
        clock,
        segment_bytes=segment_bytes,
        index_interval_bytes=interval,
    )
    expected = []
    for n, size in sizes:
        values = [bytes([65 + len(expected) % 26]) * size for _ in range(n)]
        base = plog.append(*batch(values))
        expected.extend((base + j, v) for j, v in enumerate(values))
    for offset in range(len(expected)):
        got = decode_all(plog.read(offset, max_bytes))
        assert next(r for r in got if r[0] >= offset) == expected[offset]
    assert read_all(plog, max_bytes=max_bytes) == expected
    plog.close()


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc (Linux)")
def test_sealed_segments_hold_no_file_descriptor(tmp_path, clock):
    def open_fds():
        return len(os.listdir("/proc/self/fd"))

    before = open_fds()
    plog = open_log(tmp_path / "t-0", clock, segment_bytes=100)
    for i in range(50):
        plog.append(*batch([f"v{i}" * 30]))
    assert len(plog.segments()) == 50
    assert open_fds() - before <= 2
    assert len(read_all(plog)) == 50
    plog.close()
    reopened = open_log(tmp_path / "t-0", clock, segment_bytes=100)
    assert open_fds() - before <= 2
    assert len(read_all(reopened)) == 50
    reopened.close()
    assert open_fds() == before
