"""What ``KafkaConsumer`` asks of a group coordinator, and the one for no group.

``KafkaConsumer`` talks to its group only through a ``Coordinator``: with
``group_id`` it is ``ConsumerCoordinator`` (labkit/client/consumer_coordinator.py:
join, heartbeat, rebalance, commit), without one it is ``NoGroup`` here: the
assignment is every partition of the subscribed topics, nothing is committed, and
commits raise IllegalStateError saying group_id is needed (as kafka-python).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from labkit.client.future import Future
from labkit.client.metadata import ClusterMetadata
from labkit.client.structs import OffsetAndMetadata, TopicPartition
from labkit.client.subscription import SubscriptionState
from labkit.errors import IllegalStateError


class Coordinator(Protocol):
    """The group side of a consumer, as ``KafkaConsumer`` uses it (application thread)."""

    @property
    def group_id(self) -> str | None: ...

    def poll(self, timeout_s: float = 0.0) -> bool:
        """Keep the assignment current (join, rebalance, auto-commit)."""
        ...

    def fetchable(self) -> set[TopicPartition] | None:
        """Partitions the consumer may fetch and return now (None: all it has assigned)."""
        ...

    def fetch_committed_offsets(
        self, partitions: Iterable[TopicPartition], timeout_ms: float | None = None
    ) -> dict[TopicPartition, OffsetAndMetadata | None]: ...

    def commit_offsets_sync(self, offsets: dict, timeout_ms: float | None = None) -> None: ...

    def commit_offsets_async(self, offsets: dict, callback: Any = None) -> Future: ...

    def on_unsubscribe(self) -> None: ...

    def close(self, autocommit: bool = True, timeout_ms: float | None = None) -> None: ...


class NoGroup:
    """The coordinator of a consumer without ``group_id``: every partition of the
    subscribed topics is assigned; commits need a group."""

    group_id: None = None

    def __init__(self, subscription: SubscriptionState, cluster: ClusterMetadata):
        self._sub = subscription
        self._cluster = cluster

    def poll(self, timeout_s: float = 0.0) -> bool:
        sub = self._sub
        if sub.mode in (sub.AUTO_TOPICS, sub.AUTO_PATTERN):
            wanted: set[TopicPartition] = set()
            for topic in sub.subscription or ():
                n = self._cluster.num_partitions(topic)
                wanted.update(TopicPartition(topic, p) for p in range(n or 0))
            sub.assign_from_subscribed(wanted)
        return True

    def fetchable(self) -> None:
        return None  # everything assigned

    def fetch_committed_offsets(
        self, partitions: Iterable[TopicPartition], timeout_ms: float | None = None
    ) -> dict[TopicPartition, OffsetAndMetadata | None]:
        return {}

    @staticmethod
    def _no_group(what: str) -> IllegalStateError:
        return IllegalStateError(
            f"{what} requires group_id: pass group_id='my-group' to KafkaConsumer to commit offsets"
        )

    def commit_offsets_sync(self, offsets: dict, timeout_ms: float | None = None) -> None:
        raise self._no_group("commit()")

    def commit_offsets_async(self, offsets: dict, callback: Any = None) -> Future:
        raise self._no_group("commit_async()")

    def on_unsubscribe(self) -> None:
        pass

    def close(self, autocommit: bool = True, timeout_ms: float | None = None) -> None:
        pass
