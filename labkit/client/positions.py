"""Where a consumer starts reading: positions for partitions that have none.

Theory of operation
-------------------
A partition gets a position when it is assigned without one, after
``seek_to_beginning``/``seek_to_end`` (a *reset strategy* is pending), and after an
OFFSET_OUT_OF_RANGE answer (the fetcher requests a reset by ``auto_offset_reset``).
``PositionResolver.reset_offsets_if_needed`` -- called by ``Fetcher`` under
kafka-python's name, from the consumer's ``poll()`` and ``position()`` -- resolves
them all in two blocking steps:

1. partitions with no reset pending ask the group (``Coordinator``) for its
   committed offsets; a committed offset still in the log is the position. One
   below the log start (retention deleted those records) falls back to
   ``auto_offset_reset`` with a warning, or raises OffsetOutOfRangeError for 'none';
2. the rest are looked up by their strategy (``list_offsets`` earliest/latest), or
   raise NoOffsetForPartitionError for 'none'.

Where a group's newly assigned partitions start is logged for students
(``log_start_positions``: committed offsets win over ``auto_offset_reset``). A partition
revoked or sought meanwhile keeps what happened to it: a position is only set
where there is still none.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from labkit._clock import REAL_CLOCK
from labkit.client.coordinator import Coordinator
from labkit.client.metadata import request_header
from labkit.client.routing import ANY_BROKER
from labkit.client.structs import TopicPartition
from labkit.client.subscription import SubscriptionState
from labkit.errors import (
    KafkaConnectionError,
    KafkaError,
    LeaderNotAvailableError,
    NoOffsetForPartitionError,
    NotLeaderForPartitionError,
    OffsetOutOfRangeError,
    UnknownTopicOrPartitionError,
    for_code,
)
from labkit.protocol.messages import ListedOffset, rows

log = logging.getLogger(__name__)


class NoPositionError(NoOffsetForPartitionError, OffsetOutOfRangeError):
    """No position and ``auto_offset_reset='none'``: kafka-python's
    NoOffsetForPartitionError (also an OffsetOutOfRangeError, which labkit raised
    before, so either ``except`` works)."""


class OffsetLookup:
    """Blocking ``list_offsets`` calls: earliest (-2), latest (-1) or by timestamp.

    Each partition's leader answers for it (cluster mode, client/routing.py). A partition
    answered NOT_LEADER_OR_FOLLOWER / LEADER_NOT_AVAILABLE, or whose leader's connection
    is lost, is asked again after ``retry_backoff_ms`` at the leader fresh metadata names,
    until the timeout (Kafka's consumer does the same). A client that has not seen
    metadata yet does not know it talks to a cluster: its first request goes to the
    bootstrap broker, whose NOT_LEADER_OR_FOLLOWER answers say so (one broker: nothing
    extra is asked).
    """

    EARLIEST = -2
    LATEST = -1
    RETRIABLE = frozenset((NotLeaderForPartitionError.errno, LeaderNotAvailableError.errno))

    def __init__(
        self,
        transport: Any,
        retry_backoff_ms: float = 100,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self._transport = transport
        self._backoff = retry_backoff_ms / 1000.0
        self._clock = getattr(transport, "clock", REAL_CLOCK)
        self._sleep = sleep  # the backoff (tests advance a FakeClock)

    def lookup(
        self, targets: dict[TopicPartition, int], timeout_ms: float | None = None
    ) -> dict[TopicPartition, tuple[int, int]]:
        """{tp: timestamp} -> {tp: (offset, timestamp)}; offset -1 when no record is that late.

        Raises UnknownTopicOrPartitionError (and other broker errors) per partition; the
        last NOT_LEADER_OR_FOLLOWER / LEADER_NOT_AVAILABLE / KafkaConnectionError when no
        leader answered within ``timeout_ms`` (default: the request timeout).
        """
        if not targets:
            return {}
        transport = self._transport
        budget_ms = timeout_ms
        if budget_ms is None:
            budget_ms = getattr(transport, "request_timeout", 30.0) * 1000.0
        deadline = self._clock.monotonic() + budget_ms / 1000.0
        out: dict[TopicPartition, tuple[int, int]] = {}
        pending = dict(targets)
        routes = getattr(transport, "routes", None)
        refresh_first = routes is not None and routes.multi and _leaderless(routes, pending)
        while True:
            if refresh_first:
                self._refresh_metadata(pending, deadline)
            retry: dict[TopicPartition, int] = {}
            last: KafkaError | None = None
            for node, group in self._split(pending):
                left_ms = max(1.0, (deadline - self._clock.monotonic()) * 1000.0)
                asked = {tp: pending[tp] for tp in group}
                try:
                    last = self._ask(node, asked, left_ms, out) or last
                except KafkaConnectionError as exc:  # the leader is gone: metadata names another
                    if node is ANY_BROKER:
                        raise
                    last = exc
                retry.update({tp: ts for tp, ts in asked.items() if tp not in out})
            if not retry:
                return out
            if self._clock.monotonic() + self._backoff >= deadline:
                assert last is not None
                raise last
            self._sleep(self._backoff)
            pending = retry
            refresh_first = True

    def _split(self, pending: dict[TopicPartition, int]) -> list:
        routes = getattr(self._transport, "routes", None)
        if routes is None:
            return [(ANY_BROKER, list(pending))]
        return routes.split(pending, _tp_key)

    def _refresh_metadata(self, pending: dict[TopicPartition, int], deadline: float) -> None:
        """Ask metadata for the pending partitions' topics: the transport's routes learn
        the brokers and the leaders from the answer."""
        left_ms = max(1.0, (deadline - self._clock.monotonic()) * 1000.0)
        topics = sorted({tp.topic for tp in pending})
        self._transport.call("metadata", request_header(topics, False), timeout_ms=left_ms)

    def _ask(
        self, node: int | None, targets: dict, timeout_ms: float, out: dict
    ) -> KafkaError | None:
        """One list_offsets at ``node``: answers go to ``out``; returns the error of a
        partition to ask again elsewhere (its leader moved), raises any other."""
        header = {"partitions": [[tp.topic, tp.partition, int(ts)] for tp, ts in targets.items()]}
        routed = {} if node is ANY_BROKER else {"node": node}
        response = self._transport.call("list_offsets", header, timeout_ms=timeout_ms, **routed)
        elsewhere: KafkaError | None = None
        for row in rows(ListedOffset, response.header.get("partitions", []), "list_offsets"):
            tp = TopicPartition(row.topic, row.partition)
            if tp not in targets:
                continue  # not asked here: not this request's answer to give
            if row.error in self.RETRIABLE:
                elsewhere = for_code(row.error)(
                    f"list_offsets for {tp}: no leader answered for it (the cluster may be "
                    "electing one); see `labkit topics --describe --unavailable-partitions`"
                )
                continue
            if row.error:
                cls = for_code(row.error)
                if cls is UnknownTopicOrPartitionError:
                    raise cls(
                        f"partition {row.partition} of topic '{row.topic}' does not exist "
                        "(check the topic name and its partition count)"
                    )
                raise cls(f"list_offsets for {tp} failed")
            out[tp] = (row.offset, row.timestamp)
        missing = set(targets) - set(out)
        if missing and elsewhere is None:
            raise KafkaError(f"the broker did not answer list_offsets for {sorted(missing)}")
        return elsewhere


def _leaderless(routes: Any, targets: dict[TopicPartition, int]) -> bool:
    return any(routes.leader(tp.topic, tp.partition) is ANY_BROKER for tp in targets)


def _tp_key(tp: TopicPartition) -> TopicPartition:
    return tp


class PositionResolver:
    """Resolves the positions a consumer lacks (see the module docstring)."""

    def __init__(
        self, subscription: SubscriptionState, offsets: OffsetLookup, group_id: str | None
    ):
        self._subscription = subscription
        self._offsets = offsets
        self._group_id = group_id

    def reset_offsets_if_needed(
        self, coordinator: Coordinator, timeout_ms: float | None = None
    ) -> None:
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
            committed = coordinator.fetch_committed_offsets(need_committed, timeout_ms)
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
        if starts and coordinator.group_id is not None:
            log_start_positions(coordinator.group_id, starts, sub.default_reset)

    def _committed_in_log(
        self, committed: dict[TopicPartition, int], timeout_ms: float | None
    ) -> dict[TopicPartition, int]:
        """The committed offsets that are still in the log. One below the log start
        (retention deleted those records) falls back to ``auto_offset_reset``, with
        a warning; with 'none' it raises OffsetOutOfRangeError."""
        if not committed:
            return {}
        found = self._offsets.lookup({tp: OffsetLookup.EARLIEST for tp in committed}, timeout_ms)
        starts = {tp: offset for tp, (offset, _) in found.items()}
        usable = {}
        for tp, offset in committed.items():
            log_start = starts.get(tp, 0)
            if offset >= log_start:
                usable[tp] = offset
                continue
            reset = self._subscription.default_reset
            if reset == "none":
                raise OffsetOutOfRangeError(
                    f"group '{self._group_id}' committed offset {offset} for {tp}, but "
                    f"the log now starts at {log_start} (retention deleted the records in "
                    "between) and auto_offset_reset='none'. Use 'earliest' or 'latest', or "
                    "seek() to an offset."
                )
            log.warning(
                "group '%s': the committed offset %d of %s-%d is gone (retention "
                "deleted the records before offset %d); starting at the %s offset "
                "(auto_offset_reset='%s')",
                self._group_id,
                offset,
                tp.topic,
                tp.partition,
                log_start,
                reset,
                reset,
            )
            self._subscription.assignment[tp].request_reset(reset)
        return usable


def log_start_positions(
    group_id: str, starts: dict[TopicPartition, tuple[int, bool]], auto_offset_reset: str
) -> None:
    """Log where newly assigned partitions start: ``{tp: (offset, from_committed)}``.

    Warns when committed offsets were used, because students expect
    ``auto_offset_reset='earliest'`` to re-read a topic and it does not.
    """
    committed = {tp: off for tp, (off, used) in starts.items() if used}
    if committed:
        where = ", ".join(
            f"{tp.topic}-{tp.partition} at {off}" for tp, off in sorted(committed.items())
        )
        log.warning(
            "group '%s': starting %s from the offsets this group committed earlier; "
            "auto_offset_reset='%s' applies only to partitions without a committed "
            "offset. To read from the beginning again, use a new group_id or call "
            "seek_to_beginning().",
            group_id,
            where,
            auto_offset_reset,
        )
    fresh = sorted(tp for tp, (_, used) in starts.items() if not used)
    if fresh:
        log.info(
            "group '%s': %s had no committed offset; starting at the %s offset "
            "(auto_offset_reset='%s')",
            group_id,
            _names(fresh),
            auto_offset_reset,
            auto_offset_reset,
        )


def _names(tps) -> str:
    return ", ".join(f"{tp.topic}-{tp.partition}" for tp in sorted(tps)) or "none"
