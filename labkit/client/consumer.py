"""``KafkaConsumer``: kafka-python's consumer API on labkit's transport.

Theory of operation
-------------------
The consumer is driven by the user's thread: ``poll()`` (and iteration, built on
it) does all the work in order --

1. metadata: refreshed when the subscription changed, a subscribed topic is
   missing, or ``metadata_max_age_ms`` passed (pattern subscriptions at least
   every 5 s, so new matching topics are picked up);
2. group: ``self._coordinator.poll()`` keeps the assignment current. Without a
   group (``group_id=None``) that is ``NoGroup`` (labkit/client/coordinator.py):
   every partition of the subscribed topics. With one it is
   ``ConsumerCoordinator`` (labkit/client/consumer_coordinator.py): join,
   heartbeat (on the I/O thread), revoke and take up partitions, auto-commit;
3. positions: partitions without a position get the group's committed offset,
   else one by ``auto_offset_reset`` (a blocking ``list_offsets``):
   ``Fetcher.reset_offsets_if_needed`` (kafka-python's name; labkit/client/positions.py);
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

from labkit._clock import REAL_CLOCK, Clock
from labkit.client import config as cfg
from labkit.client.backend import on_kafka
from labkit.client.consumer_coordinator import ConsumerCoordinator
from labkit.client.consumer_positions import PositionsMixin
from labkit.client.coordinator import Coordinator, NoGroup
from labkit.client.fetcher import Fetcher
from labkit.client.metadata import ClusterMetadata, refresh
from labkit.client.positions import NoPositionError, OffsetLookup

__all__ = ["KafkaConsumer", "NoPositionError"]
from labkit.client.structs import TopicPartition
from labkit.client.subscription import SubscriptionState
from labkit.client.transport import Transport
from labkit.errors import (
    IllegalStateError,
    KafkaConfigurationError,
    KafkaError,
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


def _make_coordinator(consumer: KafkaConsumer) -> Coordinator:
    if consumer.config["group_id"] is None:
        return NoGroup(consumer._subscription, consumer._cluster)
    return ConsumerCoordinator(
        consumer.config,
        transport=consumer._transport,
        subscription=consumer._subscription,
        clock=consumer._clock,
        interrupt=consumer._fetcher.interrupt,
    )


class KafkaConsumer(PositionsMixin):
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

    def __new__(cls, *args: Any, **configs: Any) -> Any:
        if cls is KafkaConsumer and "clock" not in configs and on_kafka(configs):
            from labkit.client.delegate import DelegatingConsumer

            return DelegatingConsumer(cls, *args, **configs)  # a Kafka broker that is not labkit
        return super().__new__(cls)

    def __init__(self, *topics: str, clock: Clock = REAL_CLOCK, **configs: Any):
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
        self._clock = clock  # injectable for tests (keyword-only, undocumented)
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
        self._offsets = OffsetLookup(self._transport, config["retry_backoff_ms"])
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
            retry = self._fetcher.retry_in()  # partitions held back after a leader error
            if retry is not None:
                left = min(left, retry + 0.001)
            self._fetcher.wait(min(left, 0.1) if not self._subscription.assignment else left)

    def _poll_once(self, max_records: int, update_offsets: bool) -> dict:
        self._ensure_metadata()
        self._coordinator.poll(0.0)
        self._fetcher.reset_offsets_if_needed(self._coordinator, in_poll=True)
        allowed = self._coordinator.fetchable()
        records = self._fetcher.fetched_records(max_records, update_offsets, allowed)
        if not records:
            # an OFFSET_OUT_OF_RANGE answer handled just now reset positions: resolve
            # them, so the fetch below goes out in this round (else poll() waited out
            # its timeout). With records in hand, the next poll() resolves them first.
            self._fetcher.reset_offsets_if_needed(self._coordinator, in_poll=True)
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
            or (  # a leader error: ask again, but not more often than retry_backoff_ms
                self._fetcher.needs_metadata
                and now - self._cluster.refreshed_at >= self.config["retry_backoff_ms"] / 1000.0
            )
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
                # subscribe(topics=...) set both the mode and the topics
                assert sub.subscription is not None
                refresh(
                    self._transport,
                    self._cluster,
                    sorted(sub.subscription),
                    self.config["allow_auto_create_topics"],
                    now,
                )
                if any(self._cluster.num_partitions(t) is None for t in sub.subscription):
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
            except Exception:  # noqa: BLE001 - __del__ at interpreter shutdown: nothing useful left to do
                pass

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        self.close(autocommit=exc_type is None)

    def __repr__(self) -> str:
        return (
            f"<KafkaConsumer client_id={self.config['client_id']!r} "
            f"group_id={self.config['group_id']!r} broker={self._transport.address}>"
        )
