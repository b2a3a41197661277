"""Compaction: latest value per key, offsets unchanged, tombstones expire, reads never break."""

from __future__ import annotations

import random
import struct
import threading
import zlib
from pathlib import Path

import pytest

from labkit.log import LogConfig, PartitionLog, SegmentInfo
from labkit.log.compaction import cleanable_count, filter_batch, plan_groups
from labkit.protocol import records
from labkit.testing.clock import FakeClock

T0 = 1_700_000_000_000
DAY = 24 * 3600


def put(plog, clock, pairs):
    """Append one batch of (key, value) pairs (value None = tombstone); returns base offset."""
    keys = [k.encode() if isinstance(k, str) else k for k, _ in pairs]
    values = [v.encode() if isinstance(v, str) else v for _, v in pairs]
    data = records.encode_batch([clock.time_ms()] * len(pairs), keys, values)
    return plog.append(data, records.validate_batch(data))


def scan(plog, start=None):
    """Every (offset, key, value) from ``start`` (default: log start), by reading batches."""
    out = []
    offset = plog.log_start_offset if start is None else start
    while offset < plog.log_end_offset:
        data = plog.read(offset, 1 << 20)
        if not data:
            break
        for begin, _end in records.split_batches(data):
            records.validate_batch(data, begin, produced=False)
            b = records.decode_batch(data, begin)
            out.extend(
                (o, k, v)
                for o, k, v in zip(b.offsets, b.keys, b.values, strict=True)
                if o >= offset
            )
        offset = out[-1][0] + 1 if out else offset + 1
    return out


def table(rows):
    result = {}
    for _offset, key, value in rows:
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    return result


@pytest.fixture
def clock():
    return FakeClock(start_ms=T0)


def compacted_log(path, clock, **config):
    return PartitionLog.open(path, LogConfig(cleanup_policy="compact", **config), clock)


def test_compaction_keeps_the_last_value_per_key_with_its_offset(tmp_path, clock):
    plog = compacted_log(tmp_path / "t-0", clock, segment_bytes=400, index_interval_bytes=50)
    rng = random.Random(7)
    written = []
    for i in range(60):
        pairs = [(f"k{rng.randrange(8)}", f"v{i}-{j}") for j in range(rng.randrange(1, 4))]
        base = put(plog, clock, pairs)
        written.extend((base + j, k.encode(), v.encode()) for j, (k, v) in enumerate(pairs))
    before = scan(plog)
    assert before == written
    sealed_end = plog.segments()[-1].base_offset
    removed = plog.compact()
    after = scan(plog)
    assert removed == len(before) - len(after) > 0
    assert table(after) == table(before)
    # sealed part: exactly the last record of each key there; active part untouched
    last_in_sealed = {}
    for offset, key, value in before:
        if offset < sealed_end:
            last_in_sealed[key] = (offset, key, value)
    assert [r for r in after if r[0] < sealed_end] == sorted(last_in_sealed.values())
    assert [r for r in after if r[0] >= sealed_end] == [r for r in before if r[0] >= sealed_end]
    assert plog.log_end_offset == len(written)
    assert plog.log_start_offset == 0
    # reading at any offset, removed ones included, starts at the next surviving record
    for offset in range(plog.log_end_offset):
        data = plog.read(offset, 1)
        batch_ = records.decode_batch(data, 0)
        got = [
            r
            for r in zip(batch_.offsets, batch_.keys, batch_.values, strict=True)
            if r[0] >= offset
        ]
        assert got[0] == next(r for r in after if r[0] >= offset)
    plog.close()
    reopened = compacted_log(tmp_path / "t-0", clock, segment_bytes=400)
    assert scan(reopened) == after
    reopened.close()


def test_compaction_merges_small_segments(tmp_path, clock):
    plog = compacted_log(tmp_path / "t-0", clock, segment_bytes=300)
    for i in range(30):
        put(plog, clock, [("same", f"value-{i}")])
    n_before = len(plog.segments())
    plog.compact()
    segs = plog.segments()
    assert len(segs) < n_before
    assert not list((tmp_path / "t-0").glob("*.cleaned"))
    assert not list((tmp_path / "t-0").glob("*.swap"))
    names = sorted(int(p.name[:20]) for p in (tmp_path / "t-0").glob("*.log"))
    assert names == [s.base_offset for s in segs]
    plog.close()


def test_nothing_to_do_is_cheap_and_idempotent(tmp_path, clock):
    plog = compacted_log(tmp_path / "t-0", clock, segment_bytes=200)
    for i in range(10):
        put(plog, clock, [(f"k{i % 3}", f"v{i}" * 20)])
    assert plog.compact() > 0
    rows = scan(plog)
    files = sorted((p.name, p.stat().st_mtime_ns) for p in (tmp_path / "t-0").iterdir())
    assert plog.compact() == 0
    assert scan(plog) == rows
    assert sorted((p.name, p.stat().st_mtime_ns) for p in (tmp_path / "t-0").iterdir()) == files
    plog.close()


def test_delete_policy_does_not_compact(tmp_path, clock):
    plog = PartitionLog.open(tmp_path / "t-0", LogConfig(segment_bytes=100), clock)
    for i in range(5):
        put(plog, clock, [("k", f"v{i}")])
    assert plog.compact() == 0
    assert len(scan(plog)) == 5
    plog.close()


def test_tombstones_are_kept_for_delete_retention_then_removed(tmp_path, clock):
    plog = compacted_log(tmp_path / "t-0", clock, segment_bytes=150, delete_retention_ms=DAY * 1000)
    put(plog, clock, [("a", "1"), ("b", "2")])
    put(plog, clock, [("a", None)])  # delete a
    for i in range(4):
        put(plog, clock, [("filler", f"f{i}" * 20)])
    plog.compact()
    rows = scan(plog)
    assert (2, b"a", None) in rows  # the tombstone stays so readers see the delete
    assert all(r[1] != b"a" or r[2] is None for r in rows)
    clock.advance(DAY - 1)
    plog.compact()
    assert (2, b"a", None) in scan(plog)
    clock.advance(2)
    assert plog.compact() >= 1  # the state says a tombstone is due: compaction runs again
    rows = scan(plog)
    assert all(r[1] != b"a" for r in rows)
    assert table(rows) == {b"b": b"2", b"filler": b"f3" * 20}
    plog.close()


def test_min_compaction_lag_protects_young_records(tmp_path, clock):
    plog = compacted_log(tmp_path / "t-0", clock, segment_bytes=100, min_compaction_lag_ms=60_000)
    for i in range(5):
        put(plog, clock, [("k", f"old-{i}" * 10)])
    clock.advance(120)
    for i in range(5):
        put(plog, clock, [("k", f"new-{i}" * 10)])
    plog.compact()
    values = [r[2] for r in scan(plog)]
    # only the old part was cleanable: its last record stays, the young ones all stay
    assert values == [b"old-4" * 10] + [f"new-{i}".encode() * 10 for i in range(5)]
    plog.close()


def test_keyless_records_are_kept(tmp_path, clock):
    plog = compacted_log(tmp_path / "t-0", clock, segment_bytes=100)
    for i in range(4):
        data = records.encode_batch([T0], None, [f"nokey-{i}".encode() * 5])
        plog.append(data, records.validate_batch(data))
    put(plog, clock, [("k", "v")])
    assert plog.compact() == 0
    assert len(scan(plog)) == 5
    plog.close()


def test_reads_and_appends_while_compacting_in_another_thread(tmp_path, clock):
    plog = compacted_log(tmp_path / "t-0", clock, segment_bytes=500)
    for i in range(100):
        put(plog, clock, [(f"k{i % 10}", f"v{i}")])
    errors = []
    passes = []

    def compact_loop():
        try:
            for _ in range(3):
                passes.append(plog.compact())
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    worker = threading.Thread(target=compact_loop)
    worker.start()
    n = 100
    while worker.is_alive() or n < 130:
        put(plog, clock, [(f"k{n % 10}", f"v{n}")])
        n += 1
        if n % 3 == 0:
            rows = scan(plog)
            assert table(rows) == {
                f"k{j}".encode(): f"v{n - 10 + ((j - n) % 10)}".encode() for j in range(10)
            }
    worker.join()
    assert not errors
    assert sum(passes) > 0
    plog.close()


def test_close_stops_a_compaction(tmp_path, clock):
    plog = compacted_log(tmp_path / "t-0", clock, segment_bytes=200)
    for i in range(50):
        put(plog, clock, [("k", f"v{i}" * 10)])
    plog.close()
    assert plog.compact() == 0


# -- pure planning -------------------------------------------------------------------------


def info(base, next_offset, size, last_ts):
    return SegmentInfo(base, next_offset, size, last_ts, last_ts, Path("x"))


def test_cleanable_count_respects_the_lag():
    config = LogConfig(cleanup_policy="compact", min_compaction_lag_ms=1000)
    sealed = [info(0, 10, 100, T0), info(10, 20, 100, T0 + 500), info(20, 30, 100, T0)]
    assert cleanable_count(sealed, T0 + 999, config) == 0
    assert cleanable_count(sealed, T0 + 1000, config) == 1
    assert cleanable_count(sealed, T0 + 1500, config) == 3


def test_plan_groups_by_size():
    sealed = [
        info(0, 10, 100, T0),
        info(10, 20, 100, T0),
        info(20, 30, 250, T0),
        info(30, 40, 50, T0),
    ]
    assert plan_groups(sealed, 200) == [(0, 2), (2, 3), (3, 4)]
    assert plan_groups(sealed, 1000) == [(0, 4)]


def test_filter_batch_reencodes_only_when_records_go():
    data = records.encode_batch(
        [T0, T0 + 1, T0 + 2], [b"a", b"b", b"a"], [b"1", b"2", b"3"], base_offset=100
    )
    header = records.read_header(data)
    kept, removed, tomb = filter_batch(data, 0, header, {b"a": 102, b"b": 101}, 0)
    assert removed == 1
    assert tomb is None
    assert records.read_header(kept).base_offset == 100
    records.validate_batch(kept, produced=False)
    b = records.decode_batch(kept, 0)
    assert (b.offsets, b.keys, b.values, b.timestamps) == (
        [101, 102],
        [b"b", b"a"],
        [b"2", b"3"],
        [T0 + 1, T0 + 2],
    )
    _same, removed, _ = filter_batch(data, 0, header, {b"a": 102, b"b": 101, b"x": 1}, 0)
    assert removed == 1
    _untouched, removed, _ = filter_batch(data, 0, header, {b"a": 100, b"b": 101}, 0)
    assert removed == 1  # a@102 is not the latest either (map says 100)
    all_kept_data = records.encode_batch([T0], [b"z"], [b"9"], base_offset=7)
    out, removed, _ = filter_batch(
        all_kept_data, 0, records.read_header(all_kept_data), {b"z": 7}, 0
    )
    assert removed == 0
    assert out == all_kept_data
    out, removed, _ = filter_batch(
        all_kept_data, 0, records.read_header(all_kept_data), {b"z": 8}, 0
    )
    assert out is None
    assert removed == 1


def lying_batch(ts):
    """A batch with a valid CRC whose record_count (5) does not match its one record.

    The broker refuses such a batch at produce time (validate_batch); the log must
    still survive one that reached the disk some other way.
    """
    data = bytearray(records.encode_batch([ts], [b"liar"], [b"v"]))
    struct.pack_into("<i", data, 20, 4)  # last_offset_delta
    struct.pack_into("<i", data, 40, 5)  # record_count
    struct.pack_into("<I", data, 12, zlib.crc32(bytes(data[16:])))
    return bytes(data), records.read_header(bytes(data))


def test_an_undecodable_batch_is_kept_untouched(tmp_path, clock):
    plog = compacted_log(tmp_path / "t-0", clock, segment_bytes=150)
    put(plog, clock, [("k", "old")])
    data, header = lying_batch(T0)
    base = plog.append(data, header)
    for i in range(4):
        put(plog, clock, [("k", f"new-{i}" * 10)])
    assert plog.compact() >= 1
    raw = plog.read(base, 1)
    assert raw[8:] == data[8:]  # byte for byte
    assert plog.offset_for_timestamp(T0) is not None
    plog.close()
