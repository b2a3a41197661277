"""The maintenance half of ``PartitionLog`` (partition.py extends ``PartitionMaintenance``):
retention, DeleteRecords' log start offset, compaction. Same object, same state, same
locks as partition.py's theory of operation says; this module only groups the methods
that may run on a background thread (the cleaner; the flusher for ``save_log_start``).

Theory of operation
-------------------
- ``apply_retention`` and ``compact`` hold ``_maintenance`` for their whole run (they
  exclude each other) and take ``_lock`` only to read or change the segment list.
  Retention deletes whole segments from the front by Kafka's rules (retention.py), the
  active one too once it expired: it first rolls a new empty active segment at the log
  end. Before deleting, it fsyncs the directory (outside the lock), so the segments
  that stay are on disk before any goes: the first one's name is the log start offset,
  and a log never loses every segment file (a restart would begin again at offset 0);
  after deleting, it fsyncs the directory again. Compaction copies sealed segments from
  duplicated descriptors outside ``_lock`` and takes it again only to swap the cleaned
  files in (if the segments it read are still the log's first ones; a swap that fails
  halfway takes the partition offline until a restart recovers it).
- ``move_log_start`` (DeleteRecords, on the loop) takes only ``_lock``, so a long
  compaction does not stall it: the start moves in memory and the segments wholly
  below it are deleted; ``save_log_start`` (the flusher) writes the checkpoint outside
  the lock, one writer at a time (``_checkpointing``), and ``log_start_unsaved`` says
  whether one is due.
- A closed log does nothing; ``_check_open`` raises KafkaStorageError for a closed or
  offline one. Every OSError becomes KafkaStorageError (``storage_error``) saying what
  to do.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from labkit._clock import Clock
from labkit.errors import KafkaStorageError, OffsetOutOfRangeError
from labkit.log import compaction, start_offset
from labkit.log.batchio import FileOps
from labkit.log.config import LogConfig
from labkit.log.recovery import fsync_dir
from labkit.log.retention import plan_retention
from labkit.log.segment import Segment, SegmentInfo

log = logging.getLogger("labkit.log.partition")  # the log's own logger, as before the split


def storage_error(what: str, directory: Path, exc: OSError) -> KafkaStorageError:
    return KafkaStorageError(
        f"{what} in {directory} failed: {exc.strerror or exc}. Free some disk space or fix the data directory's permissions; "
        "the log stays consistent and accepts writes again once the disk does."
    )


def _retention_info(seg: Segment) -> SegmentInfo:
    """``seg.info()`` with Kafka's ``largestTimestamp``: for records that carry no timestamp
    (-1), the time the ``.log`` file was last written. Raises OSError."""
    info = seg.info()
    if info.size_bytes and info.last_timestamp < 0:
        info = replace(info, last_timestamp=os.stat(seg.log_path).st_mtime_ns // 1_000_000)
    return info


class PartitionMaintenance:
    """Retention, the log start offset and compaction of one ``PartitionLog``."""

    # the log's state, set by PartitionLog.__init__ (partition.py)
    directory: Path
    _config: LogConfig
    _clock: Clock
    _ops: FileOps
    _segments: list[Segment]
    _bases: list[int]
    _leo: int
    _lock: threading.RLock
    _maintenance: threading.Lock
    _checkpointing: threading.Lock
    _unsynced: set[Segment]
    _unindexed: list[Segment]
    _dir_dirty: bool
    _closed: bool
    _offline: str | None
    _clean_state: compaction.CleanState | None
    _start: int
    _saved_start: int
    _roll: Callable[[], Segment]  # partition.py: seal the active segment, start one at the end

    if TYPE_CHECKING:

        @property
        def high_watermark(self) -> int: ...  # partition_replica.py

    @property
    def log_start_offset(self) -> int:
        return max(self._bases[0], self._start)

    def _check_open(self) -> None:
        if self._closed:
            raise KafkaStorageError(f"the log in {self.directory} is closed")
        if self._offline:
            raise KafkaStorageError(self._offline)

    # -- maintenance (may run on a background thread) -----------------------------------------

    def apply_retention(self) -> int:
        """Delete the segments retention.ms / retention.bytes expire; returns how many.

        Kafka's rules (retention.py): oldest first, the active segment included once
        it expired (a new empty one is rolled at the log end first, so the log start
        offset becomes the log end offset). Moves log_start_offset. Raises
        KafkaStorageError if a file cannot be created or removed (the log stays
        consistent).
        """
        with self._maintenance:
            with self._lock:
                if self._closed or self._offline:
                    return 0
                try:
                    infos = [_retention_info(s) for s in self._segments]
                except OSError as exc:
                    raise storage_error("reading segment times", self.directory, exc) from exc
                reasons = plan_retention(
                    infos,
                    self._clock.time_ms(),
                    self._config,
                    self.log_start_offset,
                    self.high_watermark,  # never past it (cluster mode; else the log end)
                )
                if not reasons:
                    return 0
                if len(reasons) == len(self._segments):
                    self._roll()  # a log keeps one segment: the new active one, at the log end
                victims = self._segments[: len(reasons)]
            fsync_dir(self.directory)  # what stays is on disk before any goes; no lock held
            with self._lock:
                if self._closed or self._offline:
                    return 0
                # DeleteRecords may have deleted some meanwhile; the rest are still the front
                live = set(self._segments)
                left = [why for seg, why in zip(victims, reasons, strict=True) if seg in live]
                self._delete_front(left)
            fsync_dir(self.directory)  # and the deletions: a power cut does not undo them
            return len(left)

    def _delete_front(self, reasons: list[str]) -> None:
        """Delete the first ``len(reasons)`` segments (never the active one). Lock held."""
        victims = self._segments[: len(reasons)]
        self._segments = self._segments[len(reasons) :]
        self._bases = self._bases[len(reasons) :]
        try:
            for seg, reason in zip(victims, reasons, strict=True):
                self._unsynced.discard(seg)
                if seg in self._unindexed:  # close() must not write its index files back
                    self._unindexed.remove(seg)
                seg.delete_files()
                log.info(
                    "%s: deleted %s; log start offset is now %d",
                    self.directory.name,
                    reason,
                    self.log_start_offset,
                )
        except OSError as exc:
            raise storage_error("deleting old segments", self.directory, exc) from exc
        finally:
            self._dir_dirty = True  # the next flush makes the deletion durable

    def delete_records(self, offset: int) -> int:
        """Kafka's DeleteRecords, durable on return: ``move_log_start`` then
        ``save_log_start`` (the broker calls them apart: its flusher thread saves)."""
        low = self.move_log_start(offset)
        self.save_log_start()
        return low

    def move_log_start(self, offset: int) -> int:
        """Make ``offset`` the log start offset in memory; returns the new start (the
        low watermark). Records below it can no longer be read (a fetch gets
        OFFSET_OUT_OF_RANGE); whole segments below it are deleted. Not durable until
        ``save_log_start`` (``log_start_unsaved`` says whether it is due).

        An offset at or below the current start changes nothing. Raises
        OffsetOutOfRangeError for an offset past the log end (the high watermark) or
        negative, KafkaStorageError when a segment cannot be deleted.
        """
        with self._lock:  # not _maintenance: a long compaction must not stall the caller
            self._check_open()
            if not 0 <= offset <= self._leo:
                raise OffsetOutOfRangeError(
                    f"cannot delete records before offset {offset}: this partition's "
                    f"offsets are [{self.log_start_offset}, {self._leo}] (the high "
                    "watermark is the largest offset allowed; -1 means it)"
                )
            if offset <= self.log_start_offset:
                return self.log_start_offset
            self._start = offset
            below = sum(1 for base in self._bases[1:] if base <= offset)
            self._delete_front(
                [
                    f"segment {b:020d}: below the log start offset {offset} (DeleteRecords)"
                    for b in self._bases[:below]
                ]
            )
            return offset

    @property
    def log_start_unsaved(self) -> bool:
        """Whether a start moved by ``move_log_start`` is not in the checkpoint yet."""
        return self._start > self._saved_start

    def save_log_start(self) -> None:
        """Write the moved log start offset to its checkpoint and fsync it (the broker's
        flusher thread; the write runs without the lock, so appends and reads go on).
        Raises KafkaStorageError; the start then stays unsaved, for the next call."""
        with self._checkpointing:
            with self._lock:
                if self._closed or self._start <= self._saved_start:
                    return
                offset = self._start
            try:
                start_offset.write(self.directory, offset)
            except OSError as exc:
                raise storage_error("saving the log start offset", self.directory, exc) from exc
            with self._lock:
                self._saved_start = max(self._saved_start, offset)

    def compact(self) -> int:
        """Compact the sealed segments (cleanup.policy has compact); returns records removed.

        Keeps the latest record per key, offsets unchanged; tombstones go after
        delete.retention.ms; records younger than min.compaction.lag.ms are not touched.
        Raises KafkaStorageError if the cleaned files cannot be written.
        """
        with self._maintenance:
            removed = self._compact_pass(merge_only=False)
            if removed is not None:  # cleaned segments shrank: merge neighbours that now fit
                self._compact_pass(merge_only=True)
            if removed:
                log.info("%s: compaction removed %d records", self.directory.name, removed)
            return removed or 0

    def _compact_pass(self, merge_only: bool) -> int | None:
        """One clean of the cleanable segments; None when there was nothing to do."""
        with self._lock:
            config = self._config
            if self._closed or self._offline or not config.compacts:
                return None
            now = self._clock.time_ms()
            sealed = self._segments[:-1]
            infos = [s.info() for s in sealed]
            count = compaction.cleanable_count(infos, now, config)
            sources, infos = sealed[:count], infos[:count]
            if not sources:
                return None
            if merge_only:
                if all(
                    end - start == 1
                    for start, end in compaction.plan_groups(infos, config.segment_bytes)
                ):
                    return None
            elif self._clean_state and self._clean_state.covers(infos, now):
                return None
            fds = []
            try:
                for s in sources:
                    fds.append((s.open_fd(), s.size))
            except OSError as exc:
                for fd, _size in fds:
                    os.close(fd)
                raise storage_error("reading segments to compact", self.directory, exc) from exc
        cleaner = compaction.Cleaner(self.directory, config, now, self._ops, lambda: self._closed)
        try:
            cleaned = cleaner.run(infos, fds)
        except compaction.Stopped:
            return None
        except OSError as exc:
            raise storage_error("writing a compacted segment", self.directory, exc) from exc
        finally:
            for fd, _size in fds:
                os.close(fd)
        with self._lock:
            if self._closed or self._segments[:count] != sources:
                cleaner.discard(cleaned)
                return None
            try:
                replaced = cleaner.install(cleaned, sources)
            except OSError as exc:
                self._offline = (
                    f"compaction of {self.directory} failed while swapping files "
                    f"({exc}); restart the broker to recover the partition"
                )
                raise KafkaStorageError(self._offline) from exc
            self._unsynced.difference_update(sources)
            self._segments = [*replaced, *self._segments[count:]]
            self._bases = [s.base_offset for s in self._segments]
            self._clean_state = cleaner.state(replaced)
            self._dir_dirty = True
        return cleaner.removed
