"""What the broker answers replicas: OffsetsForLeaderEpoch and the replica half of fetch.

Theory of operation
-------------------
``Handlers`` (broker/handlers.py) extends ``ReplicaApi``. No sockets, no threads: the
loop thread calls these, with the registry's partition logs.

- A fetch names who sends it with ``replica_id`` (Kafka's field): ``-1`` (the default)
  is a consumer, ``>= 0`` a follower replica's broker id. A consumer reads up to the
  partition's high watermark (an offset between it and the log end gets no records
  yet, as in Kafka); a replica reads up to the log end, and each of its rows carries
  the leader-epoch entries covering what it may append (``epoch_rows``) and the
  idempotent producers' entries of those batches (``replica_extras``), since labkit's
  batches carry neither. In single-broker mode the high watermark is the log
  end, so consumers see no difference.
- Every replica read is reported to ``on_replica_fetch`` (None until cluster mode
  sets it: the leader's ISR state, broker/replica_leader.py) with the replica's fetch
  offset (its log end offset) and the leader's log end at that read. When it answers
  True (the high watermark moved) the fetch reply names the partition in
  ``Reply.appended``, so the loop re-checks the consumer fetches parked on it.
- KIP-320: a fetch row may carry a fifth field, ``current_leader_epoch`` (``-1`` or
  absent: no check; followers always send theirs, the Kafka listener passes a Kafka
  client's). In cluster mode ``check_leader_epoch`` compares it with this broker's
  leader epoch of the partition (ZooKeeper's state as last applied: what its Metadata
  advertises) before anything else, as Kafka's
  ``Partition.checkCurrentLeaderEpoch``: older gets FENCED_LEADER_EPOCH (74: the
  sender's view is stale, it refreshes metadata), newer UNKNOWN_LEADER_EPOCH (75: this
  broker has not applied the controller's decision yet, the sender retries). One
  broker does not check it: its Metadata advertises epoch 0 and no leader changes (a
  data directory that once was in cluster mode keeps its epochs: clients must not be
  fenced by them).
- ``offsets_for_leader_epoch``: per partition, ``(epoch, end offset)`` as Kafka's
  OffsetsForLeaderEpoch answers (LeaderEpochCache.end_offset_for); a
  ``current_leader_epoch`` (``-1``: no check) older than the partition's latest epoch
  gets FENCED_LEADER_EPOCH (74), a newer one UNKNOWN_LEADER_EPOCH (75).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

from labkit._clock import Clock
from labkit.broker.replies import Reply, error_of, list_field, tp_rows
from labkit.broker.topics import TopicRegistry
from labkit.errors import FencedLeaderEpochError, InvalidRequestError, UnknownLeaderEpochError
from labkit.log.partition import PartitionLog
from labkit.log.producer_journal import PartitionProducers, has_state
from labkit.protocol.records import BASE_OFFSET, walk_batches

CONSUMER_REPLICA_ID = -1  # Kafka's FetchRequest.CONSUMER_REPLICA_ID
NO_EPOCH_CHECK = -1  # Kafka's RecordBatch.NO_PARTITION_LEADER_EPOCH as current_leader_epoch
INT32_MAX = 2**31 - 1  # Kafka's replica_id and broker ids are int32
MAX_EPOCH_ROWS = 10_000  # partitions one offsets_for_leader_epoch may name

# (topic, partition, replica id, fetch offset, leader's log end offset, now in ms) ->
# whether the partition's high watermark moved
ReplicaFetchListener = Callable[[str, int, int, int, int, int], bool | None]


def below(data: bytes, limit: int) -> bytes:
    """The whole batches of ``data`` that start before offset ``limit`` (a consumer's
    read cut at the high watermark)."""
    spans, _error = walk_batches(data)
    end = 0
    for start, stop in spans:
        if BASE_OFFSET.unpack_from(data, start)[0] >= limit:
            break
        end = stop
    return data[:end]


def fetch_rows(items: list) -> list[tuple[str, int, int, int, int]]:
    """A fetch's ``[topic, partition, offset, max_bytes(, current_leader_epoch)]`` rows as
    5-tuples (no epoch: -1). Raises InvalidRequestError."""
    rows = []
    for item in items:
        if (
            not isinstance(item, list)
            or len(item) not in (4, 5)
            or not isinstance(item[0], str)
            or any(type(x) is not int for x in item[1:])
        ):
            raise InvalidRequestError(
                "each entry must be [topic, partition, offset, max_bytes] or "
                f"[topic, partition, offset, max_bytes, current_leader_epoch], got {item!r:.200}"
            )
        if len(item) == 5 and not NO_EPOCH_CHECK <= item[4] <= INT32_MAX:
            raise InvalidRequestError(
                f"current_leader_epoch must be -1 (no check) or an epoch from 0 to "
                f"{INT32_MAX}, got {item[4]}"
            )
        rows.append((item[0], item[1], item[2], item[3], item[4] if len(item) == 5 else -1))
    return rows


def epoch_mismatch(name: str, partition: int, current: int, latest: int) -> Exception | None:
    """FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH when a request's ``current`` leader
    epoch is not this broker's ``latest`` (either -1: no check), else None."""
    if current < 0 or latest < 0 or current == latest:
        return None
    if current < latest:
        return FencedLeaderEpochError(
            f"{name}-{partition}: the request's current_leader_epoch {current} is older than "
            f"this broker's leader epoch {latest}; refresh metadata and retry"
        )
    return UnknownLeaderEpochError(
        f"{name}-{partition}: the request's current_leader_epoch {current} is newer than this "
        f"broker's leader epoch {latest} (it has not applied that leader change yet); retry"
    )


def epoch_rows(plog: PartitionLog, offset: int) -> list[list[int]]:
    """The leader-epoch entries that cover offsets from ``offset`` to the log end."""
    return [list(e) for e in plog.leader_epochs.entries_within(offset, plog.log_end_offset)]


class ReplicaApi:
    """The replica side of the broker's APIs; see the module docstring."""

    registry: TopicRegistry
    clock: Clock
    on_replica_fetch: ReplicaFetchListener | None = None
    _producer_state_checked: weakref.WeakSet | None = None

    def replica_extras(self, plog: PartitionLog, offset: int) -> list[list]:
        """The two extra fields of a replica's fetch row: the leader-epoch entries and the
        idempotent producers' entries from ``offset`` on."""
        return [epoch_rows(plog, offset), [list(r) for r in self._producers_of(plog, offset)]]

    def _producers_of(self, plog: PartitionLog, offset: int) -> list:
        producers = plog.producers
        if producers is None:  # not loaded since the start: look on disk once per log
            checked = self._producer_state_checked
            if checked is None:
                checked = self._producer_state_checked = weakref.WeakSet()
            if plog in checked:
                return []
            checked.add(plog)
            if not has_state(plog.directory):
                return []
            producers = plog.producers = PartitionProducers.open(
                plog.directory, plog.recovered_end_offset
            )
        return producers.rows_from(offset)

    def check_leader_epoch(self, name: str, partition: int, current: int) -> None:
        """KIP-320 (module docstring). Raises FencedLeaderEpochError,
        UnknownLeaderEpochError, and what the registry raises for an unknown partition."""
        cluster = getattr(self, "cluster", None)
        if current < 0 or cluster is None:
            return  # one broker: Metadata advertises epoch 0 and no leader ever changes
        view = cluster.snapshot.topics.get(name)
        state = None if view is None else view.state(partition)
        latest = -1 if state is None else state.leader_epoch
        error = epoch_mismatch(name, partition, current, latest)
        if error is not None:
            raise error

    def replica_id_of(self, header: dict) -> int:
        """The fetch's ``replica_id`` (-1: a consumer). Raises InvalidRequestError."""
        value = header.get("replica_id", CONSUMER_REPLICA_ID)
        if type(value) is not int or not CONSUMER_REPLICA_ID <= value <= INT32_MAX:
            raise InvalidRequestError(
                f"field 'replica_id' must be -1 (a consumer) or a broker id from 0 to "
                f"{INT32_MAX}, got {value!r:.40}"
            )
        return value

    def read_for(
        self,
        name: str,
        partition: int,
        plog: PartitionLog,
        offset: int,
        limit: int,
        replica_id: int,
        full: bool,
        moved: list,
    ) -> tuple[bytes, int]:
        """(records, the end the read was bounded by) for one partition of a fetch.
        ``full``: the response has no room left; ``moved`` gets ``(name, partition)``
        when a replica's fetch moved the high watermark. Raises what PartitionLog.read
        raises."""
        leo = plog.log_end_offset
        if replica_id >= 0:
            data = b"" if offset == leo or full else plog.read(offset, limit)
            listener = self.on_replica_fetch
            now = self.clock.time_ms()
            if listener is not None and listener(name, partition, replica_id, offset, leo, now):
                moved.append((name, partition))
            return data, leo
        hw = plog.high_watermark
        if offset == hw or full or hw < offset <= leo:  # past the high watermark: not yet
            return b"", hw
        data = plog.read(offset, limit)
        return (below(data, hw) if hw < leo else data), hw

    def offsets_for_leader_epoch(self, header: dict, payloads: list) -> Reply:
        """Kafka's OffsetsForLeaderEpoch (module docstring)."""
        wanted = tp_rows(list_field(header, "partitions"), 4)
        if len(wanted) > MAX_EPOCH_ROWS:
            raise InvalidRequestError(
                f"offsets_for_leader_epoch may name at most {MAX_EPOCH_ROWS} partitions, "
                f"this one names {len(wanted)}"
            )
        rows = []
        for name, partition, current, epoch in wanted:
            try:
                plog = self.registry.partition(name, partition)
                error = epoch_mismatch(name, partition, current, plog.leader_epochs.latest_epoch)
                if error is not None:
                    raise error
                found, end = plog.leader_epochs.end_offset_for(epoch, plog.log_end_offset)
                rows.append([name, partition, 0, found, end])
            except Exception as exc:  # noqa: BLE001 - one partition's error, in its row
                rows.append([name, partition, error_of(exc)[0], -1, -1])
        return Reply({"error": 0, "partitions": rows})
