"""Cluster mode: committed group offsets in the replicated topic ``__consumer_offsets``.

Theory of operation
-------------------
Built by the loop in cluster mode only (``BrokerLoop.join_cluster``); single-broker mode
keeps its offsets file (broker/offsets.py) and never imports this module. As Kafka:

- **placement**: a group's offsets live in partition ``partition_for(group)``
  (labkit/cluster/offsets_topic.py: Java's hashCode, as Kafka) of ``__consumer_offsets``;
  that partition's leader is the group's coordinator. ``find`` answers it (FindCoordinator
  and labkit's ``find_coordinator``). The first ``find`` (or group request) in a cluster
  without the topic creates it through ZooKeeper (``offsets.topic.num.partitions``,
  replication factor ``min(offsets.topic.replication.factor, live brokers)``,
  ``cleanup.policy=compact``) and answers COORDINATOR_NOT_AVAILABLE (15) until it has
  leaders: clients retry.
- **writes**: the group service's ``OffsetStore`` runs with this class as its sink
  (``OffsetStore.replicate_to``): a commit, an OffsetDelete, a group deletion or expiry
  becomes records (a tombstone for a deleted offset) appended to the leader's log of the
  group's partition, on the loop thread. ``finish`` turns the group answer into a
  ``Reply`` that waits as an ``acks=all`` produce does: the fsync round, then the high
  watermark (broker/replication.py), so a commit is acknowledged only once the ISR has it
  and survives losing this broker. A commit that changed nothing waits for the earlier
  ones of its partition that are not replicated yet.
- **leadership** (``on_roles``, every loop turn): a partition this broker starts leading
  (a new leader epoch) is loaded: its log is read from the log start to the log end
  (the new leader's log is the truth; KIP-101 truncates the followers to it) and replaces
  the store's groups of that partition. Loading runs on the loop thread, in the turn
  that sees the new role (a lab's compacted partition is small); a group request that
  comes between ZooKeeper's decision and that turn gets COORDINATOR_LOAD_IN_PROGRESS (14).
  A partition no longer led is dropped from the store; its groups' requests get
  NOT_COORDINATOR (16), and clients find the new coordinator; its Kafka clients' groups
  are dropped too (parked joins and syncs answered NOT_COORDINATOR: ``GroupService.unload``).
  Membership is not replicated: members join the new coordinator again (Kafka writes it
  to the log too, GroupMetadataKey records, and its members carry on without a rejoin).

Loop thread only.
"""

from __future__ import annotations

import logging
from typing import Any

from labkit._clock import Clock
from labkit.broker.offsets import Committed, OffsetStore
from labkit.broker.replies import Reply
from labkit.cluster.offsets_topic import (
    OFFSETS_TOPIC,
    decode_key,
    decode_value,
    encode_key,
    encode_value,
    partition_for,
)
from labkit.cluster.znodes import NO_LEADER
from labkit.errors import (
    CoordinatorLoadInProgressError,
    CoordinatorNotAvailableError,
    NotCoordinatorError,
    TopicAlreadyExistsError,
)
from labkit.protocol.batch_layout import read_header
from labkit.protocol.records import decode_batch, encode_batch, split_batches, validate_batch

log = logging.getLogger(__name__)

CREATE_RETRY_MS = 1000  # how often a broker asks ZooKeeper again for the missing topic
READ_CHUNK = 1 << 20  # bytes read per step while loading a partition
# requests without a group id of their own (answered by any broker)
ANY_BROKER_APIS = frozenset({"find_coordinator", "list_groups"})
# Kafka's offsets.commit.timeout.ms: the most a commit waits for the ISR (then
# COORDINATOR_NOT_AVAILABLE: the client retries)
COMMIT_TIMEOUT_MS = 5000


class ReplicatedOffsets:
    """Where groups' offsets live in cluster mode (module docstring)."""

    def __init__(
        self,
        cluster,
        replication,
        store: OffsetStore,
        clock: Clock,
        num_partitions: int,
        replication_factor: int,
    ):
        self.cluster = cluster
        self.replication = replication
        self.store = store
        self.clock = clock
        self.num_partitions = num_partitions
        self.replication_factor = replication_factor
        self.loaded: dict[int, int] = {}  # partition -> the leader epoch it was loaded at
        self._pending: list = []  # (partition, log, end offset) appended by this request
        self._last_end: dict[int, tuple[Any, int]] = {}  # partition -> (log, end) last written
        self._next_create_ms = 0
        store.replicate_to(self._append)

    # -- placement ---------------------------------------------------------------------------

    def partitions(self) -> int:
        """The topic's partition count in ZooKeeper (else the configured one)."""
        view = self.cluster.snapshot.topics.get(OFFSETS_TOPIC)
        if view is not None and view.assignment:
            return len(view.assignment)
        return self.num_partitions

    def partition_of(self, group_id: str) -> int:
        return partition_for(group_id, self.partitions())

    def _leader(self, group_id: str) -> tuple[int, int, int]:
        """(partition, leader, leader epoch). Raises CoordinatorNotAvailableError."""
        view = self.cluster.snapshot.topics.get(OFFSETS_TOPIC)
        if view is None or not view.assignment:
            self._create_topic()
            raise CoordinatorNotAvailableError(
                f"the coordinator of group '{group_id}' is not available yet: the internal "
                f"topic {OFFSETS_TOPIC} is being created; retry in a moment"
            )
        partition = self.partition_of(group_id)
        state = view.state(partition)
        if state is None or state.leader == NO_LEADER:
            raise CoordinatorNotAvailableError(
                f"{OFFSETS_TOPIC}-{partition}, which holds group '{group_id}', has no leader "
                "now; retry in a moment"
            )
        return partition, state.leader, state.leader_epoch

    def find(self, group_id: str) -> dict[str, Any]:
        """A find_coordinator answer: the leader of the group's partition."""
        partition, leader, _epoch = self._leader(group_id)
        info = self.cluster.snapshot.brokers.get(leader)
        if info is None:
            raise CoordinatorNotAvailableError(
                f"broker {leader}, the leader of {OFFSETS_TOPIC}-{partition}, is not "
                "registered now; retry in a moment"
            )
        return {
            "error": 0,
            "node_id": info.broker_id,
            "host": info.host,
            "port": info.port,
            "zmq_host": info.zmq_host,
            "zmq_port": info.zmq_port,
            "partition": partition,
        }

    def check(self, group_id: str) -> None:
        """Raises unless this broker is the group's coordinator, loaded."""
        partition, leader, epoch = self._leader(group_id)
        me = self.cluster.broker_id
        if leader != me:
            info = self.cluster.snapshot.brokers.get(leader)
            where = (
                ""
                if info is None
                else f" (Kafka {info.host}:{info.port}, labkit {info.zmq_host}:{info.zmq_port})"
            )
            raise NotCoordinatorError(
                f"broker {me} is not the coordinator of group '{group_id}': broker {leader}"
                f"{where} leads {OFFSETS_TOPIC}-{partition}. Kafka clients find it again by "
                "themselves (labkit's own clients too)"
            )
        if self.loaded.get(partition) != epoch:
            raise CoordinatorLoadInProgressError(
                f"broker {me} is loading the offsets of {OFFSETS_TOPIC}-{partition} "
                f"(group '{group_id}'); retry in a moment"
            )

    def refusal(self, api: str, header: dict) -> dict | None:
        """The error answer for a group request this broker must not handle, else None."""
        if api in ANY_BROKER_APIS:
            return None
        names = header.get("group_ids")
        if not isinstance(names, list):
            names = [header.get("group_id")]
        try:
            for name in names:
                if isinstance(name, str) and name:
                    self.check(name)
        except (NotCoordinatorError, CoordinatorLoadInProgressError) as exc:
            return {"error": exc.errno, "message": str(exc.args[0])}
        except CoordinatorNotAvailableError as exc:
            return {"error": exc.errno, "message": str(exc.args[0])}
        return None

    def _create_topic(self) -> None:
        now = self.clock.time_ms()
        if now < self._next_create_ms or self.cluster.member is None:
            return
        self._next_create_ms = now + CREATE_RETRY_MS
        live = len(self.cluster.snapshot.brokers)
        factor = max(1, min(self.replication_factor, live))
        try:
            self.cluster.create_topic(
                OFFSETS_TOPIC, self.num_partitions, factor, {"cleanup.policy": "compact"}
            )
            log.info(
                "created %s: %d partitions, replication factor %d",
                OFFSETS_TOPIC,
                self.num_partitions,
                factor,
            )
        except TopicAlreadyExistsError:
            pass  # another broker created it first
        except Exception as exc:  # noqa: BLE001 - ZooKeeper away: asked again later
            log.warning("could not create %s: %s", OFFSETS_TOPIC, exc)

    # -- writes ------------------------------------------------------------------------------

    def _append(self, group_id: str, committed: list, deleted: list) -> None:
        """The store's sink: append the change to the group's partition (this broker leads
        it, loaded). Raises NotCoordinatorError & co, KafkaStorageError; nothing changes."""
        self.check(group_id)
        partition = self.partition_of(group_id)
        led = self.replication.led.get((OFFSETS_TOPIC, partition))
        if led is None:
            raise CoordinatorLoadInProgressError(
                f"broker {self.cluster.broker_id} is becoming the leader of "
                f"{OFFSETS_TOPIC}-{partition}; retry in a moment"
            )
        keys: list[bytes | None] = []
        values: list[bytes | None] = []
        stamps: list[int] = []
        now = self.clock.time_ms()
        for topic, part, c in committed:
            keys.append(encode_key(group_id, topic, part))
            values.append(encode_value(c.offset, c.metadata, c.commit_ms))
            stamps.append(c.commit_ms)
        for topic, part in deleted:
            keys.append(encode_key(group_id, topic, part))
            values.append(None)
            stamps.append(now)
        if not values:
            return
        batch = encode_batch(stamps, keys, values)
        led.plog.append(batch, validate_batch(batch))
        end = led.plog.log_end_offset
        self._pending.append((partition, led.plog, end))
        self._last_end[partition] = (led.plog, end)

    def begin(self) -> None:
        """Before a group request: forget what an earlier one (or expiry) appended."""
        self._pending = []

    def finish(self, api: str, header: dict, answer: dict) -> Reply | None:
        """A Reply that waits for the fsync round and the ISR, or None: send ``answer``."""
        pending, self._pending = self._pending, []
        if answer.get("error") != 0:
            return None
        if not pending and api == "offset_commit":  # nothing new: wait for what is not yet
            group_id = header.get("group_id")
            if isinstance(group_id, str):
                last = self._last_end.get(self.partition_of(group_id))
                if last is not None and last[0].high_watermark < last[1]:
                    pending = [(self.partition_of(group_id), last[0], last[1])]
        if not pending:
            return None
        sync = [(0, plog) for _p, plog in {p: plog for p, plog, _e in pending}.items()]
        ends: dict[int, tuple[Any, int]] = {}
        for partition, plog, end in pending:
            ends[partition] = (plog, max(end, ends.get(partition, (plog, 0))[1]))
        return Reply(
            answer,
            sync=sync,
            appended=[(OFFSETS_TOPIC, p) for p in ends],
            replicate=[(0, OFFSETS_TOPIC, p, plog, end) for p, (plog, end) in ends.items()],
            replicate_timeout_ms=COMMIT_TIMEOUT_MS,
        )

    # -- leadership --------------------------------------------------------------------------

    def on_roles(self) -> list:
        """Load the partitions this broker started leading, drop those it stopped leading;
        for each dropped one, the test ``belongs(group)`` of its groups."""
        led = self.replication.led
        total = self.partitions()
        dropped = []
        for partition in range(total):
            current = led.get((OFFSETS_TOPIC, partition))
            if current is None:
                if partition in self.loaded:
                    del self.loaded[partition]
                    self._last_end.pop(partition, None)
                    self.store.drop_partition(self._belongs(partition, total))
                    dropped.append(self._belongs(partition, total))
                    log.info(
                        "%s-%d: no longer the coordinator of its groups", OFFSETS_TOPIC, partition
                    )
            elif self.loaded.get(partition) != current.epoch:
                self._load(partition, current.plog, total)
                self.loaded[partition] = current.epoch
        return dropped

    def _belongs(self, partition: int, total: int):
        return lambda group_id: partition_for(group_id, total) == partition

    def _load(self, partition: int, plog, total: int) -> None:
        groups = read_offsets(plog)
        self.store.load_partition(self._belongs(partition, total), groups)
        self._last_end[partition] = (plog, plog.log_end_offset)
        log.info(
            "%s-%d: coordinator of its groups, loaded %d group(s) from offsets %d-%d",
            OFFSETS_TOPIC,
            partition,
            len(groups),
            plog.log_start_offset,
            plog.log_end_offset,
        )


def read_offsets(plog) -> dict[str, dict[tuple[str, int], Committed]]:
    """Every group's committed offsets in a ``__consumer_offsets`` partition's log, replayed
    from its start to its end (later records win; a tombstone deletes). A record labkit
    cannot read is skipped with a warning (the others still count)."""
    groups: dict[str, dict[tuple[str, int], Committed]] = {}
    offset, end = plog.log_start_offset, plog.log_end_offset
    while offset < end:
        data = plog.read(offset, READ_CHUNK)
        if not data:
            break
        for start, _stop in split_batches(data):
            header = read_header(data, start)
            batch = decode_batch(data, start, header)
            for record_offset, key, value in zip(
                batch.offsets, batch.keys, batch.values, strict=False
            ):
                if record_offset < offset:
                    continue
                try:
                    found = decode_key(key)
                    if found is None:
                        continue
                    group_id, topic, part = found
                    if value is None:
                        committed = groups.get(group_id)
                        if committed is not None:
                            committed.pop((topic, part), None)
                        continue
                    at, metadata, commit_ms = decode_value(value)
                except (ValueError, UnicodeDecodeError) as exc:
                    log.warning(
                        "%s: the record at offset %d cannot be read (%s); skipped",
                        plog.directory,
                        record_offset,
                        exc,
                    )
                    continue
                groups.setdefault(group_id, {})[(topic, part)] = Committed(at, metadata, commit_ms)
            offset = max(offset, header.base_offset + header.last_offset_delta + 1)
    return {g: c for g, c in groups.items() if c}
