"""Retention: the pure decision with a fake clock, and PartitionLog.apply_retention."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from labkit.errors import OffsetOutOfRangeError
from labkit.log import LogConfig, PartitionLog, SegmentInfo, partition_maintenance
from labkit.log.retention import plan_retention
from labkit.protocol import records
from labkit.testing.clock import FakeClock

T0 = 1_700_000_000_000


def seg(base, next_offset, size, last_ts, active=False):
    return SegmentInfo(
        base, next_offset, size, last_ts - 1, last_ts, Path(f"{base:020d}.log"), active
    )


def segs(*specs):
    """(size, last timestamp) per segment, 10 offsets each; the last one is active."""
    out = [seg(10 * i, 10 * i + 10, size, ts) for i, (size, ts) in enumerate(specs)]
    out[-1] = seg(out[-1].base_offset, out[-1].next_offset, specs[-1][0], specs[-1][1], True)
    return out


def test_time_retention_deletes_expired_prefix_only():
    now = T0 + 10_000
    config = LogConfig(retention_ms=5000)
    plan = plan_retention(
        segs((100, T0), (100, T0 + 4000), (100, T0 + 6000), (100, T0)), now, config
    )
    assert len(plan) == 2
    assert "retention.ms=5000" in plan[0]
    assert "10.0 s old" in plan[0]
    assert "offsets 0-9" in plan[0]


def test_time_retention_boundary_is_strictly_older():
    config = LogConfig(retention_ms=5000)
    layout = segs((100, T0), (100, T0 + 1000))
    assert plan_retention(layout, T0 + 5000, config) == []
    assert len(plan_retention(layout, T0 + 5001, config)) == 1


def test_retention_stops_at_the_first_kept_segment():
    # a segment with a late timestamp protects the older ones after it (Kafka does the same)
    config = LogConfig(retention_ms=1000)
    layout = segs((100, T0 + 100_000), (100, T0), (100, T0))
    assert plan_retention(layout, T0 + 50_000, config) == []


def test_an_expired_active_segment_goes_too():
    # Kafka's deletableSegments walks into the active segment; the caller rolls first
    config = LogConfig(retention_ms=1000)
    layout = segs((100, T0), (100, T0), (100, T0))
    plan = plan_retention(layout, T0 + 10**6, config)
    assert len(plan) == 3
    assert "offsets 20-29" in plan[2]
    assert len(plan_retention(segs((100, T0)), T0 + 10**6, config)) == 1


def test_records_stamped_in_the_past_go_at_the_first_check():
    # notebook 11's alerts: event times months old, the default 7-day retention
    week = 7 * 24 * 3600 * 1000
    march = T0 - 270 * 24 * 3600 * 1000
    plan = plan_retention(segs((100, march)), T0, LogConfig(retention_ms=week))
    assert len(plan) == 1
    assert "retention.ms=604800000" in plan[0]


def test_an_empty_active_segment_never_goes():
    config = LogConfig(retention_ms=0, retention_bytes=0)
    layout = segs((100, T0), (0, -1))
    assert len(plan_retention(layout, T0 + 10**6, config)) == 1
    assert plan_retention(segs((0, -1)), T0 + 10**6, config) == []


def test_size_retention_takes_the_active_segment_only_at_zero_bytes():
    layout = segs((100, T0), (100, T0), (100, T0))
    assert len(plan_retention(layout, T0, LogConfig(retention_ms=-1, retention_bytes=0))) == 3
    assert len(plan_retention(layout, T0, LogConfig(retention_ms=-1, retention_bytes=1))) == 2
    assert plan_retention(layout, T0, LogConfig(retention_ms=-1, retention_bytes=301)) == []


def test_segments_below_the_log_start_offset_go_first():
    config = LogConfig(retention_ms=-1)
    layout = segs((100, T0), (100, T0), (100, T0), (100, T0))
    plan = plan_retention(layout, T0, config, log_start_offset=25)
    assert len(plan) == 2  # offsets 0-9 and 10-19; 20-29 holds the log start
    assert "below the log start offset 25" in plan[0]
    # the active segment never goes this way: nothing follows it
    assert len(plan_retention(segs((100, T0)), T0, config, log_start_offset=10)) == 0


def test_time_walks_on_from_where_size_stopped():
    # Kafka deletes by size, then by time over what is left: the first segment (kept by
    # time: its newest record is recent) goes by size, the second by time
    config = LogConfig(retention_ms=5000, retention_bytes=200)
    layout = segs((100, T0 + 9000), (100, T0), (100, T0 + 9000))
    plan = plan_retention(layout, T0 + 10_000, config)
    assert len(plan) == 2
    assert "retention.bytes=200" in plan[0]
    assert "retention.ms=5000" in plan[1]


def test_unlimited_retention_deletes_nothing():
    config = LogConfig(retention_ms=-1)
    assert plan_retention(segs((100, 0), (100, 0)), T0, config) == []


def test_size_retention_deletes_while_the_rest_stays_at_least_the_limit():
    config = LogConfig(retention_ms=-1, retention_bytes=250)
    layout = segs((100, T0), (100, T0), (100, T0), (50, T0))  # 350 bytes in all
    plan = plan_retention(layout, T0, config)
    assert len(plan) == 1  # deleting a second would leave 150 < 250
    assert "retention.bytes=250" in plan[0]
    config = LogConfig(retention_ms=-1, retention_bytes=150)
    assert len(plan_retention(layout, T0, config)) == 2


def test_the_larger_of_time_and_size_wins():
    config = LogConfig(retention_ms=5000, retention_bytes=100)
    layout = segs((100, T0), (100, T0 + 9000), (100, T0 + 9000))
    assert len(plan_retention(layout, T0 + 10_000, config)) == 2


def test_compact_only_policy_has_no_retention():
    config = LogConfig(retention_ms=0, cleanup_policy="compact")
    assert plan_retention(segs((100, T0), (100, T0)), T0 + 10**6, config) == []


def test_empty_sealed_segment_goes():
    config = LogConfig(retention_ms=10**12)
    layout = [seg(0, 0, 0, -1), seg(10, 15, 100, T0, True)]
    assert "no records" in plan_retention(layout, T0, config)[0]


# -- on a real log ---------------------------------------------------------------------------


def append(plog, clock, value):
    data = records.encode_batch([clock.time_ms()], None, [value])
    return plog.append(data, records.validate_batch(data))


def test_apply_retention_moves_log_start_and_survives_restart(tmp_path):
    clock = FakeClock(start_ms=T0)
    config = LogConfig(retention_ms=5000, segment_bytes=200)
    d = tmp_path / "t-0"
    plog = PartitionLog.open(d, config, clock)
    for i in range(6):
        append(plog, clock, b"old-%d" % i + b"x" * 60)
    clock.advance(3)
    for i in range(4):
        append(plog, clock, b"new-%d" % i + b"x" * 60)
    assert plog.apply_retention() == 0
    clock.advance(2.5)  # the first 6 records are now 5.5 s old, the next 4 are 2.5 s old
    deleted = plog.apply_retention()
    assert deleted >= 1
    assert plog.log_start_offset == 6
    assert plog.log_end_offset == 10
    with pytest.raises(OffsetOutOfRangeError):
        plog.read(5, 1000)
    assert plog.read(6, 1000)
    assert sorted(int(p.name[:20]) for p in d.glob("*.log"))[0] == 6
    assert not any(p.name.startswith("00000000000000000000") for p in d.iterdir())
    plog.close()
    plog = PartitionLog.open(d, config, clock)
    assert (plog.log_start_offset, plog.log_end_offset) == (6, 10)
    plog.close()


def files(directory):
    return sorted(p.name for p in directory.iterdir())


def test_everything_expired_rolls_and_deletes_the_active_segment(tmp_path):
    clock = FakeClock(start_ms=T0)
    d = tmp_path / "t-0"
    plog = PartitionLog.open(d, LogConfig(retention_ms=1000, segment_bytes=100), clock)
    for i in range(5):
        append(plog, clock, b"v%d" % i * 40)
    clock.advance(60)
    assert plog.apply_retention() == 5
    assert (plog.log_start_offset, plog.log_end_offset) == (5, 5)
    assert [s.base_offset for s in plog.segments()] == [5]
    assert files(d) == [f"{5:020d}{ext}" for ext in (".index", ".log", ".timeindex")]
    assert plog.read(5, 1000) == b""  # a consumer at the log end waits, as before
    with pytest.raises(OffsetOutOfRangeError):
        plog.read(4, 1000)
    assert plog.apply_retention() == 0  # the empty active segment stays
    assert append(plog, clock, b"after") == 5
    assert plog.apply_retention() == 0
    plog.close()
    plog = PartitionLog.open(d, LogConfig(retention_ms=1000), clock)
    assert (plog.log_start_offset, plog.log_end_offset) == (5, 6)
    plog.close()


def test_old_stamped_records_in_the_only_segment_go_and_a_crash_keeps_the_start(tmp_path):
    # records whose timestamps are older than retention.ms, in the active segment only
    clock = FakeClock(start_ms=T0)
    d = tmp_path / "t-0"
    config = LogConfig(retention_ms=3600_000)
    plog = PartitionLog.open(d, config, clock)
    for i in range(3):
        data = records.encode_batch([T0 - 7200_000], None, [b"old-%d" % i])
        plog.append(data, records.validate_batch(data))
    assert plog.apply_retention() == 1
    assert (plog.log_start_offset, plog.log_end_offset) == (3, 3)
    # no close(): a kill -9 leaves the files as the OS has them
    again = PartitionLog.open(d, config, clock)
    assert (again.log_start_offset, again.log_end_offset) == (3, 3)
    assert append(again, clock, b"new") == 3
    again.close()
    plog.close()


def test_a_segment_deleted_before_its_indexes_were_written_leaves_no_index_files(tmp_path):
    # a roll leaves the sealed segment's index files to the flusher; retention took it first
    clock = FakeClock(start_ms=T0)
    d = tmp_path / "t-0"
    plog = PartitionLog.open(d, LogConfig(retention_ms=1000, segment_bytes=100), clock)
    append(plog, clock, b"a" * 60)
    clock.advance(10)
    append(plog, clock, b"b" * 60)  # rolls: segment 0 is sealed, its indexes unwritten
    assert plog.sealed_unindexed
    assert plog.apply_retention() == 1
    plog.close()
    assert not [name for name in files(d) if name.startswith(f"{0:020d}")]


def test_retention_by_bytes_on_a_log(tmp_path):
    clock = FakeClock(start_ms=T0)
    config = LogConfig(retention_ms=-1, retention_bytes=600, segment_bytes=200)
    plog = PartitionLog.open(tmp_path / "t-0", config, clock)
    for i in range(20):
        append(plog, clock, b"%02d" % i + b"y" * 80)
    assert plog.apply_retention() > 0
    # Kafka's rule: delete old segments while the rest is still at least retention.bytes
    size = plog.size_bytes()
    assert size >= 600
    assert size - plog.segments()[0].size_bytes < 600
    assert plog.log_end_offset == 20
    assert plog.log_start_offset > 0
    plog.close()


def test_the_new_segment_is_on_disk_before_any_old_one_goes(tmp_path, monkeypatch):
    # a crash between the roll and the deletions leaves old segments + the new empty one
    clock = FakeClock(start_ms=T0)
    d = tmp_path / "t-0"
    plog = PartitionLog.open(d, LogConfig(retention_ms=1000, segment_bytes=100), clock)
    for i in range(3):
        append(plog, clock, b"v%d" % i * 40)
    clock.advance(60)
    synced = []
    monkeypatch.setattr(partition_maintenance, "fsync_dir", lambda path: synced.append(files(path)))
    assert plog.apply_retention() == 3
    logs = [f"{base:020d}.log" for base in (0, 1, 2, 3)]
    assert [name for name in synced[0] if name.endswith(".log")] == logs
    assert [name for name in synced[-1] if name.endswith(".log")] == logs[-1:]
    plog.close()


def test_delete_records_meanwhile_leaves_retention_the_rest(tmp_path, monkeypatch):
    clock = FakeClock(start_ms=T0)
    plog = PartitionLog.open(
        tmp_path / "t-0", LogConfig(retention_ms=1000, segment_bytes=100), clock
    )
    for i in range(4):
        append(plog, clock, b"v%d" % i * 40)
    clock.advance(60)
    moves = iter([lambda: plog.move_log_start(2)])  # the loop's DeleteRecords, mid-retention
    monkeypatch.setattr(
        partition_maintenance, "fsync_dir", lambda path: next(moves, lambda: None)()
    )
    assert plog.apply_retention() == 2  # segments 2 and 3; DeleteRecords took 0 and 1
    assert (plog.log_start_offset, plog.log_end_offset) == (4, 4)
    assert [s.base_offset for s in plog.segments()] == [4]
    plog.close()


def test_records_without_timestamps_age_by_the_file_time(tmp_path):
    # Kafka's LogSegment.largestTimestamp: the file's modification time when no record
    # has a timestamp (-1); such records used to go at the first check
    clock = FakeClock(start_ms=int(time.time() * 1000))
    plog = PartitionLog.open(tmp_path / "t-0", LogConfig(retention_ms=3600_000), clock)
    data = records.encode_batch([-1], None, [b"no time"])
    plog.append(data, records.validate_batch(data))
    assert plog.apply_retention() == 0
    clock.advance(2 * 3600)
    assert plog.apply_retention() == 1
    assert (plog.log_start_offset, plog.log_end_offset) == (1, 1)
    plog.close()


def test_retention_stops_at_the_high_watermark():
    # Kafka's deletableSegments: a segment goes only when its upper bound (the next
    # segment's base offset, the log end for the last) is at or below the high watermark
    config = LogConfig(retention_ms=1000, retention_bytes=0)
    layout = segs((100, T0), (100, T0), (100, T0))  # offsets 0-9, 10-19, 20-29: all expired
    assert len(plan_retention(layout, T0 + 50_000, config)) == 3  # no bound: everything
    assert len(plan_retention(layout, T0 + 50_000, config, 0, 30)) == 3
    assert len(plan_retention(layout, T0 + 50_000, config, 0, 20)) == 2
    assert len(plan_retention(layout, T0 + 50_000, config, 0, 19)) == 1
    assert plan_retention(layout, T0 + 50_000, config, 15, 5) == []  # not even below start


def test_a_replicated_log_keeps_what_is_above_its_high_watermark(tmp_path):
    clock = FakeClock(start_ms=T0)
    plog = PartitionLog.open(
        tmp_path / "t-0", LogConfig(retention_ms=1000, segment_bytes=100), clock
    )
    for i in range(5):
        append(plog, clock, b"v%d" % i * 40)  # one batch per segment
    plog.set_high_watermark(2)  # the followers have offsets 0 and 1 only
    clock.advance(60)
    assert plog.apply_retention() == 2
    assert (plog.log_start_offset, plog.high_watermark, plog.log_end_offset) == (2, 2, 5)
    plog.set_high_watermark(5)  # they caught up
    assert plog.apply_retention() == 3
    assert (plog.log_start_offset, plog.log_end_offset) == (5, 5)
    plog.close()
