"""The log start offset a DeleteRecords request set, kept in one small file per partition.

Theory of operation
-------------------
Retention and compaction delete whole segments, so the first segment's base offset
(its file name) records the log start offset they leave. DeleteRecords (Kafka's
KIP-107) may move the start into the middle of a segment; the file
``log-start-offset.checkpoint`` in the partition directory holds that offset (as
Kafka's ``log-start-offset-checkpoint``, one per partition here). Format: one line,
``<offset>\\n``, ASCII decimal.

The log start offset is ``max(first segment's base offset, checkpoint)``: once
retention moves past a checkpoint the file is simply stale, never wrong. ``write``
replaces the file atomically (a temporary file, fsync, rename, fsync of the
directory), so after a crash the file holds the old or the new offset, never a torn
one; ``read`` treats a missing or unreadable file as "no checkpoint" (and logs the
latter). Plain functions, no state: the caller (PartitionLog) holds its lock.
"""

from __future__ import annotations

import logging
from pathlib import Path

from labkit.log.recovery import write_atomically

log = logging.getLogger(__name__)

CHECKPOINT = "log-start-offset.checkpoint"


def read(directory: Path) -> int:
    """The checkpointed log start offset, or 0 when there is none."""
    path = directory / CHECKPOINT
    try:
        text = path.read_text("ascii")
    except FileNotFoundError:
        return 0
    except (OSError, UnicodeDecodeError) as exc:
        log.warning("ignoring unreadable %s: %s", path, exc)
        return 0
    value = text.strip()
    if not value.isdigit():
        log.warning("ignoring %s: %r is not an offset", path, value[:40])
        return 0
    return int(value)


def write(directory: Path, offset: int) -> None:
    """Durably replace the checkpoint with ``offset``. Raises OSError."""
    write_atomically(directory / CHECKPOINT, f"{offset}\n".encode("ascii"))
