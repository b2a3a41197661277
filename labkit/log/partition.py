"""The log of one topic-partition: an ordered list of segments, the last one active.

Theory of operation
-------------------
Format: a directory of segments (labkit/log/segment.py), each named by its base
offset. Offsets are assigned here: ``append`` stamps ``log_end_offset`` into the
batch's first 8 bytes (the CRC does not cover them) and writes the rest untouched.

Invariants:
- segments are sorted by base offset and their offset ranges do not overlap;
  the last one is the only one written to (the *active* segment);
- ``log_start_offset`` is the first segment's base offset, so the segment file
  names are its durable record: retention deletes whole segments from the front,
  compaction keeps each group's first base offset; DeleteRecords may move it into
  a segment, recorded in ``log-start-offset.checkpoint`` (labkit/log/start_offset.py),
  and the start is the larger of the two;
- ``log_end_offset`` is the active segment's ``next_offset`` (one past the last
  record); it is also the high watermark (one broker, no replicas) until replication
  sets one (partition_replica.py);
- offsets may have gaps after compaction: a read returns the first batch that
  holds an offset ``>=`` the one asked for.

Durability: ``append`` returns after the bytes reached the OS (a killed process
loses nothing); ``flush`` fsyncs every segment written since the last flush and,
after a roll or deletion, the directory (acks=all).

Thread-safety: ``append``, ``read``, ``flush``, ``offset_for_timestamp`` are meant
for the broker's loop thread; ``apply_retention`` and ``compact`` may run on a
background thread. One lock guards the segment list and every file access, so a
read never sees a closed or half-swapped segment (a read that lost a race with
retention gets OffsetOutOfRangeError, as the consumer would a moment later).
Compaction does its slow work on duplicated file descriptors outside the lock and
only takes it to swap files; retention and compaction exclude each other with a
second lock. ``flush`` fsyncs duplicated descriptors outside the lock, so it may
also run on its own thread (group commit); so does ``save_log_start``, which makes a
start moved by ``move_log_start`` (DeleteRecords, on the loop) durable.

Retention, DeleteRecords' log start and compaction are ``PartitionMaintenance``
(partition_maintenance.py), which this class extends: the same object, the same two
locks and the rules above (the pure parts live in retention.py, compaction.py,
recovery.py and start_offset.py). What a follower replica needs (appends at the
leader's offsets, truncation, the high watermark, the leader-epoch cache saved by
``flush``) is ``PartitionReplica`` (partition_replica.py), also extended here.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from bisect import bisect_right
from pathlib import Path

from labkit._clock import Clock
from labkit.errors import (
    CorruptRecordError,
    MessageSizeTooLargeError,
    OffsetOutOfRangeError,
)
from labkit.log import compaction, start_offset
from labkit.log.batchio import DEFAULT_OPS, FileOps
from labkit.log.config import LogConfig
from labkit.log.index import OFFSET_ENTRY, TIME_ENTRY
from labkit.log.leader_epochs import LeaderEpochCache
from labkit.log.partition_maintenance import PartitionMaintenance, storage_error
from labkit.log.partition_replica import PartitionReplica
from labkit.log.producer_journal import PartitionProducers
from labkit.log.recovery import fsync_dir, load_segments
from labkit.log.segment import MAX_RELATIVE_OFFSET, Segment, SegmentInfo
from labkit.protocol.records import BASE_OFFSET, BatchHeader

log = logging.getLogger(__name__)


class PartitionLog(PartitionMaintenance, PartitionReplica):
    """Append, read and maintain one partition's segments. Open with ``PartitionLog.open``."""

    def __init__(
        self,
        directory: Path,
        config: LogConfig,
        clock: Clock,
        segments: list[Segment],
        ops: FileOps,
    ):
        self.directory = directory
        self._config = config
        self._clock = clock
        self._ops = ops
        self._segments = segments
        self._bases = [s.base_offset for s in segments]
        self._active = segments[-1]
        self._leo = self._active.next_offset
        self._lock = threading.RLock()
        self._maintenance = threading.Lock()
        self._unsynced: set[Segment] = set()
        self._unindexed: list[Segment] = []  # sealed by a roll, index files not written yet
        self._dir_dirty = False
        self._closed = False
        self._offline: str | None = None
        self._clean_state: compaction.CleanState | None = None
        self._start = max(self._bases[0], min(start_offset.read(directory), self._leo))
        self._saved_start = self._start  # what log-start-offset.checkpoint holds
        self._checkpointing = threading.Lock()  # one checkpoint write at a time
        # idempotent producers' state (producer_journal.py), opened by the broker on the
        # first batch that carries a producer id; it trusts the log end recovery left
        self.producers: PartitionProducers | None = None
        self.recovered_end_offset = self._leo
        self.leader_epochs = LeaderEpochCache.open(directory, self._leo)
        self._high_watermark: int | None = None  # None: the log end (single-broker mode)

    @classmethod
    def open(
        cls, directory: Path | str, config: LogConfig, clock: Clock, *, ops: FileOps | None = None
    ) -> PartitionLog:
        """Open (or create) the log in ``directory``, recovering from a crash if needed.

        ``ops`` replaces the write system calls (tests simulate a full disk with it).
        Raises KafkaStorageError when the directory cannot be created or read.
        """
        directory = Path(directory)
        try:
            segments = load_segments(directory, config, ops or DEFAULT_OPS)
        except OSError as exc:
            raise storage_error("opening the log", directory, exc) from exc
        return cls(directory, config, clock, segments, ops or DEFAULT_OPS)

    # -- properties ---------------------------------------------------------------------------

    @property
    def config(self) -> LogConfig:
        return self._config

    def update_config(self, config: LogConfig) -> None:
        """New settings apply from the next append / retention / compaction on."""
        with self._lock:
            self._config = config

    @property
    def log_end_offset(self) -> int:
        return self._leo

    def size_bytes(self) -> int:
        with self._lock:
            return sum(s.size for s in self._segments)

    def segments(self) -> list[SegmentInfo]:
        with self._lock:
            self._check_open()
            return [s.info(s is self._active) for s in self._segments]

    # -- append -------------------------------------------------------------------------------

    def append(self, batch: bytes | memoryview, header: BatchHeader) -> int:
        """Append one validated batch; returns its base offset (the stamped one).

        Raises MessageSizeTooLargeError (over max.message.bytes), CorruptRecordError
        (``batch`` and ``header`` disagree on the size) and KafkaStorageError (the write
        failed, e.g. disk full: nothing was appended; retry once space returns).
        """
        size = header.size
        config = self._config
        if size > config.max_message_bytes:
            raise MessageSizeTooLargeError(
                f"the record batch is {size} bytes, more than this topic's max.message.bytes="
                f"{config.max_message_bytes}; send smaller batches (producer batch_size / "
                "max_request_size) or raise the topic's max.message.bytes"
            )
        if len(batch) != size:
            raise CorruptRecordError(f"the batch is {len(batch)} bytes but its header says {size}")
        with self._lock:
            self._check_open()
            seg = self._active
            now = self._clock.time_ms()
            base = self._leo
            next_offset = base + header.last_offset_delta + 1
            if seg.size and self._should_roll(seg, size, next_offset, now):
                seg = self._roll()
            try:
                seg.append(
                    (BASE_OFFSET.pack(base), memoryview(batch)[8:]),
                    size,
                    base,
                    next_offset,
                    header.max_timestamp,
                    config.index_interval_bytes,
                    now,
                )
            except OSError as exc:
                raise storage_error("appending to the log", self.directory, exc) from exc
            self._leo = next_offset
            self._unsynced.add(seg)
            return base

    def _should_roll(self, seg: Segment, size: int, next_offset: int, now: int) -> bool:
        config = self._config
        return (
            seg.size + size > config.segment_bytes
            or (seg.rolling_ms is not None and now - seg.rolling_ms >= config.segment_ms)
            or (len(seg.index) + 1) * OFFSET_ENTRY.size > config.segment_index_bytes
            or (len(seg.time_index) + 1) * TIME_ENTRY.size > config.segment_index_bytes
            or next_offset - 1 - seg.base_offset > MAX_RELATIVE_OFFSET
        )

    def _roll(self) -> Segment:
        """Seal the active segment and start a new one at the log end. Lock held."""
        try:
            new = Segment.create(self.directory, self._leo, self._ops)
        except OSError as exc:
            raise storage_error("creating a new segment", self.directory, exc) from exc
        self._active.seal(indexes=False)  # written by write_sealed_indexes, off the loop
        self._unindexed.append(self._active)
        self._segments = [*self._segments, new]
        self._bases = [*self._bases, new.base_offset]
        self._active = new
        self._dir_dirty = True
        return new

    def flush(self) -> None:
        """fsync everything appended so far (and the directory after a roll/deletion).

        Raises KafkaStorageError when the disk reports an error.
        """
        fds: list[int] = []
        with self._lock:
            if self._closed:
                return
            pending = list(self._unsynced)
            self._unsynced.clear()
            dir_dirty, self._dir_dirty = self._dir_dirty, False
        try:
            with self._lock:  # a descriptor of each, so a concurrent close/delete is harmless
                for seg in pending:
                    if seg.fd >= 0 or seg in self._segments:
                        fds.append(seg.open_fd())
            for fd in fds:  # the slow part runs without the lock
                self._ops.sync(fd)
            if dir_dirty:
                fsync_dir(self.directory)
            if self.producers is not None:  # acks=all: a batch and its entry together
                self.producers.sync()
            self.leader_epochs.save()  # a no-op unless replication changed it
        except OSError as exc:
            with self._lock:
                live = set(self._segments)
                self._unsynced.update(s for s in pending if s in live)
                self._dir_dirty |= dir_dirty
            raise storage_error("fsync of the log", self.directory, exc) from exc
        finally:
            for fd in fds:
                os.close(fd)

    @property
    def sealed_unindexed(self) -> bool:
        """Whether a roll sealed a segment whose index files are not written yet."""
        return bool(self._unindexed)

    def write_sealed_indexes(self) -> None:
        """Write the index files of the segments rolls sealed (the flusher thread: the loop
        never writes them). Each is written beside its final name and renamed under the
        lock only if the segment is still in the log (retention or compaction may have
        removed it meanwhile). The files are a cache: a failure is logged, never raised,
        and a crash before the rename leaves the empty files ``Segment.create`` wrote,
        which recovery rebuilds from the ``.log``."""
        with self._lock:
            pending, self._unindexed = self._unindexed, []
            contents = [seg.index_bytes() for seg in pending]
        for seg, content in zip(pending, contents, strict=True):
            staged = seg.stage_indexes(content)  # the slow part runs without the lock
            with self._lock:
                live = seg in self._segments
                try:
                    for tmp, final in staged:
                        if live:
                            os.replace(tmp, final)
                        else:
                            tmp.unlink(missing_ok=True)
                except OSError as exc:
                    log.warning("could not install the indexes of %s: %s", seg.log_path, exc)

    # -- read ---------------------------------------------------------------------------------

    def read(self, offset: int, max_bytes: int) -> bytes:
        """Whole batches from the one holding ``offset``, up to ``max_bytes`` (at least one).

        ``b""`` at the log end. The first batch may start before ``offset``. Raises
        OffsetOutOfRangeError outside [log_start_offset, log_end_offset].
        """
        with self._lock:
            if offset == self._leo:
                return b""
            bases = self._bases
            if offset < bases[0] or offset < self._start or offset > self._leo:
                raise OffsetOutOfRangeError(
                    f"offset {offset} is outside this partition's range "
                    f"[{self.log_start_offset}, {self._leo}]; seek to the beginning or the "
                    "end (auto_offset_reset)"
                )
            self._check_open()
            segments = self._segments
            i = bisect_right(bases, offset) - 1
            try:
                while i < len(segments):
                    data = segments[i].read(offset, max_bytes)
                    if data is not None:
                        return data
                    i += 1
            except OSError as exc:
                raise storage_error("reading the log", self.directory, exc) from exc
            return b""

    def offset_for_timestamp(self, timestamp_ms: int) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record with timestamp >= ``timestamp_ms``.

        None when no record is that late. Raises KafkaStorageError on a read error.
        """
        with self._lock:
            self._check_open()
            try:
                for seg in self._segments:
                    if seg.max_timestamp >= timestamp_ms:
                        found = seg.find_timestamp(timestamp_ms)
                        if found is not None:  # none below the log start (DeleteRecords)
                            return max(found[0], self.log_start_offset), found[1]
            except OSError as exc:
                raise storage_error("reading the log", self.directory, exc) from exc
        return None

    # -- closing ------------------------------------------------------------------------------

    def close(self) -> None:
        """Write the indexes, fsync and close the files. A closed log rejects every call."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        with self._maintenance, self._lock:  # a running compaction sees _closed and stops
            try:
                for seg in self._unsynced:
                    seg.sync()
                for seg in self._unindexed:
                    seg.write_indexes()
                self._unindexed.clear()
                self._active.seal()
                self.leader_epochs.save()
                fsync_dir(self.directory)
            except OSError as exc:
                log.warning("closing the log in %s: %s", self.directory, exc)
            self._unsynced.clear()
            for seg in self._segments:
                seg.close()
            if self.producers is not None:
                self.producers.close()

    def delete(self) -> None:
        """Close the log and remove its directory. Raises KafkaStorageError."""
        self.close()
        try:
            shutil.rmtree(self.directory)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise storage_error("deleting the partition", self.directory, exc) from exc

    def __repr__(self) -> str:
        return (
            f"PartitionLog({self.directory}, offsets [{self.log_start_offset}, "
            f"{self._leo}), {len(self._bases)} segments)"
        )
