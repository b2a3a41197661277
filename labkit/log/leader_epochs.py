"""The leader-epoch cache of one partition: which leader epoch began at which offset.

Theory of operation
-------------------
Every time a replica becomes a partition's leader the controller gives it a new,
larger *leader epoch*. The cache maps each epoch to the first offset written in it
(Kafka's ``LeaderEpochFileCache``), so that after a leader change a follower can ask
the new leader "where does my last epoch end on your side?" (OffsetsForLeaderEpoch,
KIP-101) and cut its log there instead of at its high watermark, which may lose
acknowledged records or keep records the leader never had (KIP-279).

File: ``leader-epoch-checkpoint`` in the partition directory, Kafka's own format
(``CheckpointFile`` version 0), ASCII lines::

    0                 version
    2                 number of entries
    0 0               epoch start_offset, epochs and offsets increasing
    3 150

labkit's batches carry no leader epoch (their header is covered by the CRC), so
unlike Kafka the cache cannot be rebuilt from the log: this file is the only record,
and the replicas pass epochs along with fetched batches (docs/storage.md).

Rules, as Kafka's (``assign``, ``truncate_from_end``, ``truncate_from_start``,
``end_offset_for``):
- ``assign(epoch, start)`` ignores a repeat of the latest epoch at or after its start;
  otherwise it removes the entries with an epoch ``>=`` the new one or a start
  ``>=`` the new start (a stale, diverging tail) and appends the new entry;
- truncating the log to ``end`` drops the entries that start at or past ``end``;
  moving the log start to ``start`` drops the entries wholly below it and moves the
  last of them to ``start``;
- ``end_offset_for(e, leo)``: the latest epoch ends at the log end; an older one ends
  where the next larger epoch starts (and answers the largest known epoch ``<= e``);
  an epoch past every known one is (-1, -1), Kafka's UNDEFINED.

Durability without the loop thread fsyncing (docs/architecture.md): changes happen in
memory under a lock and set ``unsaved``; ``save`` writes the whole file atomically (a
temporary file, fsync, rename, fsync of the directory) outside that lock, called by
``PartitionLog.flush`` on the flusher thread. A crash therefore leaves the old or the
new file whole. ``open`` drops entries at or past the log end that recovery left (the
log lost a tail the checkpoint had seen); a file that misses the newest entries
(killed before the flusher saved them) attributes the newest batches to an older
epoch, which makes a follower truncate more than needed and fetch them again: never
less. A malformed file is logged and read as empty (the follower then truncates to
its high watermark, as Kafka does with no epoch information).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import NamedTuple

from labkit.log.recovery import write_atomically

log = logging.getLogger(__name__)

CHECKPOINT = "leader-epoch-checkpoint"
VERSION = 0
UNDEFINED_EPOCH = -1  # Kafka's RecordBatch.NO_PARTITION_LEADER_EPOCH
UNDEFINED_EPOCH_OFFSET = -1  # Kafka's OffsetsForLeaderEpochResponse.UNDEFINED_EPOCH_OFFSET


class EpochEntry(NamedTuple):
    epoch: int
    start_offset: int


def render(entries: list[EpochEntry]) -> bytes:
    """The checkpoint file's bytes for ``entries``."""
    lines = [str(VERSION), str(len(entries)), *(f"{e} {o}" for e, o in entries)]
    return ("\n".join(lines) + "\n").encode("ascii")


def parse(data: bytes) -> list[EpochEntry]:
    """The entries of a checkpoint file. Raises ValueError saying what is wrong."""
    lines = data.decode("ascii").splitlines()
    if len(lines) < 2 or lines[0].strip() != str(VERSION):
        raise ValueError(f"expected version {VERSION} then a count, got {lines[:2]!r}")
    count = int(lines[1])
    if count != len(lines) - 2:
        raise ValueError(f"the file says {count} entries but holds {len(lines) - 2}")
    entries: list[EpochEntry] = []
    for line in lines[2:]:
        fields = line.split()
        if len(fields) != 2:
            raise ValueError(f"malformed entry {line!r}")
        entry = EpochEntry(int(fields[0]), int(fields[1]))
        if entry.epoch < 0 or entry.start_offset < 0:
            raise ValueError(f"negative epoch or offset in {line!r}")
        if entries and (
            entry.epoch <= entries[-1].epoch or entry.start_offset < entries[-1].start_offset
        ):
            raise ValueError(f"entry {line!r} does not follow {entries[-1]}")
        entries.append(entry)
    return entries


class LeaderEpochCache:
    """epoch -> start offset of one partition (see the module docstring)."""

    def __init__(self, directory: Path, entries: list[EpochEntry], saved: bool = True):
        self.directory = directory
        self._entries = list(entries)
        self._lock = threading.Lock()
        self._saving = threading.Lock()  # one checkpoint write at a time
        self._version = 0  # bumped by every change; ``save`` records what it wrote
        self._saved_version = 0 if saved else -1

    @classmethod
    def open(cls, directory: Path | str, log_end_offset: int) -> LeaderEpochCache:
        """Read the checkpoint of the partition in ``directory`` (none: empty), dropping
        entries at or past ``log_end_offset`` (the log recovery left)."""
        directory = Path(directory)
        path = directory / CHECKPOINT
        entries: list[EpochEntry] = []
        try:
            entries = parse(path.read_bytes())
        except FileNotFoundError:
            pass
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            log.warning("ignoring the unreadable leader-epoch checkpoint %s: %s", path, exc)
        cache = cls(directory, entries)
        cache.truncate_from_end(log_end_offset)
        return cache

    # -- reading ------------------------------------------------------------------------

    def entries(self) -> list[EpochEntry]:
        with self._lock:
            return list(self._entries)

    @property
    def latest_epoch(self) -> int:
        with self._lock:
            return self._entries[-1].epoch if self._entries else UNDEFINED_EPOCH

    def end_offset_for(self, epoch: int, log_end_offset: int) -> tuple[int, int]:
        """(epoch, end offset) as OffsetsForLeaderEpoch answers ``epoch`` (module doc)."""
        with self._lock:
            entries = self._entries
            if epoch < 0 or not entries:
                return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
            if entries[-1].epoch == epoch:
                return epoch, log_end_offset
            higher = next((e for e in entries if e.epoch > epoch), None)
            if higher is None:  # larger than every known epoch
                return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
            floor = [e for e in entries if e.epoch <= epoch]
            if not floor:  # smaller than every known epoch
                return epoch, higher.start_offset
            return floor[-1].epoch, higher.start_offset

    def epoch_for(self, offset: int) -> int:
        """The epoch the record at ``offset`` was written in (-1 before every entry)."""
        with self._lock:
            found = UNDEFINED_EPOCH
            for entry in self._entries:
                if entry.start_offset > offset:
                    break
                found = entry.epoch
            return found

    def entries_within(self, start: int, end: int) -> list[EpochEntry]:
        """The entries that cover offsets ``[start, end)``: the one ``start`` is in, then
        every one starting before ``end`` (what a leader sends with fetched batches)."""
        with self._lock:
            inside = [e for e in self._entries if start < e.start_offset < end]
            below = [e for e in self._entries if e.start_offset <= start]
            return ([below[-1]] if below else []) + inside

    # -- changing (in memory; ``save`` makes it durable) ----------------------------------

    def assign(self, epoch: int, start_offset: int) -> bool:
        """Record that ``epoch`` begins at ``start_offset``; False when nothing changed.
        Raises ValueError for a negative epoch or offset."""
        if epoch < 0 or start_offset < 0:
            raise ValueError(
                f"a leader epoch entry needs epoch >= 0 and offset >= 0, got {epoch} {start_offset}"
            )
        with self._lock:
            entries = self._entries
            if entries and entries[-1].epoch == epoch and start_offset >= entries[-1].start_offset:
                return False
            while entries and (
                entries[-1].epoch >= epoch or entries[-1].start_offset >= start_offset
            ):
                dropped = entries.pop()
                log.info(
                    "%s: leader epoch %d at %d replaces %s",
                    self.directory.name,
                    epoch,
                    start_offset,
                    dropped,
                )
            entries.append(EpochEntry(epoch, start_offset))
            self._version += 1
            return True

    def truncate_from_end(self, end_offset: int) -> None:
        """The log was cut to ``end_offset``: forget epochs that start at or after it."""
        with self._lock:
            if end_offset < 0:
                return
            kept = [e for e in self._entries if e.start_offset < end_offset]
            if len(kept) != len(self._entries):
                self._entries = kept
                self._version += 1

    def truncate_from_start(self, start_offset: int) -> None:
        """The log start moved to ``start_offset``: the epoch it falls in starts there."""
        with self._lock:
            below = [e for e in self._entries if e.start_offset <= start_offset]
            if not below or (len(below) == 1 and below[0].start_offset == start_offset):
                return
            rest = self._entries[len(below) :]
            self._entries = [EpochEntry(below[-1].epoch, start_offset), *rest]
            self._version += 1

    # -- durability (the flusher thread) ------------------------------------------------

    @property
    def unsaved(self) -> bool:
        return self._version != self._saved_version

    def save(self) -> None:
        """Write the checkpoint if it changed (tmp file, fsync, rename). Raises OSError;
        the change then stays unsaved, for the next call."""
        with self._saving:
            with self._lock:
                if self._version == self._saved_version:
                    return
                version, data = self._version, render(self._entries)
            write_atomically(self.directory / CHECKPOINT, data)
            with self._lock:
                self._saved_version = version
