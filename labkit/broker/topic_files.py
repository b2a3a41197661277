"""The topic registry's files: the data-directory lock, topics.json, partition directories.

Theory of operation
-------------------
On disk, under the data directory::

    .lock                     flock'd by the running broker (one broker per directory)
    topics.json               {"version": 1, "cluster_id": "...",
                               "topics": {"t": {"partitions": 3, "configs": {"retention.ms": "5000"}}}}
    <topic>-<partition>/      one PartitionLog per partition (labkit.log)

``topics.json`` is the truth about which topics exist and their per-topic
overrides (only the keys a user set; everything else follows the broker
defaults). It is rewritten atomically (``log.recovery.write_atomically``: temp
file, fsync, rename, fsync of the directory); the registry writes it *before*
partition directories are created and *before* they are removed, so a crash at any
point leaves either the old or the new topic set, and at worst an orphan directory,
which a later create of the same name wipes. Deleted partitions are renamed to
``<dir>.<n>-delete`` and then removed; leftovers of that kind are removed at start.

A topic name is checked against Kafka's rules (``[a-zA-Z0-9._-]``, at most 249
characters, not ``.`` or ``..``) before any path is built from it, so no name can
reach outside the data directory.

``DataDir`` holds no topic state: the registry (broker/topics.py) decides what to
write and when, and hands each *metadata round* (``MetadataRound``: the topics.json
body, the partitions to create and to remove) to the flusher thread, which writes
the body and then calls ``replace_files``. Which thread calls what is the
registry's business (see its docstring).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import shutil
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labkit._clock import Clock
from labkit.errors import (
    InvalidConfigurationError,
    InvalidPartitionsError,
    InvalidTopicError,
    KafkaStorageError,
)
from labkit.log.partition import PartitionLog
from labkit.log.recovery import write_atomically

if sys.platform != "win32":  # POSIX; Windows students run the broker in Docker
    import fcntl

log = logging.getLogger(__name__)

MAX_TOPIC_NAME = 249
MAX_PARTITIONS = 10_000
_LEGAL = re.compile(r"[a-zA-Z0-9._-]+")
METADATA_FILE = "topics.json"
LOCK_FILE = ".lock"

# name -> (partition count, overrides): what topics.json says about each topic
MetadataBody = dict[str, tuple[int, dict[str, str]]]


class DataDirLockedError(InvalidConfigurationError):
    """Another broker process holds the data directory."""


def validate_topic_name(name: object) -> str:
    """Return ``name`` if it is a legal topic name, else raise InvalidTopicError."""
    if not isinstance(name, str) or not name:
        raise InvalidTopicError(f"topic name must be a non-empty string, got {name!r}")
    if name in (".", ".."):
        raise InvalidTopicError("topic name cannot be '.' or '..'")
    if len(name) > MAX_TOPIC_NAME:
        raise InvalidTopicError(
            f"topic name is {len(name)} characters long; the limit is {MAX_TOPIC_NAME}"
        )
    if not _LEGAL.fullmatch(name):
        raise InvalidTopicError(
            f"topic name {name!r} is not legal: use only ASCII letters, digits, '.', '_' and '-'"
        )
    return name


def check_partition_count(count: object) -> int:
    """Return ``count`` if it is a legal partition count, else raise InvalidPartitionsError."""
    if type(count) is not int or count < 1:
        raise InvalidPartitionsError(f"number of partitions must be 1 or more, got {count!r}")
    if count > MAX_PARTITIONS:
        raise InvalidPartitionsError(
            f"{count} partitions is more than this lab broker allows ({MAX_PARTITIONS})"
        )
    return count


def new_cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")


class DataDir:
    """One broker's data directory (see the module docstring)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock_fd: int | None = None

    def lock(self) -> None:
        """Create the directory if needed and take its lock; remove deletion leftovers.

        Raises DataDirLockedError when another broker holds it."""
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        if sys.platform != "win32":
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
                os.close(fd)
                raise DataDirLockedError(
                    f"data directory {self.path} is in use by another broker "
                    f"(pid {holder}); stop that "
                    "broker, or give this one its own directory with --data-dir"
                ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode("ascii"), 0)
        self._lock_fd = fd
        for leftover in self.path.glob("*-delete"):
            shutil.rmtree(leftover, ignore_errors=True)

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def read_metadata(self) -> dict:
        """topics.json as stored ({} when there is none). Raises InvalidConfigurationError
        (saying what to do) when it is damaged."""
        path = self.path / METADATA_FILE
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            meta = json.loads(raw)
            if not isinstance(meta, dict) or not isinstance(meta.get("topics", {}), dict):
                raise ValueError("not a topics object")
            for name, entry in meta.get("topics", {}).items():
                validate_topic_name(name)
                check_partition_count(int(entry["partitions"]))
        except (ValueError, TypeError, KeyError, InvalidTopicError, InvalidPartitionsError) as exc:
            raise InvalidConfigurationError(
                f"{path} is damaged ({exc}); fix or remove it (removing it forgets every topic)"
            ) from None
        return meta

    def write_metadata(self, cluster_id: str, body: MetadataBody) -> None:
        """Replace topics.json atomically. Raises OSError (the file is then unchanged)."""
        topics = {
            name: {"partitions": count, "configs": overrides}
            for name, (count, overrides) in sorted(body.items())
        }
        data = json.dumps(
            {"version": 1, "cluster_id": cluster_id, "topics": topics},
            indent=1,
            sort_keys=True,
        ).encode("utf-8")
        write_atomically(self.path / METADATA_FILE, data)

    def partition_dir(self, name: str, partition: int) -> Path:
        path = self.path / f"{validate_topic_name(name)}-{partition}"
        if path.parent != self.path:  # cannot happen with a valid name; belt and braces
            raise InvalidTopicError(f"topic name {name!r} escapes the data directory")
        return path

    def wipe_orphan(self, name: str, partition: int) -> None:
        """Remove a partition directory no topic owns (left by a crash mid-delete)."""
        path = self.partition_dir(name, partition)
        if path.exists():
            log.warning("removing leftover directory %s of an earlier topic", path)
            self.remove_dir(path)

    @staticmethod
    def remove_dir(path: Path) -> None:
        """Rename out of the way (one atomic step), then delete the contents."""
        tomb = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}-delete")
        try:
            os.rename(path, tomb)
        except FileNotFoundError:
            return
        shutil.rmtree(tomb, ignore_errors=True)


@dataclass
class Creation:
    """A topic (first == 0) or a topic's new partitions [first, total) being created."""

    topic: Any  # a broker.topics.Topic (not imported: that module imports this one)
    first: int
    total: int
    logs: list[PartitionLog] = field(default_factory=list)
    error: Exception | None = None


@dataclass
class MetadataRound:
    """One write of topics.json and the file work that follows it."""

    version: int
    body: MetadataBody
    creations: list[Creation]
    removals: list[tuple[str, list[PartitionLog]]]
    touched: set[str]
    error: Exception | None = None

    def replace_files(self, files: DataDir, clock: Clock) -> None:
        """Flusher thread, once topics.json is written: close and remove deleted
        partitions, open created ones. Failures are recorded, never raised."""
        for name, logs in self.removals:
            for p, plog in enumerate(logs):
                try:
                    plog.close()
                    files.remove_dir(files.partition_dir(name, p))
                except (OSError, KafkaStorageError) as exc:
                    log.warning("removing partition %s-%d failed: %s", name, p, exc)
        for creation in self.creations:
            topic = creation.topic
            try:
                for p in range(creation.first, creation.total):
                    files.wipe_orphan(topic.name, p)
                    path = files.partition_dir(topic.name, p)
                    creation.logs.append(PartitionLog.open(path, topic.config, clock))
            except (OSError, KafkaStorageError) as exc:
                creation.error = exc
                for plog in creation.logs:
                    plog.close()
