"""Decoded records waiting for poll(), per partition (consumer thread).

Theory of operation
-------------------
``add`` appends a partition's newly decoded records behind the ones not handed out
yet; each ``Buffer`` remembers the partition's ``epoch`` it was fetched for (a seek
or reset bumps the epoch and ``take`` drops stale buffers). ``take`` hands out up to
``max_records`` records, moving the positions past them (poll) or leaving that to
the caller (iteration); records below a position (already seen) are skipped.

Poison messages: when a key/value deserializer raises (fetch_decode.py), the
records of the partition before the bad one are kept and decoding stops there; the
buffer remembers the failure (``Buffer.poison``, the partition is in ``poisoned``)
and no further fetch of the partition goes out. Once poll() has returned the good
records, the next poll() raises the deserializer's own exception, as kafka-python
does (so ``except ValueError`` in course code still works), with a note naming
topic, partition and offset and the attributes ``topic_partition``, ``offset`` and
``what``, and drops the buffer. The position stays at the bad record: a later poll()
fetches it again and raises again, until the app seeks past it. A corrupt batch
takes the same path and raises its CorruptRecordError.

``buffers`` and ``poisoned`` are shared with the Fetcher, which reads them when it
plans fetches (consumer thread) and, as an estimate, when it prefetches (I/O thread).
"""

from __future__ import annotations

from bisect import bisect_left

from labkit.client.poison import annotate_poison
from labkit.client.structs import TopicPartition
from labkit.client.subscription import SubscriptionState


class Buffer:
    """Decoded records of one partition waiting to be returned by poll(); ``poison``:
    (offset, exception, 'key'/'value'/'batch') of the record after them that failed to
    deserialize or is in a corrupt batch, or None."""

    __slots__ = ("records", "index", "epoch", "poison")

    def __init__(self, records: list, epoch: int):
        self.records = records
        self.index = 0
        self.epoch = epoch
        self.poison: tuple[int, BaseException, str] | None = None

    def remaining(self) -> int:
        return len(self.records) - self.index


class RecordBuffers:
    def __init__(self, subscription: SubscriptionState):
        self._subscription = subscription
        self.buffers: dict[TopicPartition, Buffer] = {}
        self.poisoned: set[TopicPartition] = set()  # buffers that end at a poison message

    def add(
        self,
        tp: TopicPartition,
        epoch: int,
        records: list,
        poison: tuple[int, BaseException, str] | None,
    ) -> None:
        """Buffer decoded ``records`` of ``tp`` fetched for ``epoch`` behind the ones
        not handed out yet, and the poison decoding stopped at (if any)."""
        if records or poison is not None:
            buf = self.buffers.get(tp)
            if buf is not None and buf.epoch == epoch and buf.remaining():
                buf.records = buf.records[buf.index :] + records
                buf.index = 0
            else:
                buf = self.buffers[tp] = Buffer(records, epoch)
            if poison is not None:
                buf.poison = poison
                self.poisoned.add(tp)

    def take(
        self, max_records: int, update_offsets: bool, allowed: set[TopicPartition] | None
    ) -> dict[TopicPartition, list]:
        """Up to ``max_records`` buffered records, grouped by partition.

        With ``update_offsets`` the positions move past them (poll); without, the
        caller moves them record by record (iteration). Partitions not in
        ``allowed`` (when given) keep their records buffered. Raises a poison message's
        exception once the records before it were handed out.
        """
        if self.poisoned:
            self._raise_poison(allowed)
        out: dict[TopicPartition, list] = {}
        room = max_records
        assignment = self._subscription.assignment
        for tp, buf in list(self.buffers.items()):
            if room <= 0:
                break
            st = assignment.get(tp)
            if st is None or buf.epoch != st.epoch:
                del self.buffers[tp]
                continue
            if st.paused or not buf.remaining() or (allowed is not None and tp not in allowed):
                continue
            start = buf.index
            end = min(len(buf.records), start + room)
            chunk = buf.records[start:end]
            if chunk[0].offset < (st.position or 0):  # skip what the user already saw
                keep = bisect_left([r.offset for r in chunk], st.position)
                chunk = chunk[keep:]
            buf.index = end
            if buf.index >= len(buf.records) and buf.poison is None:
                del self.buffers[tp]
            if not chunk:
                continue
            out[tp] = chunk
            room -= len(chunk)
            if update_offsets:
                st.position = chunk[-1].offset + 1
        return out

    def _raise_poison(self, allowed: set[TopicPartition] | None) -> None:
        """Raise the deserializer's exception for a partition whose good records were all
        handed out and whose next record failed to deserialize (dropping its buffer, so
        the record is fetched, and fails, again until the app seeks past it)."""
        assignment = self._subscription.assignment
        for tp in list(self.poisoned):
            buf = self.buffers.get(tp)
            st = assignment.get(tp)
            if buf is None or buf.poison is None or st is None or buf.epoch != st.epoch:
                self.poisoned.discard(tp)  # sought, reset or revoked since
                continue
            if buf.remaining() or st.paused or (allowed is not None and tp not in allowed):
                continue
            self.poisoned.discard(tp)
            del self.buffers[tp]
            offset, error, what = buf.poison
            if what == "batch":
                raise error  # a corrupt batch: the error says it all (fetch_decode.corrupt_batch)
            annotate_poison(
                error,
                tp,
                offset,
                what,
                "poll() returned the records before it and stays at this one.",
            )
            raise error
