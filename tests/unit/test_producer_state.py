"""Idempotent producers' state: Kafka's duplicate, gap, epoch and wrap rules, no sockets."""

from __future__ import annotations

import pytest

from labkit.errors import InvalidProducerEpochError, OutOfOrderSequenceNumberError
from labkit.log.producer_journal import ENTRY, PartitionProducers
from labkit.log.producer_state import (
    BATCHES_TO_RETAIN,
    MAX_SEQUENCE,
    ProducerStateTable,
    last_sequence,
)
from labkit.testing import FakeClock
from labkit.testing.processes import run_with_file_size_limit

PID = 4000


def append(table: ProducerStateTable, seq: int, count: int, base: int, epoch: int = 0, now=0):
    """What the broker does for one batch: check, then record if it is new."""
    last = last_sequence(seq, count - 1)
    duplicate = table.check(PID, epoch, seq, last, "t-0")
    if duplicate is None:
        table.record(PID, epoch, seq, last, base, now)
    return duplicate


def test_a_retried_batch_within_the_window_is_answered_with_its_first_offset():
    table = ProducerStateTable()
    for i in range(BATCHES_TO_RETAIN):
        assert append(table, seq=i * 10, count=10, base=100 + i * 10) is None
    for i in range(BATCHES_TO_RETAIN):  # every one of the last 5 is recognised
        assert append(table, seq=i * 10, count=10, base=-1) == 100 + i * 10


def test_a_batch_older_than_the_window_is_out_of_order_not_a_duplicate():
    table = ProducerStateTable()
    for i in range(BATCHES_TO_RETAIN + 1):
        append(table, seq=i, count=1, base=i)
    with pytest.raises(OutOfOrderSequenceNumberError, match="more than 5 newer"):
        append(table, seq=0, count=1, base=99)


def test_a_gap_is_out_of_order_and_names_the_expected_sequence():
    table = ProducerStateTable()
    append(table, seq=0, count=5, base=0)
    with pytest.raises(OutOfOrderSequenceNumberError, match=r"sent sequence 6 .*expected is 5"):
        append(table, seq=6, count=1, base=5)
    assert append(table, seq=5, count=1, base=5) is None


def test_a_batch_overlapping_a_retained_one_is_not_a_duplicate():
    table = ProducerStateTable()
    append(table, seq=0, count=5, base=0)
    with pytest.raises(OutOfOrderSequenceNumberError):
        append(table, seq=0, count=3, base=5)


def test_an_older_epoch_is_fenced_and_a_newer_one_starts_at_zero():
    table = ProducerStateTable()
    append(table, seq=0, count=2, base=0, epoch=3)
    with pytest.raises(InvalidProducerEpochError, match=r"epoch 2 .* current epoch 3"):
        append(table, seq=2, count=1, base=2, epoch=2)
    with pytest.raises(OutOfOrderSequenceNumberError, match="must start at sequence 0"):
        append(table, seq=2, count=1, base=2, epoch=4)
    assert append(table, seq=0, count=1, base=2, epoch=4) is None
    # the old epoch's batches are forgotten: its seq 0 is not a duplicate any more
    with pytest.raises(InvalidProducerEpochError):
        append(table, seq=0, count=2, base=3, epoch=3)
    assert append(table, seq=0, count=1, base=-1, epoch=4) == 2


def test_an_unknown_producer_is_accepted_at_any_sequence_as_kafka_3_does():
    table = ProducerStateTable()
    assert append(table, seq=12345, count=1, base=0, epoch=7) is None
    with pytest.raises(OutOfOrderSequenceNumberError):
        append(table, seq=12347, count=1, base=1, epoch=7)


def test_sequences_wrap_after_two_to_the_31_minus_one():
    assert last_sequence(MAX_SEQUENCE - 1, 3) == 1  # max-1, max, 0, 1
    assert last_sequence(MAX_SEQUENCE, 0) == MAX_SEQUENCE
    table = ProducerStateTable()
    append(table, seq=MAX_SEQUENCE - 4, count=5, base=0)  # ends at MAX
    assert append(table, seq=0, count=3, base=5) is None
    assert append(table, seq=0, count=3, base=-1) == 5
    assert append(table, seq=MAX_SEQUENCE - 4, count=5, base=-1) == 0


def test_expiry_forgets_idle_producers_only():
    clock = FakeClock()
    table = ProducerStateTable()
    table.record(1, 0, 0, 0, 0, clock.time_ms())
    clock.advance(10)
    table.record(2, 0, 0, 0, 1, clock.time_ms())
    clock.advance(50)
    assert table.expire(clock.time_ms(), expiration_ms=60_000) == 1
    assert set(table.producers) == {2}
    # the expired producer is unknown again: accepted at any sequence
    assert table.check(1, 0, 77, 77, "t-0") is None


def test_journal_replays_after_a_restart_and_drops_batches_past_the_log_end(tmp_path):
    state = PartitionProducers.open(tmp_path, recovered_end=0)
    for i in range(8):
        state.record(PID, 0, i, i, 10 + i, 1000)
    state.close()
    assert (tmp_path / "producer-state-00000000000000000000.journal").stat().st_size == 8 * 38
    again = PartitionProducers.open(tmp_path, recovered_end=17)  # the batch at 17 was lost
    assert again.check(PID, 0, 6, 6) == 16
    assert again.check(PID, 0, 2, 2) == 12  # the window: sequences 2..6
    with pytest.raises(OutOfOrderSequenceNumberError):
        again.check(PID, 0, 1, 1)
    assert again.check(PID, 0, 7, 7) is None  # 7's entry was dropped: it is the next one


def test_a_torn_journal_tail_is_ignored_and_writes_go_to_a_new_generation(tmp_path):
    state = PartitionProducers.open(tmp_path, recovered_end=0)
    state.record(PID, 0, 0, 4, 0, 1000)
    state.record(PID, 0, 5, 9, 5, 1000)
    state.close()
    journal = tmp_path / "producer-state-00000000000000000000.journal"
    journal.write_bytes(journal.read_bytes()[: ENTRY.size + 20])  # half of the second entry
    again = PartitionProducers.open(tmp_path, recovered_end=100)
    assert again.check(PID, 0, 0, 4) == 0
    assert again.check(PID, 0, 5, 9) is None
    again.record(PID, 0, 5, 9, 5, 1000)
    again.close()
    assert (tmp_path / "producer-state-00000000000000000001.journal").exists()
    assert PartitionProducers.open(tmp_path, recovered_end=100).check(PID, 0, 5, 9) == 5


def test_a_long_journal_folds_into_a_snapshot_with_the_same_state(tmp_path, monkeypatch):
    monkeypatch.setattr("labkit.log.producer_journal.COMPACT_BYTES", ENTRY.size * 10)
    state = PartitionProducers.open(tmp_path, recovered_end=0)
    for pid in range(3):
        for seq in range(6):
            state.record(pid, 0, seq, seq, pid * 100 + seq, 1000)
    state.sync()  # 18 entries > 10: rolls and snapshots
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "producer-state-00000000000000000001.journal",
        "producer-state-00000000000000000001.snapshot",
    ]
    assert (tmp_path / names[1]).stat().st_size == 3 * BATCHES_TO_RETAIN * ENTRY.size
    state.record(0, 0, 6, 6, 6, 1000)
    state.close()
    again = PartitionProducers.open(tmp_path, recovered_end=1000)
    assert again.check(0, 0, 6, 6) == 6
    assert again.check(2, 0, 1, 1) == 201
    with pytest.raises(OutOfOrderSequenceNumberError):
        again.check(2, 0, 0, 0)  # sixth-newest: outside the window, also after the snapshot


def test_dropped_entries_stay_dropped_after_the_log_grows_past_them(tmp_path):
    state = PartitionProducers.open(tmp_path, recovered_end=0)
    for i in range(8):
        state.record(PID, 0, i, i, 10 + i, 1000)
    state.close()
    again = PartitionProducers.open(tmp_path, recovered_end=17)  # the batch at 17 was lost
    again.close()
    # other producers' batches then fill offsets 17.. and the broker restarts again
    third = PartitionProducers.open(tmp_path, recovered_end=100)
    assert third.check(PID, 0, 6, 6) == 16
    assert third.check(PID, 0, 7, 7) is None  # not "a duplicate at 17": that batch is lost


def test_a_short_journal_write_rolls_and_later_entries_survive_a_restart(tmp_path):
    """A full disk (RLIMIT_FSIZE in a child makes it real) writes part of the second entry.
    The broker reports it, and the third entry goes to a new journal: loading stops at the
    torn entry of the first, so one written after it would be lost (and read misaligned)."""
    out = run_with_file_size_limit(
        ENTRY.size + 20,
        "import sys, pathlib\n"
        "from labkit.errors import KafkaStorageError\n"
        "from labkit.log.producer_journal import PartitionProducers\n"
        "state = PartitionProducers.open(pathlib.Path(sys.argv[1]), recovered_end=0)\n"
        "state.record(4000, 0, 0, 4, 0, 1000)\n"
        "try:\n"
        "    state.record(4000, 0, 5, 9, 5, 1000)\n"
        "except KafkaStorageError as exc:\n"
        "    print('refused:', exc)\n"
        "state.record(4000, 0, 10, 14, 10, 1000)\n"
        "state.close()\n",
        str(tmp_path),
    )
    assert "short write" in out
    assert "free disk space" in out
    again = PartitionProducers.open(tmp_path, recovered_end=100)
    assert again.check(PID, 0, 0, 4) == 0
    assert again.check(PID, 0, 10, 14) == 10  # the entry after the torn one is kept
