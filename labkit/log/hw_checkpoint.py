"""The high watermarks of a data directory's replicated partitions, in one small file.

Theory of operation
-------------------
The high watermark is not in a partition's files (partition_replica.py). As Kafka, a
broker in cluster mode writes every replicated partition's high watermark to
``replication-offset-checkpoint`` in its data directory (Kafka: every
``replica.high.watermark.checkpoint.interval.ms``, 5000) and reads it back at start,
so a restarted replica does not start from nothing. Format: Kafka's ``CheckpointFile``
version 0, ASCII lines::

    0                   version
    2                   number of entries
    orders 0 1520       topic partition high_watermark
    orders 1 1498

``write`` replaces the file atomically (temporary file, fsync, rename, fsync of the
directory): off the loop thread (the flusher's job). ``read`` treats a missing file as
empty and a malformed one as empty with a warning (the partitions then start at their
log start offset and learn the rest from their leader). Plain functions, no state.
Single-broker mode never writes it: its high watermark is the log end offset.
"""

from __future__ import annotations

import logging
from pathlib import Path

from labkit.log.recovery import write_atomically

log = logging.getLogger(__name__)

CHECKPOINT = "replication-offset-checkpoint"
VERSION = 0


def render(marks: dict[tuple[str, int], int]) -> bytes:
    """The file's bytes for ``{(topic, partition): high_watermark}``."""
    lines = [str(VERSION), str(len(marks))]
    lines += [
        f"{topic} {partition} {offset}" for (topic, partition), offset in sorted(marks.items())
    ]
    return ("\n".join(lines) + "\n").encode("ascii")


def parse(data: bytes) -> dict[tuple[str, int], int]:
    """The entries of a checkpoint file. Raises ValueError saying what is wrong."""
    lines = data.decode("ascii").splitlines()
    if len(lines) < 2 or lines[0].strip() != str(VERSION):
        raise ValueError(f"expected version {VERSION} then a count, got {lines[:2]!r}")
    if int(lines[1]) != len(lines) - 2:
        raise ValueError(f"the file says {lines[1]} entries but holds {len(lines) - 2}")
    marks = {}
    for line in lines[2:]:
        fields = line.split()
        if len(fields) != 3 or int(fields[1]) < 0 or int(fields[2]) < 0:
            raise ValueError(f"malformed entry {line!r}")
        marks[(fields[0], int(fields[1]))] = int(fields[2])
    return marks


def read(data_dir: Path | str) -> dict[tuple[str, int], int]:
    """The checkpointed high watermarks ({} when there is no usable file)."""
    path = Path(data_dir) / CHECKPOINT
    try:
        return parse(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        log.warning("ignoring the unreadable high-watermark checkpoint %s: %s", path, exc)
        return {}


def write(data_dir: Path | str, marks: dict[tuple[str, int], int]) -> None:
    """Durably replace the checkpoint with ``marks``. Raises OSError (the old file stays)."""
    write_atomically(Path(data_dir) / CHECKPOINT, render(marks))
