"""PartitionLog.delete_records (Kafka's DeleteRecords): the log start offset moves, into
the middle of a segment if asked, and stays moved after a reopen."""

from __future__ import annotations

import pytest

from labkit.errors import KafkaStorageError, OffsetOutOfRangeError
from labkit.log import LogConfig, PartitionLog
from labkit.log import start_offset as checkpoint
from labkit.protocol import records
from labkit.testing.clock import FakeClock

T0 = 1_700_000_000_000


def append(plog: PartitionLog, count: int) -> None:
    for i in range(count):
        data = records.encode_batch([T0], None, [f"v{i}".encode()])
        plog.append(data, records.validate_batch(data))


@pytest.fixture
def plog(tmp_path):
    # tiny segments: one batch of ~70 bytes each, so offset N starts segment N
    log = PartitionLog.open(tmp_path / "t-0", LogConfig(segment_bytes=100), FakeClock(start_ms=T0))
    append(log, 10)
    yield log
    log.close()


def test_moves_the_start_into_a_segment_and_reads_below_are_out_of_range(tmp_path):
    log = PartitionLog.open(tmp_path / "t-0", LogConfig(), FakeClock(start_ms=T0))
    append(log, 10)  # one segment
    assert log.delete_records(4) == 4
    assert log.log_start_offset == 4
    with pytest.raises(OffsetOutOfRangeError):
        log.read(3, 1 << 20)
    assert log.read(4, 1 << 20)  # the batch holding offset 4
    assert log.offset_for_timestamp(0) == (4, T0)  # nothing below the start is found
    log.close()


def test_deletes_whole_segments_below_the_start_and_survives_a_reopen(plog, tmp_path):
    assert len(plog.segments()) == 10
    assert plog.delete_records(6) == 6
    assert [s.base_offset for s in plog.segments()] == [6, 7, 8, 9]
    plog.close()
    again = PartitionLog.open(tmp_path / "t-0", LogConfig(segment_bytes=100), FakeClock(T0))
    try:
        assert again.log_start_offset == 6
        with pytest.raises(OffsetOutOfRangeError):
            again.read(5, 1 << 20)
    finally:
        again.close()


def test_mid_segment_start_survives_a_reopen(tmp_path):
    log = PartitionLog.open(tmp_path / "t-0", LogConfig(), FakeClock(start_ms=T0))
    append(log, 10)
    log.delete_records(7)
    log.close()
    again = PartitionLog.open(tmp_path / "t-0", LogConfig(), FakeClock(start_ms=T0))
    try:
        assert (again.log_start_offset, again.log_end_offset) == (7, 10)
    finally:
        again.close()


def test_the_high_watermark_is_allowed_and_beyond_it_is_out_of_range(plog):
    with pytest.raises(OffsetOutOfRangeError, match="-1 means it"):
        plog.delete_records(11)
    with pytest.raises(OffsetOutOfRangeError):
        plog.delete_records(-5)
    assert plog.delete_records(10) == 10  # everything: the active segment stays
    assert plog.read(10, 100) == b""
    append(plog, 1)
    assert plog.log_end_offset == 11
    assert plog.read(10, 1 << 20)


def test_an_offset_at_or_below_the_start_changes_nothing(plog):
    plog.delete_records(5)
    assert plog.delete_records(3) == 5
    assert plog.log_start_offset == 5


def test_a_stale_or_broken_checkpoint_never_moves_the_start_back_or_past_the_end(tmp_path):
    directory = tmp_path / "t-0"
    log = PartitionLog.open(directory, LogConfig(segment_bytes=100), FakeClock(T0))
    append(log, 5)
    log.close()
    checkpoint.write(directory, 99)  # past the end (e.g. a cut tail): the end bounds it
    log = PartitionLog.open(directory, LogConfig(segment_bytes=100), FakeClock(T0))
    assert log.log_start_offset == 5
    log.close()
    (directory / checkpoint.CHECKPOINT).write_text("garbage")
    log = PartitionLog.open(directory, LogConfig(segment_bytes=100), FakeClock(T0))
    assert log.log_start_offset == 0
    log.close()


def test_move_then_save_the_broker_s_way_and_a_failed_save_is_kept_for_the_next(
    tmp_path, monkeypatch
):
    # the broker moves the start on its loop and saves it on the flusher thread
    log = PartitionLog.open(tmp_path / "t-0", LogConfig(), FakeClock(start_ms=T0))
    append(log, 10)
    assert log.move_log_start(4) == 4
    assert log.log_start_offset == 4
    assert log.log_start_unsaved
    assert not (tmp_path / "t-0" / checkpoint.CHECKPOINT).exists()

    def full_disk(directory, offset):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint, "write", full_disk)
    with pytest.raises(KafkaStorageError, match="Free some disk space"):
        log.save_log_start()
    assert log.log_start_unsaved  # still due
    monkeypatch.undo()
    log.save_log_start()
    assert not log.log_start_unsaved
    assert (tmp_path / "t-0" / checkpoint.CHECKPOINT).read_text() == "4\n"
    log.close()
