"""Reading and writing record batches in a file: the system calls and the scans.

``pread`` and ``FileOps`` (the writes; tests substitute a failing one to simulate
a full disk), ``iter_batches`` (walk or CRC-check the batches of a byte range, as
recovery and compaction do) and ``decode_checked`` (CRC-check and decode one
stored batch; CorruptRecordError is the only failure). Stateless; safe from any thread.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence

from labkit.errors import CorruptRecordError
from labkit.protocol.records import (
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


def iter_batches(
    fd: int, start: int, end: int, *, validate: bool, chunk: int = SCAN_CHUNK
) -> Iterator[tuple[int, BatchHeader, bytes, int]]:
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
                    f"torn batch header at byte {pos} ({end - pos} bytes left)"
                )
        header = read_header(buf, off)
        size = header.size
        if header.batch_length < MIN_BATCH_LENGTH or pos + size > end:
            raise CorruptRecordError(
                f"torn or invalid batch at byte {pos} (length "
                f"{header.batch_length}, {end - pos} bytes left)"
            )
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
    """Decode one stored batch after checking its CRC. Raises CorruptRecordError, naming
    the batch's offset, for a batch that fails its CRC or whose columns do not describe
    its bytes (records.decode_batch raises nothing else)."""
    try:
        validate_batch(buf, off, produced=False)
        return decode_batch(buf, off, header)
    except CorruptRecordError as exc:
        raise CorruptRecordError(
            f"the batch at offset {header.base_offset} is corrupt: "
            f"{exc.args[0] if exc.args else exc}"
        ) from None
