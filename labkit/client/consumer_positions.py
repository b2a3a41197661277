"""``KafkaConsumer``'s positions and offsets: seek, position, offsets lookups, pause.

kafka-python's methods for where a consumer reads (``position``, ``highwater``,
``seek``, ``seek_to_beginning``/``seek_to_end``, ``beginning_offsets``,
``end_offsets``, ``offsets_for_times``, ``pause``/``resume``/``paused``), mixed into
``KafkaConsumer`` (consumer.py) as ``GroupAdminMixin`` is into the admin client. They
change the ``SubscriptionState`` and drop the fetcher's buffered data where a
position moved; positions still missing are resolved by
``Fetcher.reset_offsets_if_needed`` (positions.py). Application thread only, like
the consumer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from labkit.client.positions import OffsetLookup
from labkit.client.structs import OffsetAndTimestamp, TopicPartition
from labkit.client.subscription import SubscriptionState


class PositionsMixin:
    """Position and offset methods of ``KafkaConsumer`` (see the module docstring)."""

    _subscription: SubscriptionState
    _fetcher: Any
    _offsets: OffsetLookup
    _coordinator: Any
    _discard_iterator: Callable[[], None]  # KafkaConsumer's: drop a half-read poll

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
            self._fetcher.reset_offsets_if_needed(self._coordinator, timeout_ms)
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
