"""Per-topic log configuration: Kafka's key names outside, a typed frozen object inside.

``LogConfig`` holds one partition log's settings as plain ints and strings (times in
milliseconds, sizes in bytes, the units of Kafka's own keys). ``from_kafka`` reads
Kafka's dotted names (``retention.ms``...) from a mapping of strings or ints, as
they arrive from ``labkit topics --config k=v``, the admin client or the wire, and
rejects unknown keys and bad values with ``InvalidConfigurationError`` naming the
key, the value and what would be accepted. ``to_kafka`` is the inverse (every key,
values as strings), for ``describe_configs`` and for persisting topic configs.

Broker-wide defaults use Kafka's broker names (``log.retention.ms``,
``log.segment.bytes``, ``message.max.bytes``...): ``split_broker_configs`` turns
``labkit broker --config k=v`` pairs into a default ``LogConfig`` plus the keys
that are not log settings, for the broker to interpret.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from labkit.errors import InvalidConfigurationError

DAY_MS = 24 * 3600 * 1000
INT32_MAX = (1 << 31) - 1
INT64_MAX = (1 << 63) - 1
CLEANUP_POLICIES = ("delete", "compact", "compact,delete")

# Floors that stop one topic's settings from making the broker create files per batch
# (three per segment). Kafka 4 requires segment.bytes >= 1 MiB; the lab keeps 512-byte
# segments and segment.ms=1000 possible for showing retention within seconds (notebook 07
# rolls by time, which Kafka accepts too): at most three files per 512 bytes or per second
# and partition.
MIN_SEGMENT_BYTES = 512
MIN_SEGMENT_MS = 1000
MIN_SEGMENT_INDEX_BYTES = 4096  # 341 time-index entries: a segment of at least that many batches


@dataclass(frozen=True)
class LogConfig:
    """One partition log's settings. Build it with ``from_kafka``; never mutate it."""

    segment_bytes: int = 1 << 30
    segment_ms: int = 7 * DAY_MS
    retention_ms: int = 7 * DAY_MS  # -1 = keep forever
    retention_bytes: int = -1  # -1 = no size limit
    cleanup_policy: str = "delete"  # "delete" | "compact" | "compact,delete"
    delete_retention_ms: int = DAY_MS
    min_compaction_lag_ms: int = 0
    max_message_bytes: int = 1_048_588
    index_interval_bytes: int = 4096
    segment_index_bytes: int = 10 * 1024 * 1024
    # Produce refuses a record stamped further ahead of / behind the broker's clock
    # (Kafka 4.0's defaults: one hour ahead; any time in the past).
    message_timestamp_after_max_ms: int = 3600 * 1000
    message_timestamp_before_max_ms: int = INT64_MAX

    @property
    def deletes(self) -> bool:
        """Whether retention (time/size) applies: cleanup.policy has ``delete``."""
        return "delete" in self.cleanup_policy

    @property
    def compacts(self) -> bool:
        """Whether the log is compacted: cleanup.policy has ``compact``."""
        return "compact" in self.cleanup_policy

    @classmethod
    def from_kafka(
        cls, configs: Mapping[str, str | int], defaults: LogConfig | None = None
    ) -> LogConfig:
        """``defaults`` (or Kafka's defaults) with the Kafka-named ``configs`` applied.

        Raises InvalidConfigurationError for an unknown key or a value out of range.
        """
        base = defaults if defaults is not None else cls()
        changes: dict[str, Any] = {}  # field name -> its parsed int or str
        for key, raw in configs.items():
            spec = _SPECS.get(key)
            if spec is None:
                raise InvalidConfigurationError(
                    f"unknown topic config {key!r}; the topic configs labkit knows are: "
                    + ", ".join(sorted(_SPECS))
                )
            changes[spec.field] = spec.parse(key, raw)
        return dataclasses.replace(base, **changes) if changes else base

    def to_kafka(self) -> dict[str, str]:
        """Every topic config under its Kafka name, values as strings."""
        return {key: str(getattr(self, spec.field)) for key, spec in _SPECS.items()}

    def changed_from(self, defaults: LogConfig) -> dict[str, str]:
        """The Kafka-named keys whose value differs from ``defaults`` (for persisting)."""
        mine, theirs = self.to_kafka(), defaults.to_kafka()
        return {k: v for k, v in mine.items() if theirs[k] != v}


@dataclass(frozen=True)
class _Spec:
    field: str
    low: int | None = None
    high: int = INT64_MAX
    hint: str = ""

    def parse(self, key: str, raw: str | int) -> int | str:
        if self.low is None:
            return _parse_policy(key, raw)
        value = _parse_int(key, raw, self)
        if not self.low <= value <= self.high:
            raise InvalidConfigurationError(f"{key}={raw} is out of range: {self.describe()}")
        return value

    def describe(self) -> str:
        if self.high == INT64_MAX:
            text = f"an integer >= {self.low}"
        else:
            text = f"an integer between {self.low} and {self.high}"
        return text + (f" ({self.hint})" if self.hint else "")


def _parse_int(key: str, raw: str | int, spec: _Spec) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise InvalidConfigurationError(f"{key}={raw!r} is not valid: expected {spec.describe()}")
    if isinstance(raw, int):
        return raw
    try:
        return int(raw.strip())
    except ValueError:
        raise InvalidConfigurationError(
            f"{key}={raw!r} is not a whole number: expected {spec.describe()}, "
            f"e.g. --config {key}={max(spec.low or 0, 1000)}"
        ) from None


def _parse_policy(key: str, raw: str | int) -> str:
    if isinstance(raw, str):
        parts = {p.strip().lower() for p in raw.split(",") if p.strip()}
        if parts and parts <= {"delete", "compact"}:
            return ",".join(sorted(parts))
    raise InvalidConfigurationError(
        f"{key}={raw!r} is not valid: accepted values are "
        + ", ".join(repr(p) for p in CLEANUP_POLICIES)
    )


# Kafka topic config name -> field and accepted range (Kafka's own bounds).
_SPECS: dict[str, _Spec] = {
    "segment.bytes": _Spec(
        "segment_bytes",
        MIN_SEGMENT_BYTES,
        INT32_MAX,
        "bytes per segment file; smaller would mean new files for nearly every batch",
    ),
    "segment.ms": _Spec(
        "segment_ms",
        MIN_SEGMENT_MS,
        INT64_MAX,
        "ms before a segment is rolled; at least 1 s so a topic cannot "
        "roll a new file for every batch",
    ),
    "retention.ms": _Spec("retention_ms", -1, INT64_MAX, "ms to keep records; -1 = forever"),
    "retention.bytes": _Spec(
        "retention_bytes", -1, INT64_MAX, "bytes to keep per partition; -1 = no limit"
    ),
    "cleanup.policy": _Spec("cleanup_policy"),
    "delete.retention.ms": _Spec(
        "delete_retention_ms", 0, INT64_MAX, "ms a tombstone is kept after compaction"
    ),
    "min.compaction.lag.ms": _Spec(
        "min_compaction_lag_ms", 0, INT64_MAX, "ms a record stays uncompacted"
    ),
    "max.message.bytes": _Spec("max_message_bytes", 0, INT32_MAX, "largest batch in bytes"),
    "index.interval.bytes": _Spec(
        "index_interval_bytes", 0, INT32_MAX, "bytes between offset index entries"
    ),
    "segment.index.bytes": _Spec(
        "segment_index_bytes",
        MIN_SEGMENT_INDEX_BYTES,
        INT32_MAX,
        "largest offset index file in bytes; a full index rolls the segment",
    ),
    "message.timestamp.after.max.ms": _Spec(
        "message_timestamp_after_max_ms",
        0,
        INT64_MAX,
        "ms a record's timestamp may be ahead of the broker's clock",
    ),
    "message.timestamp.before.max.ms": _Spec(
        "message_timestamp_before_max_ms",
        0,
        INT64_MAX,
        "ms a record's timestamp may be behind the broker's clock",
    ),
}

TOPIC_CONFIG_KEYS: frozenset[str] = frozenset(_SPECS)

# Broker-wide defaults (``labkit broker --config``): Kafka's broker key -> (topic key, factor).
BROKER_CONFIG_KEYS: dict[str, tuple[str, int]] = {
    "log.segment.bytes": ("segment.bytes", 1),
    "log.roll.ms": ("segment.ms", 1),
    "log.roll.hours": ("segment.ms", 3600 * 1000),
    "log.retention.ms": ("retention.ms", 1),
    "log.retention.minutes": ("retention.ms", 60 * 1000),
    "log.retention.hours": ("retention.ms", 3600 * 1000),
    "log.retention.bytes": ("retention.bytes", 1),
    "log.cleanup.policy": ("cleanup.policy", 1),
    "log.cleaner.delete.retention.ms": ("delete.retention.ms", 1),
    "log.cleaner.min.compaction.lag.ms": ("min.compaction.lag.ms", 1),
    "message.max.bytes": ("max.message.bytes", 1),
    "log.index.interval.bytes": ("index.interval.bytes", 1),
    "log.index.size.max.bytes": ("segment.index.bytes", 1),
    "log.message.timestamp.after.max.ms": ("message.timestamp.after.max.ms", 1),
    "log.message.timestamp.before.max.ms": ("message.timestamp.before.max.ms", 1),
}

# Kafka lets the finer unit win when several are given (ms over minutes over hours).
_PRECEDENCE = {
    "log.roll.hours": 0,
    "log.roll.ms": 1,
    "log.retention.hours": 0,
    "log.retention.minutes": 1,
    "log.retention.ms": 2,
}


def split_broker_configs(
    configs: Mapping[str, str | int], defaults: LogConfig | None = None
) -> tuple[LogConfig, dict[str, str | int]]:
    """Broker-level ``configs`` -> (default LogConfig for new topics, the other keys).

    ``log.retention.hours=1`` becomes ``retention.ms=3600000``; keys that are not log
    settings (``num.partitions``...) come back untouched for the caller to check.
    Raises InvalidConfigurationError for a bad value of a log setting.
    """
    topic: dict[str, str | int] = {}
    rest: dict[str, str | int] = {}
    for key in sorted(configs, key=lambda k: _PRECEDENCE.get(k, 0)):
        raw = configs[key]
        mapped = BROKER_CONFIG_KEYS.get(key)
        if mapped is None:
            rest[key] = raw
            continue
        topic_key, factor = mapped
        if factor != 1:
            spec = _SPECS[topic_key]
            number = _parse_int(key, raw, _Spec(spec.field, 1, INT64_MAX, spec.hint))
            raw = number * factor
        try:
            LogConfig.from_kafka({topic_key: raw})
        except InvalidConfigurationError as exc:
            raise InvalidConfigurationError(
                f"broker config {key}: {exc.args[0] if exc.args else exc}"
            ) from None
        topic[topic_key] = raw
    return LogConfig.from_kafka(topic, defaults), rest
