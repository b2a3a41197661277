"""``KafkaConsumer``: kafka-python's consumer API on labkit's transport.

Theory of operation
-------------------
The consumer is driven by the user's thread: ``poll()`` (and iteration, built on
it) does all the work in order --

1. metadata: refreshed when the subscription changed, a subscribed topic is
   missing, or ``metadata_max_age_ms`` passed (pattern subscriptions at least
   every 5 s, so new matching topics are picked up);
2. group: ``self._coordinator.poll()`` keeps the assignment current. Without a
   group (``group_id=None``) that is ``NoGroup``: every partition of the
   subscribed topics. With one it is ``GroupCoordinator``
   (labkit/client/group_coordinator.py): join, heartbeat (on the I/O thread),
   revoke and take up partitions, auto-commit;
3. positions: partitions without a position get the group's committed offset,
   else one by ``auto_offset_reset`` (a blocking ``list_offsets``);
4. records: ``Fetcher.fetched_records`` hands over decoded records (of the
   partitions the group lets this member read); positions an OFFSET_OUT_OF_RANGE
   answer reset are resolved again (step 3), then ``send_fetches`` puts the
   next fetch in flight so it runs while the user works on what poll returned.

The I/O thread (in the transport) only moves bytes and heartbeats; it interrupts
the wait in ``poll()`` when a rebalance needs the user's thread. The consumer is
not thread-safe, as in kafka-python: use it from one thread.
"""

from __future__ import annotations

import itertools
import logging
import math
from typing import Any, ClassVar

from labkit._clock import REAL_CLOCK
from labkit.client import config as cfg
from labkit.client.fetcher import Fetcher, OffsetLookup
from labkit.client.group_coordinator import GroupCoordinator
from labkit.client.metadata import ClusterMetadata, refresh
from labkit.client.structs import OffsetAndTimestamp, TopicPartition
from labkit.client.subscription import SubscriptionState
from labkit.client.transport import Transport
from labkit.errors import (
    IllegalStateError,
    KafkaConfigurationError,
    KafkaError,
    NoOffsetForPartitionError,
    OffsetOutOfRangeError,
)

log = logging.getLogger(__name__)
_IDS = itertools.count(1)
_RESET_NAMES = {
    "earliest": "earliest",
    "smallest": "earliest",
    "latest": "latest",
    "largest": "latest",
    "none": "none",
}


class NoPositionError(NoOffsetForPartitionError, OffsetOutOfRangeError):
    """No position and ``auto_offset_reset='none'``: kafka-python's
    NoOffsetForPartitionError (also an OffsetOutOfRangeError, which labkit raised
    before, so either ``except`` works)."""


class NoGroup:
    """Assignment without a consumer group: all partitions of the subscribed topics.

    The interface a group coordinator implements (GroupCoordinator in
    labkit/client/group_coordinator.py): ``poll(timeout_s)``, ``fetchable()``,
    ``fetch_committed_offsets(partitions, timeout_ms)``,
    ``note_start_positions(starts, auto_offset_reset)``,
    ``commit_offsets_sync(offsets, timeout_ms)``, ``commit_offsets_async(offsets,
    callback)``, ``on_unsubscribe()``, ``close(autocommit, timeout_ms)``,
    ``group_id``. It is built as ``GroupCoordinator(consumer)`` and may use
    ``consumer._transport``, ``._subscription``, ``._fetcher``, ``.config`` and
    ``._clock``.
    """

    def __init__(self, consumer: KafkaConsumer):
        self._consumer = consumer
        self.group_id = consumer.config["group_id"]

    def poll(self, timeout_s: float = 0.0) -> bool:
        sub = self._consumer._subscription
        if sub.mode in (sub.AUTO_TOPICS, sub.AUTO_PATTERN):
            cluster = self._consumer._cluster
            wanted: set[TopicPartition] = set()
            for topic in sub.subscription or ():
                n = cluster.num_partitions(topic)
                wanted.update(TopicPartition(topic, p) for p in range(n or 0))
            sub.assign_from_subscribed(wanted)
        return True

    def fetchable(self) -> None:
        return None  # everything assigned

    def fetch_committed_offsets(self, partitions, timeout_ms=None) -> dict:
        return {}

    def note_start_positions(self, starts, auto_offset_reset) -> None:
        pass

    def _no_group(self, what: str) -> None:
        raise IllegalStateError(
            f"{what} requires group_id: pass group_id='my-group' to KafkaConsumer to commit offsets"
        )

    def commit_offsets_sync(self, offsets, timeout_ms=None) -> None:
        self._no_group("commit()")

    def commit_offsets_async(self, offsets, callback=None):
        self._no_group("commit_async()")

    def on_unsubscribe(self) -> None:
        pass

    def close(self, autocommit: bool = True, timeout_ms: float | None = None) -> None:
        pass


def _make_coordinator(consumer: KafkaConsumer) -> Any:
    if consumer.config["group_id"] is None:
        return NoGroup(consumer)
    return GroupCoordinator(consumer)


class KafkaConsumer:
    """Read records from topics (kafka-python's ``KafkaConsumer``).

    ``KafkaConsumer('topic', bootstrap_servers=..., auto_offset_reset='earliest')``
    subscribes at once. Iterating over the consumer blocks waiting for records
    *forever* unless ``consumer_timeout_ms`` is set: then iteration stops
    (StopIteration) after that many ms without a record.
    Raises KafkaConfigurationError for unknown settings, NoBrokersAvailable when
    no broker answers.
    """

    DEFAULT_CONFIG: ClassVar[dict[str, Any]] = {
        "group_id": None,
        "group_instance_id": None,
        "key_deserializer": None,
        "value_deserializer": None,
        "fetch_max_wait_ms": 500,
        "fetch_min_bytes": 1,
        "fetch_max_bytes": 52428800,
        "max_partition_fetch_bytes": 1 * 1024 * 1024,
        "auto_offset_reset": "latest",
        "enable_auto_commit": True,
        "auto_commit_interval_ms": 5000,
        "default_offset_commit_callback": None,
        "check_crcs": True,
        "isolation_level": "read_uncommitted",
        "allow_auto_create_topics": True,
        "partition_assignment_strategy": ("range", "roundrobin"),
        "max_poll_records": 500,
        "max_poll_interval_ms": 300000,
        "session_timeout_ms": 45000,
        "heartbeat_interval_ms": 3000,
        "consumer_timeout_ms": float("inf"),
        "exclude_internal_topics": True,
        "metric_group_prefix": "consumer",
        "legacy_iterator": False,
        "leave_group_on_close": True,
        "enable_incremental_fetch_sessions": True,
        "client_rack": "",
    }

    def __init__(self, *topics: str, **configs: Any):
        self.config = config = cfg.resolve("KafkaConsumer", self.DEFAULT_CONFIG, configs)
        cfg.check_numbers(
            config,
            {
                "fetch_max_wait_ms": 0,
                "fetch_min_bytes": 0,
                "fetch_max_bytes": 1,
                "max_partition_fetch_bytes": 1,
                "max_poll_records": 1,
            },
        )
        reset = _RESET_NAMES.get(str(config["auto_offset_reset"]).lower())
        if reset is None:
            raise KafkaConfigurationError(
                f"auto_offset_reset must be 'earliest', 'latest' or 'none', got "
                f"{config['auto_offset_reset']!r}"
            )
        config["auto_offset_reset"] = reset
        if config["group_instance_id"] is not None:  # accepted before, silently ignored
            raise KafkaConfigurationError(
                f"group_instance_id={config['group_instance_id']!r}: labkit's groups have no "
                "static membership (KIP-345) yet; remove group_instance_id (a restarted "
                "member rejoins and the group rebalances)"
            )
        if config["client_id"] is None:
            config["client_id"] = f"kafka-python-consumer-{next(_IDS)}"
        self._clock = REAL_CLOCK
        self._closed = False
        self._iterator = None
        self._iterator_partitions: list[TopicPartition] = []
        self._metadata_version = -1
        self._metadata_due = 0.0
        self._transport = Transport(
            config["bootstrap_servers"],
            client_id=config["client_id"],
            request_timeout_ms=config["request_timeout_ms"],
            connect_timeout_ms=config["api_version_auto_timeout_ms"],
            reconnect_backoff_ms=config["reconnect_backoff_ms"],
            reconnect_backoff_max_ms=config["reconnect_backoff_max_ms"],
            clock=self._clock,
            name="consumer",
        )
        self._cluster = ClusterMetadata()
        self._subscription = SubscriptionState(reset)
        self._fetcher = Fetcher(self._transport, self._subscription, config)
        self._offsets = OffsetLookup(self._transport)
        self._coordinator = _make_coordinator(self)
        if topics:
            self.subscribe(topics)

    # -- subscription -------------------------------------------------------------

    def subscribe(self, topics=(), pattern: str | None = None, listener: Any = None) -> None:
        """Subscribe to topics (a list) or a regex ``pattern``; replaces the old subscription.

        Raises IllegalStateError after assign(), ValueError without topics or pattern.
        """
        if isinstance(topics, str):
            topics = [topics]
        for topic in topics or ():
            cfg.validate_topic(topic)
        self._subscription.subscribe(topics=topics, pattern=pattern, listener=listener)
        self._discard_iterator()

    def subscription(self) -> set[str] | None:
        sub = self._subscription.subscription
        return None if sub is None else set(sub)

    def unsubscribe(self) -> None:
        self._coordinator.on_unsubscribe()
        self._subscription.unsubscribe()
        self._discard_iterator()

    def assign(self, partitions) -> None:
        """Read exactly these TopicPartitions (no group). Raises IllegalStateError after subscribe()."""
        if not partitions:
            self.unsubscribe()
            return
        self._subscription.assign_from_user(partitions)
        self._discard_iterator()

    def assignment(self) -> set[TopicPartition]:
        return self._subscription.assigned_partitions()

    # -- polling ------------------------------------------------------------------

    def poll(
        self, timeout_ms: float = 0, max_records: int | None = None, update_offsets: bool = True
    ) -> dict[TopicPartition, list]:
        """Records fetched since the last poll: ``{TopicPartition: [ConsumerRecord, ...]}``.

        Waits up to ``timeout_ms`` for records (0 = return what is buffered). Raises
        ValueError/TypeError for bad arguments, IllegalStateError after close(),
        NoOffsetForPartitionError / OffsetOutOfRangeError with auto_offset_reset='none',
        and a group's join errors that retrying cannot fix (e.g.
        InconsistentGroupProtocolError, InvalidSessionTimeoutError).
        """
        if timeout_ms < 0:
            raise ValueError("Timeout must not be negative")
        if max_records is None:
            max_records = self.config["max_poll_records"]
        if not isinstance(max_records, int) or isinstance(max_records, bool):
            raise TypeError("max_records must be an integer")
        if max_records <= 0:
            raise ValueError("max_records must be positive")
        if self._closed:
            raise IllegalStateError("KafkaConsumer is closed")
        deadline = self._clock.monotonic() + timeout_ms / 1000.0
        while True:
            records = self._poll_once(max_records, update_offsets)
            if records:
                return records
            left = deadline - self._clock.monotonic()
            if left <= 0:
                return {}
            self._fetcher.wait(min(left, 0.1) if not self._subscription.assignment else left)

    def _poll_once(self, max_records: int, update_offsets: bool) -> dict:
        self._ensure_metadata()
        self._coordinator.poll(0.0)
        self._update_positions()
        allowed = self._coordinator.fetchable()
        records = self._fetcher.fetched_records(max_records, update_offsets, allowed)
        if not records:
            # an OFFSET_OUT_OF_RANGE answer handled just now reset positions: resolve
            # them, so the fetch below goes out in this round (else poll() waited out
            # its timeout). With records in hand, the next poll() resolves them first.
            self._update_positions()
        self._fetcher.send_fetches(allowed)
        return records

    def _ensure_metadata(self, force: bool = False) -> None:
        sub = self._subscription
        if sub.mode is None:
            return
        now = self._clock.monotonic()
        if not (
            force
            or self._metadata_version != sub.version
            or now >= self._metadata_due
            or self._fetcher.needs_metadata
        ):
            return
        self._fetcher.needs_metadata = False
        age = self.config["metadata_max_age_ms"] / 1000.0
        try:
            if sub.mode == sub.AUTO_PATTERN:
                refresh(self._transport, self._cluster, None, False, now)
                sub.change_subscription(
                    t
                    for t in self._cluster.topics(self.config["exclude_internal_topics"])
                    if sub.matches(t)
                )
                age = min(age, 5.0)
            elif sub.mode == sub.AUTO_TOPICS:
                refresh(
                    self._transport,
                    self._cluster,
                    sorted(sub.subscription or ()),
                    self.config["allow_auto_create_topics"],
                    now,
                )
                if any(self._cluster.num_partitions(t) is None for t in sub.subscription or ()):
                    age = min(age, 1.0)
            else:
                refresh(
                    self._transport,
                    self._cluster,
                    sorted({tp.topic for tp in sub.assignment}),
                    False,
                    now,
                )
        except KafkaError as exc:
            log.warning("metadata refresh failed (will retry): %s", exc)
            age = self.config["retry_backoff_ms"] / 1000.0
        self._metadata_version = sub.version
        self._metadata_due = now + age

    def _update_positions(self, timeout_ms: float | None = None) -> None:
        """Give every partition without a position one: the group's committed offset,
        else by its reset strategy. Raises NoOffsetForPartitionError, or
        OffsetOutOfRangeError (a committed offset retention deleted), for 'none'."""
        sub = self._subscription
        missing = sub.missing_positions()
        if not missing:
            return
        starts: dict[TopicPartition, tuple[int, bool]] = {}
        need_committed = [tp for tp in missing if sub.assignment[tp].reset_strategy is None]
        if need_committed:
            committed = self._coordinator.fetch_committed_offsets(need_committed, timeout_ms)
            found = {
                tp: om.offset
                for tp, om in (committed or {}).items()
                if om is not None
                and om.offset >= 0
                and tp in sub.assignment
                and sub.assignment[tp].position is None
            }
            for tp, offset in self._committed_in_log(found, timeout_ms).items():
                sub.assignment[tp].seek(offset)
                starts[tp] = (offset, True)
        targets = {}
        for tp in sub.missing_positions():
            strategy = sub.assignment[tp].reset_strategy or sub.default_reset
            if strategy == "none":
                raise NoPositionError(
                    f"no committed offset for {tp} and auto_offset_reset='none'; "
                    "use 'earliest' or 'latest', or seek() to an offset first"
                )
            targets[tp] = OffsetLookup.EARLIEST if strategy == "earliest" else OffsetLookup.LATEST
        fresh = {tp for tp in targets if sub.assignment[tp].reset_strategy is None}
        for tp, (offset, _ts) in self._offsets.lookup(targets, timeout_ms).items():
            st = sub.assignment.get(tp)
            if st is not None and st.position is None:
                st.seek(offset)
                if tp in fresh:
                    starts[tp] = (offset, False)
        if starts:
            self._coordinator.note_start_positions(starts, sub.default_reset)

    def _committed_in_log(
        self, committed: dict[TopicPartition, int], timeout_ms: float | None
    ) -> dict[TopicPartition, int]:
        """The committed offsets that are still in the log. One below the log start
        (retention deleted those records) falls back to ``auto_offset_reset``, with
        a warning; with 'none' it raises OffsetOutOfRangeError."""
        if not committed:
            return {}
        starts = self.beginning_offsets(list(committed), timeout_ms)
        usable = {}
        for tp, offset in committed.items():
            log_start = starts.get(tp, 0)
            if offset >= log_start:
                usable[tp] = offset
                continue
            reset = self._subscription.default_reset
            if reset == "none":
                raise OffsetOutOfRangeError(
                    f"group '{self.config['group_id']}' committed offset {offset} for {tp}, but "
                    f"the log now starts at {log_start} (retention deleted the records in "
                    "between) and auto_offset_reset='none'. Use 'earliest' or 'latest', or "
                    "seek() to an offset."
                )
            log.warning(
                "group '%s': the committed offset %d of %s-%d is gone (retention "
                "deleted the records before offset %d); starting at the %s offset "
                "(auto_offset_reset='%s')",
                self.config["group_id"],
                offset,
                tp.topic,
                tp.partition,
                log_start,
                reset,
                reset,
            )
            self._subscription.assignment[tp].request_reset(reset)
        return usable

    # -- iteration ------------------------------------------------------------------

    def __iter__(self) -> KafkaConsumer:
        return self

    def __next__(self):
        if self._closed:
            raise StopIteration("KafkaConsumer closed")
        timeout = self.config["consumer_timeout_ms"]
        deadline = (
            math.inf
            if timeout is None or timeout < 0 or math.isinf(timeout)
            else self._clock.monotonic() + timeout / 1000.0
        )
        while True:
            if self._iterator is not None:
                try:
                    return next(self._iterator)
                except StopIteration:
                    self._iterator = None
            left = deadline - self._clock.monotonic()
            if left <= 0:
                raise StopIteration
            records = self.poll(timeout_ms=min(left, 1.0) * 1000, update_offsets=False)
            if records:
                self._iterator = self._record_generator(records)
                self._iterator_partitions = list(records)

    def _record_generator(self, records: dict):
        assignment = self._subscription.assignment
        for tp, recs in records.items():
            st = assignment.get(tp)
            if st is None:
                continue
            epoch = st.epoch
            for record in recs:
                if st.epoch != epoch or st.paused or assignment.get(tp) is not st:
                    self._refetch(tp)
                    break
                st.position = record.offset + 1
                yield record

    def _refetch(self, tp: TopicPartition) -> None:
        """Records of ``tp`` were taken from the fetcher but not returned: fetch again."""
        st = self._subscription.assignment.get(tp)
        self._fetcher.forget(tp)
        if st is not None and st.position is not None:
            st.seek(st.position)

    def _discard_iterator(self) -> None:
        it, self._iterator = self._iterator, None
        if it is None:
            return
        it.close()
        for tp in self._iterator_partitions:  # taken from the fetcher, maybe not all returned
            self._refetch(tp)
        self._iterator_partitions = []

    # -- positions and offsets --------------------------------------------------------

    def _assigned_state(self, partition: TopicPartition):
        if not isinstance(partition, TopicPartition):
            raise TypeError("partition must be a TopicPartition namedtuple")
        return self._subscription.state(partition)

    def position(self, partition: TopicPartition, timeout_ms: float | None = None) -> int | None:
        """Offset of the next record poll() will return for ``partition``.

        Raises TypeError, IllegalStateError (not assigned).
        """
        st = self._assigned_state(partition)
        if st.position is None:
            self._update_positions(timeout_ms)
        return st.position

    def highwater(self, partition: TopicPartition) -> int | None:
        """The log end offset seen in the last fetch of ``partition`` (None before one)."""
        return self._assigned_state(partition).highwater

    def seek(self, partition: TopicPartition, offset: int) -> None:
        """Make the next poll() start at ``offset``. Raises ValueError (bad offset / not assigned)."""
        if not isinstance(partition, TopicPartition):
            raise TypeError("partition must be a TopicPartition namedtuple")
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise ValueError("Offset must be int >= 0")
        if partition not in self._subscription.assignment:
            raise ValueError(
                f"Unassigned partition {partition}: assign() it or subscribe() and poll() first"
            )
        self._discard_iterator()
        self._subscription.assignment[partition].seek(offset)
        self._fetcher.forget(partition)

    def _seek_to(self, strategy: str, partitions: tuple) -> None:
        if not all(isinstance(p, TopicPartition) for p in partitions):
            raise TypeError("partitions must be TopicPartition namedtuples")
        assigned = self._subscription.assignment
        if not partitions:
            partitions = tuple(assigned)
            if not partitions:
                raise ValueError("No partitions are currently assigned")
        for tp in partitions:
            if tp not in assigned:
                raise ValueError(f"Unassigned partition: {tp}")
        self._discard_iterator()
        for tp in partitions:
            assigned[tp].request_reset(strategy)
            self._fetcher.forget(tp)

    def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        """Start the next poll() at the oldest record (all assigned partitions by default)."""
        self._seek_to("earliest", partitions)

    def seek_to_end(self, *partitions: TopicPartition) -> None:
        """Start the next poll() after the newest record (all assigned partitions by default)."""
        self._seek_to("latest", partitions)

    def beginning_offsets(self, partitions, timeout_ms: float | None = None) -> dict:
        """{TopicPartition: first offset still in the log}."""
        found = self._offsets.lookup({tp: OffsetLookup.EARLIEST for tp in partitions}, timeout_ms)
        return {tp: offset for tp, (offset, _) in found.items()}

    def end_offsets(self, partitions, timeout_ms: float | None = None) -> dict:
        """{TopicPartition: offset the next record will get (last offset + 1)}."""
        found = self._offsets.lookup({tp: OffsetLookup.LATEST for tp in partitions}, timeout_ms)
        return {tp: offset for tp, (offset, _) in found.items()}

    def offsets_for_times(self, timestamps: dict, timeout_ms: float | None = None) -> dict:
        """{TopicPartition: OffsetAndTimestamp of the first record with timestamp >= t, or None}.

        Raises ValueError for a negative timestamp.
        """
        for tp, ts in timestamps.items():
            if ts < 0:
                raise ValueError(
                    f"The target time for partition {tp} is {ts}. The target time "
                    "cannot be negative."
                )
        found = self._offsets.lookup({tp: int(ts) for tp, ts in timestamps.items()}, timeout_ms)
        return {
            tp: (OffsetAndTimestamp(offset, ts, -1) if offset >= 0 else None)
            for tp, (offset, ts) in found.items()
        }

    # -- pause / resume --------------------------------------------------------------

    def pause(self, *partitions: TopicPartition) -> None:
        """Stop returning records from these partitions until resume()."""
        for tp in partitions:
            self._assigned_state(tp).paused = True

    def resume(self, *partitions: TopicPartition) -> None:
        for tp in partitions:
            self._assigned_state(tp).paused = False

    def paused(self) -> set[TopicPartition]:
        return self._subscription.paused_partitions()

    # -- commits (need a group) ----------------------------------------------------

    def commit(self, offsets: dict | None = None, timeout_ms: float | None = None) -> None:
        """Commit offsets and wait until the broker stored them.

        ``offsets``: ``{TopicPartition: OffsetAndMetadata}`` (the *next* offset to read,
        i.e. last processed + 1); default: the current positions of every assigned
        partition. Raises IllegalStateError without group_id, CommitFailedError when
        the group rebalanced and these partitions may belong to another member now
        (or the consumer is not an active member), KafkaTimeoutError.
        """
        if offsets is None:
            offsets = self._subscription.all_consumed_offsets()
        self._coordinator.commit_offsets_sync(offsets, timeout_ms)

    def commit_async(self, offsets: dict | None = None, callback: Any = None):
        """Send a commit without waiting; returns a Future. ``callback(offsets,
        exception_or_None)`` runs in a later poll(). Raises IllegalStateError
        without group_id."""
        if offsets is None:
            offsets = self._subscription.all_consumed_offsets()
        return self._coordinator.commit_offsets_async(offsets, callback)

    def committed(
        self, partition: TopicPartition, metadata: bool = False, timeout_ms: float | None = None
    ):
        """The group's committed offset for ``partition`` (None if none); with
        ``metadata=True`` the OffsetAndMetadata. Raises IllegalStateError without group_id."""
        if not isinstance(partition, TopicPartition):
            raise TypeError("partition must be a TopicPartition namedtuple")
        if self.config["group_id"] is None:
            raise IllegalStateError("committed() requires group_id")
        found = self._coordinator.fetch_committed_offsets([partition], timeout_ms) or {}
        om = found.get(partition)
        if om is None:
            return None
        return om if metadata else om.offset

    # -- cluster info ----------------------------------------------------------------

    def topics(self) -> set[str]:
        """All topic names on the broker (a fresh metadata request)."""
        refresh(self._transport, self._cluster, None, False, self._clock.monotonic())
        return self._cluster.topics(self.config["exclude_internal_topics"])

    def partitions_for_topic(self, topic: str) -> set[int]:
        """Partition ids of ``topic`` (empty set if the topic does not exist)."""
        partitions = self._cluster.partitions_for_topic(topic)
        if partitions is None:
            refresh(self._transport, self._cluster, None, False, self._clock.monotonic())
            partitions = self._cluster.partitions_for_topic(topic)
        return partitions or set()

    def bootstrap_connected(self) -> bool:
        return self._transport.connected

    def metrics(self, raw: bool = False) -> dict[str, dict[str, Any]]:
        """A minimal metrics map (kafka-python's is much larger)."""
        return {
            "consumer-fetch-manager-metrics": {
                "records-buffered": self._fetcher.buffered_count(),
                "assigned-partitions": len(self._subscription.assignment),
            }
        }

    def close(self, autocommit: bool = True, timeout_ms: float | None = None) -> None:
        """Commit the positions (with a group, enable_auto_commit and ``autocommit``),
        leave the group (its partitions go to the other members at once), disconnect."""
        if self._closed:
            return
        self._closed = True
        try:
            self._coordinator.close(autocommit=autocommit, timeout_ms=timeout_ms)
        finally:
            self._transport.close()

    def __enter__(self) -> KafkaConsumer:
        return self

    def __del__(self) -> None:
        if not getattr(self, "_closed", True) and hasattr(self, "_coordinator"):
            try:
                self.close(autocommit=False, timeout_ms=1000)
            except Exception:  # noqa: BLE001 - interpreter shutdown: nothing useful left to do
                pass

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        self.close(autocommit=exc_type is None)

    def __repr__(self) -> str:
        return (
            f"<KafkaConsumer client_id={self.config['client_id']!r} "
            f"group_id={self.config['group_id']!r} broker={self._transport.address}>"
        )
