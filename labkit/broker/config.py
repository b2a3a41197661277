"""Broker settings: where to listen, where data lives, and broker-wide defaults.

Built from the command line's ``--host/--port/--data-dir`` and repeatable
``--config key=value`` flags that use Kafka's broker config names
(``auto.create.topics.enable``, ``num.partitions``, ``log.retention.ms``...).
Broker-wide ``log.*`` keys are the defaults of the per-topic configs
(``log.retention.ms`` is the default ``retention.ms``), exactly as in Kafka.
Unknown keys and bad values raise ``KafkaConfigurationError`` naming the key
and what to write instead.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from labkit.errors import InvalidConfigurationError, KafkaConfigurationError
from labkit.log.config import LogConfig

# Broker key -> per-topic key it sets the default of (Kafka's names).
TOPIC_DEFAULT_KEYS = {
    "log.retention.ms": "retention.ms",
    "log.retention.bytes": "retention.bytes",
    "log.segment.bytes": "segment.bytes",
    "log.roll.ms": "segment.ms",
    "log.cleanup.policy": "cleanup.policy",
    "log.cleaner.delete.retention.ms": "delete.retention.ms",
    "log.cleaner.min.compaction.lag.ms": "min.compaction.lag.ms",
    "log.index.interval.bytes": "index.interval.bytes",
    "log.segment.index.bytes": "segment.index.bytes",
    "log.message.timestamp.type": "message.timestamp.type",
    "message.max.bytes": "max.message.bytes",
}
# Coarser units Kafka also accepts: key -> (ms key, factor).
_UNIT_ALIASES = {
    "log.retention.hours": ("log.retention.ms", 3_600_000),
    "log.retention.minutes": ("log.retention.ms", 60_000),
    "log.roll.hours": ("log.roll.ms", 3_600_000),
}

MIN_RETENTION_CHECK_MS = 100  # the cleaner never runs more often than this


def _bool(key: str, value: str) -> bool:
    text = value.strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise KafkaConfigurationError(f"{key}={value!r}: use true or false")


def _int(key: str, value: str, minimum: int) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        raise KafkaConfigurationError(f"{key}={value!r}: expected a whole number") from None
    if number < minimum:
        raise KafkaConfigurationError(f"{key}={number}: must be at least {minimum}")
    return number


@dataclasses.dataclass(frozen=True)
class BrokerConfig:
    """Typed broker settings. Build with ``BrokerConfig.build(...)`` to validate."""

    host: str = "localhost"
    port: int = 9092
    data_dir: Path = Path("data")
    auto_create_topics_enable: bool = True
    num_partitions: int = 1
    message_max_bytes: int = 1048588
    log_retention_check_interval_ms: int = 300_000
    socket_request_max_bytes: int = 16 * 1024 * 1024
    advertised_host_name: str | None = None
    # per-topic defaults in Kafka's topic-level names (validated by LogConfig)
    topic_defaults: dict[str, str] = dataclasses.field(default_factory=dict)

    BROKER_KEYS = (
        "auto.create.topics.enable", "num.partitions", "log.retention.check.interval.ms",
        "socket.request.max.bytes", "advertised.host.name",
    )

    @classmethod
    def build(cls, host: str = "localhost", port: int = 9092, data_dir: str | Path = "data",
              overrides: dict[str, str] | None = None) -> BrokerConfig:
        """Validate ``--config`` overrides (Kafka broker names). Raises KafkaConfigurationError."""
        if not 0 <= port <= 65535:
            raise KafkaConfigurationError(f"port {port} is not a TCP port (use 1-65535)")
        fields: dict[str, Any] = {"host": host, "port": port, "data_dir": Path(data_dir)}
        topic_defaults: dict[str, str] = {}
        for key, raw in (overrides or {}).items():
            value = str(raw)
            key = key.strip()
            if key in _UNIT_ALIASES:
                target, factor = _UNIT_ALIASES[key]
                key, value = target, str(_int(key, value, -1) * factor)
            if key == "auto.create.topics.enable":
                fields["auto_create_topics_enable"] = _bool(key, value)
            elif key == "num.partitions":
                fields["num_partitions"] = _int(key, value, 1)
            elif key == "log.retention.check.interval.ms":
                fields["log_retention_check_interval_ms"] = _int(key, value, 1)
            elif key == "socket.request.max.bytes":
                fields["socket_request_max_bytes"] = _int(key, value, 1024)
            elif key == "advertised.host.name":
                fields["advertised_host_name"] = value.strip() or None
            elif key in TOPIC_DEFAULT_KEYS:
                if key == "message.max.bytes":
                    fields["message_max_bytes"] = _int(key, value, 0)
                topic_defaults[TOPIC_DEFAULT_KEYS[key]] = value
            else:
                known = sorted([*cls.BROKER_KEYS, *TOPIC_DEFAULT_KEYS, *_UNIT_ALIASES])
                raise KafkaConfigurationError(
                    "unknown broker config {!r}; known keys: {} (per-topic settings such as "
                    "retention.ms go on the topic: labkit topics --create --config ...)".format(key, ", ".join(known)))
        topic_defaults.setdefault("max.message.bytes",
                                  str(fields.get("message_max_bytes", cls.message_max_bytes)))
        try:
            LogConfig.from_kafka(topic_defaults)
        except InvalidConfigurationError as exc:
            raise KafkaConfigurationError(f"broker default topic config: {exc}") from None
        return cls(topic_defaults=topic_defaults, **fields)

    def log_defaults(self) -> LogConfig:
        """The LogConfig every topic starts from (Kafka's defaults + ``log.*`` overrides)."""
        return LogConfig.from_kafka(self.topic_defaults)

    @property
    def bind_host(self) -> str:
        """The address to bind: ``localhost`` means 127.0.0.1, anything else as given."""
        return "127.0.0.1" if self.host == "localhost" else self.host

    @property
    def advertised_host(self) -> str:
        """The host name put in metadata responses."""
        if self.advertised_host_name:
            return self.advertised_host_name
        if self.host in ("0.0.0.0", "*", "::", ""):
            return "localhost"
        return self.host

    @property
    def max_frame_bytes(self) -> int:
        """Largest single frame the socket accepts (bigger ones drop the connection)."""
        return max(self.socket_request_max_bytes, self.message_max_bytes + 65536)

    def retention_check_interval_s(self, shortest_retention_ms: int | None) -> float:
        """Seconds between cleaner runs: the configured interval, or a quarter of the
        shortest topic retention when that is sooner (so a 5 s retention shows quickly)."""
        interval = self.log_retention_check_interval_ms
        if shortest_retention_ms is not None and shortest_retention_ms >= 0:
            interval = min(interval, shortest_retention_ms // 4)
        return max(interval, MIN_RETENTION_CHECK_MS) / 1000.0


def parse_config_flags(flags: list[str] | None) -> dict[str, str]:
    """``["k=v", ...]`` from repeated ``--config`` flags -> dict. Raises KafkaConfigurationError."""
    out: dict[str, str] = {}
    for flag in flags or []:
        key, sep, value = flag.partition("=")
        if not sep or not key.strip():
            raise KafkaConfigurationError(
                f"--config {flag!r}: write it as key=value, e.g. --config num.partitions=3")
        out[key.strip()] = value.strip()
    return out
