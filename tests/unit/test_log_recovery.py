"""Recovery on open: torn and corrupt tails are cut off, leftovers of interrupted work cleaned."""

from __future__ import annotations

import itertools
import logging

import pytest

from labkit.errors import KafkaStorageError
from labkit.log import LogConfig, PartitionLog
from labkit.log.segment import segment_paths
from labkit.protocol import records
from labkit.testing.clock import FakeClock

T0 = 1_700_000_000_000


def batch(values, ts=T0, keys=None):
    values = [v.encode() if isinstance(v, str) else v for v in values]
    data = records.encode_batch([ts] * len(values), keys, values)
    return data, records.validate_batch(data)


def values_of(plog: PartitionLog) -> list[tuple[int, bytes]]:
    out = []
    offset = plog.log_start_offset
    while offset < plog.log_end_offset:
        data = plog.read(offset, 1 << 20)
        for start, _ in records.split_batches(data):
            b = records.decode_batch(data, start)
            out.extend((o, v) for o, v in zip(b.offsets, b.values, strict=True) if o >= offset)
        offset = out[-1][0] + 1
    return out


@pytest.fixture
def clock():
    return FakeClock(start_ms=T0)


def fill(path, clock, n=10, **config):
    plog = PartitionLog.open(path, LogConfig(**config), clock)
    sizes = []
    for i in range(n):
        data, header = batch([f"value-{i}", f"other-{i}"])
        plog.append(data, header)
        sizes.append(len(data))
    plog.close()
    return sizes


def active_log(path):
    return sorted(path.glob("*.log"))[-1]


def test_torn_tail_is_truncated(tmp_path, clock, caplog):
    d = tmp_path / "t-0"
    sizes = fill(d, clock)
    log_file = active_log(d)
    whole = log_file.read_bytes()
    log_file.write_bytes(whole[: -(sizes[-1] // 2)])  # the process died mid-write
    with caplog.at_level(logging.WARNING, logger="labkit.log"):
        plog = PartitionLog.open(d, LogConfig(), clock)
    assert plog.log_end_offset == 18
    assert values_of(plog)[-1] == (17, b"other-8")
    assert log_file.stat().st_size == sum(sizes[:-1])
    assert "truncated" in caplog.text
    assert plog.append(*batch(["new"])) == 18  # appends continue right after the cut
    assert values_of(plog)[-1] == (18, b"new")
    plog.close()


@pytest.mark.parametrize("cut", [1, 11, records.HEADER_SIZE - 1, records.HEADER_SIZE + 1])
def test_tail_cut_inside_the_header(tmp_path, clock, cut):
    d = tmp_path / "t-0"
    sizes = fill(d, clock, n=3)
    log_file = active_log(d)
    log_file.write_bytes(log_file.read_bytes()[: sum(sizes[:2]) + cut])
    plog = PartitionLog.open(d, LogConfig(), clock)
    assert plog.log_end_offset == 4
    assert log_file.stat().st_size == sum(sizes[:2])
    plog.close()


def test_corrupt_tail_is_truncated(tmp_path, clock):
    d = tmp_path / "t-0"
    sizes = fill(d, clock)
    log_file = active_log(d)
    data = bytearray(log_file.read_bytes())
    flip = sum(sizes[:7]) + 50  # a byte inside the 8th batch's records
    data[flip] ^= 0xFF
    log_file.write_bytes(bytes(data))
    plog = PartitionLog.open(d, LogConfig(), clock)
    assert plog.log_end_offset == 14  # batches 0-6 survive, 7.. are cut (Kafka does the same)
    assert values_of(plog) == [
        (o, f"{'value' if o % 2 == 0 else 'other'}-{o // 2}".encode()) for o in range(14)
    ]
    assert log_file.stat().st_size == sum(sizes[:7])
    plog.close()


def test_garbage_length_field_is_truncated(tmp_path, clock):
    d = tmp_path / "t-0"
    sizes = fill(d, clock, n=4)
    log_file = active_log(d)
    with open(log_file, "r+b") as f:
        f.seek(sum(sizes[:3]) + 8)
        f.write(b"\xff\xff\xff\x7f")  # batch_length = 2 GiB
    plog = PartitionLog.open(d, LogConfig(), clock)
    assert plog.log_end_offset == 6
    plog.close()


def test_zeroed_tail_is_truncated(tmp_path, clock):
    """After a power cut a file can end in zeros (size updated, data not written)."""
    d = tmp_path / "t-0"
    sizes = fill(d, clock, n=4)
    with open(active_log(d), "ab") as f:
        f.write(b"\x00" * 4096)
    plog = PartitionLog.open(d, LogConfig(), clock)
    assert plog.log_end_offset == 8
    assert active_log(d).stat().st_size == sum(sizes)
    plog.close()


def test_offsets_going_backwards_count_as_corruption(tmp_path, clock):
    d = tmp_path / "t-0"
    sizes = fill(d, clock, n=3)
    log_file = active_log(d)
    with open(log_file, "r+b") as f:
        f.seek(sum(sizes[:2]))
        f.write(records.BASE_OFFSET.pack(1))  # the 3rd batch claims offset 1 again
    plog = PartitionLog.open(d, LogConfig(), clock)
    assert plog.log_end_offset == 4
    plog.close()


def test_corrupt_sealed_segment_without_indexes_is_cut_and_later_segments_kept(tmp_path, clock):
    d = tmp_path / "t-0"
    fill(d, clock, n=12, segment_bytes=300)
    logs = sorted(d.glob("*.log"))
    assert len(logs) >= 3
    first = logs[0]
    first.write_bytes(first.read_bytes()[:-10])  # torn: a sealed segment fails its checks
    plog = PartitionLog.open(d, LogConfig(segment_bytes=300), clock)
    segs = plog.segments()
    assert segs[0].next_offset < segs[1].base_offset  # a gap where the torn batch was
    got = values_of(plog)
    assert got[-1] == (23, b"other-11")
    assert all(a[0] < b[0] for a, b in itertools.pairwise(got))
    plog.close()


def test_empty_active_segment_after_a_crash_during_roll(tmp_path, clock):
    """A crash right after a roll: a new empty .log, no index files yet."""
    d = tmp_path / "t-0"
    fill(d, clock, n=4)
    segment_paths(d, 8)[0].write_bytes(b"")
    plog = PartitionLog.open(d, LogConfig(), clock)
    assert [s.base_offset for s in plog.segments()] == [0, 8]
    assert plog.log_end_offset == 8
    assert values_of(plog)[-1] == (7, b"other-3")
    assert plog.append(*batch(["next"])) == 8
    plog.close()


def test_leftover_cleaned_files_and_orphan_indexes_are_removed(tmp_path, clock):
    d = tmp_path / "t-0"
    fill(d, clock, n=3)
    for p in segment_paths(d, 0, ".cleaned"):
        p.write_bytes(b"partial")
    (d / "00000000000000000077.index").write_bytes(b"")
    (d / "README.txt").write_text("not ours")
    plog = PartitionLog.open(d, LogConfig(), clock)
    names = sorted(p.name for p in d.iterdir())
    assert names == [
        "00000000000000000000.index",
        "00000000000000000000.log",
        "00000000000000000000.timeindex",
        "README.txt",
    ]
    assert plog.log_end_offset == 6
    plog.close()


def test_a_committed_swap_is_installed(tmp_path, clock):
    """A compaction that crashed after its .log.swap rename: recovery finishes the swap."""
    d = tmp_path / "t-0"
    plog = PartitionLog.open(d, LogConfig(segment_bytes=200), clock)
    for i in range(6):
        plog.append(*batch([f"v{i}" * 30]))
    plog.close()
    bases = sorted(int(p.name[:20]) for p in d.glob("*.log"))
    assert len(bases) >= 3
    # pretend segments bases[0] and bases[1] were cleaned into one holding offsets 0 and 1
    kept = records.encode_batch([T0, T0], None, [b"v0", b"v1"], offset_deltas=[0, 1])
    segment_paths(d, 0, ".swap")[0].write_bytes(kept)
    plog = PartitionLog.open(d, LogConfig(segment_bytes=200), clock)
    assert not list(d.glob("*.swap"))
    assert [s.base_offset for s in plog.segments()] == [0, *bases[2:]]
    assert values_of(plog)[:2] == [(0, b"v0"), (1, b"v1")]
    assert values_of(plog)[2][0] == bases[2]
    plog.close()


def test_unreadable_directory_is_a_storage_error(tmp_path, clock):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(KafkaStorageError) as info:
        PartitionLog.open(blocker / "t-0", LogConfig(), clock)
    assert str(blocker) in str(info.value)
