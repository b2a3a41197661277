"""PartitionLog as a follower: appends at the leader's offsets, truncation, high watermark."""

from __future__ import annotations

import pytest

from labkit.errors import CorruptRecordError
from labkit.log import LogConfig, PartitionLog
from labkit.log.leader_epochs import CHECKPOINT, LeaderEpochCache
from labkit.log.partition_replica import UnexpectedAppendOffsetError
from labkit.log.producer_journal import PartitionProducers
from labkit.protocol import records
from labkit.testing.clock import FakeClock

T0 = 1_700_000_000_000


@pytest.fixture
def clock():
    return FakeClock(start_ms=T0)


def batch(values, ts=T0):
    data = records.encode_batch([ts] * len(values), None, [v.encode() for v in values])
    return data, records.validate_batch(data)


def open_log(path, clock, **config):
    return PartitionLog.open(path, LogConfig(**config), clock)


def values(plog, start=None):
    offset = plog.log_start_offset if start is None else start
    out = []
    while offset < plog.log_end_offset:
        data = plog.read(offset, 1 << 20)
        got = []
        for s, _e in records.split_batches(data):
            b = records.decode_batch(data, s)
            got += [
                (o, v.decode()) for o, v in zip(b.offsets, b.values, strict=True) if o >= offset
            ]
        if not got:
            break
        out += got
        offset = got[-1][0] + 1
    return out


def leader_with(tmp_path, clock, batches, **config):
    leader = open_log(tmp_path / "leader" / "t-0", clock, **config)
    for vals in batches:
        leader.append(*batch(vals))
    return leader


def copy_all(leader, follower, max_bytes=1 << 20):
    while follower.log_end_offset < leader.log_end_offset:
        follower.append_as_follower(leader.read(follower.log_end_offset, max_bytes))


def test_a_follower_stores_the_leaders_bytes_at_the_leaders_offsets(tmp_path, clock):
    leader = leader_with(tmp_path, clock, [["a", "b"], ["c"], ["d", "e", "f"]], segment_bytes=200)
    follower = open_log(tmp_path / "f" / "t-0", clock, segment_bytes=200)
    copy_all(leader, follower, max_bytes=100)
    assert follower.log_end_offset == leader.log_end_offset == 6
    assert follower.read(0, 1 << 20) == leader.read(0, 1 << 20)
    assert len(follower.segments()) == len(leader.segments()) > 1  # it rolls as the leader did
    follower.close()
    reopened = open_log(tmp_path / "f" / "t-0", clock, segment_bytes=200)
    assert values(reopened) == values(leader)


def test_overlap_and_gap_are_refused_with_nothing_written(tmp_path, clock):
    leader = leader_with(tmp_path, clock, [["a", "b"], ["c"], ["d"]])
    follower = open_log(tmp_path / "f" / "t-0", clock)
    follower.append_as_follower(leader.read(0, 1))  # the first batch only
    assert follower.log_end_offset == 2
    with pytest.raises(UnexpectedAppendOffsetError, match=r"overlaps .* ends at 2"):
        follower.append_as_follower(leader.read(0, 1 << 20))
    with pytest.raises(UnexpectedAppendOffsetError, match=r"gap after .* ends at 2"):
        follower.append_as_follower(leader.read(3, 1 << 20))
    assert follower.log_end_offset == 2
    assert values(follower) == [(0, "a"), (1, "b")]


def test_a_compacted_topic_accepts_a_gap(tmp_path, clock):
    leader = leader_with(tmp_path, clock, [["a"], ["b"], ["c"]])
    follower = open_log(tmp_path / "f" / "t-0", clock, cleanup_policy="compact")
    follower.append_as_follower(leader.read(2, 1 << 20))  # offsets 0-1 compacted away
    assert values(follower) == [(2, "c")]


def test_a_corrupt_batch_is_refused_and_a_cut_one_left_for_the_next_fetch(tmp_path, clock):
    leader = leader_with(tmp_path, clock, [["a"], ["b"]])
    follower = open_log(tmp_path / "f" / "t-0", clock)
    data = bytearray(leader.read(0, 1 << 20))
    data[-1] ^= 0xFF
    with pytest.raises(CorruptRecordError, match="CRC"):
        follower.append_as_follower(bytes(data))
    assert follower.log_end_offset == 0
    whole = leader.read(0, 1 << 20)
    assert follower.append_as_follower(whole[:-3]) == 1  # the second batch was cut short
    assert follower.append_as_follower(leader.read(1, 1 << 20)) == 2


def test_epochs_sent_with_the_batches_go_into_the_cache_and_to_disk_at_flush(tmp_path, clock):
    leader = leader_with(tmp_path, clock, [["a"], ["b"], ["c"]])
    follower = open_log(tmp_path / "f" / "t-0", clock)
    follower.append_as_follower(leader.read(0, 1 << 20), epochs=[(0, 0), (2, 1), (5, 9)])
    assert follower.leader_epochs.entries() == [(0, 0), (2, 1)]  # 9 is not in the log yet
    assert not (follower.directory / CHECKPOINT).exists()
    follower.flush()
    assert (follower.directory / CHECKPOINT).read_text() == "0\n2\n0 0\n2 1\n"


def test_truncate_cuts_segments_indexes_and_epochs(tmp_path, clock):
    plog = open_log(tmp_path / "t-0", clock, segment_bytes=250, index_interval_bytes=60)
    for i in range(30):
        plog.append(*batch([f"v{i}"]))
    plog.leader_epochs.assign(0, 0)
    plog.leader_epochs.assign(1, 12)
    plog.leader_epochs.assign(2, 20)
    assert len(plog.segments()) > 4
    assert plog.truncate_to(13) == 13
    assert plog.log_end_offset == 13
    assert [v for _o, v in values(plog)] == [f"v{i}" for i in range(13)]
    assert plog.segments()[-1].next_offset == 13
    assert plog.segments()[-1].active
    assert all(s.base_offset < 13 for s in plog.segments())
    assert plog.leader_epochs.entries() == [(0, 0), (1, 12)]
    assert plog.append(*batch(["new"])) == 13  # the log goes on from the cut
    for offset in range(14):  # every offset still reads (the indexes were rebuilt)
        assert values(plog, offset)[0][0] == offset
    plog.close()
    reopened = open_log(tmp_path / "t-0", clock, segment_bytes=250, index_interval_bytes=60)
    assert [v for _o, v in values(reopened)][-2:] == ["v12", "new"]
    assert LeaderEpochCache.open(tmp_path / "t-0", 100).entries() == [(0, 0), (1, 12)]


def test_truncate_inside_a_batch_cuts_the_whole_batch(tmp_path, clock):
    plog = open_log(tmp_path / "t-0", clock)
    plog.append(*batch(["a", "b"]))
    plog.append(*batch(["c", "d", "e"]))
    assert plog.truncate_to(3) == 2
    assert plog.truncate_to(9) == 2  # past the end: nothing
    assert values(plog) == [(0, "a"), (1, "b")]


def test_truncate_at_a_segment_boundary_reactivates_the_previous_segment(tmp_path, clock):
    plog = open_log(tmp_path / "t-0", clock, segment_bytes=150)
    for i in range(6):
        plog.append(*batch([f"v{i}"]))
    bases = [s.base_offset for s in plog.segments()]
    assert len(bases) > 2
    plog.truncate_to(bases[2])
    assert [s.base_offset for s in plog.segments()] == bases[:2]
    assert plog.append(*batch(["x"])) == bases[2]


def test_truncate_below_the_log_start_empties_the_log(tmp_path, clock):
    plog = open_log(tmp_path / "t-0", clock)
    for i in range(5):
        plog.append(*batch([f"v{i}"]))
    plog.delete_records(3)
    plog.leader_epochs.assign(1, 0)
    assert plog.truncate_fully_and_start_at(1) == 1
    assert (plog.log_start_offset, plog.log_end_offset) == (1, 1)
    assert plog.leader_epochs.entries() == []
    plog.append(*batch(["x"]))
    plog.append(*batch(["y"]))
    plog.append(*batch(["z"]))
    plog.close()
    reopened = open_log(tmp_path / "t-0", clock)  # the old checkpoint (3) is gone
    assert values(reopened) == [(1, "x"), (2, "y"), (3, "z")]


def test_truncation_forgets_idempotent_batches_past_the_cut_for_good(tmp_path, clock):
    plog = open_log(tmp_path / "t-0", clock)
    plog.producers = PartitionProducers.open(plog.directory, 0)
    for i in range(4):
        base = plog.append(*batch([f"v{i}"]))
        plog.producers.record(7, 0, i, i, base, T0)
    plog.truncate_to(2)
    assert plog.producers.check(7, 0, 2, 2) is None  # not a duplicate any more
    assert plog.producers.check(7, 0, 1, 1) == 1  # still one
    for i in range(2, 6):  # the log grows past the forgotten offsets again
        plog.append(*batch([f"w{i}"]))
    plog.close()
    again = PartitionProducers.open(tmp_path / "t-0", recovered_end=6)
    assert again.check(7, 0, 2, 2) is None  # a restart does not bring the old entry back
    assert again.check(7, 0, 0, 0) == 0


def test_truncation_opens_producer_state_left_on_disk(tmp_path, clock):
    plog = open_log(tmp_path / "t-0", clock)
    state = PartitionProducers.open(plog.directory, 0)
    for i in range(3):
        state.record(7, 0, i, i, plog.append(*batch([f"v{i}"])), T0)
    state.close()
    plog.truncate_to(1)
    plog.append(*batch(["x"]))
    plog.append(*batch(["y"]))
    again = PartitionProducers.open(tmp_path / "t-0", recovered_end=3)
    assert again.check(7, 0, 2, 2) is None


def test_high_watermark_is_the_log_end_until_replication_sets_it(tmp_path, clock):
    plog = open_log(tmp_path / "t-0", clock)
    for i in range(5):
        plog.append(*batch([f"v{i}"]))
    assert plog.high_watermark == 5  # single-broker mode: nothing changes
    assert plog.set_high_watermark(3) == 3
    plog.append(*batch(["x"]))
    assert plog.high_watermark == 3
    assert plog.set_high_watermark(99) == 6  # clamped to the log end
    assert plog.set_high_watermark(-5) == 0  # and to the log start
    plog.set_high_watermark(6)
    plog.truncate_to(4)
    assert plog.high_watermark == 4


def test_a_nonsense_length_after_good_batches_writes_nothing(tmp_path, clock):
    leader = leader_with(tmp_path, clock, [["a"]])
    follower = open_log(tmp_path / "f" / "t-0", clock)
    data = leader.read(0, 1 << 20)
    bad = data + (1).to_bytes(8, "little") + (5).to_bytes(4, "little") + bytes(40)
    with pytest.raises(CorruptRecordError):
        follower.append_as_follower(bad)
    assert follower.log_end_offset == 0


def test_only_the_producer_entries_of_appended_batches_are_kept(tmp_path, clock):
    leader = leader_with(tmp_path, clock, [["a"], ["b"]])
    follower = open_log(tmp_path / "f" / "t-0", clock)
    rows = [(7, 0, 0, 0, 0, T0), (7, 0, 1, 1, 1, T0), (7, 0, 2, 2, 9, T0)]
    follower.append_as_follower(leader.read(0, 1 << 20), producers=rows)
    assert follower.producers.check(7, 0, 1, 1) == 1
    assert follower.producers.check(7, 0, 2, 2) is None  # offset 9 was not appended
    follower.close()
    reopened = open_log(tmp_path / "f" / "t-0", clock)
    assert PartitionProducers.open(reopened.directory, 2).check(7, 0, 0, 0) == 0  # journaled


def test_high_watermark_never_reads_below_the_log_start(tmp_path, clock):
    plog = open_log(tmp_path / "t-0", clock)
    for i in range(5):
        plog.append(*batch([f"v{i}"]))
    plog.set_high_watermark(1)
    plog.delete_records(3)
    assert plog.high_watermark == 3
