"""LeaderEpochCache: Kafka's assign / truncate / endOffsetFor rules and its checkpoint file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from labkit.log.leader_epochs import (
    CHECKPOINT,
    UNDEFINED_EPOCH,
    UNDEFINED_EPOCH_OFFSET,
    EpochEntry,
    LeaderEpochCache,
    parse,
    render,
)


def cache_with(tmp_path, *pairs):
    cache = LeaderEpochCache.open(tmp_path, 10**9)
    for epoch, start in pairs:
        cache.assign(epoch, start)
    return cache


def test_the_file_is_kafkas_checkpoint_format(tmp_path):
    cache = cache_with(tmp_path, (0, 0), (3, 150))
    cache.save()
    assert (tmp_path / CHECKPOINT).read_bytes() == b"0\n2\n0 0\n3 150\n"
    assert parse(render([EpochEntry(1, 5)])) == [(1, 5)]


def test_end_offset_for_answers_as_offsets_for_leader_epoch(tmp_path):
    cache = cache_with(tmp_path, (1, 10), (3, 20), (5, 40))
    leo = 55
    assert cache.end_offset_for(5, leo) == (5, 55)  # the latest epoch ends at the log end
    assert cache.end_offset_for(3, leo) == (3, 40)  # ends where the next one starts
    assert cache.end_offset_for(4, leo) == (3, 40)  # unknown: the largest known below it
    assert cache.end_offset_for(0, leo) == (0, 10)  # older than all: the first start
    assert cache.end_offset_for(6, leo) == (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)
    assert cache.end_offset_for(-1, leo) == (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)
    assert LeaderEpochCache.open(tmp_path / "none", 0).end_offset_for(0, 0) == (-1, -1)


def test_assign_ignores_a_repeat_and_replaces_a_diverging_tail(tmp_path):
    cache = cache_with(tmp_path, (1, 10), (2, 20))
    assert cache.assign(2, 25) is False  # the same epoch later on: nothing new
    assert cache.assign(2, 15) is True  # the same epoch earlier: moves its start
    assert cache.entries() == [(1, 10), (2, 15)]
    assert cache.assign(4, 12) is True  # a start below epoch 2's: epoch 2 is gone
    assert cache.entries() == [(1, 10), (4, 12)]
    with pytest.raises(ValueError, match="epoch >= 0"):
        cache.assign(-1, 0)


def test_truncation_follows_the_log(tmp_path):
    cache = cache_with(tmp_path, (1, 10), (3, 20), (5, 40))
    cache.truncate_from_end(40)  # the log was cut at 40: epoch 5 never happened here
    assert cache.entries() == [(1, 10), (3, 20)]
    cache.truncate_from_end(41)
    assert cache.entries() == [(1, 10), (3, 20)]
    cache.truncate_from_start(25)  # retention moved the start into epoch 3
    assert cache.entries() == [(3, 25)]
    assert cache.epoch_for(30) == 3
    assert cache.epoch_for(24) == UNDEFINED_EPOCH


def test_entries_within_a_fetched_range(tmp_path):
    cache = cache_with(tmp_path, (1, 0), (3, 20), (5, 40))
    assert cache.entries_within(25, 45) == [(3, 20), (5, 40)]
    assert cache.entries_within(40, 45) == [(5, 40)]
    assert cache.entries_within(0, 20) == [(1, 0)]


def test_changes_are_unsaved_until_save(tmp_path):
    cache = cache_with(tmp_path, (0, 0))
    assert cache.unsaved
    assert not (tmp_path / CHECKPOINT).exists()
    cache.save()
    assert not cache.unsaved
    cache.assign(1, 7)
    assert cache.unsaved
    assert LeaderEpochCache.open(tmp_path, 100).entries() == [(0, 0)]  # not yet on disk
    cache.save()
    assert LeaderEpochCache.open(tmp_path, 100).entries() == [(0, 0), (1, 7)]


def test_open_drops_entries_past_the_recovered_log_end(tmp_path):
    cache_with(tmp_path, (0, 0), (2, 30), (4, 60)).save()
    reopened = LeaderEpochCache.open(tmp_path, 45)  # recovery cut the log's tail at 45
    assert reopened.entries() == [(0, 0), (2, 30)]
    assert reopened.unsaved  # the shorter list is written at the next flush


@pytest.mark.parametrize(
    "content",
    [b"", b"1\n1\n0 0\n", b"0\n2\n0 0\n", b"0\n1\nx y\n", b"0\n2\n3 0\n1 5\n", b"\xff\xfe"],
)
def test_a_malformed_checkpoint_is_read_as_empty(tmp_path, content, caplog):
    (tmp_path / CHECKPOINT).write_bytes(content)
    assert LeaderEpochCache.open(tmp_path, 100).entries() == []
    assert "unreadable leader-epoch checkpoint" in caplog.text


def test_a_crash_mid_save_leaves_the_old_file(tmp_path):
    cache_with(tmp_path, (0, 0)).save()
    (tmp_path / (CHECKPOINT + ".tmp")).write_bytes(b"0\n2\n0 0\n")  # torn temporary file
    assert LeaderEpochCache.open(tmp_path, 100).entries() == [(0, 0)]


def test_kill_9_after_save_keeps_the_entries(tmp_path):
    script = textwrap.dedent(
        f"""
        import os, signal
        from labkit.log.leader_epochs import LeaderEpochCache
        cache = LeaderEpochCache.open({str(tmp_path)!r}, 1000)
        cache.assign(0, 0); cache.assign(2, 100); cache.save()
        cache.assign(3, 200)  # never saved
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], env=os.environ.copy(), timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert LeaderEpochCache.open(tmp_path, 1000).entries() == [(0, 0), (2, 100)]
