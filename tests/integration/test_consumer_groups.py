"""KafkaConsumer in consumer groups against the real broker process: the partitions of a
topic split among a group's members, hand-over when a member leaves, commits (manual,
auto, fenced), two groups reading the same topic, idle members.

Several consumers are polled in turn from the test's thread (each KafkaConsumer has
its own I/O thread that heartbeats). Waits are loops with deadlines, never sleeps."""

from __future__ import annotations

import builtins
import logging
import time

import pytest

from labkit import (
    CommitFailedError,
    ConsumerRebalanceListener,
    KafkaAdminClient,
    KafkaConsumer,
    KafkaProducer,
    NewTopic,
    OffsetAndMetadata,
    TopicPartition,
)

SESSION_MS = 3000
DEADLINE_S = 15.0


def create(bootstrap, topic, partitions):
    with KafkaAdminClient(bootstrap_servers=bootstrap) as admin:
        admin.create_topics([NewTopic(topic, partitions, 1)])


def produce(bootstrap, topic, values, partitions):
    """Send ``values`` (ints) round-robin over the partitions; returns {value: tp}."""
    where = {}
    with KafkaProducer(bootstrap_servers=bootstrap) as producer:
        for v in values:
            producer.send(topic, b"%d" % v, partition=v % partitions)
            where[v] = TopicPartition(topic, v % partitions)
        producer.flush(timeout=10)
    return where


class Group:
    """Consumers of one group, polled in turn; every record each one returned."""

    def __init__(self, bootstrap, topic, group_id, **configs):
        self.bootstrap, self.topic, self.group_id = bootstrap, topic, group_id
        self.configs = {
            "bootstrap_servers": bootstrap,
            "group_id": group_id,
            "auto_offset_reset": "earliest",
            "session_timeout_ms": SESSION_MS,
            **configs,
        }
        self.members: list[KafkaConsumer] = []
        # every member ever added -> the records it returned. Keyed by the consumer
        # itself, not id(): a closed member is freed, and CPython may give its id to
        # the next consumer, whose empty list would then hide what the closed one read.
        self.got: dict[KafkaConsumer, list] = {}
        self._admin: KafkaAdminClient | None = None

    def add(self, **configs) -> KafkaConsumer:
        return self.join(KafkaConsumer(self.topic, **{**self.configs, **configs}))

    def join(self, consumer: KafkaConsumer) -> KafkaConsumer:
        """Poll ``consumer`` with the others from now on (one made outside ``add``)."""
        self.members.append(consumer)
        self.got[consumer] = []
        return consumer

    def poll_all(self, after=None):
        for c in self.members:
            for records in c.poll(timeout_ms=20).values():
                self.got[c].extend(records)
            if after is not None:
                after(c)

    def until(self, condition, what, timeout=DEADLINE_S, after=None):
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            self.poll_all(after)

    def values(self, consumer=None):
        rows = self.got[consumer] if consumer else [r for v in self.got.values() for r in v]
        return [int(r.value) for r in rows]

    def assignments(self):
        return [c.assignment() for c in self.members]

    def balanced(self, sizes):
        """The members hold partitions in these numbers and the rebalance is over
        (the coordinator says Stable: nobody is still to give up or pick up any)."""
        if sorted(len(a) for a in self.assignments()) != sorted(sizes):
            return False
        if self._admin is None:
            self._admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        (info,) = self._admin.describe_consumer_groups([self.group_id])
        return info.state == "Stable" and len(info.members) == len(sizes)

    def close(self):
        for c in self.members:
            c.close()
        if self._admin is not None:
            self._admin.close()


@pytest.fixture
def groups(shared_broker):
    made = []

    def make(topic, group_id, **configs):
        group = Group(shared_broker.bootstrap, topic, group_id, **configs)
        made.append(group)
        return group

    yield make
    for group in made:
        group.close()


def recycled_ids():
    """An ``id()`` that gives a closed consumer's number to the next new object, as
    CPython does with the address of a freed object (it did, now and then, in CI)."""
    numbers: dict[int, tuple[object, int]] = {}
    free: list[int] = []

    def fake_id(obj):
        for key, (other, number) in list(numbers.items()):
            if getattr(other, "_closed", False):
                free.append(number)
                del numbers[key]
        key = builtins.id(obj)  # the real one: the test puts this function in its place
        if key not in numbers:
            numbers[key] = (obj, free.pop() if free else len(numbers))
        return numbers[key][1]

    return fake_id


def test_the_group_helper_keeps_what_closed_members_read(
    shared_broker, unique_topic, groups, monkeypatch
):
    """The records a member read stay counted after it is closed and a new member
    joins, even when the new one gets the closed one's id() (the helper once kept
    records by id(): the flaky "timed out waiting for every record")."""
    monkeypatch.setitem(globals(), "id", recycled_ids())
    create(shared_broker.bootstrap, unique_topic, 1)
    produce(shared_broker.bootstrap, unique_topic, range(5), 1)
    g = groups(unique_topic, "g-" + unique_topic, enable_auto_commit=False)
    g.add()
    g.until(lambda: len(g.values()) >= 5, "the first member's records", after=KafkaConsumer.commit)
    g.members.pop(0).close()
    g.add()
    produce(shared_broker.bootstrap, unique_topic, range(5, 8), 1)
    g.until(lambda: len(g.values()) >= 8, "the second member's records")
    assert sorted(g.values()) == list(range(8))


def test_three_members_split_six_partitions_and_read_everything_once(
    shared_broker, unique_topic, groups
):
    create(shared_broker.bootstrap, unique_topic, 6)
    g = groups(unique_topic, "fraud-detection-" + unique_topic)
    for _ in range(3):
        g.add()
    g.until(lambda: g.balanced([2, 2, 2]), "2 partitions per member")
    everything = {TopicPartition(unique_topic, p) for p in range(6)}
    a, b, c = g.assignments()
    assert not (a & b)
    assert not (b & c)
    assert not (a & c)
    assert a | b | c == everything

    where = produce(shared_broker.bootstrap, unique_topic, range(300), 6)
    g.until(lambda: len(g.values()) >= 300, "every record")
    g.poll_all()
    assert sorted(g.values()) == list(range(300)), "each record read once by the group"
    for consumer in g.members:  # a member returns records of its own partitions only
        mine = consumer.assignment()
        assert all(where[v] in mine for v in g.values(consumer))
        assert len(g.values(consumer)) == 100


def test_closed_member_hands_over_and_others_continue_from_its_commits(
    shared_broker, unique_topic, groups
):
    create(shared_broker.bootstrap, unique_topic, 6)
    g = groups(unique_topic, "g-" + unique_topic, enable_auto_commit=False)
    for _ in range(3):
        g.add()
    g.until(lambda: g.balanced([2, 2, 2]), "2 partitions per member")
    produce(shared_broker.bootstrap, unique_topic, range(60), 6)
    g.until(lambda: len(g.values()) >= 60, "the first 60 records", after=lambda c: c.commit())
    leaving = g.members[0]
    moved = leaving.assignment()
    committed = {tp: leaving.committed(tp) for tp in moved}
    assert committed == {tp: 10 for tp in moved}

    leaving.close()
    g.members.remove(leaving)
    g.until(lambda: g.balanced([3, 3]), "the others to take over", timeout=SESSION_MS / 1000 + 5)
    produce(shared_broker.bootstrap, unique_topic, range(60, 120), 6)
    g.until(lambda: len(g.values()) >= 120, "the next 60 records")
    g.poll_all()
    assert sorted(g.values()) == list(range(120)), "nothing read twice, nothing skipped"
    for consumer in g.members:
        for tp in moved & consumer.assignment():
            assert consumer.position(tp) == 20  # continued at 10, read 10 more


def test_manual_commits_across_rebalances_lose_nothing(shared_broker, unique_topic, groups):
    """Members come and go while records arrive; each member commits after processing.
    Every record is processed at least once (here: exactly once) and none is skipped."""
    create(shared_broker.bootstrap, unique_topic, 6)
    g = groups(unique_topic, "g-" + unique_topic, enable_auto_commit=False)
    producer = KafkaProducer(bootstrap_servers=shared_broker.bootstrap)
    sent = 0
    failures = []

    def process_then_commit(consumer):
        try:
            consumer.commit()
        except CommitFailedError as exc:  # would mean a partition moved under our feet
            failures.append(exc)

    def produce_some(n=20):
        nonlocal sent
        for _ in range(n):
            producer.send(unique_topic, b"%d" % sent, partition=sent % 6)
            sent += 1
        producer.flush(timeout=10)

    try:
        g.add()
        for step in ("join", "join", "leave", "join", "leave"):
            produce_some()
            g.poll_all(process_then_commit)
            if step == "join":
                g.add()
            else:
                g.members.pop(0).close()
            produce_some()
            g.until(
                lambda: sum(map(len, g.assignments())) == 6 and all(g.assignments()),
                "the rebalance",
                after=process_then_commit,
            )
        produce_some()
        g.until(lambda: len(set(g.values())) >= sent, "every record", after=process_then_commit)
    finally:
        producer.close()
    processed = g.values()
    assert set(processed) == set(range(sent)), "no record skipped"
    assert len(processed) == sent, "commits after processing: no record processed twice"
    assert failures == []


def test_auto_commit_before_revocation_and_on_close(shared_broker, unique_topic, groups):
    create(shared_broker.bootstrap, unique_topic, 2)
    g = groups(unique_topic, "g-" + unique_topic)  # enable_auto_commit=True by default
    first = g.add()
    produce(shared_broker.bootstrap, unique_topic, range(40), 2)
    g.until(lambda: len(g.values()) >= 40, "every record")
    g.add()
    g.until(lambda: g.balanced([1, 1]), "one partition each")
    # the partition that moved was committed by the first member before it let go
    moved = next(iter(g.members[1].assignment()))
    assert first.committed(moved) == 20
    produce(shared_broker.bootstrap, unique_topic, range(40, 60), 2)
    g.until(lambda: len(g.values()) >= 60, "the new records")
    assert sorted(g.values()) == list(range(60))
    kept = next(iter(first.assignment()))
    first.close()  # commits its position
    g.members.remove(first)
    with KafkaAdminClient(bootstrap_servers=shared_broker.bootstrap) as admin:
        offsets = admin.list_consumer_group_offsets(g.group_id)
    assert offsets[kept].offset == 30


def test_two_groups_each_read_everything(shared_broker, unique_topic, groups):
    create(shared_broker.bootstrap, unique_topic, 6)
    produce(shared_broker.bootstrap, unique_topic, range(120), 6)
    fraud = groups(unique_topic, "fraud-detection-" + unique_topic)
    reporting = groups(unique_topic, "reporting-" + unique_topic)
    for _ in range(2):
        fraud.add()
    reporting.add()
    deadline = time.monotonic() + DEADLINE_S
    while len(fraud.values()) < 120 or len(reporting.values()) < 120:
        assert time.monotonic() < deadline, "both groups should read every record"
        fraud.poll_all()
        reporting.poll_all()
    assert sorted(fraud.values()) == sorted(reporting.values()) == list(range(120))


def test_more_members_than_partitions_leaves_one_idle_and_it_says_so(
    shared_broker, unique_topic, groups, caplog
):
    create(shared_broker.bootstrap, unique_topic, 2)
    g = groups(unique_topic, "g-" + unique_topic)
    caplog.set_level(logging.WARNING, logger="labkit.client.group")
    for _ in range(3):
        g.add()
    g.until(lambda: g.balanced([0, 1, 1]), "one idle member")
    idle = next(c for c in g.members if not c.assignment())
    produce(shared_broker.bootstrap, unique_topic, range(20), 2)
    g.until(lambda: len(g.values()) >= 20, "every record")
    assert g.values(idle) == []
    assert any(
        "is idle" in r.getMessage() and "2 partition" in r.getMessage() for r in caplog.records
    ), caplog.text
    with KafkaAdminClient(bootstrap_servers=shared_broker.bootstrap) as admin:
        (info,) = admin.describe_consumer_groups([g.group_id])
    assert sorted(len(m.member_assignment.assignment) for m in info.members) == [0, 1, 1]


def test_commit_of_a_partition_that_moved_is_fenced(shared_broker, unique_topic, groups):
    create(shared_broker.bootstrap, unique_topic, 2)
    g = groups(unique_topic, "g-" + unique_topic, enable_auto_commit=False)
    first = g.add()
    g.until(lambda: g.balanced([2]), "both partitions")
    produce(shared_broker.bootstrap, unique_topic, range(10), 2)
    g.until(lambda: len(g.values()) >= 10, "every record")
    stale = first.assignment()
    g.add()
    g.until(lambda: g.balanced([1, 1]), "the rebalance")
    (moved,) = stale - first.assignment()
    with pytest.raises(CommitFailedError) as info:
        first.commit({moved: OffsetAndMetadata(5, "", -1)})
    message = str(info.value)
    assert "rebalanced" in message
    assert "max_poll_interval_ms" in message
    assert g.members[1].committed(moved) is None, "a fenced commit stores nothing"


def test_a_member_that_stops_polling_leaves_and_cannot_commit(
    shared_broker, unique_topic, groups, caplog
):
    create(shared_broker.bootstrap, unique_topic, 2)
    g = groups(unique_topic, "g-" + unique_topic, enable_auto_commit=False)
    slow = g.add(max_poll_interval_ms=1000)
    other = g.add()
    g.until(lambda: g.balanced([1, 1]), "one partition each")
    caplog.set_level(logging.WARNING, logger="labkit.client.group")
    deadline = time.monotonic() + DEADLINE_S
    while len(other.assignment()) < 2:  # only `other` polls now
        assert time.monotonic() < deadline, "the slow member should leave the group"
        other.poll(timeout_ms=20)
    with pytest.raises(CommitFailedError) as info:
        slow.commit({tp: OffsetAndMetadata(1, "", -1) for tp in slow.assignment()})
    assert "not an active member" in str(info.value)
    assert "poll()" in str(info.value)
    assert any("max_poll_interval_ms" in r.getMessage() for r in caplog.records)
    # it rejoins on its next poll()
    g.until(lambda: g.balanced([1, 1]), "the slow member to rejoin")


class Recorder(ConsumerRebalanceListener):
    def __init__(self):
        self.events = []

    def on_partitions_revoked(self, revoked):
        self.events.append(("revoked", sorted(revoked)))

    def on_partitions_assigned(self, assigned):
        self.events.append(("assigned", sorted(assigned)))


def test_listener_hears_incremental_changes_and_commits_in_revoke(
    shared_broker, unique_topic, groups
):
    create(shared_broker.bootstrap, unique_topic, 2)
    g = groups(unique_topic, "g-" + unique_topic, enable_auto_commit=False)
    tps = [TopicPartition(unique_topic, p) for p in range(2)]
    recorder = Recorder()
    first = g.join(KafkaConsumer(**g.configs))
    first.subscribe([unique_topic], listener=recorder)
    g.until(lambda: g.balanced([2]), "both partitions")
    assert recorder.events == [("assigned", tps)]
    g.add()
    g.until(lambda: g.balanced([1, 1]), "the rebalance")
    moved = sorted(set(tps) - first.assignment())
    assert recorder.events == [("assigned", tps), ("revoked", moved)]
    first.unsubscribe()
    assert recorder.events[-1] == ("revoked", sorted(set(tps) - set(moved)))
    assert first.assignment() == set()
    assert first.subscription() is None


def test_commit_async_callback_and_committed_metadata(shared_broker, unique_topic, groups):
    create(shared_broker.bootstrap, unique_topic, 1)
    g = groups(unique_topic, "g-" + unique_topic, enable_auto_commit=False)
    consumer = g.add()
    produce(shared_broker.bootstrap, unique_topic, range(5), 1)
    g.until(lambda: len(g.values()) >= 5, "every record")
    tp = TopicPartition(unique_topic, 0)
    results = []
    future = consumer.commit_async(
        {tp: OffsetAndMetadata(4, "checkpoint", -1)},
        callback=lambda offsets, exc: results.append((offsets, exc)),
    )
    future.get(timeout=10)
    g.until(lambda: results, "the commit callback (runs in poll)")
    assert results == [({tp: OffsetAndMetadata(4, "checkpoint", -1)}, None)]
    assert consumer.committed(tp) == 4
    assert consumer.committed(tp, metadata=True).metadata == "checkpoint"
    consumer.commit()
    assert consumer.committed(tp) == 5


def test_a_new_member_starts_at_committed_offsets_and_says_so(
    shared_broker, unique_topic, groups, caplog
):
    create(shared_broker.bootstrap, unique_topic, 1)
    produce(shared_broker.bootstrap, unique_topic, range(10), 1)
    first = groups(unique_topic, "g-" + unique_topic)
    first.add(max_poll_records=4)
    first.until(lambda: len(first.values()) >= 4, "four records")
    read = len(first.values())
    first.close()  # auto-commit: commits its position
    caplog.set_level(logging.WARNING, logger="labkit.client.group")
    second = groups(unique_topic, "g-" + unique_topic)
    second.add()
    second.until(lambda: len(second.values()) >= 10 - read, "the rest")
    assert second.values() == list(range(read, 10))
    assert any(
        "committed earlier" in r.getMessage() and f"at {read}" in r.getMessage()
        for r in caplog.records
    ), caplog.text


def test_pattern_subscription_in_a_group(shared_broker, unique_topic, groups):
    for suffix in ("a", "b"):
        create(shared_broker.bootstrap, f"{unique_topic}.{suffix}", 2)
        produce(shared_broker.bootstrap, f"{unique_topic}.{suffix}", range(10), 2)
    g = groups(unique_topic, "g-" + unique_topic)
    consumers = []
    for _ in range(2):
        consumer = g.join(KafkaConsumer(**g.configs))
        consumer.subscribe(pattern=f"^{unique_topic}\\.")
        consumers.append(consumer)
    g.until(lambda: g.balanced([2, 2]) and len(g.values()) >= 20, "both topics, split")
    assert sorted(g.values()) == sorted(list(range(10)) * 2)
    assert {tp.topic for c in consumers for tp in c.assignment()} == {
        f"{unique_topic}.a",
        f"{unique_topic}.b",
    }
