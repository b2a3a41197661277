"""The follower half of ``PartitionLog`` (partition.py extends ``PartitionReplica``):
append batches at the leader's offsets, truncate the log, the high watermark.

Theory of operation
-------------------
Same object, state and locks as partition.py's theory of operation; this module only
groups what replication adds (labkit/cluster wires it to the controller's decisions;
docs/storage.md, "Replication building blocks").

- ``append_as_follower(data, epochs)``: ``data`` is whole batches as the leader's
  fetch returned them, its offsets already stamped. Nothing is re-stamped: each batch
  is checked (CRC, framing) and written as it is. The first must start exactly at the
  log end and each next one right after the previous (Kafka's
  UnexpectedAppendOffsetException): an overlap is always refused, a gap only allowed
  in a compacted topic (compaction removes whole offset ranges on the leader). The
  leader-epoch entries the leader sent along (``epochs``) go into the cache for the
  offsets now in the log, its idempotent producers' entries for the appended batches
  (``producers``) into the producer-state journal (labkit's batches carry neither).
- ``truncate_to(offset)``: cut the log so it ends at ``offset`` (at the start of the
  batch holding it): later segments are deleted, the last kept one is cut and its
  indexes rebuilt, and it becomes the active segment again. The leader-epoch cache
  and the idempotent producers' journal forget what lay past the cut. Below the log
  start, the whole log goes and starts empty at ``offset``
  (``truncate_fully_and_start_at``, as a follower behind the leader's log start does).
  Truncation holds ``_maintenance`` (it excludes compaction and retention) and
  fsyncs: it runs on the replica fetcher's thread, not the loop.
- The high watermark: in single-broker mode it *is* the log end offset (nothing
  stored, nothing changes for today's users). Replication sets it
  (``set_high_watermark``: the leader's min log end over the ISR, a follower's
  ``min(leader's high watermark, own log end)``); from then on it is kept in memory,
  clamped to ``[log_start_offset, log_end_offset]``, and cut by truncation. It is not
  in the log's files: as Kafka, the data directory's ``replication-offset-checkpoint``
  holds them (hw_checkpoint.py, written by the cluster wiring), which sets a
  replicated partition's high watermark when it opens it (its log start when nothing
  is known); the leader's fetch answers move it from there.
"""

from __future__ import annotations

import os
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from labkit._clock import Clock
from labkit.errors import CorruptRecordError, KafkaStorageError
from labkit.log import start_offset
from labkit.log.batchio import FileOps, iter_batches
from labkit.log.config import LogConfig
from labkit.log.leader_epochs import LeaderEpochCache
from labkit.log.partition_maintenance import storage_error
from labkit.log.producer_journal import PartitionProducers, has_state
from labkit.log.recovery import fsync_dir
from labkit.log.segment import Segment
from labkit.protocol.records import BatchHeader, validate_batch, walk_batches


class UnexpectedAppendOffsetError(CorruptRecordError):
    """A follower was given batches that do not continue its log (a gap or an overlap)."""


class PartitionReplica:
    """Follower appends, truncation and the high watermark of one ``PartitionLog``."""

    # the log's state, set by PartitionLog.__init__ (partition.py)
    directory: Path
    _config: LogConfig
    _ops: FileOps
    _segments: list[Segment]
    _bases: list[int]
    _active: Segment
    _leo: int
    _start: int
    _lock: threading.RLock
    _maintenance: threading.Lock
    _unsynced: set[Segment]
    _unindexed: list[Segment]
    # and the methods of the other halves (partition.py, partition_maintenance.py)
    _check_open: Callable[[], None]
    _should_roll: Callable[[Segment, int, int, int], bool]
    _roll: Callable[[], Segment]

    if TYPE_CHECKING:  # partition_maintenance.py's property

        @property
        def log_start_offset(self) -> int: ...

    _dir_dirty: bool
    _clean_state: object
    _high_watermark: int | None
    leader_epochs: LeaderEpochCache
    producers: PartitionProducers | None
    recovered_end_offset: int

    _clock: Clock
    _saved_start: int
    # and, from partition.py / partition_maintenance.py: log_start_offset, _check_open,
    # _should_roll, _roll

    # -- the high watermark ----------------------------------------------------------

    @property
    def high_watermark(self) -> int:
        """What consumers may read up to: the log end offset until replication sets it
        (never below the log start; retention and DeleteRecords stop at it, but a follower
        that emptied its log to start at the leader's log start may be above it)."""
        hw = self._high_watermark
        return self._leo if hw is None else max(hw, self.log_start_offset)

    def set_high_watermark(self, offset: int) -> int:
        """Set the high watermark (clamped to [log start, log end]); returns it."""
        with self._lock:
            self._high_watermark = min(max(offset, self.log_start_offset), self._leo)
            return self._high_watermark

    # -- follower append ------------------------------------------------------------

    def append_as_follower(
        self,
        data: bytes,
        epochs: Iterable[tuple[int, int]] = (),
        producers: Iterable[tuple[int, int, int, int, int, int]] = (),
    ) -> int:
        """Append the leader's batches at their own offsets; returns the new log end.

        ``epochs``: (leader epoch, start offset) entries covering the batches;
        ``producers``: the leader's idempotent-producer entries (producer_journal.py's
        rows: producer id, epoch, first and last sequence, base offset, append time) for
        them; both as the leader's replica fetch sent them. A partial batch at the end
        (a fetch cut it) is left out, as a consumer does. Raises
        UnexpectedAppendOffsetError (a gap or an overlap: truncate, or fetch from the log
        end), CorruptRecordError (a bad batch: nothing was written), KafkaStorageError
        (the write failed)."""
        spans, error = walk_batches(data)
        if error is not None:
            raise error
        view = memoryview(data)
        with self._lock:
            self._check_open()
            compacted = self._config.compacts
            expected = self._leo
            headers: list[BatchHeader] = []
            for start, _end in spans:  # check every batch before writing any
                header = validate_batch(data, start, produced=False)
                if header.base_offset < expected or (
                    header.base_offset > expected and not compacted
                ):
                    what = "overlaps" if header.base_offset < expected else "leaves a gap after"
                    raise UnexpectedAppendOffsetError(
                        f"{self.directory.name}: the leader's batch at offset "
                        f"{header.base_offset} {what} this replica's log, which ends at "
                        f"{expected}; fetch from the log end offset, or truncate first "
                        "(OffsetsForLeaderEpoch)"
                    )
                headers.append(header)
                expected = header.next_offset
            for (start, _end), header in zip(spans, headers, strict=True):
                self._write_as_is(view[start : start + header.size], header)
            for epoch, start_offset in epochs:
                if start_offset < self._leo:
                    self.leader_epochs.assign(epoch, start_offset)
            self._record_producers(producers, headers)
            return self._leo

    def _record_producers(self, rows, headers: list[BatchHeader]) -> None:
        """Keep the leader's idempotence state for the batches just appended, so that a
        retried batch is still recognised after this replica becomes the leader."""
        appended = {h.base_offset for h in headers}
        wanted = [tuple(row) for row in rows if row[4] in appended]
        if not wanted:
            return
        if self.producers is None:
            self.producers = PartitionProducers.open(self.directory, self.recovered_end_offset)
        for row in wanted:
            self.producers.record(*row)

    def _write_as_is(self, batch: memoryview, header: BatchHeader) -> None:
        """``PartitionLog.append`` without stamping an offset. Lock held."""
        seg = self._active
        now = self._clock.time_ms()
        if seg.size and self._should_roll(seg, header.size, header.next_offset, now):
            seg = self._roll()
        try:
            seg.append(
                (batch,),
                header.size,
                header.base_offset,
                header.next_offset,
                header.max_timestamp,
                self._config.index_interval_bytes,
                now,
            )
        except OSError as exc:
            raise storage_error("appending to the log", self.directory, exc) from exc
        self._leo = header.next_offset
        self._unsynced.add(seg)

    # -- truncation -----------------------------------------------------------------

    def truncate_to(self, offset: int) -> int:
        """Cut the log so that it ends at ``offset`` (or before: at the start of the batch
        holding it); returns the new log end. Nothing happens at or past the log end.
        Below the log start the log is emptied to start at ``offset``. Raises
        KafkaStorageError (the partition must then be recovered by a restart)."""
        if offset < 0:
            raise ValueError(f"cannot truncate to a negative offset ({offset})")
        with self._maintenance, self._lock:
            self._check_open()
            if offset >= self._leo:
                return self._leo
            if offset <= self._bases[0] or offset < self.log_start_offset:
                return self._start_empty_at(offset)
            try:
                self._cut_segments(offset)
            except OSError as exc:
                raise storage_error("truncating the log", self.directory, exc) from exc
            self._after_truncation()
            return self._leo

    def truncate_fully_and_start_at(self, offset: int) -> int:
        """Delete every record; the log starts (and ends) at ``offset``. Raises
        KafkaStorageError."""
        if offset < 0:
            raise ValueError(f"cannot start the log at a negative offset ({offset})")
        with self._maintenance, self._lock:
            self._check_open()
            return self._start_empty_at(offset)

    def _start_empty_at(self, offset: int) -> int:
        """Locks held."""
        try:
            for seg in self._segments:
                seg.delete_files()
            new = Segment.create(self.directory, offset, self._ops)
            # the checkpoint may name a larger start, which a restart would trust
            start_offset.write(self.directory, offset)
        except OSError as exc:
            raise storage_error("emptying the log", self.directory, exc) from exc
        self._segments, self._bases, self._active = [new], [offset], new
        self._unsynced.clear()
        self._unindexed.clear()
        self._start = self._saved_start = offset
        self.leader_epochs.truncate_from_end(0)  # as Kafka: no epoch is known any more
        self._after_truncation()
        return offset

    def _cut_segments(self, offset: int) -> None:
        """Delete the segments from ``offset`` on, cut the one holding it and make it the
        active segment. Locks held; offset is inside (first base, log end)."""
        keep = bisect_left(self._bases, offset)  # segments with base < offset
        for seg in self._segments[keep:]:
            self._unsynced.discard(seg)
            seg.delete_files()
        last = self._segments[keep - 1]
        self._unindexed = [s for s in self._unindexed if s in self._segments[: keep - 1]]
        last.close()
        fd = last.open_fd()
        try:
            cut = None
            for pos, header, _buf, _off in iter_batches(fd, 0, last.size, validate=False):
                if header.next_offset > offset:
                    cut = pos
                    break
            if cut is not None:
                self._ops.ftruncate(fd, cut)
        finally:
            os.close(fd)
        reopened, _note = Segment.open_existing(
            self.directory,
            last.base_offset,
            self._config.index_interval_bytes,
            active=True,
            ops=self._ops,
        )
        reopened.write_indexes()  # the old files named offsets past the cut
        self._segments = [*self._segments[: keep - 1], reopened]
        self._bases = self._bases[:keep]
        self._active = reopened
        self._unsynced.discard(last)
        self._unsynced.add(reopened)

    def _after_truncation(self) -> None:
        """The log end moved back: everything that names offsets past it follows.
        Locks held."""
        self._leo = self._active.next_offset
        self._dir_dirty = True
        self._clean_state = None
        if self._high_watermark is not None:
            self._high_watermark = min(max(self._high_watermark, self.log_start_offset), self._leo)
        self.leader_epochs.truncate_from_end(self._leo)
        self.recovered_end_offset = min(self.recovered_end_offset, self._leo)
        if self.producers is None and has_state(self.directory):
            self.producers = PartitionProducers.open(self.directory, self.recovered_end_offset)
        if self.producers is not None:
            self.producers.truncate(self._leo)
        try:
            self.leader_epochs.save()
            fsync_dir(self.directory)
        except OSError as exc:
            raise KafkaStorageError(
                f"saving the truncated state of {self.directory} failed: {exc}"
            ) from exc
