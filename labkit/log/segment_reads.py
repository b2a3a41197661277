"""A segment's read path: whole batches from an offset, the first record at or after a
timestamp. ``Segment`` (segment.py) extends ``SegmentReads``; this module never writes.

Theory of operation
-------------------
A read finds its first batch with the sparse offset index (``index.lookup``: the last
indexed batch at or before the offset) and a walk over batch headers from there
(``_find``, ``WALK_CHUNK`` bytes per ``pread``, 24 bytes of each header: ``_WALK``).
It returns whole batches: everything up to the segment's tracked ``size`` if it fits
in ``max_bytes``, else the first batch alone if that one is larger, else up to the end
of the last whole batch within ``max_bytes`` (``_last_boundary``, again from the index
and a header walk) — one ``pread`` for the range.

Tail hints: a read that reached the segment's end leaves ``_hints[next offset] = end``.
Consumers that keep up (a class's dozens of them on one topic) then ask for exactly that
offset, again and again: the hint answers at once (nothing there yet: no ``pread``) or
with one 24-byte header read that checks the batch there holds the offset. Without it
each of their fetches walked every header from the last index entry (``index.interval.bytes``
apart, one-record batches: a dozen or more headers each time). A hint stays true: batches
are only appended after it, and every truncation below a read's end reopens the segment
(a new ``Segment``, no hints); at most ``MAX_HINTS`` are kept. Bytes past ``size`` (a torn write not
cut off yet) are never read. A header with an impossible length raises
CorruptRecordError naming the byte and the file.

A timestamp lookup maps the time index's entry to a position with the offset index
and decodes batches from there until a record's timestamp reaches the one asked for
(a batch that does not decode is skipped with a log line).

The active segment reads through its open descriptor; a sealed one opens its file
for each read (``open_fd`` gives a caller its own descriptor). Not thread-safe:
``PartitionLog`` serializes access with its lock.
"""

from __future__ import annotations

import logging
import os
import struct
from pathlib import Path

from labkit.errors import CorruptRecordError
from labkit.log.batchio import MIN_BATCH_LENGTH, O_BINARY, decode_checked, iter_batches, pread
from labkit.log.index import OffsetIndex, TimeIndex
from labkit.protocol.records import BATCH_LENGTH, LENGTH_PREFIX

log = logging.getLogger("labkit.log.segment")  # the segment's own logger, as before the split

# The part of a batch header a walk over the log reads (little-endian, 24 bytes):
#   offset size field
#   0      8    base_offset        int64
#   8      4    batch_length       int32  bytes after this field
#   12     8    crc, magic, attributes, reserved (skipped)
#   20     4    last_offset_delta  int32
_WALK = struct.Struct("<qi8xi")
WALK_CHUNK = 16 * 1024  # bytes read per step when walking headers (read path)
MAX_HINTS = 16  # tail hints kept per segment (the oldest goes first)


class SegmentReads:
    """The read half of ``Segment``: its attributes are the segment's own."""

    __slots__ = ()

    log_path: Path
    fd: int
    size: int
    next_offset: int
    index: OffsetIndex
    _hints: dict[int, int]  # offset -> position of the first batch holding it or later
    time_index: TimeIndex

    def open_fd(self) -> int:
        """A new descriptor of the .log file; the caller closes it. Raises OSError."""
        if self.fd >= 0:
            return os.dup(self.fd)
        return os.open(self.log_path, os.O_RDWR | O_BINARY)

    # -- reading ---------------------------------------------------------------------------

    def read(self, offset: int, max_bytes: int) -> bytes | None:
        """Whole batches from the first one holding an offset >= ``offset``, up to
        ``max_bytes`` (at least that one); None when no batch here does. Raises OSError."""
        fd = self.fd
        if fd >= 0:
            return self._read(fd, offset, max_bytes)
        fd = os.open(self.log_path, os.O_RDONLY | O_BINARY)
        try:
            return self._read(fd, offset, max_bytes)
        finally:
            os.close(fd)

    def _read(self, fd: int, offset: int, max_bytes: int) -> bytes | None:
        found = self._find(fd, offset)
        if found is None:
            return None
        position, first_size = found
        avail = self.size - position
        if avail <= max_bytes:
            n = avail
            self._hint(self.next_offset, self.size)
        elif first_size >= max_bytes:
            n = first_size
        else:
            n = self._last_boundary(fd, position, position + max_bytes) - position
        return pread(fd, n, position)

    def _hint(self, offset: int, position: int) -> None:
        hints = self._hints
        if offset not in hints:
            if len(hints) >= MAX_HINTS:
                del hints[next(iter(hints))]
            hints[offset] = position

    def _find(self, fd: int, offset: int) -> tuple[int, int] | None:
        """(position, size) of the first batch whose last offset is >= ``offset``, or None."""
        hinted = self._hints.get(offset)
        if hinted is not None and hinted <= self.size:
            if hinted == self.size:
                return None  # a reader at the end: nothing new in this segment
            header = pread(fd, _WALK.size, hinted)
            if len(header) == _WALK.size:
                base, length, last_delta = _WALK.unpack(header)
                if base <= offset <= base + last_delta and length >= MIN_BATCH_LENGTH:
                    return hinted, length + LENGTH_PREFIX
        pos = self.index.lookup(offset)
        end = self.size
        while pos < end:
            buf = pread(fd, min(WALK_CHUNK, end - pos), pos)
            n = len(buf)
            off = 0
            while n - off >= 24:
                base, length, last_delta = _WALK.unpack_from(buf, off)
                if length < MIN_BATCH_LENGTH:
                    raise CorruptRecordError(
                        f"invalid batch length {length} at byte {pos + off} of {self.log_path}"
                    )
                if base + last_delta >= offset:
                    return pos + off, length + LENGTH_PREFIX
                off += length + LENGTH_PREFIX
            if off == 0:
                break
            pos += off
        return None

    def _last_boundary(self, fd: int, start: int, limit: int) -> int:
        """The end of the last whole batch that ends at or before ``limit``."""
        pos = max(start, self.index.floor_position(limit))
        while True:
            want = min(WALK_CHUNK, limit - pos)
            if want < LENGTH_PREFIX:
                return pos
            buf = pread(fd, want, pos)
            off = 0
            while want - off >= LENGTH_PREFIX:
                (length,) = BATCH_LENGTH.unpack_from(buf, off + 8)
                if length < MIN_BATCH_LENGTH:
                    raise CorruptRecordError(
                        f"invalid batch length {length} at byte {pos + off} of {self.log_path}"
                    )
                nxt = off + LENGTH_PREFIX + length
                if pos + nxt > limit:
                    return pos + off
                off = nxt
            pos += off

    def find_timestamp(self, timestamp: int) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record with timestamp >= ``timestamp``, or None.

        Raises OSError."""
        start = self.index.lookup(self.time_index.lookup(timestamp))
        fd = self.open_fd()
        try:
            for _pos, header, buf, off in iter_batches(
                fd, start, self.size, validate=False, chunk=WALK_CHUNK * 4
            ):
                if header.max_timestamp < timestamp:
                    continue
                try:
                    batch = decode_checked(buf, off, header)
                except CorruptRecordError as exc:  # no timestamps to offer: look further
                    log.warning("%s: a timestamp lookup skipped a batch: %s", self.log_path, exc)
                    continue
                if batch.log_append_time and batch.offsets:
                    return batch.offsets[0], header.max_timestamp
                for offset, ts in zip(batch.offsets, batch.timestamps, strict=False):
                    if ts >= timestamp:
                        return offset, ts
        finally:
            os.close(fd)
        return None
