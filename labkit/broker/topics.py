"""The topic registry: which topics exist, their partitions' logs and their configs.

Theory of operation
-------------------
On disk, under the data directory::

    .lock                     flock'd by the running broker (one broker per directory)
    topics.json               {"version": 1, "cluster_id": "...",
                               "topics": {"t": {"partitions": 3, "configs": {"retention.ms": "5000"}}}}
    <topic>-<partition>/      one PartitionLog per partition (labkit.log)

``topics.json`` is the truth about which topics exist and their per-topic
overrides (only the keys a user set; everything else follows the broker
defaults). It is rewritten atomically (temp file, fsync, rename, fsync of the
directory) *before* partition directories are created and *before* they are
removed, so a crash at any point leaves either the old or the new topic set, and
at worst an orphan directory, which a later create of the same name wipes.
Deleted partitions are renamed to ``<dir>.<n>-delete`` and then removed; leftovers
of that kind are removed at start.

A topic name is checked against Kafka's rules (``[a-zA-Z0-9._-]``, at most 249
characters, not ``.`` or ``..``) before any path is built from it, so no name can
reach outside the data directory.

Thread-safety: every method is called from the broker's loop thread, except
``partitions_snapshot``, ``any_compacted`` and ``shortest_retention_ms``, which the
cleaner thread calls (they copy before iterating; ``lock`` guards the structural
changes they might race with). A log closed or deleted while the cleaner works on it
is safe: PartitionLog's maintenance stops on a closed log.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import shutil
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from labkit._clock import Clock
from labkit.errors import (
    InvalidConfigurationError,
    InvalidPartitionsError,
    InvalidReplicationFactorError,
    InvalidTopicError,
    KafkaStorageError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)
from labkit.log.config import TOPIC_CONFIG_KEYS, LogConfig
from labkit.log.partition import PartitionLog

try:  # POSIX; Windows students run the broker in Docker
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None
from labkit.log.recovery import fsync_dir

log = logging.getLogger(__name__)

MAX_TOPIC_NAME = 249
MAX_PARTITIONS = 10_000
_LEGAL = re.compile(r"[a-zA-Z0-9._-]+")
METADATA_FILE = "topics.json"
LOCK_FILE = ".lock"


class DataDirLockedError(InvalidConfigurationError):
    """Another broker process holds the data directory."""


def validate_topic_name(name: object) -> str:
    """Return ``name`` if it is a legal topic name, else raise InvalidTopicError."""
    if not isinstance(name, str) or not name:
        raise InvalidTopicError(f"topic name must be a non-empty string, got {name!r}")
    if name in (".", ".."):
        raise InvalidTopicError("topic name cannot be '.' or '..'")
    if len(name) > MAX_TOPIC_NAME:
        raise InvalidTopicError(f"topic name is {len(name)} characters long; the limit "
                                f"is {MAX_TOPIC_NAME}")
    if not _LEGAL.fullmatch(name):
        raise InvalidTopicError(
            f"topic name {name!r} is not legal: use only ASCII letters, digits, '.', '_' and '-'")
    return name


def validate_replication_factor(factor: object) -> None:
    if factor in (1, -1, None):
        return
    raise InvalidReplicationFactorError(
        f"replication factor {factor!r} is not possible: this lab runs a single broker, so use "
        "replication factor 1 (e.g. --replication-factor 1)")


@dataclass
class Topic:
    name: str
    config: LogConfig
    overrides: dict[str, str]
    partitions: list[PartitionLog] = field(default_factory=list)
    max_message_bytes: int = 0  # cached from config: produce checks it per batch

    def __post_init__(self) -> None:
        self.set_config(self.config, self.overrides)

    def set_config(self, config: LogConfig, overrides: dict[str, str]) -> None:
        self.config, self.overrides = config, overrides
        self.max_message_bytes = config.max_message_bytes


class TopicRegistry:
    """Topics and their partition logs under one data directory."""

    def __init__(self, data_dir: Path, defaults: LogConfig, clock: Clock,
                 default_partitions: int = 1):
        self.data_dir = Path(data_dir)
        self._defaults = defaults
        self._clock = clock
        self.default_partitions = default_partitions
        self.topics: dict[str, Topic] = {}
        self.cluster_id = ""
        self.lock = threading.Lock()
        self._lock_fd: int | None = None

    # -- life cycle ------------------------------------------------------------

    def open(self) -> TopicRegistry:
        """Lock the directory and open every topic. Raises DataDirLockedError."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._acquire_dir_lock()
        for leftover in self.data_dir.glob("*-delete"):
            shutil.rmtree(leftover, ignore_errors=True)
        meta = self._read_metadata()
        self.cluster_id = meta.get("cluster_id") or _new_cluster_id()
        try:
            for name, entry in sorted(meta.get("topics", {}).items()):
                overrides = self._stored_overrides(name, entry)
                config = self._config_for(overrides)
                topic = Topic(name, config, overrides)
                for p in range(int(entry["partitions"])):
                    topic.partitions.append(self._open_partition(name, p, config))
                self.topics[name] = topic
        except BaseException:
            self.close()
            raise
        if "cluster_id" not in meta:
            self._write_metadata()
        return self

    def close(self) -> None:
        """Flush and close every log, then release the directory lock."""
        with self.lock:
            for topic in self.topics.values():
                for plog in topic.partitions:
                    try:
                        plog.flush()
                        plog.close()
                    except (OSError, ValueError) as exc:
                        log.warning("closing %s failed: %s", topic.name, exc)
            self.topics.clear()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _acquire_dir_lock(self) -> None:
        path = self.data_dir / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
                os.close(fd)
                raise DataDirLockedError(
                    f"data directory {self.data_dir} is in use by another broker "
                    f"(pid {holder}); stop that "
                    "broker, or give this one its own directory with --data-dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode("ascii"), 0)
        self._lock_fd = fd

    # -- lookups -----------------------------------------------------------------

    def get(self, name: str) -> Topic | None:
        return self.topics.get(name)

    def names(self) -> list[str]:
        return sorted(self.topics)

    def partition(self, name: str, partition: int) -> PartitionLog:
        """The log of one partition. Raises UnknownTopicOrPartitionError."""
        topic = self.topics.get(name)
        if topic is None:
            raise UnknownTopicOrPartitionError(
                f"topic {name!r} does not exist; create it (labkit topics --create --topic {name}) "
                "or check the spelling")
        if type(partition) is not int or not 0 <= partition < len(topic.partitions):
            raise UnknownTopicOrPartitionError(
                f"topic {name!r} has partitions 0..{len(topic.partitions) - 1}; partition "
                f"{partition!r} does not exist")
        return topic.partitions[partition]

    def partitions_snapshot(self) -> list[tuple[Topic, int, PartitionLog]]:
        """Every (topic, partition, log), for the cleaner thread."""
        with self.lock:
            return [(t, p, plog) for t in list(self.topics.values())
                    for p, plog in enumerate(list(t.partitions))]

    def any_compacted(self) -> bool:
        """Whether some topic's cleanup.policy includes compact."""
        return any(t.config.compacts for t in list(self.topics.values()))

    def shortest_retention_ms(self) -> int | None:
        """The smallest retention.ms of any topic that deletes (for the cleaner's pace)."""
        numbers = [t.config.retention_ms for t in list(self.topics.values())
                   if t.config.deletes and t.config.retention_ms > 0]
        return min(numbers) if numbers else None

    # -- changes -----------------------------------------------------------------

    def create(self, name: object, num_partitions: int | None = None,
               replication_factor: object = 1, configs: dict | None = None,
               validate_only: bool = False) -> Topic | None:
        """Create a topic. Raises InvalidTopicError, TopicAlreadyExistsError,
        InvalidPartitionsError, InvalidReplicationFactorError, InvalidConfigurationError."""
        name = validate_topic_name(name)
        if num_partitions is None or num_partitions == -1:
            num_partitions = self.default_partitions
        _check_partition_count(num_partitions)
        validate_replication_factor(replication_factor)
        if name in self.topics:
            raise TopicAlreadyExistsError(f"topic {name!r} already exists")
        overrides = _string_configs(configs)
        config = self._config_for(overrides)
        overrides = _normalized(overrides, config)
        if validate_only:
            return None
        topic = Topic(name, config, overrides)
        self.topics[name] = topic
        try:
            self._write_metadata(extra={name: num_partitions})
            for p in range(num_partitions):
                self._wipe_orphan(name, p)
                topic.partitions.append(self._open_partition(name, p, config))
        except (OSError, KafkaStorageError) as exc:
            for plog in topic.partitions:
                plog.close()
            del self.topics[name]
            self._write_metadata_quietly()
            raise KafkaStorageError(f"could not create topic {name!r}: {exc}") from None
        log.info("created topic %s with %d partition(s)", name, num_partitions)
        return topic

    def delete(self, name: str) -> None:
        """Delete a topic and its files. Raises UnknownTopicOrPartitionError."""
        if not isinstance(name, str) or name not in self.topics:
            raise UnknownTopicOrPartitionError(f"topic {name!r} does not exist")
        with self.lock:
            topic = self.topics.pop(name)
            self._write_metadata()
            for p, plog in enumerate(topic.partitions):
                plog.close()
                self._remove_dir(self._partition_dir(name, p))
        log.info("deleted topic %s", name)

    def create_partitions(self, name: str, total: object, validate_only: bool = False) -> None:
        """Grow a topic to ``total`` partitions. Raises InvalidPartitionsError,
        UnknownTopicOrPartitionError."""
        topic = self.topics.get(name) if isinstance(name, str) else None
        if topic is None:
            raise UnknownTopicOrPartitionError(f"topic {name!r} does not exist")
        _check_partition_count(total)
        current = len(topic.partitions)
        if total <= current:
            raise InvalidPartitionsError(
                f"topic {name!r} has {current} partitions; the new count must be larger "
                "(Kafka never removes partitions)")
        if validate_only:
            return
        with self.lock:
            entry_count = current
            try:
                self._write_metadata(extra={name: total})
                for p in range(current, total):
                    self._wipe_orphan(name, p)
                    topic.partitions.append(self._open_partition(name, p, topic.config))
                    entry_count += 1
            except (OSError, KafkaStorageError) as exc:
                for plog in topic.partitions[current:]:
                    plog.close()
                del topic.partitions[current:]
                self._write_metadata_quietly()
                raise KafkaStorageError(f"could not add partitions to {name!r}: {exc}") from None
        log.info("topic %s now has %d partitions", name, entry_count)

    def describe_configs(self, name: str) -> list[dict]:
        """[{"name", "value", "default"}] for every topic config.

        Raises UnknownTopicOrPartitionError."""
        topic = self.topics.get(name) if isinstance(name, str) else None
        if topic is None:
            raise UnknownTopicOrPartitionError(f"topic {name!r} does not exist")
        values = topic.config.to_kafka()
        return [{"name": key, "value": values.get(key), "default": key not in topic.overrides}
                for key in sorted(TOPIC_CONFIG_KEYS)]

    def alter_configs(self, name: str, changes: object, validate_only: bool = False) -> None:
        """Apply incremental changes (value None resets to the default).
        Raises UnknownTopicOrPartitionError, InvalidConfigurationError."""
        topic = self.topics.get(name) if isinstance(name, str) else None
        if topic is None:
            raise UnknownTopicOrPartitionError(f"topic {name!r} does not exist")
        if not isinstance(changes, dict):
            raise InvalidConfigurationError("configs must be an object of name -> value")
        overrides = dict(topic.overrides)
        for key, value in changes.items():
            if value is None:
                overrides.pop(str(key), None)
            else:
                overrides[str(key)] = _config_value(key, value)
        config = self._config_for(overrides)
        overrides = _normalized(overrides, config)
        if validate_only:
            return
        old = (topic.config, topic.overrides)
        topic.set_config(config, overrides)
        try:
            self._write_metadata()
        except OSError as exc:
            topic.set_config(*old)
            raise KafkaStorageError(f"could not save configs of {name!r}: {exc}") from None
        for plog in topic.partitions:
            plog.update_config(config)
        log.info("topic %s configs now %s", name, overrides or "{defaults}")

    # -- helpers -----------------------------------------------------------------

    def _config_for(self, overrides: dict[str, str]) -> LogConfig:
        return LogConfig.from_kafka(overrides, defaults=self._defaults)

    def _stored_overrides(self, name: str, entry: dict) -> dict[str, str]:
        """A stored topic's overrides without the keys this version refuses (e.g. below
        a floor that an older labkit did not have): those fall back to the defaults."""
        kept = {}
        for key, value in entry.get("configs", {}).items():
            try:
                self._config_for({str(key): str(value)})
                kept[str(key)] = str(value)
            except InvalidConfigurationError as exc:
                log.warning("topic %s: ignoring stored config %s=%s (%s); using the broker "
                            "default", name, key, value, exc.args[0] if exc.args else exc)
        return kept

    def _partition_dir(self, name: str, partition: int) -> Path:
        path = self.data_dir / f"{validate_topic_name(name)}-{partition}"
        if path.parent != self.data_dir:  # cannot happen with a valid name; belt and braces
            raise InvalidTopicError(f"topic name {name!r} escapes the data directory")
        return path

    def _open_partition(self, name: str, partition: int, config: LogConfig) -> PartitionLog:
        return PartitionLog.open(self._partition_dir(name, partition), config, self._clock)

    def _wipe_orphan(self, name: str, partition: int) -> None:
        path = self._partition_dir(name, partition)
        if path.exists():
            log.warning("removing leftover directory %s of an earlier topic", path)
            self._remove_dir(path)

    def _remove_dir(self, path: Path) -> None:
        tomb = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}-delete")
        try:
            os.rename(path, tomb)
        except FileNotFoundError:
            return
        shutil.rmtree(tomb, ignore_errors=True)

    def _read_metadata(self) -> dict:
        path = self.data_dir / METADATA_FILE
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
                _check_partition_count(int(entry["partitions"]))
        except (ValueError, TypeError, KeyError, InvalidTopicError,
                InvalidPartitionsError) as exc:
            raise InvalidConfigurationError(
                f"{path} is damaged ({exc}); fix or remove it (removing it forgets "
                "every topic)") from None
        return meta

    def _write_metadata(self, extra: dict[str, int] | None = None) -> None:
        topics = {}
        for name, topic in sorted(self.topics.items()):
            count = (extra or {}).get(name, len(topic.partitions))
            topics[name] = {"partitions": count, "configs": topic.overrides}
        body = json.dumps({"version": 1, "cluster_id": self.cluster_id, "topics": topics},
                          indent=1, sort_keys=True).encode("utf-8")
        path = self.data_dir / METADATA_FILE
        tmp = path.with_name(METADATA_FILE + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(self.data_dir)

    def _write_metadata_quietly(self) -> None:
        try:
            self._write_metadata()
        except OSError as exc:
            log.error("could not rewrite %s: %s", METADATA_FILE, exc)


def _check_partition_count(count: object) -> None:
    if type(count) is not int or count < 1:
        raise InvalidPartitionsError(f"number of partitions must be 1 or more, got {count!r}")
    if count > MAX_PARTITIONS:
        raise InvalidPartitionsError(f"{count} partitions is more than this lab broker allows "
                                     f"({MAX_PARTITIONS})")


def _config_value(key: object, value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise InvalidConfigurationError(f"config {key}: value {value!r} is not a string or number")


def _string_configs(configs: object) -> dict[str, str]:
    if configs is None:
        return {}
    if not isinstance(configs, dict):
        raise InvalidConfigurationError("configs must be an object of name -> value")
    return {str(k): _config_value(k, v) for k, v in configs.items() if v is not None}


def _normalized(overrides: dict[str, str], config: LogConfig) -> dict[str, str]:
    values = config.to_kafka()
    return {k: values.get(k, v) for k, v in overrides.items()}



def _new_cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
