"""Broker settings: where to listen, where data lives, and broker-wide defaults.

Built from the command line's ``--host/--port/--zmq-port/--data-dir`` and repeatable
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

from labkit.broker import listeners as listener_specs
from labkit.broker.listeners import Listener
from labkit.errors import InvalidConfigurationError, KafkaConfigurationError
from labkit.log.config import BROKER_CONFIG_KEYS, LogConfig, split_broker_configs

MIN_RETENTION_CHECK_MS = 100  # the cleaner never runs more often than this
ZMQ_PORT_OFFSET = 100  # ZeroMQ's default port: the main (Kafka) port + 100, 9192 for 9092
BROKER_KEYS = (
    "auto.create.topics.enable",
    "num.partitions",
    "log.retention.check.interval.ms",
    "socket.request.max.bytes",
    "advertised.host.name",
    "log.cleaner.backoff.ms",
    "offsets.retention.minutes",
    "offsets.retention.check.interval.ms",
    "group.max.size",
    "group.initial.rebalance.delay.ms",
    "fetch.max.bytes",
    "fetch.max.wait.max.ms",
    "connection.max.buffered.bytes",
    "quota.window.num",
    "quota.window.size.seconds",
    "listeners",
    "advertised.listeners",
    "listener.security.protocol.map",
    "zmq.port",
    "kafka.port",
    "producer.id.expiration.ms",
    "producer.id.expiration.check.interval.ms",
    # cluster mode (docs/replication.md): ZooKeeper-coordinated brokers
    "broker.id",
    "zookeeper.connect",
    "zookeeper.session.timeout.ms",
    "zookeeper.connection.timeout.ms",
    "default.replication.factor",
    "min.insync.replicas",
    "unclean.leader.election.enable",
    "replica.lag.time.max.ms",
    "offsets.topic.num.partitions",
    "offsets.topic.replication.factor",
)
_LISTENER_KEYS = ("listeners", "advertised.listeners", "listener.security.protocol.map")


def _bool(key: str, value: str | int) -> bool:
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise KafkaConfigurationError(f"{key}={value!r}: use true or false")


def _int(key: str, value: str | int, minimum: int) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise KafkaConfigurationError(f"{key}={value!r}: expected a whole number") from None
    if number < minimum:
        raise KafkaConfigurationError(f"{key}={number}: must be at least {minimum}")
    return number


def _port(key: str, value: str | int) -> int:
    port = _int(key, value, 0)
    if port > 65535:
        raise KafkaConfigurationError(f"{key}={port}: not a TCP port (use 1-65535, 0 = any free)")
    return port


@dataclasses.dataclass(frozen=True)
class BrokerConfig:
    """Typed broker settings. Build with ``BrokerConfig.build(...)`` to validate."""

    host: str = "localhost"
    # the main port: the first listener's (Kafka's wire protocol; labkit clients
    # bootstrap there, docs/wire.md); the server puts the bound port here
    port: int = 9092
    # labkit's ZeroMQ protocol (its own port, bound on ``host``); 0: any free port
    zmq_port: int = 9092 + ZMQ_PORT_OFFSET
    # Kafka's listeners, resolved (broker/listeners.py); empty: PLAINTEXT://host:port
    listeners: tuple[Listener, ...] = ()
    data_dir: Path = Path("data")
    auto_create_topics_enable: bool = True
    num_partitions: int = 1
    log_retention_check_interval_ms: int = 300_000
    log_cleaner_backoff_ms: int = 15_000
    socket_request_max_bytes: int = 16 * 1024 * 1024
    advertised_host_name: str | None = None
    # empty consumer groups and their committed offsets are forgotten after this (Kafka's)
    offsets_retention_minutes: int = 10_080
    offsets_retention_check_interval_ms: int = 600_000
    group_max_size: int = 1000  # members per consumer group (Kafka's default: unlimited)
    # how long a classic group that was empty waits for more members before its first
    # rebalance (Kafka's default: 3000; a classroom starts consumers one at a time)
    group_initial_rebalance_delay_ms: int = 0
    # Kafka's broker cap on one fetch reply (the request's max_bytes is cut to it)
    fetch_max_bytes: int = 57_671_680
    # the longest a fetch is parked, whatever its max_wait_ms (a long poll may end early)
    fetch_max_wait_max_ms: int = 30_000
    # bytes one connection may keep in the broker, each way (a request not yet read in
    # full; replies it has not read): over it, the connection is closed
    connection_max_buffered_bytes: int = 32 * 1024 * 1024
    quota_window_num: int = 11  # samples a client quota's rate is measured over
    quota_window_size_seconds: int = 1  # length of one sample
    # an idempotent producer's state is forgotten after this long without a batch (Kafka's)
    producer_id_expiration_ms: int = 86_400_000
    producer_id_expiration_check_interval_ms: int = 600_000
    # cluster mode (docs/replication.md): set zookeeper.connect and broker.id; unset, one
    # broker (node 0) that needs nothing else
    broker_id: int = -1
    zookeeper_connect: str | None = None
    zookeeper_session_timeout_ms: int = 18_000  # Kafka 2.5+'s default
    zookeeper_connection_timeout_ms: int | None = None  # None: the session timeout (Kafka's)
    default_replication_factor: int = 1
    min_insync_replicas: int = 1  # kept in ZooKeeper's topic configs; acks=all enforces it
    unclean_leader_election_enable: bool = False
    # a follower that has not caught up for this long leaves the ISR (Kafka's default)
    replica_lag_time_max_ms: int = 30_000
    # cluster mode: the replicated __consumer_offsets topic, created at its first use
    offsets_topic_num_partitions: int = 3  # Kafka: 50 (docs/replication.md says why not)
    offsets_topic_replication_factor: int = 3  # at creation: at most the live brokers
    # what every topic starts from: Kafka's defaults + the broker's log.* overrides
    log_defaults: LogConfig = dataclasses.field(default_factory=LogConfig)

    def __post_init__(self) -> None:
        if not self.listeners:  # built directly (tests): the default listener
            default = listener_specs.Endpoint(listener_specs.DEFAULT_NAME, self.host, self.port)
            resolved = listener_specs.resolve((default,), (), {}, self.advertised_host_name)
            object.__setattr__(self, "listeners", resolved)

    @classmethod
    def build(
        cls,
        host: str = "localhost",
        port: int = 9092,
        data_dir: str | Path = "data",
        overrides: dict[str, str] | None = None,
    ) -> BrokerConfig:
        """Validate ``--config`` overrides (Kafka broker names). Raises KafkaConfigurationError."""
        if not 0 <= port <= 65535:
            raise KafkaConfigurationError(f"port {port} is not a TCP port (use 1-65535)")
        try:
            log_defaults, rest = split_broker_configs(overrides or {})
        except InvalidConfigurationError as exc:
            raise KafkaConfigurationError(exc.args[0] if exc.args else str(exc)) from None
        fields: dict[str, Any] = {
            "host": host,
            "port": port,
            "data_dir": Path(data_dir),
            "log_defaults": log_defaults,
        }
        for key, value in rest.items():
            if key == "auto.create.topics.enable":
                fields["auto_create_topics_enable"] = _bool(key, value)
            elif key == "num.partitions":
                fields["num_partitions"] = _int(key, value, 1)
            elif key == "log.retention.check.interval.ms":
                fields["log_retention_check_interval_ms"] = _int(key, value, 1)
            elif key == "log.cleaner.backoff.ms":
                fields["log_cleaner_backoff_ms"] = _int(key, value, 1)
            elif key == "socket.request.max.bytes":
                fields["socket_request_max_bytes"] = _int(key, value, 1024)
            elif key == "offsets.retention.minutes":
                fields["offsets_retention_minutes"] = _int(key, value, 1)
            elif key == "offsets.retention.check.interval.ms":
                fields["offsets_retention_check_interval_ms"] = _int(key, value, 1)
            elif key == "group.max.size":
                fields["group_max_size"] = _int(key, value, 1)
            elif key == "group.initial.rebalance.delay.ms":
                fields["group_initial_rebalance_delay_ms"] = _int(key, value, 0)
            elif key == "fetch.max.bytes":
                fields["fetch_max_bytes"] = _int(key, value, 1024)
            elif key == "fetch.max.wait.max.ms":
                fields["fetch_max_wait_max_ms"] = _int(key, value, 1)
            elif key == "connection.max.buffered.bytes":
                fields["connection_max_buffered_bytes"] = _int(key, value, 1024 * 1024)
            elif key == "quota.window.num":
                fields["quota_window_num"] = _int(key, value, 2)
            elif key == "quota.window.size.seconds":
                fields["quota_window_size_seconds"] = _int(key, value, 1)
            elif key == "producer.id.expiration.ms":
                fields["producer_id_expiration_ms"] = _int(key, value, 1)
            elif key == "producer.id.expiration.check.interval.ms":
                fields["producer_id_expiration_check_interval_ms"] = _int(key, value, 1)
            elif key == "zmq.port":
                fields["zmq_port"] = _port(key, value)
            elif key == "broker.id":
                fields["broker_id"] = _int(key, value, 0)
            elif key == "zookeeper.connect":
                fields["zookeeper_connect"] = _zookeeper_connect(str(value))
            elif key == "zookeeper.session.timeout.ms":
                fields["zookeeper_session_timeout_ms"] = _int(key, value, 1000)
            elif key == "zookeeper.connection.timeout.ms":
                fields["zookeeper_connection_timeout_ms"] = _int(key, value, 100)
            elif key == "default.replication.factor":
                fields["default_replication_factor"] = _int(key, value, 1)
            elif key == "min.insync.replicas":
                fields["min_insync_replicas"] = _int(key, value, 1)
            elif key == "unclean.leader.election.enable":
                fields["unclean_leader_election_enable"] = _bool(key, value)
            elif key == "replica.lag.time.max.ms":
                fields["replica_lag_time_max_ms"] = _int(key, value, 1)
            elif key == "offsets.topic.num.partitions":
                fields["offsets_topic_num_partitions"] = _int(key, value, 1)
            elif key == "offsets.topic.replication.factor":
                fields["offsets_topic_replication_factor"] = _int(key, value, 1)
            elif key in _LISTENER_KEYS or key == "kafka.port":
                pass  # below, once advertised.host.name is known
            elif key == "advertised.host.name":
                fields["advertised_host_name"] = str(value).strip() or None
            else:
                known = ", ".join(sorted([*BROKER_KEYS, *BROKER_CONFIG_KEYS]))
                raise KafkaConfigurationError(
                    f"unknown broker config {key!r}; known keys: {known} (per-topic settings "
                    "such as retention.ms go on the topic: labkit topics --create --config ...)"
                )
        fields["listeners"] = _listeners(host, port, rest, fields.get("advertised_host_name"))
        fields["port"] = fields["listeners"][0].port
        if "zmq_port" not in fields:
            main = fields["port"]
            fields["zmq_port"] = main + ZMQ_PORT_OFFSET if main else 0
            if fields["zmq_port"] > 65535:
                raise KafkaConfigurationError(
                    f"the ZeroMQ port defaults to the main port + {ZMQ_PORT_OFFSET}, over 65535 "
                    f"for port {main}; choose one with --zmq-port N (or --config zmq.port=N)"
                )
        config = cls(**fields)
        _check_cluster_mode(config)
        if config.zmq_port and config.zmq_port in {item.port for item in config.listeners}:
            raise KafkaConfigurationError(
                f"the ZeroMQ port {config.zmq_port} is also a Kafka listener's port; give "
                "ZeroMQ its own with --zmq-port N"
            )
        if config.connection_max_buffered_bytes < config.max_frame_bytes:
            raise KafkaConfigurationError(
                f"connection.max.buffered.bytes={config.connection_max_buffered_bytes} is "
                f"smaller than the largest request frame ({config.max_frame_bytes} bytes, from "
                "socket.request.max.bytes and message.max.bytes); raise it or lower those"
            )
        return config

    @property
    def message_max_bytes(self) -> int:
        return self.log_defaults.max_message_bytes

    @property
    def bind_host(self) -> str:
        """The address to bind: ``localhost`` means 127.0.0.1, anything else as given."""
        return "127.0.0.1" if self.host == "localhost" else self.host

    @property
    def advertised_host(self) -> str:
        """The host name labkit's own metadata names: the first listener's advertised one."""
        return self.listeners[0].advertised_host

    @property
    def advertised_port(self) -> int:
        """The port labkit's own metadata names: the first listener's advertised one."""
        return self.listeners[0].advertised_port or self.port

    @property
    def max_frame_bytes(self) -> int:
        """Largest single frame the socket accepts (bigger ones drop the connection)."""
        return max(self.socket_request_max_bytes, self.message_max_bytes + 65536)

    def retention_check_interval_s(
        self, shortest_retention_ms: int | None, compacting: bool = False
    ) -> float:
        """Seconds between cleaner runs: the configured interval, or a quarter of the
        shortest topic retention when that is sooner (so a 5 s retention shows quickly),
        or ``log.cleaner.backoff.ms`` when some topic is compacted."""
        interval = self.log_retention_check_interval_ms
        if shortest_retention_ms is not None and shortest_retention_ms >= 0:
            interval = min(interval, shortest_retention_ms // 4)
        if compacting:
            interval = min(interval, self.log_cleaner_backoff_ms)
        return max(interval, MIN_RETENTION_CHECK_MS) / 1000.0


def _listeners(
    host: str, port: int, rest: dict[str, Any], advertised_host_name: str | None
) -> tuple[Listener, ...]:
    """Kafka's listener settings, resolved; ``PLAINTEXT://host:port`` when not given.
    The old ``kafka.port=N`` (before the Kafka protocol took the main port) adds a
    listener named KAFKA_PORT on N."""
    if "listeners" in rest:
        endpoints = listener_specs.parse("listeners", rest["listeners"])
    else:
        endpoints = (listener_specs.Endpoint(listener_specs.DEFAULT_NAME, host, port),)
    if "kafka.port" in rest:
        extra = listener_specs.Endpoint(
            "KAFKA_PORT", endpoints[0].host, _port("kafka.port", rest["kafka.port"])
        )
        endpoints = (*endpoints, extra)
    advertised: tuple[listener_specs.Endpoint, ...] = ()
    if str(rest.get("advertised.listeners", "")).strip():
        advertised = listener_specs.parse(
            "advertised.listeners", rest["advertised.listeners"], allow_wildcard=False
        )
    protocol_map = listener_specs.parse_protocol_map(rest.get("listener.security.protocol.map", ""))
    return listener_specs.resolve(endpoints, advertised, protocol_map, advertised_host_name)


def _zookeeper_connect(value: str) -> str:
    """``HOST:PORT[,HOST:PORT...][/chroot]``, as Kafka's zookeeper.connect."""
    text = value.strip()
    hosts, _, _chroot = text.partition("/")
    for item in hosts.split(","):
        host, sep, port = item.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
            raise KafkaConfigurationError(
                f"zookeeper.connect={value!r}: write HOST:PORT[,HOST:PORT...][/chroot], "
                "e.g. --zookeeper localhost:2181 or localhost:2181/labkit"
            )
    return text


def _check_cluster_mode(config: BrokerConfig) -> None:
    """Cluster settings make sense only together. Raises KafkaConfigurationError."""
    if config.zookeeper_connect is None:
        if config.default_replication_factor > 1:
            raise KafkaConfigurationError(
                f"default.replication.factor={config.default_replication_factor} needs "
                "several brokers: start each with --broker-id N --zookeeper HOST:PORT "
                "(docs/replication.md), or leave it at 1"
            )
        return
    if config.broker_id < 0:
        raise KafkaConfigurationError(
            f"cluster mode (zookeeper.connect={config.zookeeper_connect}) needs this "
            "broker's id: add --broker-id N (or --config broker.id=N), a different N for "
            "each broker"
        )


def parse_config_flags(flags: list[str] | None) -> dict[str, str]:
    """``["k=v", ...]`` from repeated ``--config`` flags -> dict. Raises KafkaConfigurationError."""
    out: dict[str, str] = {}
    for flag in flags or []:
        key, sep, value = flag.partition("=")
        if not sep or not key.strip():
            raise KafkaConfigurationError(
                f"--config {flag!r}: write it as key=value, e.g. --config num.partitions=3"
            )
        out[key.strip()] = value.strip()
    return out
