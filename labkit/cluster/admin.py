"""Admin writes to ZooKeeper, as Kafka's AdminZkClient wrote them.

Theory of operation
-------------------
``TopicAdmin`` is called from the broker's loop thread (CreateTopics, DeleteTopics,
CreatePartitions); each ZooKeeper call waits at most ``ADMIN_TIMEOUT_S`` and a ZooKeeper
that does not answer becomes REQUEST_TIMED_OUT (cluster/zk_errors.py). It writes only
what the controller then acts on: a new topic's config, then its assignment (the
controller creates the partition states); a grown assignment (set at the version read);
or the ``/admin/delete_topics`` marker (the controller deletes the topic). After each write
it wakes the member's worker so this broker sees the change at once.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable

from kazoo.client import KazooClient
from kazoo.exceptions import NodeExistsError, NoNodeError

from labkit.cluster import znodes
from labkit.cluster.decisions import added_partitions_assignment, new_topic_assignment
from labkit.cluster.zk_errors import ADMIN_TIMEOUT_S, admin_call
from labkit.cluster.znodes import Assignment
from labkit.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError


class TopicAdmin:
    """Topic creation, growth and deletion in ZooKeeper (see the module docstring)."""

    def __init__(self, zk: KazooClient, rng: random.Random, wake: Callable[[], None]):
        self._zk = zk
        self._rng = rng
        self._wake = wake

    def live_brokers(self) -> list[int]:
        """The ids of the brokers registered now, read afresh (a registration that is not
        Kafka's JSON does not count: no partition may be assigned to it)."""
        children = self._zk.get_children_async(znodes.BROKER_IDS).get(timeout=ADMIN_TIMEOUT_S)
        live = []
        for child in children:
            if not child.isdigit():
                continue
            path = znodes.broker_path(int(child))
            try:
                data, _ = self._zk.get_async(path).get(timeout=ADMIN_TIMEOUT_S)
                znodes.decode_broker(int(child), data)
            except (NoNodeError, ValueError):
                continue
            live.append(int(child))
        return sorted(live)

    def create_topic(
        self, name: str, partitions: int, replication_factor: int, config: dict[str, str]
    ) -> Assignment:
        """Write a new topic's config and assignment. Raises InvalidReplicationFactorError,
        TopicAlreadyExistsError, RequestTimedOutError."""
        with admin_call(f"creating topic {name!r}"):
            assignment = new_topic_assignment(
                partitions, replication_factor, self.live_brokers(), self._rng
            )
            if self._zk.exists_async(znodes.topic_path(name)).get(timeout=ADMIN_TIMEOUT_S):
                raise TopicAlreadyExistsError(f"Topic '{name}' already exists.")
            config_data = znodes.encode_config(config)
            try:
                self._zk.create_async(znodes.config_path(name), config_data).get(
                    timeout=ADMIN_TIMEOUT_S
                )
            except NodeExistsError:  # left by an earlier attempt: ours now
                self._zk.set_async(znodes.config_path(name), config_data).get(
                    timeout=ADMIN_TIMEOUT_S
                )
            try:
                self._zk.create_async(
                    znodes.topic_path(name),
                    znodes.encode_topic(assignment, znodes.new_cluster_id()),
                ).get(timeout=ADMIN_TIMEOUT_S)
            except NodeExistsError:
                raise TopicAlreadyExistsError(f"Topic '{name}' already exists.") from None
        self._wake()
        return assignment

    def add_partitions(self, name: str, total: int) -> Assignment:
        """Grow a topic's assignment to ``total`` partitions (new ones on live brokers).
        Raises InvalidPartitionsError, UnknownTopicOrPartitionError, RequestTimedOutError."""
        with admin_call(f"adding partitions to {name!r}"):
            try:
                data, stat = self._zk.get_async(znodes.topic_path(name)).get(
                    timeout=ADMIN_TIMEOUT_S
                )
            except NoNodeError:
                raise UnknownTopicOrPartitionError(f"topic {name!r} does not exist") from None
            existing = znodes.decode_topic(name, data)
            added = added_partitions_assignment(existing, total, self.live_brokers())
            topic_id = _topic_id(data)
            self._zk.set_async(
                znodes.topic_path(name),
                znodes.encode_topic({**existing, **added}, topic_id),
                stat.version,
            ).get(timeout=ADMIN_TIMEOUT_S)
        self._wake()
        return added

    def delete_topic(self, name: str) -> None:
        """Mark a topic for deletion (the controller deletes it). Raises
        UnknownTopicOrPartitionError, RequestTimedOutError."""
        with admin_call(f"deleting topic {name!r}"):
            if not self._zk.exists_async(znodes.topic_path(name)).get(timeout=ADMIN_TIMEOUT_S):
                raise UnknownTopicOrPartitionError(f"topic {name!r} does not exist")
            try:
                self._zk.create_async(znodes.delete_path(name)).get(timeout=ADMIN_TIMEOUT_S)
            except NodeExistsError:
                pass  # already marked
        self._wake()


def _topic_id(data: bytes) -> str:
    """The topic id Kafka's assignment znode holds (a new one when it has none)."""
    try:
        value = json.loads(data).get("topic_id")
    except (ValueError, AttributeError):
        value = None
    return value if isinstance(value, str) and value else znodes.new_cluster_id()
