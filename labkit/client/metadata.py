"""What the client knows about the cluster: topics, their partitions, the broker.

``ClusterMetadata`` is a plain cache filled from ``metadata`` responses (docs/wire.md).
It is updated by whichever thread fetched the response and read by others; every
update replaces whole dict entries, so readers see either the old or the new
partition count of a topic, never a torn value.
"""

from __future__ import annotations

from typing import Any

from labkit.client.structs import BrokerMetadata
from labkit.errors import UnknownTopicOrPartitionError, for_code


class ClusterMetadata:
    def __init__(self) -> None:
        self.cluster_id: str | None = None
        self.controller_id: int = -1
        self.brokers: list[BrokerMetadata] = []
        self._partitions: dict[str, int] = {}
        self._internal: set[str] = set()
        self._raw: dict[str, dict[str, Any]] = {}
        self.refreshed_at: float = 0.0

    def update(self, header: dict[str, Any], topics: list[str] | None, now: float = 0.0) -> None:
        """Apply a metadata response. ``topics`` is what was asked (None = all topics)."""
        self.cluster_id = header.get("cluster_id")
        self.controller_id = header.get("controller_id", -1)
        self.brokers = [
            BrokerMetadata(b.get("node_id", 0), b.get("host"), b.get("port"), None)
            for b in header.get("brokers", [])
        ]
        seen = set()
        for topic in header.get("topics", []):
            name = topic["name"]
            seen.add(name)
            if topic.get("error", 0):
                self._partitions.pop(name, None)
                self._raw.pop(name, None)
                continue
            self._partitions[name] = len(topic.get("partitions", []))
            self._raw[name] = topic
            if topic.get("is_internal"):
                self._internal.add(name)
        if topics is None:  # a full listing: forget topics that are gone
            for name in list(self._partitions):
                if name not in seen:
                    del self._partitions[name]
                    self._raw.pop(name, None)
        self.refreshed_at = now

    def num_partitions(self, topic: str) -> int | None:
        return self._partitions.get(topic)

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        n = self._partitions.get(topic)
        return None if n is None else set(range(n))

    def topics(self, exclude_internal: bool = True) -> set[str]:
        if exclude_internal:
            return {t for t in self._partitions if t not in self._internal}
        return set(self._partitions)

    def raw_topic(self, topic: str) -> dict[str, Any] | None:
        return self._raw.get(topic)


def request_header(topics: list[str] | None, allow_auto_create: bool) -> dict[str, Any]:
    return {
        "topics": None if topics is None else list(topics),
        "allow_auto_create": bool(allow_auto_create),
    }


def topic_error(header: dict[str, Any], topic: str) -> Exception | None:
    """The error the broker reported for ``topic`` in a metadata response, if any."""
    for entry in header.get("topics", []):
        if entry.get("name") == topic and entry.get("error", 0):
            code = entry["error"]
            if code == UnknownTopicOrPartitionError.errno:
                return UnknownTopicOrPartitionError(
                    f"topic '{topic}' does not exist and the broker did not create it. Create it "
                    f"with `labkit topics --create --topic {topic} --partitions 3` or "
                    "KafkaAdminClient.create_topics([NewTopic(...)])."
                )
            cls = for_code(code)
            return cls(entry.get("message") or f"metadata for topic '{topic}' failed")
    return None


def refresh(
    transport: Any,
    cluster: ClusterMetadata,
    topics: list[str] | None,
    allow_auto_create: bool,
    now: float = 0.0,
    timeout_ms: float | None = None,
) -> dict[str, Any]:
    """Fetch metadata over ``transport`` (blocking) and update ``cluster``; return the header."""
    response = transport.call(
        "metadata", request_header(topics, allow_auto_create), timeout_ms=timeout_ms
    )
    cluster.update(response.header, topics, now)
    return response.header
