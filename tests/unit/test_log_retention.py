"""Retention: the pure decision with a fake clock, and PartitionLog.apply_retention."""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit.errors import OffsetOutOfRangeError
from labkit.log import LogConfig, PartitionLog, SegmentInfo
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
    layout = segs((100, T0), (100, T0))
    assert plan_retention(layout, T0 + 5000, config) == []
    assert len(plan_retention(layout, T0 + 5001, config)) == 1


def test_retention_stops_at_the_first_kept_segment():
    # a segment with a late timestamp protects the older ones after it (Kafka does the same)
    config = LogConfig(retention_ms=1000)
    layout = segs((100, T0 + 100_000), (100, T0), (100, T0))
    assert plan_retention(layout, T0 + 50_000, config) == []


def test_never_the_active_segment():
    config = LogConfig(retention_ms=0, retention_bytes=0)
    layout = segs((100, T0), (100, T0), (100, T0))
    assert len(plan_retention(layout, T0 + 10**9, config)) == 2
    assert plan_retention(segs((100, T0)), T0 + 10**9, config) == []


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
    layout = [seg(0, 0, 0, -1), seg(0, 5, 100, T0, True)]
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


def test_everything_expired_keeps_the_active_segment(tmp_path):
    clock = FakeClock(start_ms=T0)
    plog = PartitionLog.open(
        tmp_path / "t-0", LogConfig(retention_ms=1000, segment_bytes=100), clock
    )
    for i in range(5):
        append(plog, clock, b"v%d" % i * 40)
    clock.advance(60)
    assert plog.apply_retention() == 4
    assert (plog.log_start_offset, plog.log_end_offset) == (4, 5)
    assert plog.apply_retention() == 0
    assert append(plog, clock, b"after") == 5
    plog.close()


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
