"""``KafkaAdminClient``: create, delete, list and describe topics; topic configs;
client quotas.

Every method is one blocking request to the broker (docs/wire.md). Methods that
change something return ``{"topics": [{"name", "error_code", "error_message"}]}``
and, like kafka-python, raise the first per-topic error as Kafka's error class
(``TopicAlreadyExistsError``, ``UnknownTopicOrPartitionError``, ...) unless
``raise_errors=False``. Consumer-group administration comes from
``labkit/client/group_admin.py`` (``GroupAdminMixin``), ``delete_records`` from
``labkit/client/records_admin.py``.
"""

from __future__ import annotations

import enum
import itertools
from typing import Any, ClassVar

from labkit._clock import REAL_CLOCK, Clock
from labkit.client import config as cfg
from labkit.client.backend import on_kafka
from labkit.client.group_admin import GroupAdminMixin
from labkit.client.metadata import ClusterMetadata, refresh
from labkit.client.records_admin import RecordsAdminMixin
from labkit.client.transport import Transport
from labkit.errors import IllegalArgumentError, UnsupportedVersionError, for_code

_IDS = itertools.count(1)


class NewTopic:
    """A topic to create: ``NewTopic(name, num_partitions, replication_factor, ...)``.

    ``num_partitions=-1`` uses the broker's ``num.partitions``. ``topic_configs`` is
    a dict of Kafka topic configs as strings, e.g. ``{"retention.ms": "60000"}``.
    """

    def __init__(
        self,
        name: str,
        num_partitions: int = -1,
        replication_factor: int = -1,
        replica_assignments: dict | None = None,
        topic_configs: dict | None = None,
        *,
        replica_assignment: dict | None = None,
    ):
        self.name = name
        self.num_partitions = num_partitions
        self.replication_factor = replication_factor
        self.replica_assignments = replica_assignments or replica_assignment or {}
        self.topic_configs = topic_configs or {}

    def __repr__(self) -> str:
        return (
            f"NewTopic(name={self.name!r}, num_partitions={self.num_partitions}, "
            f"replication_factor={self.replication_factor}, "
            f"topic_configs={self.topic_configs!r})"
        )


class NewPartitions:
    """The new total partition count of an existing topic (it can only grow)."""

    def __init__(self, total_count: int, new_assignments: list | None = None):
        self.total_count = total_count
        self.new_assignments = new_assignments

    def __repr__(self) -> str:
        return f"NewPartitions(total_count={self.total_count})"


class ConfigResourceType(enum.IntEnum):
    UNKNOWN = 0
    TOPIC = 2
    BROKER = 4
    BROKER_LOGGER = 8
    GROUP = 32


class ConfigResource:
    """A resource whose configs to describe or alter: ``ConfigResource('TOPIC', 'rta')``.

    ``configs``: for describe, None (all) or a list of keys; for alter, a dict
    ``{key: value}`` (value None resets the key to its default).
    """

    def __init__(self, resource_type: Any, name: str, configs: Any = None):
        if not isinstance(resource_type, ConfigResourceType):
            resource_type = ConfigResourceType[str(resource_type).upper()]
        self.resource_type = resource_type
        self.name = name
        self.configs = configs

    def __repr__(self) -> str:
        return f"ConfigResource({self.resource_type}, {self.name!r}, {self.configs!r})"


class KafkaAdminClient(GroupAdminMixin, RecordsAdminMixin):
    """Administer topics (kafka-python's ``KafkaAdminClient``).

    Raises KafkaConfigurationError for unknown settings and NoBrokersAvailable when
    no broker answers.
    """

    DEFAULT_CONFIG: ClassVar[dict[str, Any]] = {}

    def __new__(cls, *args: Any, **configs: Any) -> Any:
        if cls is KafkaAdminClient and "clock" not in configs and on_kafka(configs):
            from labkit.client.delegate_admin import DelegatingAdmin

            return DelegatingAdmin(cls, *args, **configs)  # a Kafka broker that is not labkit
        return super().__new__(cls)

    def __init__(self, *, clock: Clock = REAL_CLOCK, **configs: Any):
        self.config = config = cfg.resolve("KafkaAdminClient", self.DEFAULT_CONFIG, configs)
        if config["client_id"] is None:
            config["client_id"] = f"kafka-python-admin-{next(_IDS)}"
        self._clock = clock  # injectable for tests (keyword-only, undocumented)
        self._closed = False
        self._cluster = ClusterMetadata()
        self._transport = Transport(
            config["bootstrap_servers"],
            client_id=config["client_id"],
            request_timeout_ms=config["request_timeout_ms"],
            connect_timeout_ms=config["api_version_auto_timeout_ms"],
            reconnect_backoff_ms=config["reconnect_backoff_ms"],
            reconnect_backoff_max_ms=config["reconnect_backoff_max_ms"],
            clock=self._clock,
            name="admin",
        )

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._transport.close()

    def __enter__(self) -> KafkaAdminClient:
        return self

    def __del__(self) -> None:
        if not getattr(self, "_closed", True) and hasattr(self, "_transport"):
            self.close()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _call(
        self, api: str, header: dict, timeout_ms: float | None = None, idempotent: bool = False
    ):
        return self._transport.call(api, header, timeout_ms=timeout_ms, idempotent=idempotent)

    # -- topics ------------------------------------------------------------------

    def create_topics(
        self,
        new_topics,
        timeout_ms: float | None = None,
        validate_only: bool = False,
        raise_errors: bool = True,
    ) -> dict:
        """Create topics from NewTopic objects (or names, or ``{name: {...}}``).

        Raises TopicAlreadyExistsError, InvalidTopicError, InvalidPartitionsError,
        InvalidReplicationFactorError, ... (unless ``raise_errors=False``).
        """
        topics = []
        for item in _as_new_topics(new_topics):
            cfg.validate_topic(item.name)
            topics.append(
                {
                    "name": item.name,
                    "num_partitions": int(item.num_partitions),
                    "replication_factor": int(item.replication_factor),
                    "configs": {
                        str(k): None if v is None else str(v) for k, v in item.topic_configs.items()
                    },
                }
            )
        response = self._call(
            "create_topics", {"topics": topics, "validate_only": bool(validate_only)}, timeout_ms
        )
        return _results(response.header, raise_errors)

    def delete_topics(
        self, topics, timeout_ms: float | None = None, raise_errors: bool = True
    ) -> dict:
        """Delete topics by name. Raises UnknownTopicOrPartitionError for a missing one."""
        if isinstance(topics, str):
            topics = [topics]
        response = self._call("delete_topics", {"topics": list(topics)}, timeout_ms)
        return _results(response.header, raise_errors)

    def create_partitions(
        self,
        topic_partitions: dict,
        timeout_ms: float | None = None,
        validate_only: bool = False,
        raise_errors: bool = True,
    ) -> dict:
        """Grow topics: ``{name: NewPartitions(total_count)}`` (or ``{name: total_count}``)."""
        if validate_only:
            raise UnsupportedVersionError(
                "create_partitions(validate_only=True) is not supported by labkit's broker"
            )
        counts = {}
        for name, value in topic_partitions.items():
            counts[name] = int(
                value.total_count
                if isinstance(value, NewPartitions)
                else value["count"]
                if isinstance(value, dict)
                else value
            )
        response = self._call("create_partitions", {"topics": counts}, timeout_ms)
        return _results(response.header, raise_errors)

    def list_topics(self) -> list[str]:
        """The names of all topics, sorted."""
        refresh(self._transport, self._cluster, None, False, self._clock.monotonic())
        return sorted(self._cluster.topics(exclude_internal=False))

    def describe_topics(self, topics: list[str] | None = None) -> list[dict]:
        """Metadata per topic: kafka-python 2.0's keys (``topic``, ``partitions`` with
        ``partition``, ``leader``, ``replicas``, ``isr``) and its newer ones (``name``,
        ``partition_index``, ``leader_id``, ``replica_nodes``, ``isr_nodes``)."""
        if isinstance(topics, str):
            topics = [topics]
        header = refresh(
            self._transport,
            self._cluster,
            None if topics is None else list(topics),
            False,
            self._clock.monotonic(),
        )
        out = []
        for entry in header.get("topics", []):
            partitions = []
            for p in entry.get("partitions", []):
                partitions.append(
                    {
                        "error_code": p.get("error", 0),
                        "partition": p["partition"],
                        "partition_index": p["partition"],
                        "leader": p.get("leader", 0),
                        "leader_id": p.get("leader", 0),
                        "leader_epoch": p.get("leader_epoch", -1),  # cluster mode's
                        "replicas": p.get("replicas", []),
                        "replica_nodes": p.get("replicas", []),
                        "isr": p.get("isr", []),
                        "isr_nodes": p.get("isr", []),
                        "offline_replicas": p.get("offline_replicas", []),
                    }
                )
            out.append(
                {
                    "error_code": entry.get("error", 0),
                    "topic": entry["name"],
                    "name": entry["name"],
                    "is_internal": entry.get("is_internal", False),
                    "partitions": partitions,
                }
            )
        return out

    def describe_cluster(self) -> dict:
        """``{"brokers": [...], "cluster_id": ..., "controller_id": ...}``."""
        refresh(self._transport, self._cluster, [], False, self._clock.monotonic())
        return {
            "brokers": [
                {
                    "node_id": b.nodeId,
                    "broker_id": b.nodeId,
                    "host": b.host,
                    "port": b.port,
                    "rack": b.rack,
                }
                for b in self._cluster.brokers
            ],
            "cluster_id": self._cluster.cluster_id,
            "controller_id": self._cluster.controller_id,
        }

    # -- configs -------------------------------------------------------------------

    def describe_configs(self, config_resources, include_synonyms: bool = False) -> dict:
        """``{"topic": {name: {key: {"name", "value", "default", "is_default"}}}}``.

        Only TOPIC resources. Raises UnknownTopicOrPartitionError for a missing topic.
        """
        names = [r.name for r in _topic_resources(config_resources)]
        wanted = {r.name: r.configs for r in _topic_resources(config_resources)}
        response = self._call("describe_configs", {"topics": names}, idempotent=True)
        result: dict[str, dict] = {}
        for entry in response.header.get("topics", []):
            _raise_entry(entry)
            keys = wanted.get(entry["name"])
            configs = {}
            for c in entry.get("configs", []):
                if keys and c["name"] not in keys:
                    continue
                configs[c["name"]] = {
                    "name": c["name"],
                    "value": c.get("value"),
                    "default": bool(c.get("default")),
                    "is_default": bool(c.get("default")),
                }
            result[entry["name"]] = configs
        return {"topic": result}

    def alter_configs(self, config_resources, validate_only: bool = False) -> dict:
        """Set topic configs (incremental: keys not named keep their value; None resets)."""
        if validate_only:
            raise UnsupportedVersionError(
                "alter_configs(validate_only=True) is not supported by labkit's broker"
            )
        changes = {}
        for resource in _topic_resources(config_resources):
            if not isinstance(resource.configs, dict):
                raise IllegalArgumentError(
                    "alter_configs needs ConfigResource(..., configs="
                    "{'retention.ms': '60000'}) with a dict of values"
                )
            changes[resource.name] = {
                str(k): None if v is None else str(v) for k, v in resource.configs.items()
            }
        response = self._call("alter_configs", {"topics": changes})
        return _results(response.header, True)

    # -- client quotas (Kafka's Admin.describeClientQuotas / alterClientQuotas) ---------

    def describe_client_quotas(
        self, components: list[dict] | None = None, strict: bool = False
    ) -> list[dict]:
        """The client quotas set, as ``[{"entity": {"client-id": "X"}, "values":
        {"producer_byte_rate": 1048576.0}}, ...]``; ``"client-id": None`` is the default
        entity (``--entity-default``). ``components`` filter as in Kafka:
        ``{"entity_type": "client-id", "match_type": 0, "match": "X"}`` (0 = that client
        id, 1 = the default, 2 = any client id). Raises InvalidRequestError."""
        header = {"components": list(components or []), "strict": bool(strict)}
        return self._call("describe_client_quotas", header, idempotent=True).header["entries"]

    def alter_client_quotas(
        self, alterations, validate_only: bool = False, raise_errors: bool = True
    ) -> list[dict]:
        """Set or remove client quotas: ``[{"entity": {"client-id": "X"}, "ops":
        {"producer_byte_rate": 1048576, "consumer_byte_rate": None}}]`` (None removes a
        key; ``"client-id": None`` is the default for every client id). ``ops`` may also
        be Kafka's list of ``{"key", "value", "remove"}``. Returns one
        ``{"entity", "error_code", "error_message"}`` per alteration and raises the first
        error (InvalidRequestError: unknown key, value not a whole number >= 1) unless
        ``raise_errors=False``. Takes effect at once and survives a broker restart."""
        if isinstance(alterations, dict):
            alterations = [alterations]
        entries = [
            {"entity": a.get("entity"), "ops": _quota_ops(a.get("ops"))} for a in alterations
        ]
        response = self._call(
            "alter_client_quotas", {"entries": entries, "validate_only": bool(validate_only)}
        )
        out = [
            {
                "entity": e.get("entity"),
                "error_code": e.get("error", 0),
                "error_message": e.get("message"),
            }
            for e in response.header["entries"]
        ]
        if raise_errors:
            for entry in response.header["entries"]:
                if entry.get("error"):
                    raise for_code(entry["error"])(
                        entry.get("message") or f"client quota for {entry.get('entity')}"
                    )
        return out

    def describe_client_throttles(self) -> list[dict]:
        """labkit extension (Kafka shows this as per-client-id JMX metrics): clients
        throttled within the last quota window, most recent first, each
        ``{"client_id", "quota_type", "byte_rate", "quota", "throttle_time_ms",
        "throttled_ago_ms"}``."""
        return self._call("describe_client_throttles", {}, idempotent=True).header["clients"]


def _as_new_topics(new_topics) -> list[NewTopic]:
    if isinstance(new_topics, NewTopic | str):
        new_topics = [new_topics]
    if isinstance(new_topics, dict):
        return [
            NewTopic(
                name,
                d.get("num_partitions", -1),
                d.get("replication_factor", -1),
                topic_configs=d.get("configs"),
            )
            for name, d in new_topics.items()
        ]
    out = []
    for item in new_topics:
        if isinstance(item, str):
            out.append(NewTopic(item))
        elif isinstance(item, NewTopic) or hasattr(item, "num_partitions"):
            out.append(item)
        else:
            raise TypeError(f"create_topics takes NewTopic objects, got {item!r}")
    if not out:
        raise ValueError("create_topics needs at least one topic")
    return out


def _topic_resources(resources) -> list[ConfigResource]:
    if isinstance(resources, ConfigResource):
        resources = [resources]
    out = []
    for resource in resources:
        if resource.resource_type != ConfigResourceType.TOPIC:
            raise UnsupportedVersionError(
                f"labkit's broker has configs for topics only, not {resource.resource_type.name}"
            )
        out.append(resource)
    return out


def _quota_ops(ops) -> list[dict]:
    """``{"producer_byte_rate": 1048576, "consumer_byte_rate": None}`` -> Kafka's op list."""
    if isinstance(ops, dict):
        return [
            {"key": k, "remove": True} if v is None else {"key": k, "value": v}
            for k, v in ops.items()
        ]
    if isinstance(ops, list):
        return ops
    raise IllegalArgumentError(
        "ops must be a dict {quota: value or None} or a list of {'key', 'value', 'remove'}"
    )


def _raise_entry(entry: dict) -> None:
    code = entry.get("error", 0)
    if code:
        raise for_code(code)(entry.get("message") or f"topic '{entry.get('name')}'")


def _results(header: dict, raise_errors: bool) -> dict:
    topics = [
        {"name": e.get("name"), "error_code": e.get("error", 0), "error_message": e.get("message")}
        for e in header.get("topics", [])
    ]
    if raise_errors:
        for entry in header.get("topics", []):
            _raise_entry(entry)
    return {"topics": topics}
