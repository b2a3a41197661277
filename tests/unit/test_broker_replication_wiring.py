"""broker/replication.py without sockets or ZooKeeper: a leader's role from a snapshot,
the high watermark from its followers' fetches, acks=all replies held until it covers
them (or failed: the ISR shrank, the time is up), NOT_ENOUGH_REPLICAS before the append,
and the ISR change the leader proposes after replica.lag.time.max.ms. FakeClock time."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from labkit.broker.config import BrokerConfig
from labkit.broker.replication import HW_CHECKPOINT_INTERVAL_MS, Replication
from labkit.broker.replies import Reply
from labkit.broker.topics import TopicRegistry
from labkit.cluster.decisions import ClusterSnapshot, TopicView
from labkit.cluster.znodes import BrokerInfo, PartitionState
from labkit.errors import NotEnoughReplicasError, NotLeaderForPartitionError
from labkit.log import hw_checkpoint
from labkit.protocol.records import encode_batch, validate_batch
from labkit.testing import FakeClock

TOPIC = "t"
LAG_MS = 1000


class FakeMember:
    def __init__(self):
        self.writes: list = []
        self.written = threading.Event()

    def update_isr(self, topic, partition, state, version):
        self.writes.append((topic, partition, state, version))
        self.written.set()
        return True


def snapshot(isr, leader=1, epoch=0, version=0, min_insync="2") -> ClusterSnapshot:
    brokers = {i: BrokerInfo(i, "127.0.0.1", 9000 + i, "127.0.0.1", 9100 + i) for i in (1, 2, 3)}
    state = PartitionState(leader, epoch, tuple(isr), 1)
    view = TopicView(
        TOPIC, {0: (1, 2, 3)}, {"min.insync.replicas": min_insync}, {0: (state, version)}
    )
    return ClusterSnapshot(brokers, 1, 1, "cluster", {TOPIC: view})


@pytest.fixture
def setup(tmp_path):
    clock = FakeClock()
    config = BrokerConfig.build(port=9092, data_dir=tmp_path, overrides={})
    registry = TopicRegistry(config.data_dir, config.log_defaults, clock, 1).open()
    registry.create(TOPIC, 1, 1, {})
    sent: list = []
    cluster = SimpleNamespace(
        broker_id=1,
        snapshot=snapshot([1, 2, 3]),
        settings=SimpleNamespace(min_insync_replicas=1),
        member=FakeMember(),
    )

    def no_sockets(endpoint):
        raise AssertionError("a leader opens no socket")

    replication = Replication(
        cluster, registry, clock, LAG_MS, lambda i, r, h, *p: sent.append(h), no_sockets
    )
    yield SimpleNamespace(
        clock=clock, registry=registry, cluster=cluster, replication=replication, sent=sent
    )
    replication.close()
    registry.close()


def plog_of(s):
    return s.registry.partition(TOPIC, 0)


def append(s, *values) -> int:
    """Append as the produce handler does; the log end after it."""
    batch = encode_batch([s.clock.time_ms()] * len(values), None, [v.encode() for v in values])
    plog = plog_of(s)
    plog.append(batch, validate_batch(batch))
    s.replication.after_append([(TOPIC, 0)])
    return plog.log_end_offset


def acks_all_reply(s, end: int, timeout_ms: int = 30_000) -> Reply:
    plog = plog_of(s)
    return Reply(
        {"error": 0, "results": [[end - 1, 0, 0, None]]},
        replicate=[(0, TOPIC, 0, plog, end)],
        replicate_timeout_ms=timeout_ms,
    )


def test_a_leader_records_its_epoch_and_the_isr_sets_the_high_watermark(setup):
    s = setup
    assert s.replication.apply()
    plog = plog_of(s)
    assert plog.leader_epochs.latest_epoch == 0
    end = append(s, "a", "b", "c")
    assert plog.high_watermark == 0  # the followers do not have them yet
    reply = acks_all_reply(s, end)
    assert s.replication.hold(b"id", b"r", reply)
    s.replication.release()
    assert s.sent == []
    now = s.clock.time_ms()
    assert not s.replication.on_replica_fetch(TOPIC, 0, 2, end, end, now)  # 3 has not
    assert s.replication.on_replica_fetch(TOPIC, 0, 3, end, end, now)
    assert plog.high_watermark == end
    s.replication.release()
    assert s.sent == [reply.header]
    assert reply.header["results"][0][1] == 0


def test_a_new_leaders_epoch_is_saved_off_the_loop_and_before_acks_all(setup, monkeypatch):
    """The loop thread (here: the test's) never writes the checkpoint; the labkit-isr
    thread does at once, and PartitionLog.flush (the flusher's round every acks=all
    produce waits for) saves it too: no record of the epoch is acknowledged before it is
    durable (KIP-101)."""
    s = setup
    plog = plog_of(s)
    savers: list[str] = []
    real_save = type(plog.leader_epochs).save

    def recording_save(cache):
        if cache.unsaved:
            savers.append(threading.current_thread().name)
        real_save(cache)

    monkeypatch.setattr(type(plog.leader_epochs), "save", recording_save)
    loop = threading.current_thread().name
    assert s.replication.apply()
    assert loop not in savers
    deadline = threading.Event()
    for _ in range(200):  # bounded: the isr thread saves it within moments
        if savers:
            break
        deadline.wait(0.01)
    assert savers == ["labkit-isr"]
    assert not plog.leader_epochs.unsaved
    plog.leader_epochs.assign(1, plog.log_end_offset)  # a later epoch, not saved yet
    plog.flush()  # the flusher's round
    assert not plog.leader_epochs.unsaved


def test_the_leader_alone_in_the_isr_moves_the_high_watermark_on_append(setup):
    s = setup
    s.cluster.snapshot = snapshot([1], min_insync="1")
    s.replication.apply()
    end = append(s, "a")
    assert plog_of(s).high_watermark == end
    assert not s.replication.hold(b"id", b"r", acks_all_reply(s, end))  # nothing to wait for


def test_acks_all_is_refused_below_min_insync_replicas_before_the_append(setup):
    s = setup
    s.cluster.snapshot = snapshot([1])
    s.replication.apply()
    with pytest.raises(NotEnoughReplicasError, match=r"min\.insync\.replicas=2"):
        s.replication.check_produce(TOPIC, 0, acks_all=True)
    s.replication.check_produce(TOPIC, 0, acks_all=False)  # acks=1 goes on


def test_a_partition_not_led_yet_is_refused(setup):
    with pytest.raises(NotLeaderForPartitionError):
        setup.replication.check_produce(TOPIC, 0, acks_all=False)


def test_a_held_reply_fails_with_20_when_the_isr_shrinks_below_the_minimum(setup):
    s = setup
    s.replication.apply()
    end = append(s, "a")
    reply = acks_all_reply(s, end)
    assert s.replication.hold(b"id", b"r", reply)
    s.cluster.snapshot = snapshot([1], version=1)
    s.replication.apply()
    s.replication.release()
    assert s.sent == [reply.header]
    assert reply.header["results"][0][1] == 20  # NOT_ENOUGH_REPLICAS_AFTER_APPEND


def test_a_held_reply_times_out_after_the_produce_timeout(setup):
    s = setup
    s.replication.apply()
    end = append(s, "a")
    reply = acks_all_reply(s, end, timeout_ms=500)
    assert s.replication.hold(b"id", b"r", reply)
    s.clock.advance(0.4)
    s.replication.release()
    assert s.sent == []
    s.clock.advance(0.2)
    s.replication.release()
    assert reply.header["results"][0][1] == 7  # REQUEST_TIMED_OUT


def test_a_lagging_follower_is_proposed_out_of_the_isr_at_the_version_read(setup):
    s = setup
    s.cluster.snapshot = snapshot([1, 2, 3], version=7)
    s.replication.apply()
    end = append(s, "a", "b")
    now = s.clock.time_ms()
    s.replication.on_replica_fetch(TOPIC, 0, 2, end, end, now)
    s.replication.on_replica_fetch(TOPIC, 0, 3, 0, end, now)  # 3 stays behind
    s.replication.check_isr()
    assert s.cluster.member.writes == []  # not lagging for long yet
    s.clock.advance(LAG_MS / 1000 + 1)
    s.replication.on_replica_fetch(TOPIC, 0, 2, end, end, s.clock.time_ms())
    s.replication.check_isr()
    assert s.cluster.member.written.wait(5)
    topic, partition, state, version = s.cluster.member.writes[0]
    assert (topic, partition, version) == (TOPIC, 0, 7)
    assert state == PartitionState(1, 0, (1, 2), 1)  # same leader epoch: the leader's write


def test_the_high_watermarks_are_checkpointed_and_read_back_by_a_restarted_leader(tmp_path):
    clock = FakeClock()
    config = BrokerConfig.build(port=9092, data_dir=tmp_path, overrides={})
    registry = TopicRegistry(config.data_dir, config.log_defaults, clock, 1).open()
    registry.create(TOPIC, 1, 1, {})
    batch = encode_batch([clock.time_ms()] * 3, None, [b"a", b"b", b"c"])
    registry.partition(TOPIC, 0).append(batch, validate_batch(batch))
    registry.close()
    hw_checkpoint.write(tmp_path, {(TOPIC, 0): 2})  # what the broker had written before

    registry = TopicRegistry(config.data_dir, config.log_defaults, clock, 1).open()
    cluster = SimpleNamespace(
        broker_id=1,
        snapshot=snapshot([1, 2, 3]),
        settings=SimpleNamespace(min_insync_replicas=1),
        member=FakeMember(),
    )
    replication = Replication(cluster, registry, clock, LAG_MS, lambda *a: None, None)
    try:
        replication.apply()
        plog = registry.partition(TOPIC, 0)
        assert plog.log_end_offset == 3
        assert plog.high_watermark == 2  # not the log end: offset 2 may not be replicated
        plog_end = plog.log_end_offset
        replication.on_replica_fetch(TOPIC, 0, 2, plog_end, plog_end, clock.time_ms())
        replication.on_replica_fetch(TOPIC, 0, 3, plog_end, plog_end, clock.time_ms())
        clock.advance(HW_CHECKPOINT_INTERVAL_MS / 1000)
        replication.checkpoint()
    finally:
        replication.close()
        registry.close()
    assert hw_checkpoint.read(tmp_path) == {(TOPIC, 0): 3}


def test_a_held_reply_fails_with_20_when_the_smaller_isr_has_moved_the_high_watermark(setup):
    """Kafka's checkEnoughReplicasReachOffset: a high watermark that covers the batch is
    not enough when the ISR is below min.insync.replicas: the batch is on fewer brokers
    than acks=all promised (the leader alone moved the high watermark)."""
    s = setup
    s.replication.apply()
    end = append(s, "a")
    reply = acks_all_reply(s, end)
    assert s.replication.hold(b"id", b"r", reply)
    s.cluster.snapshot = snapshot([1], version=1)
    s.replication.apply()
    append(s, "b")  # the leader alone in the ISR: its appends move the high watermark
    assert plog_of(s).high_watermark >= end
    s.replication.release()
    assert s.sent == [reply.header]
    assert reply.header["results"][0][1] == 20  # NOT_ENOUGH_REPLICAS_AFTER_APPEND


def test_a_held_offset_commit_gets_the_group_errors_kafka_answers(setup):
    """A replicated offset commit (a group answer, no result rows) waits as acks=all does;
    its append errors become the coordinator's (broker/offsets_log.py)."""
    s = setup
    s.replication.apply()
    end = append(s, "a")
    plog = plog_of(s)
    timed = Reply({"error": 0}, replicate=[(0, TOPIC, 0, plog, end)], replicate_timeout_ms=500)
    moved = Reply({"error": 0}, replicate=[(0, TOPIC, 0, plog, end)])
    assert s.replication.hold(b"id", b"r1", timed)
    assert s.replication.hold(b"id", b"r2", moved)
    s.clock.advance(0.6)
    s.replication.release()
    assert timed.header["error"] == 15  # REQUEST_TIMED_OUT -> COORDINATOR_NOT_AVAILABLE
    s.cluster.snapshot = snapshot([2, 3], leader=2, epoch=1, version=1)
    s.replication.apply()
    s.replication.release()
    assert moved.header["error"] == 16  # NOT_LEADER_OR_FOLLOWER -> NOT_COORDINATOR
    assert "stopped leading" in moved.header["message"]
    assert s.sent == [timed.header, moved.header]
