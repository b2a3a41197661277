"""The sparse offset index and the time index of one segment.

Theory of operation
-------------------
Both indexes live in memory as parallel ``array`` columns (so lookups are a C-level
``bisect``) and are written to their files as a whole when the segment is sealed
(rolled) or the log is closed. The files are a cache: a missing, short or
inconsistent index file is rebuilt from the ``.log`` on open, and the active
segment's indexes are always rebuilt by the recovery scan, so a crash never leaves
an index pointing at the wrong place.

Offset index (``.index``): an entry is added for a batch when at least
``index.interval.bytes`` of batches were appended since the previous entry (the
batch at position 0 needs none). Entries are strictly increasing in both fields.
Lookup of offset ``o`` returns the position of the last indexed batch whose base
offset is ``<= o`` (or 0); the caller walks batch headers forward from there.

Time index (``.timeindex``): at the same points an entry ``(max_ts, offset)`` is
added when the largest timestamp seen so far in the segment grew; ``offset`` is
the base offset of the batch just indexed, and ``max_ts`` bounds every record in
that batch and all batches before it. When a segment is sealed one last entry
for its last batch is added, so the last entry's timestamp is the segment's
largest timestamp. Timestamps are non-decreasing, offsets non-decreasing.
Lookup of ``t`` returns the offset of the last entry with ``max_ts < t``: no
record before that batch can be ``>= t``, so a search may start there.

Not thread-safe; the partition log guards access with its lock.
"""

from __future__ import annotations

import operator
import struct
import sys
from array import array
from bisect import bisect_left, bisect_right

# .index entry, little-endian, 8 bytes:
#   offset size field
#   0      4    relative_offset  uint32  batch base offset - segment base offset
#   4      4    position         uint32  byte position of that batch in the .log file
OFFSET_ENTRY = struct.Struct("<II")

# .timeindex entry, little-endian, 12 bytes:
#   offset size field
#   0      8    timestamp        int64   largest record timestamp (ms) up to this batch
#   8      4    relative_offset  uint32  base offset of that batch - segment base offset
TIME_ENTRY = struct.Struct("<qI")

_BIG_ENDIAN = sys.byteorder == "big"


def _increasing(values: array, strict: bool) -> bool:
    if len(values) < 2:
        return True
    cmp = operator.lt if strict else operator.le
    return all(map(cmp, values, values[1:]))


class OffsetIndex:
    """Relative offsets and file positions of every indexed batch."""

    __slots__ = ("base_offset", "offsets", "positions")

    def __init__(self, base_offset: int):
        self.base_offset = base_offset
        self.offsets = array("I")  # relative offsets
        self.positions = array("I")

    def __len__(self) -> int:
        return len(self.offsets)

    def append(self, offset: int, position: int) -> None:
        self.offsets.append(offset - self.base_offset)
        self.positions.append(position)

    def lookup(self, offset: int) -> int:
        """Position of the last indexed batch with base offset <= ``offset`` (else 0)."""
        i = bisect_right(self.offsets, offset - self.base_offset) - 1
        return self.positions[i] if i >= 0 else 0

    def floor_position(self, position: int) -> int:
        """The largest indexed batch position <= ``position`` (else 0)."""
        i = bisect_right(self.positions, position) - 1
        return self.positions[i] if i >= 0 else 0

    def last(self) -> tuple[int, int] | None:
        """(absolute offset, position) of the last entry, None when empty."""
        if not self.offsets:
            return None
        return self.base_offset + self.offsets[-1], self.positions[-1]

    def clear(self) -> None:
        del self.offsets[:]
        del self.positions[:]

    @property
    def size_bytes(self) -> int:
        return len(self.offsets) * OFFSET_ENTRY.size

    def to_bytes(self) -> bytes:
        both = array("I", bytes(2 * len(self.offsets) * 4))
        both[0::2] = self.offsets
        both[1::2] = self.positions
        if _BIG_ENDIAN:
            both.byteswap()
        return both.tobytes()

    @classmethod
    def from_bytes(cls, data: bytes, base_offset: int, log_size: int) -> OffsetIndex | None:
        """Parse an index file; None when it is not a consistent index of a log this long."""
        if len(data) % OFFSET_ENTRY.size:
            return None
        both = array("I")
        both.frombytes(data)
        if _BIG_ENDIAN:
            both.byteswap()
        index = cls(base_offset)
        index.offsets = both[0::2]
        index.positions = both[1::2]
        if index.positions and (index.positions[0] == 0 or index.positions[-1] >= log_size):
            return None
        if not (_increasing(index.offsets, True) and _increasing(index.positions, True)):
            return None
        return index


class TimeIndex:
    """Running maximum timestamps at indexed batches (see the module docstring)."""

    __slots__ = ("base_offset", "timestamps", "offsets")

    def __init__(self, base_offset: int):
        self.base_offset = base_offset
        self.timestamps = array("q")
        self.offsets = array("I")  # relative offsets

    def __len__(self) -> int:
        return len(self.timestamps)

    @property
    def last_timestamp(self) -> int:
        return self.timestamps[-1] if self.timestamps else -1

    @property
    def last_offset(self) -> int | None:
        return self.base_offset + self.offsets[-1] if self.offsets else None

    def maybe_append(self, max_timestamp: int, offset: int) -> None:
        """Add ``(max_timestamp, offset)`` if the running maximum grew."""
        if not self.timestamps or max_timestamp > self.timestamps[-1]:
            self.timestamps.append(max_timestamp)
            self.offsets.append(offset - self.base_offset)

    def seal(self, max_timestamp: int, last_batch_offset: int) -> None:
        """Add the final entry for the segment's last batch (see the module docstring)."""
        rel = last_batch_offset - self.base_offset
        if max_timestamp < 0 or (self.offsets and self.offsets[-1] == rel):
            return
        self.timestamps.append(max(max_timestamp, self.last_timestamp))
        self.offsets.append(rel)

    def lookup(self, timestamp: int) -> int:
        """Offset from which to search for the first record with timestamp >= ``timestamp``."""
        i = bisect_left(self.timestamps, timestamp) - 1
        return self.base_offset + self.offsets[i] if i >= 0 else self.base_offset

    def clear(self) -> None:
        del self.timestamps[:]
        del self.offsets[:]

    def to_bytes(self) -> bytes:
        return b"".join(map(TIME_ENTRY.pack, self.timestamps, self.offsets))

    @classmethod
    def from_bytes(cls, data: bytes, base_offset: int) -> TimeIndex | None:
        """Parse a time index file; None when it is not consistent."""
        if len(data) % TIME_ENTRY.size:
            return None
        index = cls(base_offset)
        for ts, rel in TIME_ENTRY.iter_unpack(data):
            index.timestamps.append(ts)
            index.offsets.append(rel)
        if not (_increasing(index.timestamps, False) and _increasing(index.offsets, False)):
            return None
        return index
