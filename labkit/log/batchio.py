"""Reading and writing record batches in a file: the system calls and the scans.

``pread`` and ``FileOps`` (the writes; tests substitute a failing one to simulate
a full disk), ``iter_batches`` (walk or CRC-check the batches of a byte range, as
recovery and compaction do) and ``decode_checked`` (decode one batch without
trusting its record count). Stateless; safe from any thread.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence

from labkit.errors import CorruptRecordError
from labkit.protocol.records import (
    HAS_HEADERS,
    HAS_KEYS,
    HAS_OFFSET_DELTAS,
    HEADER_SIZE,
    LENGTH_PREFIX,
    Batch,
    BatchHeader,
    decode_batch,
    read_header,
    validate_batch,
)

O_BINARY = getattr(os, "O_BINARY", 0)
MIN_BATCH_LENGTH = HEADER_SIZE - LENGTH_PREFIX  # smallest valid batch_length field
SCAN_CHUNK = 1 << 20  # bytes read per step when scanning whole batches (recovery)


if hasattr(os, "pread"):
    pread = os.pread
else:  # Windows: no pread; serialize seek+read
    _SEEK_LOCK = threading.Lock()

    def pread(fd: int, n: int, position: int) -> bytes:
        with _SEEK_LOCK:
            os.lseek(fd, position, os.SEEK_SET)
            return os.read(fd, n)


class FileOps:
    """The writes a segment makes; tests substitute one that fails like a full disk."""

    def pwritev(self, fd: int, buffers: Sequence, position: int) -> int:
        if hasattr(os, "pwritev"):
            return os.pwritev(fd, buffers, position)
        data = b"".join(buffers)
        if hasattr(os, "pwrite"):
            return os.pwrite(fd, data, position)
        os.lseek(fd, position, os.SEEK_SET)
        return os.write(fd, data)

    def ftruncate(self, fd: int, length: int) -> None:
        os.ftruncate(fd, length)

    def sync(self, fd: int) -> None:
        (getattr(os, "fdatasync", None) or os.fsync)(fd)


DEFAULT_OPS = FileOps()


def iter_batches(fd: int, start: int, end: int, *, validate: bool,
                 chunk: int = SCAN_CHUNK) -> Iterator[tuple[int, BatchHeader, bytes, int]]:
    """Yield ``(position, header, buffer, offset_in_buffer)`` for each batch in [start, end).

    The whole batch is in ``buffer``. Raises CorruptRecordError at the first batch
    that is torn (runs past ``end``) or, with ``validate``, fails its CRC/format check.
    """
    pos = start
    buf = b""
    buf_start = start
    while pos < end:
        off = pos - buf_start
        if len(buf) - off < HEADER_SIZE:
            buf, buf_start, off = pread(fd, min(chunk, end - pos), pos), pos, 0
            if len(buf) < HEADER_SIZE:
                raise CorruptRecordError(
                    f"torn batch header at byte {pos} ({end - pos} bytes left)")
        header = read_header(buf, off)
        size = header.size
        if header.batch_length < MIN_BATCH_LENGTH or pos + size > end:
            raise CorruptRecordError(f"torn or invalid batch at byte {pos} (length "
                                     f"{header.batch_length}, {end - pos} bytes left)")
        if off + size > len(buf):
            buf, buf_start, off = pread(fd, max(chunk, size), pos), pos, 0
        if validate:
            try:
                validate_batch(buf, off, produced=False)
            except CorruptRecordError as exc:
                raise CorruptRecordError(f"bad batch at byte {pos}: {exc.args[0]}") from None
        yield pos, header, buf, off
        pos += size


def decode_checked(buf, off: int, header: BatchHeader) -> Batch:
    """``decode_batch`` confined to the batch's own bytes, with its columns checked to fit
    and to have one entry per record. Raises CorruptRecordError for a batch that passes
    its CRC but whose record count does not match its contents."""
    attrs = header.attributes
    per_record = 12 + 4 * (bool(attrs & HAS_OFFSET_DELTAS) + bool(attrs & HAS_KEYS)
                           + bool(attrs & HAS_HEADERS))
    if header.record_count < 0 or HEADER_SIZE + header.record_count * per_record > header.size:
        raise CorruptRecordError(f"batch at offset {header.base_offset} claims "
                                 f"{header.record_count} records, more than its size allows")
    try:
        batch = decode_batch(memoryview(buf)[off:off + header.size], 0, header)
    except (ValueError, IndexError, UnicodeDecodeError) as exc:
        raise CorruptRecordError(f"batch at offset {header.base_offset} cannot be decoded: "
                                 f"{exc}") from None
    n = header.record_count
    if not (len(batch.offsets) == len(batch.timestamps) == len(batch.keys)
            == len(batch.values) == n):
        raise CorruptRecordError(f"batch at offset {header.base_offset} has inconsistent "
                                 "record columns")
    return batch
