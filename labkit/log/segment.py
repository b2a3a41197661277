"""One segment: a ``.log`` file of whole record batches plus its two indexes.

Theory of operation
-------------------
Files (Kafka's layout), named by the segment's base offset, 20 digits::

    00000000000000000000.log        record batches, back to back, exactly as produced
                                    (the broker's base offset stamped in); no other framing
    00000000000000000000.index      sparse offset index (labkit/log/index.py)
    00000000000000000000.timeindex  time index (labkit/log/index.py)

Invariants: ``size`` is the end of the last whole batch; every byte before it is a
valid batch (checked by CRC when it was produced and again by the recovery scan);
batch offsets strictly increase and are ``>= base_offset``; ``next_offset`` is one
past the last batch's last offset (``base_offset`` when empty). Bytes past
``size`` (a torn write, a failed append that could not be truncated) are never
read and are cut off by the next recovery.

Only the active segment keeps its file open; a sealed one opens it for each read
(a partition with thousands of small segments must not run out of descriptors). The
read path (finding a batch by offset or timestamp) is ``SegmentReads``
(segment_reads.py), which this class extends.

Writes go through ``FileOps.pwritev`` at the tracked ``size`` (not O_APPEND), so a
failed append can never shift later batches, and the unbuffered write reaches the
OS before ``append`` returns (durable against a process crash; ``sync`` makes it
durable against a power cut). A failed write is truncated back and raised.

Opening a segment either trusts its index files after cheap checks (sealed
segments: entries in range and increasing, the last entry lands on a batch, a
header walk from it ends exactly at the end of the file) or rebuilds them with a
full CRC scan that truncates at the first torn or corrupt batch (the active
segment always; a sealed one whose checks fail).

Not thread-safe: ``PartitionLog`` serializes access with its lock.

Every write path (append, truncation, sealing, index files, recovery's rebuild) stays
here, in one view, with the invariants above (the tracked size, the index, what a torn
write leaves).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from labkit.errors import CorruptRecordError
from labkit.log.batchio import (
    DEFAULT_OPS,
    O_BINARY,
    FileOps,
    iter_batches,
    pread,
)
from labkit.log.index import OffsetIndex, TimeIndex
from labkit.log.segment_reads import WALK_CHUNK, SegmentReads
from labkit.protocol.records import HEADER_SIZE, read_header

log = logging.getLogger(__name__)

LOG, INDEX, TIMEINDEX = ".log", ".index", ".timeindex"
WRITING = ".writing"  # an index file being written off the loop thread, not yet renamed

MAX_RELATIVE_OFFSET = (1 << 31) - 1  # relative offsets stay well inside the index's uint32


def segment_paths(directory: Path, base_offset: int, suffix: str = "") -> tuple[Path, Path, Path]:
    """The .log, .index and .timeindex paths of a segment (``suffix`` as in ``.cleaned``)."""
    stem = f"{base_offset:020d}"
    return (
        directory / (stem + LOG + suffix),
        directory / (stem + INDEX + suffix),
        directory / (stem + TIMEINDEX + suffix),
    )


@dataclass(frozen=True)
class SegmentInfo:
    """A snapshot of one segment, for retention decisions and ``describe``."""

    base_offset: int
    next_offset: int  # one past the last record's offset (== base_offset when empty)
    size_bytes: int
    first_timestamp: int  # the first batch's base timestamp, -1 when empty
    last_timestamp: int  # the largest record timestamp, -1 when empty
    path: Path
    active: bool = False


class Segment(SegmentReads):
    """One open segment; see the module docstring."""

    __slots__ = (
        "base_offset",
        "log_path",
        "index_path",
        "timeindex_path",
        "fd",
        "ops",
        "size",
        "next_offset",
        "last_batch_offset",
        "max_timestamp",
        "index",
        "time_index",
        "bytes_since_index",
        "rolling_ms",
        "tail_dirty",
        "_first_ts",
        "_hints",
    )

    def __init__(self, directory: Path, base_offset: int, fd: int, ops: FileOps, suffix: str):
        self.base_offset = base_offset
        self.log_path, self.index_path, self.timeindex_path = segment_paths(
            directory, base_offset, suffix
        )
        self.fd = fd
        self.ops = ops
        self.size = 0
        self.next_offset = base_offset
        self.last_batch_offset = base_offset
        self.max_timestamp = -1
        self.index = OffsetIndex(base_offset)
        self.time_index = TimeIndex(base_offset)
        self.bytes_since_index = 0
        self.rolling_ms: int | None = None  # when the segment got its first batch (for segment.ms)
        self.tail_dirty = False  # a failed append left bytes past ``size``
        self._first_ts: int | None = None
        self._hints: dict[int, int] = {}  # tail hints of the read path (segment_reads.py)

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def create(
        cls, directory: Path, base_offset: int, ops: FileOps = DEFAULT_OPS, suffix: str = ""
    ) -> Segment:
        """A new empty segment (empty index files too). Raises OSError."""
        log_path, index_path, timeindex_path = segment_paths(directory, base_offset, suffix)
        fd = os.open(log_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | O_BINARY, 0o644)
        try:
            for path in (index_path, timeindex_path):
                path.write_bytes(b"")
        except OSError:
            os.close(fd)
            log_path.unlink(missing_ok=True)
            raise
        return cls(directory, base_offset, fd, ops, suffix)

    @classmethod
    def open_existing(
        cls,
        directory: Path,
        base_offset: int,
        interval: int,
        *,
        active: bool,
        ops: FileOps = DEFAULT_OPS,
    ) -> tuple[Segment, str | None]:
        """Open a segment from disk; returns it and a note of what recovery did (or None).

        The active segment is always rescanned; a sealed one only if its indexes do not
        check out. Raises OSError when the files cannot be opened or truncated.
        """
        log_path = segment_paths(directory, base_offset)[0]
        fd = os.open(log_path, os.O_RDWR | O_BINARY)
        seg = cls(directory, base_offset, fd, ops, "")
        try:
            if active:
                note = seg._rebuild(interval)
            elif seg._load_indexes():
                note = None
                seg.close()
            else:
                note = seg._rebuild(interval) or "rebuilt missing or inconsistent index files"
                seg.seal()
        except OSError:
            seg.close()
            raise
        return seg, note

    def _track(
        self,
        position: int,
        size: int,
        base_offset: int,
        next_offset: int,
        max_timestamp: int,
        interval: int,
    ) -> None:
        """Account for a batch written at ``position``: indexes, counters, max timestamp."""
        if max_timestamp > self.max_timestamp:
            self.max_timestamp = max_timestamp
        if self.bytes_since_index >= interval and position > 0:
            self.index.append(base_offset, position)
            self.time_index.maybe_append(self.max_timestamp, base_offset)
            self.bytes_since_index = 0
        self.bytes_since_index += size
        self.last_batch_offset = base_offset
        self.next_offset = next_offset
        self.size = position + size

    def _reset(self) -> None:
        self.index.clear()
        self.time_index.clear()
        self.size = self.bytes_since_index = 0
        self.next_offset = self.last_batch_offset = self.base_offset
        self.max_timestamp = -1
        self.rolling_ms = self._first_ts = None
        self._hints.clear()

    def _rebuild(self, interval: int) -> str | None:
        """Full CRC scan: rebuild the indexes in memory, truncate a torn/corrupt tail."""
        self._reset()
        file_size = os.fstat(self.fd).st_size
        reason = None
        expected = self.base_offset
        try:
            for pos, h, _buf, _off in iter_batches(self.fd, 0, file_size, validate=True):
                if (
                    h.base_offset < expected
                    or h.last_offset - self.base_offset > MAX_RELATIVE_OFFSET
                ):
                    raise CorruptRecordError(
                        f"batch at byte {pos} has offset {h.base_offset}, expected >= {expected}"
                    )
                if pos == 0:
                    self.rolling_ms = h.max_timestamp
                self._track(pos, h.size, h.base_offset, h.next_offset, h.max_timestamp, interval)
                expected = h.next_offset
        except CorruptRecordError as exc:
            reason = exc.args[0]
        if file_size == self.size:
            return None
        self.ops.ftruncate(self.fd, self.size)
        return (
            f"truncated {file_size - self.size} bytes after byte {self.size}, the records "
            f"from offset {self.next_offset} on ({reason})"
        )

    def _load_indexes(self) -> bool:
        """Trust the index files if they check out (module docstring); False = rebuild."""
        file_size = os.fstat(self.fd).st_size
        try:
            index = OffsetIndex.from_bytes(
                self.index_path.read_bytes(), self.base_offset, file_size
            )
            time_index = TimeIndex.from_bytes(self.timeindex_path.read_bytes(), self.base_offset)
        except OSError:
            return False
        if index is None or time_index is None:
            return False
        last = index.last()
        start = last[1] if last else 0
        max_ts = time_index.last_timestamp
        last_base = None
        try:
            for pos, h, _buf, _off in iter_batches(
                self.fd, start, file_size, validate=False, chunk=WALK_CHUNK * 4
            ):
                if pos == start and last is not None and h.base_offset != last[0]:
                    return False
                if last_base is not None and h.base_offset <= last_base:
                    return False
                last_base, next_offset = h.base_offset, h.next_offset
                max_ts = max(max_ts, h.max_timestamp)
        except CorruptRecordError:
            return False
        if last_base is None:  # empty file
            return not (file_size or len(index) or len(time_index))
        if time_index.last_offset != last_base and not (len(time_index) == 0 and max_ts < 0):
            return False
        self.index, self.time_index = index, time_index
        self.size = file_size
        self.next_offset, self.last_batch_offset, self.max_timestamp = (
            next_offset,
            last_base,
            max_ts,
        )
        return True

    # -- writing ---------------------------------------------------------------------------

    def append(
        self,
        buffers: Sequence,
        size: int,
        base_offset: int,
        next_offset: int,
        max_timestamp: int,
        interval: int,
        now_ms: int,
    ) -> None:
        """Write one batch (given as buffers to concatenate) at the end. Raises OSError
        after truncating any partial write back."""
        pos = self.size
        try:
            written = self.ops.pwritev(self.fd, buffers, pos)
            if written < size:
                data = memoryview(b"".join(buffers))
                while written < size:
                    n = self.ops.pwritev(self.fd, [data[written:]], pos + written)
                    if n <= 0:
                        raise OSError(5, f"short write to {self.log_path}")
                    written += n
        except OSError:
            self._truncate_tail()
            raise
        if self.rolling_ms is None:
            self.rolling_ms = now_ms
        self._track(pos, size, base_offset, next_offset, max_timestamp, interval)

    def _truncate_tail(self) -> None:
        try:
            self.ops.ftruncate(self.fd, self.size)
            self.tail_dirty = False
        except OSError as exc:
            self.tail_dirty = True
            log.warning(
                "could not cut a failed write off %s (%s); the bytes past %d are "
                "ignored and removed at the next start",
                self.log_path,
                exc,
                self.size,
            )

    def sync(self) -> None:
        """fsync (fdatasync) the .log file. Raises OSError."""
        fd = self.open_fd()
        try:
            self.ops.sync(fd)
        finally:
            os.close(fd)

    def seal(self, indexes: bool = True) -> None:
        """The segment stops being active: final time-index entry, index files written
        (unless ``indexes`` is False: a roll leaves them to ``stage_indexes``, off the
        loop thread), descriptor closed (sealed segments open their file only while
        reading it)."""
        if self.tail_dirty:
            self._truncate_tail()
        if self.size:
            self.time_index.seal(self.max_timestamp, self.last_batch_offset)
        if indexes:
            self.write_indexes()
        self.close()

    def index_bytes(self) -> tuple[bytes, bytes]:
        """The contents of the .index and .timeindex files."""
        return self.index.to_bytes(), self.time_index.to_bytes()

    def write_indexes(self) -> bool:
        """Write both index files. They are a cache: failure is logged, never raised."""
        try:
            for path, data in zip(
                (self.index_path, self.timeindex_path), self.index_bytes(), strict=True
            ):
                path.write_bytes(data)
            return True
        except OSError as exc:
            self._index_write_failed(exc, (self.index_path, self.timeindex_path))
            return False

    def stage_indexes(self, contents: tuple[bytes, bytes]) -> list[tuple[Path, Path]]:
        """Write ``contents`` (``index_bytes()``) to ``<index file>.writing`` files and
        return the (staged, final) pairs for the caller to rename once it has checked
        the segment is still live (a retention or a compaction may have replaced it
        meanwhile; recovery deletes ``.writing`` leftovers). [] after a failure, logged
        (the index files are a cache: the next start rebuilds them)."""
        pairs = [
            (path.with_name(path.name + WRITING), path)
            for path in (self.index_path, self.timeindex_path)
        ]
        try:
            for (staged, _final), data in zip(pairs, contents, strict=True):
                staged.write_bytes(data)
        except OSError as exc:
            self._index_write_failed(exc, [staged for staged, _final in pairs])
            return []
        return pairs

    def _index_write_failed(self, exc: OSError, paths) -> None:
        log.warning(
            "could not write the indexes of %s (%s); they will be rebuilt on the next start",
            self.log_path,
            exc,
        )
        for path in paths:
            try:
                path.unlink(missing_ok=True)
            except OSError:
                pass

    @property
    def first_timestamp(self) -> int:
        """The first batch's base timestamp, -1 when empty. Raises OSError."""
        if self._first_ts is None:
            if self.size < HEADER_SIZE:
                return -1  # not cached: the active segment may get its first batch later
            fd = self.open_fd()
            try:
                self._first_ts = read_header(pread(fd, HEADER_SIZE, 0)).base_timestamp
            finally:
                os.close(fd)
        return self._first_ts

    def info(self, active: bool = False) -> SegmentInfo:
        return SegmentInfo(
            self.base_offset,
            self.next_offset,
            self.size,
            self.first_timestamp,
            self.max_timestamp,
            self.log_path,
            active,
        )

    # -- closing ---------------------------------------------------------------------------

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def delete_files(self) -> None:
        """Close and remove the three files (missing ones are fine). Raises OSError.

        The index files go first: a crash in between never leaves index files without
        their .log, which recovery reports as lost records."""
        self.close()
        for path in (self.timeindex_path, self.index_path, self.log_path):
            path.unlink(missing_ok=True)
