"""Idempotent producers' state of one partition, kept on disk beside its log.

Theory of operation
-------------------
Apache Kafka rebuilds producer state from its log (every batch header carries the
producer id, epoch and sequence) and snapshots it to bound the rebuild. labkit's
batch format has no such fields, so the state has a log of its own, in the
partition's directory:

- ``producer-state-<gen>.journal``: one fixed-size entry per batch appended for an
  idempotent producer: ``<q h i i q q I`` = producer id, epoch, first sequence,
  last sequence, base offset, append time (ms), CRC-32 of the 34 bytes before it.
  The loop thread writes it (``record``) right after the batch reached the log
  and before the produce is answered: one ``os.write``, never an fsync, so a
  killed broker (kill -9) keeps both the batch and its entry, as the OS does.
- ``producer-state-<gen>.snapshot``: the same entries for the whole table (each
  producer's last 5 batches) as of the moment journal ``<gen>`` was started.

``sync`` (the flusher thread's group commit for acks=all, and the cleaner thread)
fsyncs the journals written since the last sync, so an acks=all answer waits for
the batch and its entry to be durable together. When the journal passes
``COMPACT_BYTES`` it also rolls: a new journal generation takes the writes, the
table as of that instant (copied under the lock) becomes the next snapshot (a
temporary file, fsync, rename, fsync of the directory), and the older journals and
snapshots are deleted only then.

Loading (``open``): the newest snapshot, then every journal of that generation or
later, in order; each file is read up to its first short or bad-CRC entry (a torn
write). An entry whose base offset is at or past the log end that recovery left
(``recovered_end``) is dropped: its batch is not in the log (power lost before the
log's pages reached the disk), so it must not be claimed as a duplicate; a snapshot
without such entries then replaces the files at once, so a later restart, once the
log has grown past those offsets, cannot replay them. Writes then go to a new
generation, never after a torn tail; a short write (a full disk) rolls to a new
generation too.

Retention, compaction and DeleteRecords delete batches, not producer state (Kafka
since KIP-360 does the same): a retried batch still gets its original offset.
Only ``producer.id.expiration.ms`` forgets a producer.

Thread-safety: ``check`` and ``record``/``expire`` run on the broker's loop thread;
``sync``, ``maintain`` and ``close`` may run on others. One lock guards the table's
mutations, the descriptors and the generation; fsyncs and the snapshot's writes run
outside it on duplicated descriptors.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import struct
import threading
import zlib
from pathlib import Path

from labkit.errors import KafkaStorageError
from labkit.log.producer_state import ProducerStateTable
from labkit.log.recovery import fsync_dir, write_atomically

log = logging.getLogger(__name__)

ENTRY = struct.Struct("<qhiiqqI")
_BODY = struct.Struct("<qhiiqq")
COMPACT_BYTES = 1 << 20  # a journal this long is folded into a snapshot
_FILE = re.compile(r"^producer-state-(\d{20})\.(journal|snapshot)$")


def _name(gen: int, kind: str) -> str:
    return f"producer-state-{gen:020d}.{kind}"


def _pack(row: tuple[int, int, int, int, int, int]) -> bytes:
    body = _BODY.pack(*row)
    return body + struct.pack("<I", zlib.crc32(body))


def _entries(path: Path) -> list[tuple[int, int, int, int, int, int]]:
    """The entries of one file up to its first torn or corrupt one."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        log.warning("ignoring unreadable %s: %s", path, exc)
        return []
    rows = []
    for pos in range(0, len(data) - ENTRY.size + 1, ENTRY.size):
        *body, crc = ENTRY.unpack_from(data, pos)
        if zlib.crc32(data[pos : pos + _BODY.size]) != crc:
            log.warning("%s: stopping at a torn entry at byte %d", path, pos)
            break
        rows.append(tuple(body))
    return rows


def has_state(directory: Path) -> bool:
    """Whether ``directory`` holds producer-state files (a journal or a snapshot)."""
    try:
        return any(_FILE.match(p.name) for p in directory.iterdir())
    except OSError:
        return False


class PartitionProducers:
    """The producer state table of one partition and its files (see the module doc)."""

    def __init__(self, directory: Path, table: ProducerStateTable, next_gen: int):
        self.directory = directory
        self.table = table
        self._lock = threading.Lock()
        self._gen = next_gen  # the journal generation ``record`` writes to
        self._fd = -1  # opened on the first record
        self._size = 0
        self._retired: list[int] = []  # older journals' descriptors not yet synced
        self._dir_dirty = False
        self._closed = False

    @classmethod
    def open(cls, directory: Path, recovered_end: int) -> PartitionProducers:
        """Load the state of the partition in ``directory`` (see the module docstring)."""
        found: dict[str, list[int]] = {"journal": [], "snapshot": []}
        try:
            names = [p.name for p in directory.iterdir()]
        except OSError as exc:
            raise KafkaStorageError(
                f"reading producer state in {directory} failed: {exc}; fix the data "
                "directory's permissions"
            ) from exc
        for name in names:
            match = _FILE.match(name)
            if match:
                found[match.group(2)].append(int(match.group(1)))
        table = ProducerStateTable()
        start = max(found["snapshot"], default=0)
        files = [directory / _name(start, "snapshot")] if found["snapshot"] else []
        files += [directory / _name(g, "journal") for g in sorted(found["journal"]) if g >= start]
        dropped = 0
        for path in files:
            for row in _entries(path):
                if row[4] >= recovered_end:
                    dropped += 1
                    continue
                table.record(*row)
        gen = max([*found["journal"], *found["snapshot"]], default=-1) + 1
        if dropped:
            log.warning(
                "%s: %d producer-state entries name batches past the log end %d (lost in a "
                "crash before they reached the disk): dropped",
                directory.name,
                dropped,
                recovered_end,
            )
            # on disk too, before the log grows past them again: else a second restart
            # would replay them and claim new batches at those offsets as duplicates
            try:
                cls._replace_files(directory, gen, table.rows())
            except OSError as exc:
                raise KafkaStorageError(
                    f"rewriting producer state in {directory} failed: {exc}; free disk space "
                    "and fix the data directory's permissions, then restart the broker"
                ) from exc
        return cls(directory, table, gen)

    # -- loop thread --------------------------------------------------------------------

    def check(self, producer_id: int, epoch: int, first_seq: int, last_seq: int) -> int | None:
        """ProducerStateTable.check for this partition."""
        return self.table.check(producer_id, epoch, first_seq, last_seq, self.directory.name)

    def record(
        self,
        producer_id: int,
        epoch: int,
        first_seq: int,
        last_seq: int,
        base_offset: int,
        now_ms: int,
    ) -> None:
        """Remember an appended batch and write its journal entry (to the OS, no fsync).

        Raises KafkaStorageError when the entry cannot be written (the table has it:
        a retry is still recognised while the broker runs)."""
        row = (producer_id, epoch, first_seq, last_seq, base_offset, now_ms)
        with self._lock:
            self.table.record(*row)
            if self._closed:
                return
            try:
                if self._fd < 0:
                    self._fd = os.open(
                        self.directory / _name(self._gen, "journal"),
                        os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                        0o644,
                    )
                    self._dir_dirty = True
                entry = _pack(row)
                written = os.write(self._fd, entry)
                self._size += written
                if written < len(entry):  # a full disk took part of it
                    self._roll_after_torn_write()
                    raise OSError(errno.ENOSPC, f"short write ({written} of {len(entry)} bytes)")
            except OSError as exc:
                raise KafkaStorageError(
                    f"writing producer state in {self.directory} failed: {exc.strerror or exc};"
                    " the batch was appended; free disk space, then retry (the retry is "
                    "recognised as a duplicate)"
                ) from exc

    def _roll_after_torn_write(self) -> None:
        """The journal ends in a torn entry: loading stops there, so later entries go to
        a new generation (the next ``record`` opens it); the whole entries before the torn
        one stay to be synced. Called with the lock held."""
        self._retired.append(self._fd)
        self._fd, self._gen, self._size = -1, self._gen + 1, 0

    def expire(self, now_ms: int, expiration_ms: int) -> int:
        with self._lock:
            return self.table.expire(now_ms, expiration_ms)

    def rows_from(self, offset: int) -> list[tuple[int, int, int, int, int, int]]:
        """The retained entries of batches at or after ``offset`` (``record``'s arguments,
        oldest first per producer): what a leader sends a follower beside those batches."""
        with self._lock:
            return [row for row in self.table.rows() if row[4] >= offset]

    def truncate(self, end_offset: int) -> int:
        """Forget the batches at or past ``end_offset`` (the log was truncated to it: a
        follower's divergent tail) and make that durable at once: a new snapshot of
        what is left replaces every older file, so a later restart cannot replay the
        forgotten entries once the log grows past them again. Returns how many batches
        were forgotten. Fsyncs: for the replica fetcher's thread, never the loop's.
        Raises KafkaStorageError."""
        with self._lock:
            if self._closed:
                return 0
            rows = self.table.rows()
            kept = [row for row in rows if row[4] < end_offset]
            table = ProducerStateTable()
            for row in kept:
                table.record(*row)
            self.table = table
            for fd in [*self._retired, self._fd]:
                if fd >= 0:
                    os.close(fd)
            self._retired.clear()
            gen = self._gen + 1
            self._fd, self._gen, self._size = -1, gen, 0  # the next record opens journal gen
        try:
            self._replace_files(self.directory, gen, kept)
        except OSError as exc:
            raise KafkaStorageError(
                f"truncating producer state in {self.directory} failed: {exc}; restart the "
                "broker (recovery drops entries past the log end)"
            ) from exc
        return len(rows) - len(kept)

    # -- flusher / cleaner threads --------------------------------------------------------

    def sync(self) -> None:
        """fsync the journal entries written so far; fold a long journal into a snapshot.
        Raises KafkaStorageError."""
        with self._lock:
            if self._closed:
                return
            targets = [*self._retired, self._fd] if self._fd >= 0 else list(self._retired)
            fds = [os.dup(fd) for fd in targets]
            dir_dirty, self._dir_dirty = self._dir_dirty, False
        try:
            for fd in fds:
                os.fsync(fd)
            if dir_dirty:
                fsync_dir(self.directory)
        except OSError as exc:
            with self._lock:
                self._dir_dirty |= dir_dirty
            raise KafkaStorageError(
                f"fsync of producer state in {self.directory} failed: {exc.strerror or exc}"
            ) from exc
        finally:
            for fd in fds:
                os.close(fd)
        with self._lock:
            for fd in targets:
                if fd in self._retired:
                    self._retired.remove(fd)
                    os.close(fd)
        self.maintain()

    def maintain(self) -> None:
        """Fold the journal into a snapshot once it passed COMPACT_BYTES."""
        with self._lock:
            if self._closed or self._size < COMPACT_BYTES:
                return
            rows = self.table.rows()
            gen = self._gen + 1
            new_fd = os.open(
                self.directory / _name(gen, "journal"),
                os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                0o644,
            )
            self._retired.append(self._fd)
            self._fd, self._gen, self._size = new_fd, gen, 0
            self._dir_dirty = True
        try:
            self._write_snapshot(gen, rows)
        except OSError as exc:
            raise KafkaStorageError(
                f"writing a producer-state snapshot in {self.directory} failed: {exc}"
            ) from exc
        with self._lock:  # the snapshot covers every older journal
            for fd in self._retired:
                os.close(fd)
            self._retired.clear()
        for path in self.directory.iterdir():
            match = _FILE.match(path.name)
            if match and int(match.group(1)) < gen:
                path.unlink(missing_ok=True)

    def _write_snapshot(self, gen: int, rows: list) -> None:
        write_atomically(
            self.directory / _name(gen, "snapshot"), b"".join(_pack(row) for row in rows)
        )

    @staticmethod
    def _replace_files(directory: Path, gen: int, rows: list) -> None:
        """Snapshot ``gen`` holds ``rows``; every older file is deleted, durably.
        Raises OSError."""
        write_atomically(directory / _name(gen, "snapshot"), b"".join(_pack(row) for row in rows))
        for path in directory.iterdir():
            match = _FILE.match(path.name)
            if match and int(match.group(1)) < gen:
                path.unlink(missing_ok=True)
        fsync_dir(directory)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for fd in [*self._retired, self._fd]:
                if fd >= 0:
                    try:
                        os.fsync(fd)
                    except OSError as exc:
                        log.warning("closing producer state in %s: %s", self.directory, exc)
                    os.close(fd)
            self._retired.clear()
            self._fd = -1
