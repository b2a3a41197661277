"""The replica fetcher (follower) and the leader's ISR / high-watermark state, without
sockets: the follower's requests go straight to a real ``Handlers`` over the leader's
log, time is a FakeClock."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from labkit.broker import replica_threads
from labkit.broker.config import BrokerConfig
from labkit.broker.handlers import Handlers
from labkit.broker.replica_fetcher import (
    FETCHING,
    STOPPED,
    TRUNCATING,
    Assignment,
    ReplicaFetcher,
    truncation_offset,
)
from labkit.broker.replica_leader import REPLICA_LAG_TIME_MAX_MS, LeaderReplicas
from labkit.broker.replica_threads import LeaderFetcherThread
from labkit.broker.topics import TopicRegistry
from labkit.log import LogConfig, PartitionLog
from labkit.log.leader_epochs import LeaderEpochCache
from labkit.protocol.frames import build_response, parse_request
from labkit.protocol.records import encode_batch, split_batches, validate_batch
from labkit.testing import FakeClock

TOPIC = "t"


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def leader(tmp_path, clock):
    config = BrokerConfig.build(port=9092, data_dir=tmp_path / "leader", overrides={})
    registry = TopicRegistry(config.data_dir, config.log_defaults, clock, 1).open()
    handlers = Handlers(registry, config, clock)
    reply = handlers.handle("create_topics", {"topics": [{"name": TOPIC, "num_partitions": 1}]}, [])
    assert reply.header["topics"][0]["error"] == 0
    yield handlers
    registry.close()


@pytest.fixture
def follower_log(tmp_path, clock):
    plog = PartitionLog.open(tmp_path / "follower" / f"{TOPIC}-0", LogConfig(), clock)
    yield plog
    plog.close()


def leader_log(handlers):
    return handlers.registry.partition(TOPIC, 0)


def batch(*values):
    data = encode_batch([1_700_000_000_000] * len(values), None, [v.encode() for v in values])
    return data, validate_batch(data)


def produce(handlers, *values):
    reply = handlers.handle("produce", {"acks": 1, "targets": [[TOPIC, 0]]}, [batch(*values)[0]])
    assert reply.header["error"] == 0, reply.header


def run(fetcher, handlers, rounds=20):
    """Drive the fetcher against the leader until it has nothing new (or stopped)."""
    progress = None
    for _ in range(rounds):
        request = fetcher.next_request()
        if request is None:
            break
        api, header = request
        reply = handlers.handle(api, {**header, "max_wait_ms": 0}, [])
        before = fetcher.plog.log_end_offset
        progress = fetcher.on_response(reply.header, reply.payloads)
        if api == "fetch" and fetcher.plog.log_end_offset == before:
            break
    return progress


def all_bytes(plog):
    out, offset = b"", plog.log_start_offset
    while offset < plog.log_end_offset:
        data = plog.read(offset, 1 << 20)
        out += data
        offset = validate_batch(data, split_batches(data)[-1][0], produced=False).next_offset
    return out


def assignment(epoch):
    return Assignment(TOPIC, 0, leader_id=0, leader_endpoint="127.0.0.1:9092", leader_epoch=epoch)


# -- truncation decisions (Kafka's getOffsetTruncationState) -------------------------------


def cache(tmp_path, *pairs):
    c = LeaderEpochCache.open(tmp_path, 10**9)
    for epoch, start in pairs:
        c.assign(epoch, start)
    return c


def test_truncation_offset_follows_kip_101_and_279(tmp_path):
    epochs = cache(tmp_path, (0, 0), (1, 10), (3, 20))
    # the leader answered our latest epoch: cut where either log ends it
    assert truncation_offset(3, 25, epochs, 30, 5) == (25, True)
    assert truncation_offset(3, 40, epochs, 30, 5) == (30, True)
    # the leader answered epoch 2, which we never had: cut at the end of our epoch 1
    # (where our epoch 3 starts) and ask again
    assert truncation_offset(2, 18, epochs, 30, 5) == (20, False)
    # our epoch 1 is the leader's: the smaller end wins
    assert truncation_offset(1, 15, epochs, 30, 5) == (15, True)
    # the leader knows no epoch: the high watermark
    assert truncation_offset(-1, -1, epochs, 30, 5) == (5, True)
    assert truncation_offset(-1, 12, epochs, 30, 5) == (12, True)


# -- the follower ------------------------------------------------------------------------


def test_an_empty_follower_catches_up_byte_identical(leader, follower_log):
    produce(leader, "a", "b")
    leader_log(leader).leader_epochs.assign(0, 0)
    produce(leader, "c")
    fetcher = ReplicaFetcher(assignment(0), follower_log, replica_id=1)
    fetcher.start()  # the fetcher thread's first step
    assert fetcher.state == FETCHING  # no epochs of its own: nothing to ask
    progress = run(fetcher, leader)
    assert all_bytes(follower_log) == all_bytes(leader_log(leader))
    assert progress.log_end_offset == 3
    assert progress.high_watermark == 3  # single-broker leader: its hw is its log end
    assert progress.caught_up
    assert follower_log.leader_epochs.entries() == [(0, 0)]


def ask(fetcher, handlers):
    api, header = fetcher.next_request()
    reply = handlers.handle(api, header, [])
    fetcher.on_response(reply.header, reply.payloads)
    return api, header["partitions"][0], reply.header["partitions"][0]


def test_a_diverged_follower_truncates_in_two_rounds_then_matches(leader, follower_log):
    lead = leader_log(leader)
    for epoch, start, values in [(0, 0, ["a", "b"]), (2, 2, ["c"])]:  # common history
        lead.leader_epochs.assign(epoch, start)
        produce(leader, *values)
    follower_log.append_as_follower(all_bytes(lead), epochs=[(0, 0), (2, 2)])
    follower_log.leader_epochs.assign(4, 3)  # the follower led epoch 4 alone: 3-4
    follower_log.append(*batch("x"))
    follower_log.append(*batch("y"))
    lead.leader_epochs.assign(3, 3)  # the leader's epochs 3 (3-4) and 5 (5)
    produce(leader, "d")
    produce(leader, "e")
    lead.leader_epochs.assign(5, 5)
    produce(leader, "f")
    fetcher = ReplicaFetcher(assignment(5), follower_log, replica_id=1)
    # round 1: where does my epoch 4 end? The leader never had it: its epoch 3 ends at 5.
    # We never had epoch 3 either: cut where our epoch 2 ends (3) and ask again.
    assert ask(fetcher, leader)[1:] == ([TOPIC, 0, 5, 4], [TOPIC, 0, 0, 3, 5])
    assert (fetcher.state, follower_log.log_end_offset) == (TRUNCATING, 3)
    # round 2: epoch 2 ends at 3 on the leader too: done
    assert ask(fetcher, leader)[1:] == ([TOPIC, 0, 5, 2], [TOPIC, 0, 0, 2, 3])
    assert (fetcher.state, follower_log.log_end_offset) == (FETCHING, 3)
    run(fetcher, leader)
    assert all_bytes(follower_log) == all_bytes(lead)
    assert follower_log.leader_epochs.entries() == [(0, 0), (2, 2), (3, 3), (5, 5)]


def test_a_retried_idempotent_batch_is_a_duplicate_on_the_follower_too(leader, follower_log):
    data = batch("a")[0]
    header = {"acks": 1, "targets": [[TOPIC, 0]], "producers": [[42, 0, 0]]}
    assert leader.handle("produce", header, [data]).header["results"][0][2] == 0
    run(ReplicaFetcher(assignment(0), follower_log, replica_id=1), leader)
    # the follower becomes leader; the producer retries the batch it got no answer for
    assert follower_log.producers.check(42, 0, 0, 0) == 0  # the original offset: not again


def test_a_missing_topic_on_the_leader_is_retried_with_the_error_reported(leader, follower_log):
    moved = Assignment("elsewhere", 0, 0, "127.0.0.1:9092", 0)
    fetcher = ReplicaFetcher(moved, follower_log, replica_id=1)
    api, header = fetcher.next_request()
    reply = leader.handle(api, {**header, "max_wait_ms": 0}, [])
    fetcher.on_response(reply.header, reply.payloads)
    assert fetcher.last_error == 3  # UNKNOWN_TOPIC_OR_PARTITION: back off, then ask again
    assert fetcher.state == FETCHING
    assert fetcher.next_request()[0] == "fetch"


def test_a_stale_assignment_is_fenced_and_stops(leader, follower_log):
    produce(leader, "a")
    leader_log(leader).leader_epochs.assign(5, 0)
    follower_log.leader_epochs.assign(2, 0)
    fetcher = ReplicaFetcher(assignment(4), follower_log, replica_id=1)
    run(fetcher, leader)
    assert fetcher.state == STOPPED
    assert "error 74" in fetcher.stopped_because
    assert fetcher.next_request() is None


def test_a_follower_behind_the_leaders_log_start_starts_over_there(leader, follower_log):
    for value in "abcde":
        produce(leader, value)
    leader.handle("delete_records", {"partitions": [[TOPIC, 0, 3]]}, [])
    fetcher = ReplicaFetcher(assignment(0), follower_log, replica_id=1)
    run(fetcher, leader)
    assert (follower_log.log_start_offset, follower_log.log_end_offset) == (3, 5)


def test_an_ahead_follower_without_epochs_truncates_to_its_high_watermark(leader, follower_log):
    produce(leader, "a")
    for value in "abc":
        follower_log.append(*batch(value))
    follower_log.set_high_watermark(1)
    fetcher = ReplicaFetcher(assignment(0), follower_log, replica_id=1)
    # built on the loop thread: no truncation (it fsyncs) until the fetcher thread starts it
    assert follower_log.log_end_offset == 3
    fetcher.start()
    assert follower_log.log_end_offset == 1
    assert fetcher.state == FETCHING


def test_a_fetch_carries_the_current_leader_epoch(leader, follower_log):
    fetcher = ReplicaFetcher(assignment(4), follower_log, replica_id=1)
    api, header = fetcher.next_request()
    assert api == "fetch"
    assert header["partitions"] == [[TOPIC, 0, 0, 1 << 20, 4]]  # KIP-320


def at_leader_epoch(handlers, epoch: int) -> None:
    """Make ``handlers`` a cluster-mode leader whose ZooKeeper state says ``epoch``."""
    view = SimpleNamespace(state=lambda _partition: SimpleNamespace(leader_epoch=epoch))
    handlers.cluster = SimpleNamespace(
        snapshot=SimpleNamespace(topics={TOPIC: view}), check_leader=lambda *_a: None
    )


def test_a_fenced_fetch_waits_for_a_new_assignment_an_unknown_epoch_retries(leader, follower_log):
    produce(leader, "a")
    leader_log(leader).leader_epochs.assign(5, 0)
    at_leader_epoch(leader, 5)  # the leader is at epoch 5
    for epoch, fenced in [(4, True), (6, False)]:  # older: 74, newer: 75
        fetcher = ReplicaFetcher(assignment(epoch), follower_log, replica_id=1)
        api, header = fetcher.next_request()
        reply = leader.handle(api, {**header, "max_wait_ms": 0}, [])
        fetcher.on_response(reply.header, reply.payloads)
        assert fetcher.last_error == (74 if fenced else 75)
        assert (fetcher.state, fetcher.fenced) == (STOPPED, fenced)
        assert follower_log.log_end_offset == 0  # nothing appended with a wrong epoch


# -- the leader ----------------------------------------------------------------------------


def test_high_watermark_is_the_isr_minimum_and_waits_for_unknown_followers(clock):
    state = LeaderReplicas(0, [0, 1, 2], {0, 1, 2}, 0, clock.time_ms())
    assert state.high_watermark(10, 0) == 0  # no follower fetched yet
    state.on_follower_fetch(1, 7, 10, clock.time_ms())
    assert state.high_watermark(10, 0) == 0
    state.on_follower_fetch(2, 4, 10, clock.time_ms())
    assert state.high_watermark(10, 0) == 4
    state.on_follower_fetch(2, 10, 10, clock.time_ms())
    assert state.high_watermark(10, 4) == 7
    assert state.high_watermark(10, 8) == 8  # never backwards
    state.set_isr({0, 2})
    assert state.high_watermark(10, 7) == 10
    assert state.on_follower_fetch(9, 1, 10, clock.time_ms()) is False


def test_isr_shrinks_after_replica_lag_time_max_and_expands_on_catching_up(clock):
    state = LeaderReplicas(
        0, [0, 1, 2], {0, 1, 2}, leader_epoch_start_offset=5, now_ms=clock.time_ms()
    )
    leo = 20
    clock.advance(REPLICA_LAG_TIME_MAX_MS / 1000)
    state.on_follower_fetch(1, 20, leo, clock.time_ms())  # 1 keeps up; 2 never fetches
    assert state.shrink_candidates(leo, clock.time_ms()) == set()  # exactly the limit
    clock.advance(0.001)
    assert state.shrink_candidates(leo, clock.time_ms()) == {2}
    state.set_isr({0, 1})
    # 2 comes back: fetching behind is not caught up; reaching the hw and the epoch start is
    state.on_follower_fetch(2, 3, leo, clock.time_ms())
    assert state.expand_candidates(high_watermark=20) == set()
    state.on_follower_fetch(2, 20, leo, clock.time_ms())
    assert state.expand_candidates(high_watermark=20) == {2}
    assert not state.enough_replicas(3)
    state.set_isr({0, 1, 2})
    assert state.enough_replicas(3)
    with pytest.raises(ValueError, match="not replicas"):
        state.set_isr({0, 7})


def test_a_follower_removed_from_the_isr_needs_a_new_fetch_to_come_back(clock):
    # The controller removes followers that died while caught up (their log end is still the
    # high watermark). A periodic ISR check with a snapshot that still lists them as live
    # (read before their registrations vanished) must not propose them again.
    state = LeaderReplicas(0, [0, 1, 2], {0, 1, 2}, 0, clock.time_ms())
    for follower in (1, 2):
        state.on_follower_fetch(follower, 20, 20, clock.time_ms())
    state.set_isr({0})
    assert state.expand_candidates(high_watermark=20) == set()
    state.on_follower_fetch(2, 20, 20, clock.time_ms())  # 2 is back and fetching
    assert state.expand_candidates(high_watermark=20) == {2}
    state.set_isr({0, 2})
    state.set_isr({0})  # and out again: the earlier fetch no longer counts
    assert state.expand_candidates(high_watermark=20) == set()


def test_a_follower_that_keeps_reaching_the_previous_leader_end_stays_in_sync(clock):
    state = LeaderReplicas(0, [0, 1], {0, 1}, 0, clock.time_ms())
    leo = 0
    for _ in range(100):  # the leader grows by 10 every second; the follower lags one fetch
        previous = leo
        leo += 10
        state.on_follower_fetch(1, previous, leo, clock.time_ms())
        clock.advance(1)
    assert state.shrink_candidates(leo, clock.time_ms()) == set()


def test_a_follower_at_the_new_leaders_end_counts_as_caught_up_since_the_election(clock):
    state = LeaderReplicas(0, [0, 1], {0}, 0, clock.time_ms(), leader_log_end_offset=50)
    clock.advance(40)
    state.on_follower_fetch(1, 50, 60, clock.time_ms())  # reached the end at the election
    assert state.followers[1].last_caught_up_ms == clock.time_ms() - 40_000


def test_leader_and_follower_wired_through_the_fetch_listener(leader, follower_log, clock):
    plog = leader_log(leader)
    produce(leader, "a", "b")
    state = LeaderReplicas(0, [0, 1], {0, 1}, 0, clock.time_ms())
    plog.set_high_watermark(0)  # replicated: the hw follows the ISR from now on

    def follower_fetched(_topic, _partition, replica, offset, leo, now):
        state.on_follower_fetch(replica, offset, leo, now)
        return state.advance_high_watermark(plog)

    leader.on_replica_fetch = follower_fetched
    consumer = {"max_wait_ms": 0, "partitions": [[TOPIC, 0, 0, 1 << 20]]}
    assert leader.handle("fetch", consumer, []).payloads == [b""]  # nothing committed yet
    fetcher = ReplicaFetcher(assignment(0), follower_log, replica_id=1)
    run(fetcher, leader)
    assert plog.high_watermark == 2  # the follower's next fetch told the leader it has 2
    assert follower_log.high_watermark == 2  # and that fetch's answer carried it back
    assert leader.handle("fetch", consumer, []).payloads[0] == all_bytes(follower_log)


# -- the fetcher thread (broker/replica_threads.py) with a socket that calls the leader ----


class HandlersDealer:
    """A DEALER stand-in: each request goes straight to the leader's Handlers."""

    def __init__(self, handlers, seen: list):
        self.handlers, self.seen, self.answers = handlers, seen, []

    def send_multipart(self, frames):
        rid, api, header, payloads = parse_request(frames[:])
        self.seen.append((api, header, threading.current_thread().name))
        reply = self.handlers.handle(api, {**header, "max_wait_ms": 0}, payloads)
        self.answers.append(build_response(rid, reply.header, reply.payloads))

    def poll(self, _ms):
        return bool(self.answers)

    def recv_multipart(self):
        return self.answers.pop(0)

    def close(self, linger=0):
        pass


def test_the_fetcher_thread_truncates_and_a_fenced_fetcher_sends_no_more(
    leader, follower_log, monkeypatch
):
    monkeypatch.setattr(replica_threads, "FETCH_BACKOFF_S", 0.05)  # an error's back-off
    produce(leader, "a")
    leader_log(leader).leader_epochs.assign(5, 0)
    at_leader_epoch(leader, 5)
    for value in "xyz":  # a follower ahead of its high watermark, with no epochs
        follower_log.append(*batch(value))
    follower_log.set_high_watermark(0)
    seen: list = []
    thread = LeaderFetcherThread(lambda _e: HandlersDealer(leader, seen), 0, "x:1", 1)
    key = (TOPIC, 0)
    fenced = ReplicaFetcher(assignment(4), follower_log, replica_id=1)  # on "the loop"
    assert follower_log.log_end_offset == 3  # built, not started: no truncation here
    thread.follow(key, fenced)
    thread.start()
    try:
        for _ in range(300):
            if fenced.fenced:
                break
            time.sleep(0.01)
        assert fenced.state == STOPPED
        assert fenced.fenced
        assert follower_log.log_end_offset == 0  # cut on the fetcher thread
        asked = len(seen)
        time.sleep(0.5)  # ten back-offs: a fenced fetcher waits for its new assignment
        assert len(seen) == asked  # nothing more with the stale epoch
        thread.follow(key, ReplicaFetcher(assignment(5), follower_log, replica_id=1))
        for _ in range(300):
            if follower_log.log_end_offset == 1:
                break
            time.sleep(0.01)
        assert all_bytes(follower_log) == all_bytes(leader_log(leader))
    finally:
        thread.stop()
        thread.join(5)
    assert {name for _api, _h, name in seen} == {thread.name}
    assert [h["partitions"][0][4] for api, h, _n in seen if api == "fetch"][:1] == [4]
