"""What a consumer wants (subscription) and what it has (assignment and positions).

Theory of operation
-------------------
A consumer is in one of three modes (as in kafka-python): subscribed to a list of
topics, subscribed to a pattern, or manually assigned partitions (``assign``).
Subscribing and assigning exclude each other (IllegalStateError).

The *assignment* is the set of partitions the consumer reads, each with a
``PartitionState``: its position (the offset of the next record to hand to the
user, None until known), whether it is paused, a pending reset ('earliest'/
'latest'), the last high watermark, and an ``epoch`` that grows on every seek or
reset so the fetcher can drop data fetched for an older position. A partition
given up and assigned again (a group rebalance) starts above its old epoch, so a
fetch still in flight for the old state is dropped too.

Who decides the assignment of a subscription: without a group, the consumer
assigns itself every partition of the subscribed topics; with a group, the group
coordinator does (``assign_from_subscribed``). Either way the change goes through
``assign_from_subscribed``, which calls the rebalance listener and the
``on_assignment`` hooks (the fetcher drops buffered data of revoked partitions).

Used from the consumer's thread only (kafka-python's consumer is not thread-safe
either), except ``PartitionState`` reads by the fetcher's response callback.
"""

from __future__ import annotations

import abc
import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

from labkit.client.structs import OffsetAndMetadata, TopicPartition
from labkit.errors import IllegalStateError

log = logging.getLogger(__name__)


class ConsumerRebalanceListener(abc.ABC):
    """Called when a group rebalance takes partitions away or hands new ones over.

    ``on_partitions_revoked(revoked)`` runs before a rebalance (commit here what you
    have processed); ``on_partitions_assigned(assigned)`` after it (seek here if you
    keep offsets elsewhere). Both get a set/list of TopicPartition.
    """

    @abc.abstractmethod
    def on_partitions_revoked(self, revoked):
        pass

    @abc.abstractmethod
    def on_partitions_assigned(self, assigned):
        pass

    def on_partitions_lost(self, lost):
        """Partitions taken away while out of the group (a commit would fail).
        Default: the same as revoked, as in Kafka's Java client."""
        self.on_partitions_revoked(lost)


def is_listener(obj: Any) -> bool:
    """A ConsumerRebalanceListener, or any object with its two methods."""
    return isinstance(obj, ConsumerRebalanceListener) or (
        callable(getattr(obj, "on_partitions_revoked", None))
        and callable(getattr(obj, "on_partitions_assigned", None))
    )


class PartitionState:
    __slots__ = (
        "position",
        "paused",
        "reset_strategy",
        "highwater",
        "log_start",
        "epoch",
        "leader_epoch",
    )

    def __init__(self, epoch: int = 0) -> None:
        self.position: int | None = None
        self.paused = False
        self.reset_strategy: str | None = None
        self.highwater: int | None = None
        self.log_start: int | None = None
        self.epoch = epoch
        self.leader_epoch = -1

    def seek(self, offset: int) -> None:
        self.position = offset
        self.reset_strategy = None
        self.epoch += 1

    def request_reset(self, strategy: str) -> None:
        self.position = None
        self.reset_strategy = strategy
        self.epoch += 1

    @property
    def fetchable(self) -> bool:
        return not self.paused and self.position is not None


class SubscriptionState:
    AUTO_TOPICS = "topics"
    AUTO_PATTERN = "pattern"
    USER_ASSIGNED = "assigned"

    def __init__(self, default_reset: str = "latest"):
        self.default_reset = default_reset
        self.mode: str | None = None
        self.subscription: set[str] | None = None
        self.subscribed_pattern: re.Pattern | None = None
        self.listener: ConsumerRebalanceListener | None = None
        self.assignment: dict[TopicPartition, PartitionState] = {}
        self._hooks: list[Callable[[set, set], None]] = []
        self._last_epoch: dict[TopicPartition, int] = {}  # of partitions given up
        self.version = 0  # grows when the subscription changes (metadata to refresh)

    # -- subscribe / assign -------------------------------------------------------

    def subscribe(
        self, topics: Iterable[str] = (), pattern: str | None = None, listener: Any = None
    ) -> None:
        """Raises IllegalStateError after assign(), ValueError without topics or pattern,
        TypeError for a listener that is not a ConsumerRebalanceListener."""
        if self.mode == self.USER_ASSIGNED:
            raise IllegalStateError(
                "Subscription to topics, partitions and pattern are "
                "mutually exclusive: call unsubscribe() after assign()"
            )
        if isinstance(topics, str):
            topics = [topics]
        topics = list(topics or ())
        if topics and pattern:
            raise IllegalStateError("pass either topics or pattern to subscribe(), not both")
        if not topics and not pattern:
            raise ValueError("You must choose topic(s) or pattern to subscribe to")
        if listener is not None and not is_listener(listener):
            raise TypeError(
                "listener must be a ConsumerRebalanceListener (with "
                "on_partitions_revoked and on_partitions_assigned)"
            )
        self.listener = listener
        if pattern:
            self.mode = self.AUTO_PATTERN
            self.subscribed_pattern = re.compile(pattern)
            self.subscription = set()
        else:
            for topic in topics:
                if not isinstance(topic, str):
                    raise TypeError(f"topics must be strings, got {topic!r}")
            self.mode = self.AUTO_TOPICS
            self.subscribed_pattern = None
            self.subscription = set(topics)
        self.version += 1

    def change_subscription(self, topics: Iterable[str]) -> bool:
        """Pattern mode: the matching topics changed. True if different."""
        topics = set(topics)
        if topics == self.subscription:
            return False
        self.subscription = topics
        self.version += 1
        return True

    def matches(self, topic: str) -> bool:
        return bool(self.subscribed_pattern and self.subscribed_pattern.match(topic))

    def assign_from_user(self, partitions: Iterable[TopicPartition]) -> None:
        if self.mode in (self.AUTO_TOPICS, self.AUTO_PATTERN):
            raise IllegalStateError(
                "Subscription to topics, partitions and pattern are "
                "mutually exclusive: call unsubscribe() before assign()"
            )
        partitions = list(partitions)
        for tp in partitions:
            if not isinstance(tp, TopicPartition):
                raise TypeError(f"assign() takes TopicPartition values, got {tp!r}")
        self.mode = self.USER_ASSIGNED
        self._set_assignment(set(partitions), notify_listener=False)
        self.version += 1

    def assign_from_subscribed(
        self, partitions: Iterable[TopicPartition], notify_listener: bool = True
    ) -> None:
        """The partitions of a topic/pattern subscription (from the group or metadata).

        ``notify_listener=False`` for a group coordinator that calls the listener itself.
        """
        if self.mode not in (self.AUTO_TOPICS, self.AUTO_PATTERN):
            raise IllegalStateError("assign_from_subscribed needs a subscription")
        self._set_assignment(set(partitions), notify_listener=notify_listener)

    def unsubscribe(self) -> None:
        self._set_assignment(set(), notify_listener=self.mode != self.USER_ASSIGNED)
        self.mode = None
        self.subscription = None
        self.subscribed_pattern = None
        self.listener = None
        self.version += 1

    def _set_assignment(self, new: set[TopicPartition], notify_listener: bool) -> None:
        old = set(self.assignment)
        revoked, added = old - new, new - old
        if not revoked and not added:
            return
        if notify_listener and self.listener is not None and revoked:
            _call_listener(self.listener.on_partitions_revoked, revoked)
        for tp in revoked:
            self._last_epoch[tp] = self.assignment[tp].epoch
        self.assignment = {
            tp: self.assignment.get(tp) or PartitionState(self._last_epoch.get(tp, -1) + 1)
            for tp in sorted(new)
        }
        for hook in self._hooks:
            hook(revoked, added)
        if notify_listener and self.listener is not None:
            _call_listener(self.listener.on_partitions_assigned, set(new))

    def add_assignment_hook(self, hook: Callable[[set, set], None]) -> None:
        """``hook(revoked, added)`` runs whenever the assignment changes."""
        self._hooks.append(hook)

    # -- queries ----------------------------------------------------------------

    def assigned_partitions(self) -> set[TopicPartition]:
        return set(self.assignment)

    def is_assigned(self, tp: TopicPartition) -> bool:
        return tp in self.assignment

    def state(self, tp: TopicPartition) -> PartitionState:
        """Raises IllegalStateError when ``tp`` is not assigned."""
        try:
            return self.assignment[tp]
        except KeyError:
            raise IllegalStateError(
                f"No current assignment for partition {tp}: assign() it or subscribe() to "
                "its topic first"
            ) from None

    def paused_partitions(self) -> set[TopicPartition]:
        return {tp for tp, st in self.assignment.items() if st.paused}

    def missing_positions(self) -> list[TopicPartition]:
        return [tp for tp, st in self.assignment.items() if st.position is None]

    def all_consumed_offsets(self) -> dict[TopicPartition, OffsetAndMetadata]:
        """Positions of partitions with a known position, ready to commit."""
        return {
            tp: OffsetAndMetadata(st.position, "", -1)
            for tp, st in self.assignment.items()
            if st.position is not None
        }


def _call_listener(fn: Callable, partitions: set) -> None:
    try:
        fn(partitions)
    except Exception:  # a user's listener must not break the consumer's bookkeeping
        log.exception("ConsumerRebalanceListener %r failed", fn)
