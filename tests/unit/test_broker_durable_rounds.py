"""Deferred durability without sockets: the topic registry's metadata rounds, the
offset store's group commit and the client quotas' rounds (what the broker's flusher
thread runs)."""

from __future__ import annotations

import json
import os

import pytest

from labkit.broker.flusher import GroupCommit
from labkit.broker.offsets import OffsetStore
from labkit.broker.quotas import PRODUCER_BYTE_RATE, QUOTAS_FILE, ClientQuotas
from labkit.broker.topics import TopicRegistry
from labkit.errors import KafkaStorageError, LeaderNotAvailableError, TopicAlreadyExistsError
from labkit.log.config import LogConfig
from labkit.testing import FakeClock


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def registry(tmp_path, clock):
    reg = TopicRegistry(tmp_path / "data", LogConfig(), clock, 1).open()
    reg.deferred = True
    yield reg
    reg.close()


def stored_topics(registry) -> dict:
    return json.loads((registry.data_dir / "topics.json").read_text())["topics"]


def run_round(registry) -> dict:
    round_ = registry.begin_round()
    registry.run_round(round_)
    return registry.finish_round(round_)


# -- topic registry -----------------------------------------------------------------


def test_a_thousand_creates_cost_one_metadata_write(registry, monkeypatch):
    writes = []
    real = registry._write_body
    monkeypatch.setattr(
        registry, "_write_body", lambda body: (writes.append(len(body)), real(body))
    )
    for i in range(1000):
        assert registry.create(f"t{i}", 1) is None  # deferred: not there yet
    assert registry.names() == []
    assert registry.pending
    assert run_round(registry) == {}
    assert writes == [1000]
    assert len(registry.names()) == 1000
    assert not registry.pending
    assert len(stored_topics(registry)) == 1000


def test_a_topic_being_created_is_retriable_and_reserved(registry):
    registry.create("t", 2)
    with pytest.raises(LeaderNotAvailableError, match="being created"):
        registry.partition("t", 0)
    with pytest.raises(LeaderNotAvailableError):
        registry.auto_create("t", 1)
    with pytest.raises(LeaderNotAvailableError):
        registry.delete("t")
    with pytest.raises(TopicAlreadyExistsError):
        registry.create("t", 1)
    run_round(registry)
    assert registry.partition("t", 1).log_end_offset == 0


def test_auto_create_starts_a_creation_and_says_retry(registry):
    with pytest.raises(LeaderNotAvailableError, match="retry"):
        registry.auto_create("new", 1)
    assert registry.being_created("new")
    run_round(registry)
    assert registry.auto_create("new", 1) is registry.get("new")


def test_delete_removes_files_only_after_topics_json_forgets_the_topic(registry):
    registry.create("t", 1)
    run_round(registry)
    directory = registry.data_dir / "t-0"
    registry.delete("t")
    assert registry.get("t") is None
    assert directory.exists()  # not yet: no round ran
    assert "t" in stored_topics(registry)
    run_round(registry)
    assert "t" not in stored_topics(registry)
    assert not directory.exists()


def test_a_failed_metadata_write_fails_the_changes_and_is_retried(registry, monkeypatch):
    real = registry._write_body

    def full_disk(body):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(registry, "_write_body", full_disk)
    registry.create("a", 1)
    failed = run_round(registry)
    assert list(failed) == ["a"]
    assert isinstance(failed["a"], OSError)
    assert registry.get("a") is None
    assert not registry.being_created("a")
    monkeypatch.setattr(registry, "_write_body", real)
    registry.create("a", 1)  # the client retries
    assert run_round(registry) == {}
    assert registry.get("a") is not None
    assert "a" in stored_topics(registry)


def test_inline_mode_is_durable_on_return(tmp_path, clock):
    reg = TopicRegistry(tmp_path / "d", LogConfig(), clock, 1).open()
    try:
        assert reg.create("t", 2) is reg.get("t")
        assert stored_topics(reg)["t"]["partitions"] == 2
    finally:
        reg.close()


def test_close_finishes_a_pending_round(tmp_path, clock):
    reg = TopicRegistry(tmp_path / "d", LogConfig(), clock, 1).open()
    reg.deferred = True
    reg.create("t", 1)
    reg.close()
    reopened = TopicRegistry(tmp_path / "d", LogConfig(), clock, 1).open()
    try:
        assert reopened.names() == ["t"]
    finally:
        reopened.close()


# -- offset store ---------------------------------------------------------------------


@pytest.fixture
def open_store(clock):
    """OffsetStore(path, clock), closed at the end of the test (an unclosed one keeps its
    file open: a ResourceWarning, which the suite turns into an error)."""
    stores = []

    def open_(path) -> OffsetStore:
        store = OffsetStore(path, clock)
        stores.append(store)
        return store

    yield open_
    for store in stores:
        store.close()


def grouped(tmp_path, clock) -> OffsetStore:
    store = OffsetStore(tmp_path, clock)
    store.group_commit = True
    return store


def test_a_group_commit_is_written_and_fsynced_by_sync(tmp_path, clock, open_store):
    store = grouped(tmp_path, clock)
    size = os.path.getsize(tmp_path / "__consumer_offsets" / "offsets.log")
    for i in range(50):
        store.commit("g", [("t", 0, i, "")])
    assert store.fetch("g")[("t", 0)].offset == 49  # visible at once
    assert store.unsynced
    assert os.path.getsize(tmp_path / "__consumer_offsets" / "offsets.log") == size
    store.sync()
    assert not store.unsynced
    assert open_store(tmp_path).fetch("g")[("t", 0)].offset == 49
    store.close()


def test_expired_groups_are_queued_for_sync_not_written_by_the_caller(tmp_path, clock, open_store):
    # offset expiry runs on the loop's tick: its delete records wait for the flusher
    store = grouped(tmp_path, clock)
    store.commit("a", [("t", 0, 1, "")])
    store.commit("b", [("t", 0, 2, "")])
    store.commit("c", [("t", 0, 3, "")])
    store.sync()
    path = tmp_path / "__consumer_offsets" / "offsets.log"
    size = os.path.getsize(path)
    store.delete_groups(["a", "b", "unknown"])
    assert store.groups() == ["c"]  # gone at once for readers
    assert store.unsynced
    assert os.path.getsize(path) == size  # nothing written by the caller
    store.sync()
    assert not store.unsynced
    assert open_store(tmp_path).groups() == ["c"]  # durable: a reopen (kill -9) agrees
    store.close()


def test_a_failed_sync_cuts_its_write_and_keeps_the_records(
    tmp_path, clock, monkeypatch, open_store
):
    store = grouped(tmp_path, clock)
    store.commit("g", [("t", 0, 1, "")])
    store.sync()
    store.commit("g", [("t", 0, 2, "")])
    path = tmp_path / "__consumer_offsets" / "offsets.log"
    size = os.path.getsize(path)
    real_fsync = os.fsync

    def failing(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing)
    with pytest.raises(OSError, match="Input/output error"):
        store.sync()
    assert store.unsynced
    assert os.path.getsize(path) == size
    monkeypatch.setattr(os, "fsync", real_fsync)
    store.commit("g", [("t", 1, 5, "")])
    store.sync()
    assert not store.unsynced
    reopened = open_store(tmp_path)
    assert reopened.fetch("g")[("t", 0)].offset == 2
    assert reopened.fetch("g")[("t", 1)].offset == 5
    store.close()


def test_runtime_compaction_happens_in_sync_and_keeps_later_commits(
    tmp_path, clock, monkeypatch, open_store
):
    monkeypatch.setattr("labkit.broker.offsets._COMPACT_MIN_BYTES", 1000)
    store = grouped(tmp_path, clock)
    path = tmp_path / "__consumer_offsets" / "offsets.log"
    for i in range(200):
        store.commit("g", [("t", 0, i, "")])
    store.sync()
    big = os.path.getsize(path)
    store.maybe_compact()  # the loop only queues it
    assert os.path.getsize(path) == big
    assert store.unsynced
    store.commit("g", [("t", 1, 7, "")])
    store.sync()
    assert os.path.getsize(path) < big / 10
    reopened = open_store(tmp_path)
    assert reopened.fetch("g")[("t", 0)].offset == 199
    assert reopened.fetch("g")[("t", 1)].offset == 7
    store.close()


# -- who waits (GroupCommit, run without its thread) ----------------------------------


def test_commits_and_group_deletions_wait_for_the_round_that_syncs_them(
    tmp_path, clock, open_store
):
    registry = TopicRegistry(tmp_path / "data", LogConfig(), clock, 1).open()
    offsets = OffsetStore(tmp_path / "data", clock)
    sent = []
    durable = GroupCommit(
        registry,
        offsets,
        lambda *request: None,
        lambda name: None,
        lambda identity, rid, header, payloads: sent.append(rid),
        {"fsync_rounds": 0, "synced_produces": 0},
    )
    mark = durable.mark()
    offsets.commit("g", [("t", 0, 1, "")])
    assert durable.reply_when_durable(b"c", b"1", "offset_commit", {"error": 0}, mark)
    mark = durable.mark()  # a commit is still pending: the deletion must not overtake it
    offsets.delete_group("g")
    assert durable.reply_when_durable(b"c", b"2", "delete_groups", {"error": 0, "groups": []}, mark)
    mark = durable.mark()
    assert not durable.reply_when_durable(b"c", b"3", "heartbeat", {"error": 0}, mark)
    assert sent == []
    durable.stop()  # no thread: the round runs here
    assert sent == [b"1", b"2"]
    assert not offsets.unsynced
    offsets.close()
    registry.close()
    assert not open_store(tmp_path / "data").has_group("g")


class HalfWriter:
    """The offsets file on a disk that fills up in the middle of a record."""

    def __init__(self, real):
        self.real = real

    def write(self, data):
        self.real.write(data[: len(data) // 2])
        self.real.flush()
        raise OSError(28, "No space left on device")

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_a_torn_group_write_is_cut_off_and_the_next_sync_completes_it(tmp_path, clock, open_store):
    store = grouped(tmp_path, clock)
    store.commit("g", [("t", 0, 1, "")])
    store.sync()
    store.commit("g", [("t", 0, 2, "")])
    store.commit("h", [("t", 0, 3, "")])
    store._file = HalfWriter(store._file)
    with pytest.raises(OSError, match="No space"):
        store.sync()
    assert store.unsynced
    store.commit("g", [("t", 1, 4, "")])
    store.sync()
    store.close()
    reopened = open_store(tmp_path)
    assert reopened.truncated_bytes == 0  # nothing torn left in the file
    assert reopened.fetch("g")[("t", 0)].offset == 2
    assert reopened.fetch("g")[("t", 1)].offset == 4
    assert reopened.fetch("h")[("t", 0)].offset == 3


# -- client quotas (quotas.json written by the flusher's rounds) -----------------------


def quota_entry(client: str, rate: int) -> dict:
    return {"entity": {"client-id": client}, "ops": [{"key": "producer_byte_rate", "value": rate}]}


def alter(durable, quotas, rid: bytes, *entries) -> bool:
    """What the loop does with an alter_client_quotas request; True: the reply waits."""
    mark = durable.mark()
    answer = quotas.handle("alter_client_quotas", {"entries": list(entries)}, 0.0)
    return durable.reply_when_durable(b"admin", rid, "alter_client_quotas", answer, mark)


@pytest.fixture
def quota_commit(tmp_path, clock):
    registry = TopicRegistry(tmp_path / "data", LogConfig(), clock, 1).open()
    offsets = OffsetStore(tmp_path / "data", clock)
    quotas = ClientQuotas(tmp_path / "data")
    sent = []
    durable = GroupCommit(
        registry,
        offsets,
        lambda *request: None,
        lambda name: None,
        lambda identity, rid, header, payloads: sent.append((rid, header)),
        {"fsync_rounds": 0, "synced_produces": 0},
        quotas,
    )
    yield durable, quotas, sent
    offsets.close()
    registry.close()


def test_a_quota_change_is_written_by_the_round_and_answered_after_it(tmp_path, quota_commit):
    durable, quotas, sent = quota_commit
    path = tmp_path / "data" / QUOTAS_FILE
    assert alter(durable, quotas, b"1", quota_entry("a", 100))
    assert quotas.quota_for(PRODUCER_BYTE_RATE, "a") == 100  # in effect at once
    assert not path.exists()
    assert sent == []
    assert alter(durable, quotas, b"2", quota_entry("a", 100))  # no change, still unsaved
    durable.stop()  # no thread: the round runs here
    assert [rid for rid, _ in sent] == [b"1", b"2"]
    assert all(header["entries"][0]["error"] == 0 for _, header in sent)
    assert ClientQuotas(tmp_path / "data").quota_for(PRODUCER_BYTE_RATE, "a") == 100
    assert not alter(durable, quotas, b"3", quota_entry("a", 100))  # durable: answered now


def test_a_failed_quota_write_answers_a_storage_error_and_reverts(quota_commit, monkeypatch):
    durable, quotas, sent = quota_commit

    def full_disk(path, entities):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("labkit.broker.quota_entities.write_entities", full_disk)
    assert alter(durable, quotas, b"1", quota_entry("a", 100))
    durable.stop()
    ((_rid, header),) = sent
    assert header["entries"][0]["error"] == KafkaStorageError.errno
    assert "disk space" in header["entries"][0]["message"]
    assert quotas.quota_for(PRODUCER_BYTE_RATE, "a") is None
    assert not quotas.unsaved
