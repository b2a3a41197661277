"""Idempotent producers' state of one partition: Kafka's sequence checks, in memory.

Theory of operation
-------------------
An idempotent producer (KIP-98) numbers the batches it sends to each partition: a
batch carries ``(producer_id, producer_epoch, base_sequence)`` and its records take
the sequences ``base_sequence .. last_sequence`` (wrapping from 2**31-1 to 0). For
each producer id this table keeps its epoch, the time of its last append and the
last ``BATCHES_TO_RETAIN`` (5, Kafka's ``NUM_BATCHES_TO_RETAIN``) appended batches'
``(first sequence, last sequence, base offset)``. ``check`` decides what to do with
a new batch, as Apache Kafka's ``ProducerStateEntry.findDuplicateBatch`` and
``ProducerAppendInfo.checkProducerEpoch/checkSequence`` (3.x, 4.x) do:

- same epoch and exactly the sequence range of a retained batch: a duplicate (the
  producer retried a batch the broker had appended): answer its original base
  offset, append nothing;
- an epoch older than the producer's: INVALID_PRODUCER_EPOCH (47);
- a newer epoch: it must start at sequence 0 (the producer reset its sequences),
  else OUT_OF_ORDER_SEQUENCE_NUMBER (45);
- the same epoch: the batch must start right after the last one (last + 1, or 0
  after 2**31-1), else OUT_OF_ORDER_SEQUENCE_NUMBER (a gap, or a batch older than
  the window);
- a producer id the table does not know (new here, expired, or never seen since its
  state was lost): accepted at any sequence, as Kafka does since KIP-360 (2.5) --
  "If there is no current producer epoch ... accept writes with any sequence
  number". Kafka before 2.5 answered UNKNOWN_PRODUCER_ID (59) when the sequence was
  not 0; that code is never sent here.

``record`` is called after the batch was appended (and when state is replayed from
disk, labkit/log/producer_journal.py): a new epoch forgets the old epoch's batches.
``expire`` forgets producers idle for ``producer.id.expiration.ms`` (Kafka's default:
1 day), which bounds the memory: a producer that comes back afterwards is unknown,
accepted at any sequence.

Pure: no I/O, no clock (callers pass ``now``), no locks (one thread at a time; the
journal guards it).
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

from labkit.errors import InvalidProducerEpochError, OutOfOrderSequenceNumberError

BATCHES_TO_RETAIN = 5  # Kafka's ProducerStateEntry.NUM_BATCHES_TO_RETAIN
MAX_SEQUENCE = 2**31 - 1
NO_PRODUCER_ID = -1


def last_sequence(base_sequence: int, last_offset_delta: int) -> int:
    """The sequence of a batch's last record (Kafka's DefaultRecordBatch.incrementSequence)."""
    if base_sequence > MAX_SEQUENCE - last_offset_delta:
        return last_offset_delta - (MAX_SEQUENCE - base_sequence) - 1
    return base_sequence + last_offset_delta


def in_sequence(last_seq: int, next_seq: int) -> bool:
    return next_seq == last_seq + 1 or (next_seq == 0 and last_seq == MAX_SEQUENCE)


class RetainedBatch(NamedTuple):
    first_seq: int
    last_seq: int
    base_offset: int


class Producer:
    """One producer id's state in one partition."""

    __slots__ = ("batches", "epoch", "last_ms")

    def __init__(self, epoch: int, last_ms: int):
        self.epoch = epoch
        self.last_ms = last_ms
        self.batches: deque[RetainedBatch] = deque(maxlen=BATCHES_TO_RETAIN)

    @property
    def last_seq(self) -> int | None:
        return self.batches[-1].last_seq if self.batches else None


class ProducerStateTable:
    """producer id -> Producer for one partition (see the module docstring)."""

    def __init__(self) -> None:
        self.producers: dict[int, Producer] = {}

    def __len__(self) -> int:
        return len(self.producers)

    def check(
        self, producer_id: int, epoch: int, first_seq: int, last_seq: int, where: str
    ) -> int | None:
        """The base offset of the retained batch this one duplicates, or None: append it.

        Raises InvalidProducerEpochError, OutOfOrderSequenceNumberError (``where``
        names the partition in their messages)."""
        state = self.producers.get(producer_id)
        if state is None:
            return None  # unknown: any sequence (KIP-360)
        if epoch == state.epoch:
            for batch in state.batches:
                if batch.first_seq == first_seq and batch.last_seq == last_seq:
                    return batch.base_offset
        if epoch < state.epoch:
            raise InvalidProducerEpochError(
                f"producer {producer_id} sent epoch {epoch} to {where}, older than its "
                f"current epoch {state.epoch}: another producer with the same id took "
                "over (or this one was restarted); this producer must stop"
            )
        if epoch > state.epoch:
            if first_seq != 0:
                raise OutOfOrderSequenceNumberError(
                    f"producer {producer_id} started epoch {epoch} on {where} at sequence "
                    f"{first_seq}; a new epoch must start at sequence 0"
                )
            return None
        last = state.last_seq
        if last is not None and not in_sequence(last, first_seq):
            raise OutOfOrderSequenceNumberError(
                f"producer {producer_id} (epoch {epoch}) sent sequence {first_seq} to "
                f"{where}, but the next one expected is {0 if last == MAX_SEQUENCE else last + 1}"
                " (a batch went missing, or a retry came after more than "
                f"{BATCHES_TO_RETAIN} newer batches)"
            )
        return None

    def record(
        self,
        producer_id: int,
        epoch: int,
        first_seq: int,
        last_seq: int,
        base_offset: int,
        now_ms: int,
    ) -> None:
        """Remember an appended batch (or one replayed from disk)."""
        state = self.producers.get(producer_id)
        if state is None:
            state = self.producers[producer_id] = Producer(epoch, now_ms)
        elif epoch != state.epoch:
            state.epoch = epoch
            state.batches.clear()
        state.last_ms = max(state.last_ms, now_ms)
        state.batches.append(RetainedBatch(first_seq, last_seq, base_offset))

    def expire(self, now_ms: int, expiration_ms: int) -> int:
        """Forget producers idle for ``expiration_ms``; returns how many."""
        idle = [pid for pid, s in self.producers.items() if now_ms - s.last_ms >= expiration_ms]
        for pid in idle:
            del self.producers[pid]
        return len(idle)

    def rows(self) -> list[tuple[int, int, int, int, int, int]]:
        """Every retained batch as ``record``'s arguments, oldest first per producer: a
        replay of these rebuilds this table (what a snapshot holds)."""
        rows = []
        for pid, state in self.producers.items():
            if not state.batches:  # never: a producer is created with a batch
                continue
            for batch in state.batches:
                rows.append(
                    (
                        pid,
                        state.epoch,
                        batch.first_seq,
                        batch.last_seq,
                        batch.base_offset,
                        state.last_ms,
                    )
                )
        return rows
