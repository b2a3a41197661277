"""Disk errors: a failed append leaves the log as it was and works again once space returns."""

from __future__ import annotations

import errno

import pytest

from labkit.errors import KafkaStorageError
from labkit.log import FileOps, LogConfig, PartitionLog
from labkit.protocol import records
from labkit.testing.clock import FakeClock
from tests.log_records import offsets_values

T0 = 1_700_000_000_000


class FlakyDisk(FileOps):
    """A disk that fills up on demand: writes stop after ``room`` more bytes."""

    def __init__(self):
        self.room: int | None = None  # None = unlimited
        self.truncates = 0
        self.fail_truncate = False
        self.fail_sync = False

    def pwritev(self, fd, buffers, position):
        data = b"".join(bytes(b) for b in buffers)
        if self.room is not None:
            if self.room <= 0:
                raise OSError(errno.ENOSPC, "No space left on device")
            data = data[: self.room]
            self.room -= len(data)
        return super().pwritev(fd, [data], position)

    def ftruncate(self, fd, length):
        self.truncates += 1
        if self.fail_truncate:
            raise OSError(errno.EIO, "Input/output error")
        super().ftruncate(fd, length)

    def sync(self, fd):
        if self.fail_sync:
            raise OSError(errno.EIO, "Input/output error")
        super().sync(fd)


def batch(value: bytes):
    data = records.encode_batch([T0], None, [value])
    return data, records.validate_batch(data)


def values(plog):
    return offsets_values(plog.read(plog.log_start_offset, 1 << 20))


@pytest.fixture
def disk():
    return FlakyDisk()


def open_log(path, disk, **config):
    return PartitionLog.open(path, LogConfig(**config), FakeClock(start_ms=T0), ops=disk)


def test_disk_full_then_space_returns(tmp_path, disk):
    d = tmp_path / "t-0"
    plog = open_log(d, disk)
    plog.append(*batch(b"first"))
    plog.append(*batch(b"second"))
    size_before = plog.size_bytes()
    disk.room = 30  # the next batch gets half written, then the disk is full
    with pytest.raises(KafkaStorageError) as info:
        plog.append(*batch(b"third" * 10))
    assert "disk space" in str(info.value)
    assert disk.truncates == 1
    assert plog.log_end_offset == 2
    assert plog.size_bytes() == size_before
    assert (d / "00000000000000000000.log").stat().st_size == size_before
    assert values(plog) == [(0, b"first"), (1, b"second")]
    with pytest.raises(KafkaStorageError):
        plog.append(*batch(b"still full"))
    disk.room = None  # space returns
    assert plog.append(*batch(b"third")) == 2
    assert values(plog) == [(0, b"first"), (1, b"second"), (2, b"third")]
    plog.close()
    plog = open_log(d, FlakyDisk())
    assert values(plog) == [(0, b"first"), (1, b"second"), (2, b"third")]
    plog.close()


def test_failed_truncate_leaves_garbage_that_is_ignored_and_overwritten(tmp_path, disk):
    d = tmp_path / "t-0"
    plog = open_log(d, disk)
    plog.append(*batch(b"keep"))
    disk.room, disk.fail_truncate = 25, True
    with pytest.raises(KafkaStorageError):
        plog.append(*batch(b"lost" * 20))
    assert (d / "00000000000000000000.log").stat().st_size > plog.size_bytes()  # garbage
    assert values(plog) == [(0, b"keep")]  # never served
    disk.room, disk.fail_truncate = None, False
    assert plog.append(*batch(b"next")) == 1  # written over the garbage, not after it
    assert values(plog) == [(0, b"keep"), (1, b"next")]
    plog.close()
    plog = open_log(d, FlakyDisk())
    assert values(plog) == [(0, b"keep"), (1, b"next")]
    plog.close()


def test_garbage_left_by_a_crash_after_a_failed_write_is_cut_on_restart(tmp_path, disk):
    d = tmp_path / "t-0"
    plog = open_log(d, disk)
    plog.append(*batch(b"keep"))
    disk.room, disk.fail_truncate = 25, True
    with pytest.raises(KafkaStorageError):
        plog.append(*batch(b"lost" * 20))
    # no close(): the broker died here
    plog = open_log(d, FlakyDisk())
    assert plog.log_end_offset == 1
    assert (d / "00000000000000000000.log").stat().st_size == plog.size_bytes()


def test_failed_fsync_is_reported_and_retried(tmp_path, disk):
    plog = open_log(tmp_path / "t-0", disk)
    plog.append(*batch(b"a"))
    disk.fail_sync = True
    with pytest.raises(KafkaStorageError):
        plog.flush()
    disk.fail_sync = False
    calls = []
    original = disk.sync
    disk.sync = lambda fd: (calls.append(fd), original(fd))
    plog.flush()
    assert calls, "the segment that failed to sync is synced again"
    plog.close()


def test_flush_covers_a_segment_rolled_before_it(tmp_path, disk):
    plog = open_log(tmp_path / "t-0", disk, segment_bytes=100)
    synced = []
    original = disk.sync
    disk.sync = lambda fd: (synced.append(fd), original(fd))
    plog.append(*batch(b"a" * 60))
    plog.append(*batch(b"b" * 60))  # rolls: "a" sits in a sealed segment, not yet synced
    assert len(plog.segments()) == 2
    plog.flush()
    assert len(synced) == 2
    plog.close()
