"""labkit's admin calls that the notebook helpers and checks use, on a Kafka broker that
is not labkit: a thin layer over kafka-python's ``KafkaAdminClient``.

Theory of operation
-------------------
``labkit.nb`` (dashboard, doctor, ``nb.reset``) and ``labkit.course``'s broker checks call
labkit's admin API, which is kafka-python 2.0's (``list_consumer_groups``,
``list_consumer_group_offsets``, ``delete_consumer_groups``, ``NewTopic`` objects).
kafka-python 3.0 renamed the group calls (``list_groups``, ``list_group_offsets``,
``delete_groups``) and deprecated ``NewTopic``; ``KafkaAdmin`` answers the 2.0 names with
2.0's shapes by asking 3.0's calls, and passes every other attribute through. Topics are
created with kafka-python's dict form (any object with ``name``, ``num_partitions``,
``replication_factor``, ``topic_configs`` is accepted, labkit's ``NewTopic`` included) and
waited for until the cluster's metadata lists them, as labkit's broker does before it
answers; ``describe_topics`` gives 2.0's keys beside 3.0's, and ``describe_configs``
labkit's shape, as labkit's does. A fresh
cluster has no group coordinator until its offsets topic exists (COORDINATOR_NOT_AVAILABLE
for the first seconds of the first group call): the group calls retry Kafka's retriable
errors for up to ``GROUP_RETRY_S``. One instance per caller, like the client it wraps; not
thread-safe beyond it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from labkit._clock import REAL_CLOCK

GROUP_RETRY_S = 15.0
_SET_ON_TOPIC = "DYNAMIC_TOPIC_CONFIG"  # Kafka's config_source of a value set on the topic
_RETRY_EVERY_S = 0.2
# kafka-python 2.0's key -> 3.0's (describe_topics), per topic and per partition
_TOPIC_KEYS = {"topic": "name"}
_PARTITION_KEYS = {
    "partition": "partition_index",
    "leader": "leader_id",
    "replicas": "replica_nodes",
    "isr": "isr_nodes",
}


def _retrying(call: Callable[[], Any]) -> Any:
    """``call()``, again while it raises a retriable Kafka error, for up to GROUP_RETRY_S."""
    deadline = REAL_CLOCK.monotonic() + GROUP_RETRY_S
    while True:
        try:
            return call()
        except Exception as exc:
            if not getattr(exc, "retriable", False) or REAL_CLOCK.monotonic() > deadline:
                raise
        time.sleep(_RETRY_EVERY_S)


def _with_old_keys(item: dict, keys: dict[str, str]) -> dict:
    return {**{old: item[new] for old, new in keys.items() if new in item}, **item}


class KafkaAdmin:
    """``labkit.KafkaAdminClient``'s calls used by labkit.nb, on kafka-python's admin client."""

    def __init__(self, **configs: Any):
        from kafka import KafkaAdminClient

        self._admin = KafkaAdminClient(**configs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._admin, name)

    def __enter__(self) -> KafkaAdmin:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._admin.close()

    def create_topics(self, new_topics: list, timeout_ms: float | None = None, **kwargs: Any):
        specs = {
            topic.name: {
                "num_partitions": topic.num_partitions,
                "replication_factor": topic.replication_factor,
                "configs": dict(getattr(topic, "topic_configs", None) or {}),
            }
            for topic in new_topics
        }
        kwargs.setdefault("wait_for_metadata", True)  # a producer right after finds it
        return self._admin.create_topics(specs, timeout_ms=timeout_ms, **kwargs)

    def describe_topics(self, topics: list[str] | None = None) -> list[dict]:
        """3.0's topic dicts with 2.0's keys too (``topic``; ``partition``, ``leader``...)."""
        out = []
        for item in self._admin.describe_topics(topics):
            item = _with_old_keys(dict(item), _TOPIC_KEYS)
            item["partitions"] = [
                _with_old_keys(dict(p), _PARTITION_KEYS) for p in item.get("partitions") or []
            ]
            out.append(item)
        return out

    def describe_configs(self, config_resources: list) -> dict:
        """labkit's shape, ``{"topic": {name: {key: {"value", "default"...}}}}``, for
        labkit's (or kafka-python's) TOPIC ``ConfigResource``s; ``default`` is False only
        for a value set on the topic itself (``nb.reset`` re-creates a topic with those)."""
        from kafka.admin import ConfigResource, ConfigResourceType

        asked = [
            ConfigResource(ConfigResourceType.TOPIC, r.name, list(r.configs or []) or None)
            for r in config_resources
        ]
        answer = self._admin.describe_configs(asked, config_filter="all")
        return {
            "topic": {
                name: {
                    key: {
                        "name": key,
                        "value": data.get("value"),
                        "default": data.get("config_source") != _SET_ON_TOPIC,
                        "is_default": data.get("config_source") != _SET_ON_TOPIC,
                    }
                    for key, data in configs.items()
                }
                for name, configs in answer.get("topic", {}).items()
            }
        }

    def list_consumer_groups(self, broker_ids: Any = None) -> list[tuple[str, str]]:
        """``(group_id, protocol_type)`` tuples, sorted (kafka-python 2.0's shape)."""
        groups = _retrying(lambda: self._admin.list_groups(broker_ids=broker_ids))
        return sorted({(g["group_id"], g.get("protocol_type", "")) for g in groups})

    def list_consumer_group_offsets(
        self, group_id: str, group_coordinator_id: Any = None, partitions: Any = None
    ) -> dict:
        """``{TopicPartition: OffsetAndMetadata}`` committed by ``group_id``."""
        asked = list(partitions) if partitions is not None else None
        found = _retrying(lambda: self._admin.list_group_offsets({group_id: asked}))
        return dict(found.get(group_id) or {})

    def delete_consumer_groups(self, group_ids: list[str], **_: Any) -> list[tuple[str, type]]:
        """``[(group_id, error class)]``, NoError for a deleted group (2.0's shape)."""
        import kafka.errors as kafka_errors

        if not group_ids:
            return []
        # {group_id: "OK" | error name}
        answer = _retrying(lambda: self._admin.delete_groups(list(group_ids)))
        out = []
        for group_id in group_ids:
            name = answer.get(group_id, "OK")
            error = kafka_errors.NoError if name == "OK" else getattr(kafka_errors, name, None)
            out.append((group_id, error or kafka_errors.UnknownError))
        return out
