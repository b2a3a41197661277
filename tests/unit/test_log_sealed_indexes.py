"""A roll seals the active segment without writing its index files (the loop thread
never writes them); ``write_sealed_indexes`` (the flusher thread) does, and a crash
before it loses nothing: recovery rebuilds the indexes from the ``.log``."""

from __future__ import annotations

from labkit.log import LogConfig, PartitionLog
from labkit.protocol import records
from labkit.testing.clock import FakeClock

T0 = 1_700_000_000_000


def append(plog: PartitionLog, i: int) -> None:
    data = records.encode_batch([T0 + i] * 3, None, [b"v%d" % i] * 3)
    plog.append(data, records.validate_batch(data))


def rolled_log(directory, clock) -> PartitionLog:
    plog = PartitionLog.open(
        directory, LogConfig(segment_bytes=600, index_interval_bytes=100), clock
    )
    for i in range(40):
        append(plog, i)
    assert len(plog.segments()) > 3
    return plog


def index_files(directory) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.glob("*index"))}


def test_a_roll_leaves_the_index_files_to_write_sealed_indexes(tmp_path):
    d = tmp_path / "t-0"
    plog = rolled_log(d, FakeClock(start_ms=T0))
    assert plog.sealed_unindexed
    assert not any(index_files(d).values())  # the empty files of each segment's creation
    plog.write_sealed_indexes()
    assert not plog.sealed_unindexed
    written = index_files(d)
    sealed = [s for s in plog.segments() if not s.active]
    for s in sealed:
        assert written[f"{s.base_offset:020d}.timeindex"], s
    assert not list(d.glob("*.writing"))
    plog.close()
    after = index_files(d)
    for s in sealed:  # close writes only the active segment's; a rebuild gives the same
        for suffix in (".index", ".timeindex"):
            name = f"{s.base_offset:020d}{suffix}"
            assert after[name] == written[name]


def test_a_crash_before_the_index_files_are_written_loses_nothing(tmp_path):
    d = tmp_path / "t-0"
    clock = FakeClock(start_ms=T0)
    crashed = rolled_log(d, clock)  # never closed, its indexes never written: a kill -9
    before = [crashed.read(o, 1 << 20) for o in range(0, crashed.log_end_offset, 3)]
    (d / "00000000000000000000.index.writing").write_bytes(b"half")  # a write cut short
    config = LogConfig(segment_bytes=600, index_interval_bytes=100)
    reopened = PartitionLog.open(d, config, clock)
    try:
        assert [reopened.read(o, 1 << 20) for o in range(0, 120, 3)] == before
        assert reopened.offset_for_timestamp(T0 + 20) == (60, T0 + 20)
        assert not list(d.glob("*.writing"))
        sealed = [s for s in reopened.segments() if not s.active]
        rebuilt = index_files(d)
        for s in sealed:  # recovery rebuilt and wrote them
            assert rebuilt[f"{s.base_offset:020d}.timeindex"], s
    finally:
        reopened.close()
        crashed.close()


def test_a_segment_deleted_before_its_indexes_are_written_leaves_no_files(tmp_path):
    d = tmp_path / "t-0"
    plog = rolled_log(d, FakeClock(start_ms=T0))
    try:
        first = plog.segments()[1].base_offset
        plog.delete_records(first)
        plog.update_config(
            LogConfig(segment_bytes=600, index_interval_bytes=100, retention_bytes=1)
        )
        plog.apply_retention()
        bases = {s.base_offset for s in plog.segments()}
        plog.write_sealed_indexes()
        stems = {p.name[:20] for p in d.iterdir() if p.name[:1].isdigit()}
        assert stems == {f"{b:020d}" for b in bases}  # no index files without their .log
        assert not list(d.glob("*.writing"))
    finally:
        plog.close()
