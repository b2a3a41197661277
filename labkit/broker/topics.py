"""The topic registry: which topics exist, their partitions' logs and their configs.

Theory of operation
-------------------
The registry keeps the topic table: each ``Topic``'s partition logs, config and
overrides. Its files — the data-directory lock, ``topics.json``, partition
directories — are ``broker/topic_files.py``'s (formats, atomic writes, the
crash-safe order); the registry decides what they must say and when.

Deferred writes: a change (create, delete, create_partitions, alter_configs) is made
in memory at once and marked for the next *metadata round*, which writes topics.json
once however many topics changed (O(n) per round, not per topic) and then does the
file work: closes and removes deleted topics' partitions, creates new ones. In the
broker (``deferred = True``) the flusher thread runs the rounds (``begin_round`` and
``finish_round`` on the loop thread, ``run_round`` on the flusher), so the loop never
waits for a disk, and the requests that made a change are answered only after the
round that made it durable. A topic being created is not in ``topics`` until its
round is finished: it answers LEADER_NOT_AVAILABLE (retriable), as Kafka does for a
topic it has just auto-created. Otherwise (``deferred = False``: tools, tests) each
change runs its round before returning.

Thread-safety: every method is called from the broker's loop thread, except
``run_round`` (the flusher thread, one round at a time, touching only the round's
own snapshot and logs) and ``partitions_snapshot``, ``any_compacted`` and
``shortest_retention_ms``, which the cleaner thread calls (they copy before iterating; ``lock`` guards the structural
changes they might race with). A log closed or deleted while the cleaner works on it
is safe: PartitionLog's maintenance stops on a closed log.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from labkit._clock import Clock
from labkit.broker.topic_files import (
    Creation,
    DataDir,
    MetadataBody,
    MetadataRound,
    check_partition_count,
    new_cluster_id,
    validate_topic_name,
)
from labkit.errors import (
    InvalidConfigurationError,
    InvalidPartitionsError,
    InvalidReplicationFactorError,
    KafkaStorageError,
    LeaderNotAvailableError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)
from labkit.log.config import TOPIC_CONFIG_KEYS, LogConfig
from labkit.log.partition import PartitionLog

log = logging.getLogger(__name__)


def validate_replication_factor(factor: object) -> None:
    if factor in (1, -1, None):
        return
    raise InvalidReplicationFactorError(
        f"replication factor {factor!r} is not possible: this lab runs a single broker, so use "
        "replication factor 1 (e.g. --replication-factor 1)"
    )


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

    def __init__(
        self, data_dir: Path, defaults: LogConfig, clock: Clock, default_partitions: int = 1
    ):
        self.data_dir = Path(data_dir)
        self._files = DataDir(self.data_dir)
        self._defaults = defaults
        self._clock = clock
        self.default_partitions = default_partitions
        self.topics: dict[str, Topic] = {}
        self.cluster_id = ""
        self.lock = threading.Lock()
        self.deferred = False  # the broker sets True: its flusher thread runs the rounds
        self.version = 0  # bumped by every change
        self.durable_version = 0  # the last version a round made durable
        self._dirty = False
        self._pending: dict[str, Creation] = {}  # topics (or new partitions) being created
        self._removals: list[tuple[str, list[PartitionLog]]] = []  # deleted, files to go
        self._touched: set[str] = set()  # topics changed since the last round began

    # -- life cycle ------------------------------------------------------------

    def open(self) -> TopicRegistry:
        """Lock the directory and open every topic. Raises DataDirLockedError."""
        self._files.lock()
        meta = self._files.read_metadata()
        self.cluster_id = meta.get("cluster_id") or new_cluster_id()
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
        """Finish a pending round, flush and close every log, release the directory lock."""
        round_ = self.begin_round()
        if round_ is not None:
            self.run_round(round_)
            for name, error in self.finish_round(round_).items():
                log.error("topic %s: change lost at shutdown: %s", name, error)
        with self.lock:
            for topic in self.topics.values():
                for plog in topic.partitions:
                    try:
                        plog.flush()
                        plog.close()
                    except (OSError, ValueError) as exc:
                        log.warning("closing %s failed: %s", topic.name, exc)
            self.topics.clear()
        self._files.unlock()

    # -- lookups -----------------------------------------------------------------

    def get(self, name: str) -> Topic | None:
        return self.topics.get(name)

    def names(self) -> list[str]:
        return sorted(self.topics)

    def partition(self, name: str, partition: int) -> PartitionLog:
        """The log of one partition. Raises UnknownTopicOrPartitionError."""
        topic = self.topics.get(name)
        if topic is None and name in self._pending:
            raise self._being_created(name)
        if topic is None:
            raise UnknownTopicOrPartitionError(
                f"topic {name!r} does not exist; create it (labkit topics --create --topic {name}) "
                "or check the spelling"
            )
        if type(partition) is not int or not 0 <= partition < len(topic.partitions):
            raise UnknownTopicOrPartitionError(
                f"topic {name!r} has partitions 0..{len(topic.partitions) - 1}; partition "
                f"{partition!r} does not exist"
            )
        return topic.partitions[partition]

    def partitions_snapshot(self) -> list[tuple[Topic, int, PartitionLog]]:
        """Every (topic, partition, log), for the cleaner thread."""
        with self.lock:
            return [
                (t, p, plog)
                for t in list(self.topics.values())
                for p, plog in enumerate(list(t.partitions))
            ]

    def any_compacted(self) -> bool:
        """Whether some topic's cleanup.policy includes compact."""
        return any(t.config.compacts for t in list(self.topics.values()))

    def shortest_retention_ms(self) -> int | None:
        """The smallest retention.ms of any topic that deletes (for the cleaner's pace;
        0, "keep nothing", counts too: -1 alone means forever)."""
        numbers = [
            t.config.retention_ms
            for t in list(self.topics.values())
            if t.config.deletes and t.config.retention_ms >= 0
        ]
        return min(numbers) if numbers else None

    # -- changes -----------------------------------------------------------------
    #
    # A change is made in memory at once and recorded for the next metadata round
    # (see "Deferred writes" above); in inline mode the round runs before returning.

    def create(
        self,
        name: object,
        num_partitions: int | None = None,
        replication_factor: object = 1,
        configs: dict | None = None,
        validate_only: bool = False,
    ) -> Topic | None:
        """Create a topic; None when ``validate_only`` or while the creation is deferred.

        Raises InvalidTopicError, TopicAlreadyExistsError, InvalidPartitionsError,
        InvalidReplicationFactorError, InvalidConfigurationError, KafkaStorageError."""
        name = validate_topic_name(name)
        if num_partitions is None or num_partitions == -1:
            num_partitions = self.default_partitions
        check_partition_count(num_partitions)
        validate_replication_factor(replication_factor)
        if name in self.topics or name in self._pending:
            raise TopicAlreadyExistsError(f"topic {name!r} already exists")
        overrides = _string_configs(configs)
        config = self._config_for(overrides)
        overrides = _normalized(overrides, config)
        if validate_only:
            return None
        self._pending[name] = Creation(Topic(name, config, overrides), 0, num_partitions)
        self._changed(name)
        self._run_inline(name, "could not create topic")
        return self.topics.get(name)

    def auto_create(self, name: str, num_partitions: int) -> Topic:
        """The topic, created with the defaults if it does not exist yet.

        Raises LeaderNotAvailableError (retriable) while the creation is deferred, as
        Kafka answers for a topic it has just auto-created; InvalidTopicError."""
        topic = self.topics.get(name)
        if topic is not None:
            return topic
        if name not in self._pending:
            self.create(name, num_partitions)
            topic = self.topics.get(name)
            if topic is not None:
                return topic
        raise self._being_created(name)

    def delete(self, name: str) -> None:
        """Delete a topic and its files. Raises UnknownTopicOrPartitionError,
        LeaderNotAvailableError (while it is being created), KafkaStorageError."""
        if isinstance(name, str) and name in self._pending:
            raise self._being_created(name)
        if not isinstance(name, str) or name not in self.topics:
            raise UnknownTopicOrPartitionError(f"topic {name!r} does not exist")
        with self.lock:
            topic = self.topics.pop(name)
        self._removals.append((name, topic.partitions))
        self._changed(name)
        self._run_inline(name, "could not delete topic")
        log.info("deleted topic %s", name)

    def create_partitions(self, name: str, total: object, validate_only: bool = False) -> None:
        """Grow a topic to ``total`` partitions. Raises InvalidPartitionsError,
        UnknownTopicOrPartitionError, LeaderNotAvailableError, KafkaStorageError."""
        if isinstance(name, str) and name in self._pending:
            raise self._being_created(name)
        topic = self.topics.get(name) if isinstance(name, str) else None
        if topic is None:
            raise UnknownTopicOrPartitionError(f"topic {name!r} does not exist")
        wanted = check_partition_count(total)
        current = len(topic.partitions)
        if wanted <= current:
            raise InvalidPartitionsError(
                f"topic {name!r} has {current} partitions; the new count must be larger "
                "(Kafka never removes partitions)"
            )
        if validate_only:
            return
        self._pending[name] = Creation(topic, current, wanted)
        self._changed(name)
        self._run_inline(name, "could not add partitions to")

    def describe_configs(self, name: str) -> list[dict]:
        """[{"name", "value", "default"}] for every topic config.

        Raises UnknownTopicOrPartitionError."""
        topic = self.topics.get(name) if isinstance(name, str) else None
        if topic is None:
            raise UnknownTopicOrPartitionError(f"topic {name!r} does not exist")
        values = topic.config.to_kafka()
        return [
            {"name": key, "value": values.get(key), "default": key not in topic.overrides}
            for key in sorted(TOPIC_CONFIG_KEYS)
        ]

    def alter_configs(
        self, name: str, changes: object, validate_only: bool = False, replace: bool = False
    ) -> None:
        """Apply incremental changes (value None resets to the default); with ``replace``
        the changes are the topic's whole set of overrides (Kafka's AlterConfigs: a
        setting left out goes back to its default).
        Raises UnknownTopicOrPartitionError, InvalidConfigurationError."""
        topic = self.topics.get(name) if isinstance(name, str) else None
        if topic is None:
            raise UnknownTopicOrPartitionError(f"topic {name!r} does not exist")
        if not isinstance(changes, dict):
            raise InvalidConfigurationError("configs must be an object of name -> value")
        overrides = {} if replace else dict(topic.overrides)
        for key, value in changes.items():
            if value is None:
                overrides.pop(str(key), None)
            else:
                overrides[str(key)] = _config_value(key, value)
        config = self._config_for(overrides)
        overrides = _normalized(overrides, config)
        if validate_only:
            return
        topic.set_config(config, overrides)
        for plog in topic.partitions:
            plog.update_config(config)
        self._changed(name)
        self._run_inline(name, "could not save the configs of")
        log.info("topic %s configs now %s", name, overrides or "{defaults}")

    # -- metadata rounds (see "Deferred writes") -------------------------------------

    @property
    def pending(self) -> bool:
        """Whether a change waits for a metadata round."""
        return self._dirty

    def being_created(self, name: object) -> bool:
        return isinstance(name, str) and name in self._pending

    def begin_round(self) -> MetadataRound | None:
        """Loop thread: what the next round must write, or None when nothing changed."""
        if not self._dirty:
            return None
        body = {name: (len(t.partitions), t.overrides) for name, t in self.topics.items()}
        for name, creation in self._pending.items():
            body[name] = (creation.total, creation.topic.overrides)
        round_ = MetadataRound(
            self.version, body, list(self._pending.values()), self._removals, self._touched
        )
        self._removals, self._touched, self._dirty = [], set(), False
        return round_

    def run_round(self, round_: MetadataRound) -> None:
        """Flusher thread: write topics.json once, then remove deleted topics' files and
        open created partitions. Failures are recorded in ``round_``, never raised."""
        try:
            self._write_body(round_.body)
        except OSError as exc:
            round_.error = exc
            return
        round_.replace_files(self._files, self._clock)

    def finish_round(self, round_: MetadataRound) -> dict[str, Exception]:
        """Loop thread: install what the round created; return {topic: error} for the
        changes that did not become durable (their requests are answered with it)."""
        failed: dict[str, Exception] = {}
        if round_.error is not None:
            failed = dict.fromkeys(round_.touched, round_.error)
            self._removals = round_.removals + self._removals  # retried by the next round
            self._dirty = True
        for creation in round_.creations:
            name = creation.topic.name
            self._pending.pop(name, None)
            error = round_.error or creation.error
            if error is not None:
                for plog in creation.logs if creation.error is None else ():
                    plog.close()  # opened before the round failed elsewhere
                failed[name] = error
                self._dirty = True  # the next round writes topics.json without it
                continue
            with self.lock:
                creation.topic.partitions.extend(creation.logs)
                self.topics[name] = creation.topic
            log.info("topic %s has %d partition(s)", name, creation.total)
        if not failed:
            self.durable_version = max(self.durable_version, round_.version)
        return failed

    def _changed(self, name: str) -> None:
        self.version += 1
        self._touched.add(name)
        self._dirty = True

    def _run_inline(self, name: str, what: str) -> None:
        if self.deferred:
            return
        round_ = self.begin_round()
        if round_ is None:
            return
        self.run_round(round_)
        error = self.finish_round(round_).get(name)
        if error is not None:
            raise KafkaStorageError(f"{what} {name!r}: {error}") from None

    @staticmethod
    def _being_created(name: str) -> LeaderNotAvailableError:
        return LeaderNotAvailableError(f"topic {name!r} is being created; retry in a moment")

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
                log.warning(
                    "topic %s: ignoring stored config %s=%s (%s); using the broker default",
                    name,
                    key,
                    value,
                    exc.args[0] if exc.args else exc,
                )
        return kept

    def _open_partition(self, name: str, partition: int, config: LogConfig) -> PartitionLog:
        return PartitionLog.open(self._files.partition_dir(name, partition), config, self._clock)

    def _write_metadata(self) -> None:
        """Write the current topic set (at open; later rounds use ``_write_body``)."""
        self._write_body(
            {name: (len(t.partitions), t.overrides) for name, t in self.topics.items()}
        )

    def _write_body(self, body: MetadataBody) -> None:
        self._files.write_metadata(self.cluster_id, body)


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
