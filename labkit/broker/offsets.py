"""The durable store of committed consumer-group offsets.

Theory of operation
-------------------
All groups' offsets live in memory (group -> (topic, partition) -> Committed) and
in one append-only file, ``<data_dir>/__consumer_offsets/offsets.log``. Every
change is one record::

    length  u32 big-endian   size of the payload
    crc32   u32 big-endian   zlib.crc32 of the payload
    payload JSON (UTF-8), one of
        {"g": group, "o": [[topic, partition, offset, metadata, commit_ms], ...]}
        {"g": group, "delete": true}          (the group was deleted)
        {"g": group, "d": [[topic, partition], ...]}   (OffsetDelete: those offsets go)

A commit is one record, so it is all-or-nothing. By default ``commit`` writes the
record and fsyncs the file before it returns. In the broker (``group_commit =
True``) it only applies the commit in memory and queues the record; the flusher
thread's ``sync`` writes every queued record and fsyncs once (group commit), and
the broker answers a commit only after the ``sync`` that covers it (``unsynced``
tells whether one is due). Either way a commit that was acknowledged survives a
kill -9 of the broker or a power cut. A failed ``sync`` cuts its partial write off
and keeps the records queued for the next one.

Opening the store replays the file. A record whose length, CRC or JSON is wrong
costs that record only: replay resynchronizes at the next record that checks out
(every payload starts with ``{"g":``, so candidates are found by ``bytes.find``
and confirmed by their CRC) and logs what was lost -- the byte range and, when its
text is still readable, the group whose commit it held. Damage with no valid
record after it is a torn write from a crash: that tail is cut off
(``truncated_bytes``). Then, if the file holds stale records (overwritten offsets,
deleted groups) or damage, it is compacted: the live state is written to ``offsets.log.tmp``,
fsync'd, and renamed over the old file (rename is atomic, so a crash leaves
either the old or the new file; a left-over ``.tmp`` is removed on open).

Thread-safety: the broker's loop thread calls everything but ``sync``, which its
flusher thread calls; the two share only the queue (under ``_queue_lock``) and the
``synced`` counter. With ``group_commit`` only ``sync`` touches the file while the
broker runs. Runtime compaction is a marker in the queue carrying a snapshot of the
live state, so the file is rewritten by ``sync`` in queue order.

Cluster mode (``replicate_to``): the store keeps no file. Each change goes to a sink
instead (broker/offsets_log.py appends it to the group's partition of the replicated
``__consumer_offsets`` topic), and the memory holds the groups of the partitions this
broker leads, loaded from that log (``load_partition``/``drop_partition``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import struct
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from labkit._clock import Clock
from labkit.log.recovery import write_atomically

log = logging.getLogger(__name__)

DIR_NAME = "__consumer_offsets"
FILE_NAME = "offsets.log"
_RECORD = struct.Struct(">II")  # length, crc32 of the payload
MAX_RECORD = 16 << 20  # a record larger than this is damage, not data
MAX_METADATA = 4096  # Kafka's offset.metadata.max.bytes
_COMPACT_MIN_BYTES = 1 << 20  # compact while running only once the file is this big
_PAYLOAD_START = b'{"g":'  # every record's JSON begins so (the group id comes first)
_GROUP_TEXT = re.compile(rb'^\{"g":("(?:[^"\\]|\\.)*")')  # the group id of a damaged record

TP = tuple[str, int]
# cluster mode: (group, [(topic, partition, Committed)] set, [(topic, partition)] deleted)
Sink = Callable[[str, list, list], None]


@dataclass(frozen=True, slots=True)
class Committed:
    offset: int
    metadata: str
    commit_ms: int


@dataclass(frozen=True, slots=True)
class _Compaction:
    """Queued instead of a record: rewrite the file as ``snapshot`` (the live state)."""

    snapshot: bytes


def _encode(payload: dict) -> bytes:
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return _RECORD.pack(len(body), zlib.crc32(body)) + body


def _payload_at(data: bytes, pos: int) -> bytes | None:
    """The payload of the record at ``pos`` if its length fits and its CRC matches."""
    if pos < 0 or pos + _RECORD.size > len(data):
        return None
    length, crc = _RECORD.unpack_from(data, pos)
    end = pos + _RECORD.size + length
    if length > MAX_RECORD or end > len(data):
        return None
    payload = data[pos + _RECORD.size : end]
    return payload if zlib.crc32(payload) == crc else None


def _looks_complete(tail: bytes) -> bool:
    """Whether a bad tail is one whole record (damaged) rather than a torn write."""
    if len(tail) < _RECORD.size:
        return False
    (length,) = struct.unpack_from(">I", tail)
    return _RECORD.size + length == len(tail)


def _why_bad(data: bytes, start: int, end: int) -> str:
    if start + _RECORD.size > len(data):
        return "cut short"
    length, crc = _RECORD.unpack_from(data, start)
    if start + _RECORD.size + length != end:
        return f"its length field says {length} bytes"
    if zlib.crc32(data[start + _RECORD.size : end]) != crc:
        return "its CRC does not match"
    return "its content is not a valid commit"


def _what_was_lost(record: bytes) -> str:
    """What a damaged record held, as far as its text can still be read."""
    match = _GROUP_TEXT.match(record[_RECORD.size :])
    if match:
        try:
            group = json.loads(match.group(1))
        except ValueError:
            group = None
        if isinstance(group, str):
            return (
                f"It held a commit (or the deletion) of group {group!r}: that group's "
                "committed offsets are now those of its previous commit, if any"
            )
    return (
        "Its group cannot be read: one commit of some group is lost (that group's "
        "committed offsets are now those of its previous commit, if any)"
    )


class OffsetStore:
    """Committed offsets of every group, fsync'd to disk before a commit returns.

    Raises OSError (from the file system) from ``__init__``, ``commit``,
    ``delete_group(s)`` and ``sync``; the caller turns it into KAFKA_STORAGE_ERROR.
    """

    def __init__(self, data_dir: Path | str, clock: Clock):
        self._clock = clock
        self._dir = Path(data_dir) / DIR_NAME
        self._dir.mkdir(parents=True, exist_ok=True)
        self._path = self._dir / FILE_NAME
        self._groups: dict[str, dict[TP, Committed]] = {}
        self.truncated_bytes = 0  # how much torn tail the last open cut off
        self.damaged_records = 0  # damaged records the last open skipped (each logged)
        self._records = 0  # records in the file
        tmp = self._path.with_suffix(".log.tmp")
        if tmp.exists():
            tmp.unlink()
        self._replay()
        self._file = None
        if self._records > self._live_records() or self.damaged_records:
            self._compact()  # also rewrites damage away, so it is reported once
        self._file = open(self._path, "ab")  # noqa: SIM115 - kept open for appends
        self.group_commit = False  # the broker sets True: its flusher calls sync()
        self._queue: list[bytes | _Compaction] = []
        self._queue_lock = threading.Lock()
        self._queued = 0  # records and compactions queued so far (loop thread)
        self.synced = 0  # how many of them sync() made durable (flusher)
        self._bytes = self._file.tell()  # file size once the queue is written
        self._sink: Sink | None = None

    # -- reading --------------------------------------------------------------

    def fetch(self, group_id: str, partitions: list[TP] | None = None) -> dict[TP, Committed]:
        """The committed offsets of a group (all of them, or only ``partitions``)."""
        committed = self._groups.get(group_id, {})
        if partitions is None:
            return dict(committed)
        return {tp: committed[tp] for tp in partitions if tp in committed}

    def groups(self) -> list[str]:
        """Groups that have committed offsets."""
        return sorted(self._groups)

    def has_group(self, group_id: str) -> bool:
        return group_id in self._groups

    # -- writing --------------------------------------------------------------

    def commit(self, group_id: str, offsets: list[tuple[str, int, int, str]]) -> None:
        """Store ``[(topic, partition, offset, metadata), ...]`` durably (fsync'd).

        A commit that changes nothing is not written again.
        """
        now = self._clock.time_ms()
        current = self._groups.get(group_id, {})
        changed = [
            (t, p, o, m)
            for t, p, o, m in offsets
            if (c := current.get((t, p))) is None or c.offset != o or c.metadata != m
        ]
        if not changed:
            return
        self._append({"g": group_id, "o": [[t, p, o, m, now] for t, p, o, m in changed]})
        group = self._groups.setdefault(group_id, {})
        for t, p, o, m in changed:
            group[(t, p)] = Committed(o, m, now)

    def delete_group(self, group_id: str) -> bool:
        """Forget a group's offsets (durably). False if it had none."""
        if group_id not in self._groups:
            return False
        self._append({"g": group_id, "delete": True})
        del self._groups[group_id]
        return True

    def delete_offsets(self, group_id: str, partitions: list[TP]) -> list[TP]:
        """Forget some of a group's offsets durably (Kafka's OffsetDelete); returns the
        partitions that had one. A group left with no offsets is forgotten."""
        committed = self._groups.get(group_id, {})
        gone = sorted({tp for tp in partitions if tp in committed})
        if not gone:
            return []
        self._append({"g": group_id, "d": [[t, p] for t, p in gone]})
        for tp in gone:
            del committed[tp]
        if not committed:
            del self._groups[group_id]
        return gone

    def delete_groups(self, group_ids: list[str]) -> None:
        """Forget several groups' offsets durably (offset expiry): a delete record
        each; in the broker the flusher's next round writes and fsyncs them together,
        so the loop thread that expires groups never waits for the disk."""
        for group_id in group_ids:
            self.delete_group(group_id)

    def maybe_compact(self) -> None:
        """Compact when the file has grown well past the live state (call from tick)."""
        if self._file is None:
            return
        if self._bytes < _COMPACT_MIN_BYTES or self._records <= 4 * self._live_records():
            return
        if self.group_commit:  # the flusher rewrites the file, in queue order
            snapshot = self._snapshot()
            self._enqueue(_Compaction(snapshot))
            self._bytes = len(snapshot)
        else:
            self._file.close()
            self._file = None
            self._compact()
            self._file = open(self._path, "ab")  # noqa: SIM115 - kept open for appends
            self._bytes = self._file.tell()
        self._records = self._live_records()

    @property
    def queued(self) -> int:
        """How many changes were queued so far (grows with every queued change)."""
        return self._queued

    @property
    def unsynced(self) -> bool:
        """Whether some queued change is not durable yet (a ``sync`` is due)."""
        return self.synced < self._queued

    def sync(self) -> None:
        """Write every queued record and fsync once (the flusher thread).

        Raises OSError; the records stay queued for the next call."""
        with self._queue_lock:
            items, self._queue = self._queue, []
            target = self._queued
        if not items:
            return
        if self._file is None:
            raise OSError("the offset store is closed")
        start = self._file.tell()
        try:
            for item in items:
                if isinstance(item, _Compaction):
                    self._file.close()
                    self._file = None
                    self._write_file(item.snapshot)
                    self._file = open(self._path, "ab")  # noqa: SIM115 - kept open for appends
                    start = self._file.tell()
                else:
                    self._file.write(item)
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError:
            with self._queue_lock:
                self._queue[:0] = items
            self._cut_back(start)
            raise
        self.synced = target

    def close(self) -> None:
        if self._file is not None:
            if self._queue:
                self.sync()
            self._file.close()
            self._file = None

    # -- cluster mode ------------------------------------------------------------

    def replicate_to(self, sink: Sink) -> None:
        """Cluster mode: keep no file, send every change to ``sink`` (which raises to
        refuse it: nothing changes then). The offsets of this data directory's file (from
        single-broker mode) stay on disk, unused: the cluster's log is the truth."""
        self.close()
        self._groups.clear()
        self._sink = sink

    def load_partition(self, belongs: Callable[[str], bool], groups: dict) -> None:
        """Replace the groups for which ``belongs(group)`` by ``groups`` (read from the log
        of the partition this broker now leads)."""
        self.drop_partition(belongs)
        self._groups.update({g: dict(c) for g, c in groups.items() if c})

    def drop_partition(self, belongs: Callable[[str], bool]) -> None:
        """Forget the groups of a partition this broker no longer leads."""
        for group_id in [g for g in self._groups if belongs(g)]:
            del self._groups[group_id]

    # -- internals ------------------------------------------------------------

    def _append(self, payload: dict) -> None:
        if self._sink is not None:
            self._to_sink(payload)
            return
        if self._file is None:
            raise OSError("the offset store is closed")
        record = _encode(payload)
        if self.group_commit:
            self._enqueue(record)
        else:
            self._file.write(record)
            self._file.flush()
            os.fsync(self._file.fileno())
        self._records += 1
        self._bytes += len(record)

    def _to_sink(self, payload: dict) -> None:
        sink = self._sink
        assert sink is not None  # cluster mode only
        group_id = payload["g"]
        if payload.get("delete"):
            sink(group_id, [], sorted(self._groups.get(group_id, {})))
        elif "d" in payload:
            sink(group_id, [], [(t, p) for t, p in payload["d"]])
        else:
            rows = [(t, p, Committed(o, m, ms)) for t, p, o, m, ms in payload["o"]]
            sink(group_id, rows, [])

    def _enqueue(self, item: bytes | _Compaction) -> None:
        with self._queue_lock:
            self._queue.append(item)
            self._queued += 1

    def _cut_back(self, size: int) -> None:
        """Drop a partly written tail (a failed sync), so later records stay readable.

        Raises OSError when even that fails (the disk is failing)."""
        if self._file is not None:
            try:
                self._file.close()  # drops the buffer (a retried flush lands before the cut)
            except OSError:
                pass
            self._file = None
        os.truncate(self._path, size)
        self._file = open(self._path, "ab")  # noqa: SIM115 - kept open for appends

    def _snapshot(self) -> bytes:
        """The live state as records (what a compacted file holds)."""
        parts = []
        for group_id in sorted(self._groups):
            rows = [
                [t, p, c.offset, c.metadata, c.commit_ms]
                for (t, p), c in sorted(self._groups[group_id].items())
            ]
            parts.append(_encode({"g": group_id, "o": rows}))
        return b"".join(parts)

    def _live_records(self) -> int:
        return len(self._groups)

    def _replay(self) -> None:
        if not self._path.exists():
            return
        data = self._path.read_bytes()
        pos = 0
        damaged: list[tuple[int, int]] = []
        while pos + _RECORD.size <= len(data):
            end = self._replay_record(data, pos)
            if end is None:
                resume = self._next_record(data, pos + 1)
                if resume is None:
                    break  # nothing valid after it: a torn tail, cut below
                damaged.append((pos, resume[0]))
                end = resume[1]
            pos = end
        for start, end in damaged:
            log.warning(
                "consumer offsets: the record at bytes %d-%d of %s is damaged and was "
                "skipped (%s); the records before and after it are kept. %s",
                start,
                end,
                self._path,
                _why_bad(data, start, end),
                _what_was_lost(data[start:end]),
            )
        if damaged:
            self.damaged_records = len(damaged)
        if pos < len(data):
            tail = data[pos:]
            if _looks_complete(tail):
                log.warning(
                    "consumer offsets: the last record of %s (bytes %d-%d) is damaged "
                    "and was removed (%s). %s",
                    self._path,
                    pos,
                    len(data),
                    _why_bad(data, pos, len(data)),
                    _what_was_lost(tail),
                )
                self.damaged_records += 1
            else:
                self.truncated_bytes = len(tail)
            with open(self._path, "r+b") as f:
                f.truncate(pos)
                f.flush()
                os.fsync(f.fileno())

    def _replay_record(self, data: bytes, pos: int) -> int | None:
        """Apply the record at ``pos`` if it checks out; its end, or None (nothing applied)."""
        payload = _payload_at(data, pos)
        if payload is None:
            return None
        try:
            self._apply(json.loads(payload))
        except (ValueError, TypeError, KeyError, IndexError):
            return None
        self._records += 1
        return pos + _RECORD.size + len(payload)

    def _next_record(self, data: bytes, start: int) -> tuple[int, int] | None:
        """(start, end) of the first record at or after ``start`` that checks out, applied."""
        found = data.find(_PAYLOAD_START, start + _RECORD.size)
        while found >= 0:
            candidate = found - _RECORD.size
            end = self._replay_record(data, candidate)
            if end is not None:
                return candidate, end
            found = data.find(_PAYLOAD_START, found + 1)
        return None

    def _apply(self, payload: dict) -> None:
        """Apply one record; raises (changing nothing) if it is not a well-formed one."""
        group_id = payload["g"]
        if not isinstance(group_id, str):
            raise TypeError("group id")
        if payload.get("delete"):
            self._groups.pop(group_id, None)
            return
        if "d" in payload:
            gone = [(str(topic), int(partition)) for topic, partition in payload["d"]]
            committed = self._groups.get(group_id, {})
            for tp in gone:
                committed.pop(tp, None)
            if not committed:
                self._groups.pop(group_id, None)
            return
        rows = [
            ((str(topic), int(partition)), Committed(int(offset), str(metadata), int(commit_ms)))
            for topic, partition, offset, metadata, commit_ms in payload["o"]
        ]
        self._groups.setdefault(group_id, {}).update(rows)

    def _compact(self) -> None:
        self._write_file(self._snapshot())
        self._records = self._live_records()

    def _write_file(self, data: bytes) -> None:
        """Replace the file by ``data`` atomically (temp file, fsync, rename)."""
        write_atomically(self._path, data)  # its temp file is the ``.log.tmp`` open removes
