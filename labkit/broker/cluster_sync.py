"""Cluster mode inside the broker: ZooKeeper's view meets the loop thread. No sockets.

Theory of operation
-------------------
Built only when the broker has ``zookeeper.connect`` (single-broker mode never imports
this module or kazoo). ``ClusterSync`` wraps a ``ClusterMember`` (labkit/cluster/member.py,
the kazoo layer) and is the broker's only way to the cluster:

- the member's worker thread publishes each new ``ClusterSnapshot`` into ``_latest``
  (one reference assignment); ``turn()``, called by the loop thread every turn, applies
  a new one to the local topic registry: a topic ZooKeeper has and this broker does not
  is created (all its partitions, with the topic's ZooKeeper config), one that grew gets
  its new partitions, one that was in ZooKeeper and is gone is deleted. A local topic
  ZooKeeper never had is left alone (data from before cluster mode is not deleted);
- the handlers (loop thread) ask it for metadata rows, for leadership
  (``check_leader``: NOT_LEADER_OR_FOLLOWER / LEADER_NOT_AVAILABLE) and to write topic
  changes to ZooKeeper (``create_topic``...), which the controller then acts on.

Every broker keeps a local log for every partition of ZooKeeper's topics; the data plane
(broker/replication.py) makes each a leader's or a follower's copy from the snapshots this
class applies.
"""

from __future__ import annotations

import logging
from typing import Any

from labkit.broker.topics import TopicRegistry
from labkit.cluster.decisions import ClusterSnapshot, check_replication_factor
from labkit.cluster.member import ClusterMember, ClusterSettings
from labkit.cluster.offsets_topic import OFFSETS_TOPIC
from labkit.cluster.znodes import NO_LEADER, BrokerInfo
from labkit.errors import (
    InvalidConfigurationError,
    InvalidReplicationFactorError,
    InvalidTopicError,
    LeaderNotAvailableError,
    NotLeaderForPartitionError,
    TopicAlreadyExistsError,
)

log = logging.getLogger(__name__)

# topic configs that live in ZooKeeper only (the local log has no use for them)
REPLICATION_TOPIC_KEYS = ("min.insync.replicas", "unclean.leader.election.enable")


def split_replication_configs(configs: dict | None) -> tuple[dict[str, str], dict[str, str]]:
    """(the local log's configs, the replication configs) of a topic's ``configs``.
    Raises InvalidConfigurationError for a bad replication value."""
    local: dict[str, str] = {}
    replication: dict[str, str] = {}
    for key, value in (configs or {}).items():
        if key not in REPLICATION_TOPIC_KEYS:
            local[key] = value
            continue
        text = str(value).strip().lower()
        if key == "min.insync.replicas" and not (text.isdigit() and int(text) >= 1):
            raise InvalidConfigurationError(f"min.insync.replicas={value!r}: use a number >= 1")
        if key == "unclean.leader.election.enable" and text not in ("true", "false"):
            raise InvalidConfigurationError(f"{key}={value!r}: use true or false")
        replication[key] = text
    return local, replication


class ClusterSync:
    """This broker's cluster membership, seen from the loop thread."""

    def __init__(self, settings: ClusterSettings, registry: TopicRegistry):
        self.settings = settings
        self.broker_id = settings.broker_id
        self.registry = registry
        self.member: ClusterMember | None = None
        self.snapshot = ClusterSnapshot()
        self._latest: ClusterSnapshot | None = None
        self._known: set[str] = set()  # topics this broker has seen in ZooKeeper

    def start(self, info: BrokerInfo) -> None:
        """Join the cluster. Raises ZooKeeperUnavailable, KafkaConfigurationError."""
        self.member = ClusterMember(self.settings, info, self._publish)
        self.member.start()
        self.turn()

    def stop(self) -> None:
        if self.member is not None:
            self.member.stop()

    def _publish(self, snapshot: ClusterSnapshot) -> None:
        """The member's worker thread: hand over, the loop thread applies."""
        self._latest = snapshot

    # -- the loop thread ---------------------------------------------------------------------

    def turn(self) -> list[str]:
        """Apply the newest snapshot to the local registry; the topics that changed."""
        snapshot, self._latest = self._latest, None
        if snapshot is None:
            return []
        self.snapshot = snapshot
        changed = []
        registry = self.registry
        for name, view in snapshot.topics.items():
            if view.marked_for_deletion:
                continue
            self._known.add(name)
            total = len(view.assignment)
            local = registry.get(name)
            try:
                if local is None:
                    configs, _ = split_replication_configs(view.config)
                    registry.create(name, total, 1, configs)
                    changed.append(name)
                elif local is not None and len(local.partitions) < total:
                    registry.create_partitions(name, total)
                    changed.append(name)
            except TopicAlreadyExistsError:
                pass  # being created already (by this broker's own request, or last turn)
            except Exception as exc:  # noqa: BLE001 - one topic must not stop the others
                log.warning("could not create the local log of topic %s: %s", name, exc)
        for name in sorted(self._known - set(snapshot.topics)):
            self._known.discard(name)
            if registry.get(name) is not None:
                try:
                    registry.delete(name)
                    changed.append(name)
                except Exception as exc:  # noqa: BLE001
                    log.warning("could not delete the local log of topic %s: %s", name, exc)
        return changed

    def topic_names(self) -> list[str]:
        return sorted(
            name for name, view in self.snapshot.topics.items() if not view.marked_for_deletion
        )

    def check_leader(self, topic: str, partition: int) -> None:
        """Raises NotLeaderForPartitionError (another broker leads), LeaderNotAvailableError
        (no leader now), UnknownTopicOrPartitionError (from the registry)."""
        view = self.snapshot.topics.get(topic)
        if view is None or partition not in view.assignment:
            # the local registry tells unknown from being created (it raises which)
            self.registry.partition(topic, partition)
            raise LeaderNotAvailableError(
                f"{topic}-{partition} is not in ZooKeeper's view of the cluster yet; "
                "retry in a moment"
            )
        state = view.state(partition)
        if state is None or state.leader == NO_LEADER:
            raise LeaderNotAvailableError(
                f"{topic}-{partition} has no leader now (no replica of its ISR is alive); "
                "retry, or see `labkit topics --describe --unavailable-partitions`"
            )
        if state.leader != self.broker_id:
            raise NotLeaderForPartitionError(
                f"broker {self.broker_id} is not the leader of {topic}-{partition}: broker "
                f"{state.leader} is (leader epoch {state.leader_epoch}); refresh metadata"
            )

    def is_internal(self, name: str) -> bool:
        """Kafka's internal topic (written by the group coordinators only)."""
        return name == OFFSETS_TOPIC

    def metadata_topic(self, name: str) -> dict[str, Any] | None:
        """labkit's metadata row of a topic, from ZooKeeper's view (None: not there)."""
        view = self.snapshot.topics.get(name)
        if view is None or view.marked_for_deletion:
            return None
        live = self.snapshot.live
        parts = []
        for partition, replicas in sorted(view.assignment.items()):
            state = view.state(partition)
            leader = NO_LEADER if state is None else state.leader
            row = {
                "partition": partition,
                "leader": leader,
                "leader_epoch": -1 if state is None else state.leader_epoch,
                "replicas": list(replicas),
                "isr": [] if state is None else list(state.isr),
                "offline_replicas": [r for r in replicas if r not in live],
            }
            if leader == NO_LEADER:
                row["error"] = LeaderNotAvailableError.errno
            parts.append(row)
        internal = name == OFFSETS_TOPIC  # as Kafka marks it
        return {"name": name, "error": 0, "is_internal": internal, "partitions": parts}

    def replication_configs(self, name: str) -> list[dict[str, Any]]:
        """describe_configs rows of the topic configs kept in ZooKeeper only: the topic's
        own value, else the broker's default."""
        view = self.snapshot.topics.get(name)
        own = {} if view is None else view.config
        defaults = {
            "min.insync.replicas": str(self.settings.min_insync_replicas),
            "unclean.leader.election.enable": str(self.settings.unclean_leader_election).lower(),
        }
        return [
            {"name": key, "value": own.get(key, defaults[key]), "default": key not in own}
            for key in REPLICATION_TOPIC_KEYS
        ]

    def metadata_brokers(self) -> list[dict[str, Any]]:
        return [
            {
                "node_id": info.broker_id,
                "host": info.host,
                "port": info.port,
                "zmq_host": info.zmq_host,
                "zmq_port": info.zmq_port,
            }
            for info in self.snapshot.brokers.values()
        ]

    # -- admin writes (the loop thread) -----------------------------------------------------------

    def create_topic(
        self,
        name: str,
        partitions: int,
        replication_factor: object,
        configs: dict[str, str],
        validate_only: bool = False,
    ) -> None:
        """Raises InvalidReplicationFactorError, TopicAlreadyExistsError,
        InvalidConfigurationError, RequestTimedOutError."""
        factor = replication_factor
        if factor is None or factor == -1:
            factor = self.settings.default_replication_factor
        if type(factor) is not int:
            raise InvalidReplicationFactorError(f"replication factor {factor!r} is not a number")
        split_replication_configs(configs)
        assert self.member is not None  # started before the loop runs
        if validate_only:
            check_replication_factor(factor, len(self.member.live_brokers()))
            return
        self.member.create_topic(name, partitions, factor, configs)
        self._known.add(name)

    def add_partitions(self, name: str, total: int) -> None:
        assert self.member is not None
        self.member.add_partitions(name, total)

    def delete_topic(self, name: str) -> None:
        """Raises InvalidTopicError for the internal topic (every group's offsets)."""
        if self.is_internal(name):
            raise InvalidTopicError(  # Kafka's words (kafka-topics.sh refuses it so)
                f"Topic {name} is a kafka internal topic and is not allowed to be marked for "
                "deletion: it holds every consumer group's committed offsets (delete a "
                "group's offsets with `labkit consumer-groups --delete --group G`)"
            )
        assert self.member is not None
        self.member.delete_topic(name)
