"""The controller's decisions, as pure functions over a snapshot of ZooKeeper. No I/O.

Theory of operation
-------------------
``ClusterSnapshot`` is what a broker read from ZooKeeper at one moment (layout:
cluster/znodes.py): the live brokers, the controller and its epoch, every topic's
replica assignment, config, partition states (with their znode versions) and whether it
is marked for deletion. It is immutable: the ZooKeeper thread builds a new one and swaps
it in; the broker's loop thread reads whichever is current (metadata, leadership checks).

The controller turns a snapshot into ``StateChange`` rows (``partition_changes``) and topic
deletions (``topics_to_delete``); cluster/controller.py writes them, each conditional on the
znode version it was decided from and on the controller epoch, so a stale controller's
write fails instead of overwriting a newer one. What it decides is what Kafka's ZooKeeper
controller did (docs/replication.md):

- a partition without a state gets one when a replica is live: leader = the first live
  replica in assignment order, ISR = the live replicas, leader epoch 0;
- a partition whose leader is dead (or none) gets the first live replica, in assignment
  order, that is in the ISR; leader epoch + 1; the ISR loses its dead members;
- with no live ISR member: ``unclean.leader.election.enable=true`` (per topic, else the
  broker's default) takes the first live replica and the ISR is that replica alone;
  otherwise the leader is -1 (none) and the ISR keeps its last member, the one replica
  known to hold every committed record, so it can lead again when it comes back;
- a live leader's ISR loses its dead followers (leader epoch + 1, as Kafka's ZooKeeper
  controller did when it removed a replica from the ISR).

A broker that comes back is not put back into the ISR here: a leader does that once the
follower has caught up (broker/replication.py, ``ClusterMember.update_isr``).

``assign_replicas`` is Kafka's rack-unaware replica assignment (AdminUtils).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable, Sequence

from labkit.cluster.znodes import NO_LEADER, Assignment, BrokerInfo, PartitionState
from labkit.errors import InvalidPartitionsError, InvalidReplicationFactorError

UNCLEAN_KEY = "unclean.leader.election.enable"


@dataclasses.dataclass(frozen=True)
class TopicView:
    """One topic as ZooKeeper holds it."""

    name: str
    assignment: Assignment
    config: dict[str, str] = dataclasses.field(default_factory=dict)
    # partition -> (state, znode version); a partition the controller has not started yet
    # has no entry
    states: dict[int, tuple[PartitionState, int]] = dataclasses.field(default_factory=dict)
    marked_for_deletion: bool = False

    def state(self, partition: int) -> PartitionState | None:
        found = self.states.get(partition)
        return None if found is None else found[0]


@dataclasses.dataclass(frozen=True)
class ClusterSnapshot:
    """ZooKeeper's view of the cluster at one moment (see the module docstring)."""

    brokers: dict[int, BrokerInfo] = dataclasses.field(default_factory=dict)
    controller_id: int = -1
    controller_epoch: int = 0
    cluster_id: str | None = None
    topics: dict[str, TopicView] = dataclasses.field(default_factory=dict)

    @property
    def live(self) -> frozenset[int]:
        return frozenset(self.brokers)


@dataclasses.dataclass(frozen=True)
class StateChange:
    """Write ``new`` as the state of ``topic``-``partition``: create it when ``version`` is
    None, else set it only if the znode is still at ``version``."""

    topic: str
    partition: int
    new: PartitionState
    version: int | None
    why: str


# -- replica assignment (Kafka's AdminUtils.assignReplicasToBrokersRackUnaware) ----------------


def check_replication_factor(replication_factor: int, live: int) -> None:
    """Raises InvalidReplicationFactorError with Kafka's message."""
    if replication_factor <= 0:
        raise InvalidReplicationFactorError("Replication factor must be larger than 0.")
    if replication_factor > live:
        raise InvalidReplicationFactorError(
            f"Replication factor: {replication_factor} larger than available brokers: {live}."
        )


def assign_replicas(
    partitions: int,
    replication_factor: int,
    broker_ids: Iterable[int],
    start_index: int,
    next_replica_shift: int,
    start_partition: int = 0,
) -> Assignment:
    """Kafka's rack-unaware assignment of ``partitions`` partitions numbered from
    ``start_partition``: partition p's first replica is broker (p + start_index) mod n of
    the sorted ids, the others follow it at a shift that grows by one every n partitions,
    so leaders and followers spread evenly. Raises InvalidReplicationFactorError,
    InvalidPartitionsError."""
    brokers = sorted(set(broker_ids))
    check_replication_factor(replication_factor, len(brokers))
    if partitions <= 0:
        raise InvalidPartitionsError("Number of partitions must be larger than 0.")
    n = len(brokers)
    out: Assignment = {}
    shift = next_replica_shift
    for partition in range(start_partition, start_partition + partitions):
        if partition > 0 and partition % n == 0:
            shift += 1
        first = (partition + start_index) % n
        replicas = [brokers[first]]
        for j in range(replication_factor - 1):
            replicas.append(brokers[(first + 1 + (shift + j) % (n - 1)) % n])
        out[partition] = tuple(replicas)
    return out


def new_topic_assignment(
    partitions: int, replication_factor: int, live: Iterable[int], rng: random.Random
) -> Assignment:
    """A new topic's assignment: Kafka starts at a random broker and a random shift."""
    brokers = sorted(set(live))
    check_replication_factor(replication_factor, len(brokers))
    return assign_replicas(
        partitions,
        replication_factor,
        brokers,
        rng.randrange(len(brokers)),
        rng.randrange(len(brokers)),
    )


def added_partitions_assignment(
    existing: Assignment, total: int, live: Iterable[int]
) -> Assignment:
    """The assignment of the partitions a topic grows by to reach ``total``, with the
    replication factor of its partition 0 and Kafka's start: the first live broker whose
    id is at least partition 0's first replica. Raises InvalidPartitionsError,
    InvalidReplicationFactorError."""
    if total <= len(existing):
        raise InvalidPartitionsError(
            f"Topic currently has {len(existing)} partitions, {total} would not be an increase."
        )
    brokers = sorted(set(live))
    first = existing[0][0]
    start = next((i for i, broker in enumerate(brokers) if broker >= first), 0)
    return assign_replicas(
        total - len(existing), len(existing[0]), brokers, start, start, len(existing)
    )


# -- leaders and ISRs ----------------------------------------------------------------------------


def unclean_allowed(topic: TopicView, broker_default: bool) -> bool:
    value = topic.config.get(UNCLEAN_KEY)
    if value is None:
        return broker_default
    return value.strip().lower() == "true"


def decide_state(
    replicas: Sequence[int],
    state: PartitionState | None,
    live: frozenset[int],
    unclean: bool,
    controller_epoch: int,
) -> tuple[PartitionState, str] | None:
    """The partition's next state and why, or None when it stays as it is."""
    live_replicas = [r for r in replicas if r in live]
    if state is None:
        if not live_replicas:
            return None  # as Kafka: no state until a replica is alive
        new = PartitionState(live_replicas[0], 0, tuple(live_replicas), controller_epoch)
        return new, "new partition"
    live_isr = tuple(r for r in state.isr if r in live)
    if state.leader != NO_LEADER and state.leader in live:
        if live_isr == state.isr:
            return None
        new = PartitionState(state.leader, state.leader_epoch + 1, live_isr, controller_epoch)
        return new, "followers left the ISR: " + _ids(set(state.isr) - live)
    candidates = [r for r in replicas if r in live_isr]
    if candidates:
        new = PartitionState(candidates[0], state.leader_epoch + 1, live_isr, controller_epoch)
        return new, f"leader {_leader(state.leader)} is gone; elected from the ISR"
    if unclean and live_replicas:
        chosen = live_replicas[0]
        new = PartitionState(chosen, state.leader_epoch + 1, (chosen,), controller_epoch)
        return new, "unclean election: no ISR member is alive (records may be lost)"
    kept = state.isr[-1:] if state.isr else ()
    if state.leader == NO_LEADER and kept == state.isr:
        return None
    new = PartitionState(NO_LEADER, state.leader_epoch + 1, kept, controller_epoch)
    return new, "no ISR member is alive and unclean.leader.election.enable=false: offline"


def partition_changes(snapshot: ClusterSnapshot, unclean_default: bool) -> list[StateChange]:
    """Every state write the controller makes for ``snapshot`` (see the module docstring)."""
    live = snapshot.live
    out = []
    for name, topic in sorted(snapshot.topics.items()):
        if topic.marked_for_deletion:
            continue
        unclean = unclean_allowed(topic, unclean_default)
        for partition, replicas in sorted(topic.assignment.items()):
            found = topic.states.get(partition)
            state, version = (None, None) if found is None else found
            decided = decide_state(replicas, state, live, unclean, snapshot.controller_epoch)
            if decided is not None:
                new, why = decided
                out.append(StateChange(name, partition, new, version, why))
    return out


def topics_to_delete(snapshot: ClusterSnapshot) -> list[str]:
    return sorted(name for name, topic in snapshot.topics.items() if topic.marked_for_deletion)


def _leader(leader: int) -> str:
    return "none" if leader == NO_LEADER else str(leader)


def _ids(ids: Iterable[int]) -> str:
    return ",".join(str(i) for i in sorted(ids))
