"""The durable offset store: reopen, torn tails, compaction, kill -9."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

from labkit.broker.offsets import DIR_NAME, FILE_NAME, OffsetStore
from labkit.testing import FakeClock


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def open_store(tmp_path, clock):
    """OffsetStore(tmp_path, clock), closed at the end of the test (its file stays open
    for appends until then: an unclosed one is a ResourceWarning, an error here)."""
    stores = []

    def open_() -> OffsetStore:
        store = OffsetStore(tmp_path, clock)
        stores.append(store)
        return store

    yield open_
    for store in stores:
        store.close()


def log_path(tmp_path):
    return tmp_path / DIR_NAME / FILE_NAME


def test_commit_fetch_and_reopen_keep_offsets_and_metadata(tmp_path, clock, open_store):
    store = open_store()
    store.commit("g", [("t", 0, 10, "batch-7"), ("t", 1, 20, "")])
    clock.advance(1)
    store.commit("g", [("t", 0, 15, "batch-8")])
    store.commit("other", [("u", 0, 3, "")])
    store.close()

    store = open_store()
    got = store.fetch("g")
    assert {tp: (c.offset, c.metadata) for tp, c in got.items()} == {
        ("t", 0): (15, "batch-8"),
        ("t", 1): (20, ""),
    }
    assert got[("t", 0)].commit_ms == clock.time_ms()
    assert store.fetch("g", [("t", 1), ("t", 9)]) == {("t", 1): got[("t", 1)]}
    assert store.groups() == ["g", "other"]
    assert store.fetch("nobody") == {}
    store.close()


def test_a_torn_last_record_is_cut_off_and_earlier_commits_survive(tmp_path, clock, open_store):
    store = open_store()
    store.commit("g", [("t", 0, 10, "")])
    good_size = log_path(tmp_path).stat().st_size
    store.commit("g", [("t", 0, 11, "")])
    store.close()
    full = log_path(tmp_path).read_bytes()
    log_path(tmp_path).write_bytes(full[:-3])  # the broker died mid-write

    store = open_store()
    assert store.truncated_bytes == len(full) - 3 - good_size
    assert store.fetch("g")[("t", 0)].offset == 10
    assert log_path(tmp_path).stat().st_size == good_size
    store.commit("g", [("t", 0, 12, "")])  # appending after the cut works
    store.close()
    assert open_store().fetch("g")[("t", 0)].offset == 12


def test_a_record_with_a_bad_crc_costs_only_that_record(tmp_path, clock, open_store):
    store = open_store()
    store.commit("g", [("t", 0, 1, "")])
    first = log_path(tmp_path).stat().st_size
    store.commit("g", [("t", 0, 2, "")])
    store.commit("g", [("t", 0, 3, "")])
    store.close()
    data = bytearray(log_path(tmp_path).read_bytes())
    data[first + 10] ^= 0xFF  # flip a byte inside the second record's payload
    log_path(tmp_path).write_bytes(bytes(data))
    store = open_store()
    assert store.fetch("g")[("t", 0)].offset == 3  # the third commit is after the damage
    assert store.damaged_records == 1
    assert store.truncated_bytes == 0


def test_garbage_file_opens_empty(tmp_path, clock, open_store):
    log_path(tmp_path).parent.mkdir(parents=True)
    log_path(tmp_path).write_bytes(b"\xff" * 50)
    store = open_store()
    assert store.groups() == []
    assert store.truncated_bytes == 50


def test_reopen_compacts_overwritten_offsets(tmp_path, clock, open_store):
    store = open_store()
    for i in range(200):
        store.commit("g", [("t", 0, i, ""), ("t", 1, i, "")])
    store.close()
    before = log_path(tmp_path).stat().st_size
    store = open_store()
    after = log_path(tmp_path).stat().st_size
    assert after < before / 50
    assert store.fetch("g")[("t", 1)].offset == 199
    store.close()
    assert open_store().fetch("g")[("t", 0)].offset == 199


def test_a_left_over_compaction_file_is_ignored(tmp_path, clock, open_store):
    store = open_store()
    store.commit("g", [("t", 0, 5, "")])
    store.close()
    tmp = log_path(tmp_path).with_suffix(".log.tmp")
    tmp.write_bytes(b"half-written")
    store = open_store()
    assert not tmp.exists()
    assert store.fetch("g")[("t", 0)].offset == 5


def test_an_unchanged_commit_is_not_written_again(tmp_path, clock, open_store):
    store = open_store()
    store.commit("g", [("t", 0, 5, "m")])
    size = log_path(tmp_path).stat().st_size
    store.commit("g", [("t", 0, 5, "m")])
    assert log_path(tmp_path).stat().st_size == size
    store.commit("g", [("t", 0, 5, "other metadata")])
    assert log_path(tmp_path).stat().st_size > size


def test_deleting_a_group_is_durable(tmp_path, clock, open_store):
    store = open_store()
    store.commit("g", [("t", 0, 5, "")])
    store.commit("keep", [("t", 0, 6, "")])
    assert store.delete_group("g") is True
    assert store.delete_group("g") is False
    store.close()
    store = open_store()
    assert store.groups() == ["keep"]


def test_compaction_while_running_keeps_the_live_state(tmp_path, clock, monkeypatch, open_store):
    monkeypatch.setattr("labkit.broker.offsets._COMPACT_MIN_BYTES", 1000)
    store = open_store()
    for i in range(100):
        store.commit("g", [("t", 0, i, "")])
    big = log_path(tmp_path).stat().st_size
    store.maybe_compact()
    assert log_path(tmp_path).stat().st_size < big / 10
    store.commit("g", [("t", 1, 7, "")])
    store.close()
    got = open_store().fetch("g")
    assert (got[("t", 0)].offset, got[("t", 1)].offset) == (99, 7)


def test_a_commit_survives_kill_9_of_the_process(tmp_path, open_store):
    script = textwrap.dedent(f"""
        import os, signal, sys
        from labkit.broker.offsets import OffsetStore
        from labkit._clock import REAL_CLOCK
        store = OffsetStore({str(tmp_path)!r}, REAL_CLOCK)
        store.commit("g", [("t", 0, 42, "acked")])
        print("committed", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == -signal.SIGKILL
    assert "committed" in proc.stdout
    got = open_store().fetch("g")[("t", 0)]
    assert (got.offset, got.metadata) == (42, "acked")


def test_commit_after_close_raises_oserror(tmp_path, clock, open_store):
    store = open_store()
    store.close()
    with pytest.raises(OSError, match="the offset store is closed"):
        store.commit("g", [("t", 0, 1, "")])
    assert store.fetch("g") == {}  # memory is not ahead of the disk
