"""Consumer groups when things die: a member process killed with SIGKILL, the broker
killed and restarted, a committed offset that retention deleted; and
``labkit console-consumer --group``. Real broker, real processes; waits are loops
with deadlines."""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest

from labkit import (
    CommitFailedError,
    ConfigResource,
    KafkaAdminClient,
    KafkaConsumer,
    KafkaProducer,
    NewTopic,
    OffsetOutOfRangeError,
    TopicPartition,
)

SESSION_MS = 3000
DEADLINE_S = 15.0

# A group member in its own process: processes, commits, then says what it committed.
MEMBER = """
import json, sys
from labkit import KafkaConsumer
bootstrap, topic, group, session_ms = sys.argv[1:5]
c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                  auto_offset_reset="earliest", enable_auto_commit=False,
                  session_timeout_ms=int(session_ms))
last = None
while True:
    batch = c.poll(timeout_ms=50)
    for tp, records in batch.items():
        print(json.dumps({"read": [[tp.partition, r.offset, int(r.value)] for r in records]}),
              flush=True)
    if batch:
        c.commit()
        print(json.dumps({"committed": {tp.partition: c.committed(tp)
                                        for tp in c.assignment()}}), flush=True)
    mine = sorted(tp.partition for tp in c.assignment())
    if mine != last:
        print(json.dumps({"assigned": mine}), flush=True)
        last = mine
"""


def create(bootstrap, topic, partitions, configs=None):
    with KafkaAdminClient(bootstrap_servers=bootstrap) as admin:
        admin.create_topics([NewTopic(topic, partitions, 1, topic_configs=configs or {})])


def produce(bootstrap, topic, values, partitions, **send):
    with KafkaProducer(bootstrap_servers=bootstrap, acks="all") as producer:
        for v in values:
            producer.send(topic, b"%d" % v, partition=v % partitions, **send)
        producer.flush(timeout=10)


class MemberProcess:
    """``MEMBER`` in a subprocess; its JSON lines arrive in ``lines`` (a reader thread)."""

    def __init__(self, bootstrap, topic, group):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", MEMBER, bootstrap, topic, group, str(SESSION_MS)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        self.lines: queue.Queue = queue.Queue()
        self.read: list[tuple[int, int, int]] = []  # (partition, offset, value)
        self.assigned: list[int] = []
        self.committed: dict[int, int] = {}
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        with self.proc.stdout:  # closed at EOF (the member exited): no ResourceWarning
            for line in self.proc.stdout:
                self.lines.put(json.loads(line))

    def update(self):
        while True:
            try:
                event = self.lines.get_nowait()
            except queue.Empty:
                return
            self.read.extend(map(tuple, event.get("read", [])))
            self.assigned = event.get("assigned", self.assigned)
            self.committed.update({int(p): o for p, o in event.get("committed", {}).items()})

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


@pytest.fixture
def member_process(shared_broker):
    made = []

    def start(topic, group):
        made.append(MemberProcess(shared_broker.bootstrap, topic, group))
        return made[-1]

    yield start
    for m in made:
        m.kill()


def poll_into(consumer, got, timeout_ms=20, fenced=None):
    batch = consumer.poll(timeout_ms=timeout_ms)
    for records in batch.values():
        got.extend((r.partition, r.offset, int(r.value)) for r in records)
    if batch:
        try:
            consumer.commit()  # after processing
        except CommitFailedError as exc:
            if fenced is None:
                raise
            fenced.append(exc)  # these records will be delivered again


def group_state(bootstrap, group_id):
    with KafkaAdminClient(bootstrap_servers=bootstrap) as admin:
        (info,) = admin.describe_consumer_groups([group_id])
    return info.state, len(info.members)


def test_killed_member_process_partitions_move_within_session_timeout(
    shared_broker, unique_topic, member_process
):
    boot = shared_broker.bootstrap
    group = "fraud-detection-" + unique_topic
    create(boot, unique_topic, 6)
    child = member_process(unique_topic, group)
    configs = dict(
        bootstrap_servers=boot,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=SESSION_MS,
    )
    parents = [KafkaConsumer(unique_topic, **configs) for _ in range(2)]
    got: list[tuple[int, int, int]] = []
    try:
        deadline = time.monotonic() + DEADLINE_S
        while not (
            len(child.assigned) == 2
            and all(len(c.assignment()) == 2 for c in parents)
            and group_state(boot, group) == ("Stable", 3)
        ):
            assert time.monotonic() < deadline, "three members with 2 partitions each"
            for c in parents:
                poll_into(c, got)
            child.update()
        theirs = set(child.assigned)
        produce(boot, unique_topic, range(60), 6)
        while not (
            len(got) + len(child.read) >= 60 and all(child.committed.get(p) == 10 for p in theirs)
        ):
            assert time.monotonic() < deadline + DEADLINE_S, "the first 60 records processed"
            for c in parents:
                poll_into(c, got)
            child.update()

        child.kill()
        killed = time.monotonic()
        produce(boot, unique_topic, range(60, 120), 6)
        while sum(len(c.assignment()) for c in parents) < 6:
            assert time.monotonic() - killed < SESSION_MS / 1000 + 3, (
                "the survivors take over within the session timeout and a margin"
            )
            for c in parents:
                poll_into(c, got)
        while len(got) + len(child.read) < 120:
            assert time.monotonic() - killed < DEADLINE_S, "every record processed"
            for c in parents:
                poll_into(c, got)
    finally:
        for c in parents:
            c.close()
    values = [v for _, _, v in got] + [v for _, _, v in child.read]
    assert sorted(values) == list(range(120)), "none skipped, none processed twice"
    for p in theirs:  # the survivors continued exactly at the dead member's commits
        assert min(off for part, off, _ in got if part == p) == 10


def test_committed_offsets_survive_a_broker_kill_and_members_rejoin(broker):
    topic, group = "payments", "reporting"
    create(broker.bootstrap, topic, 2)
    produce(broker.bootstrap, topic, range(20), 2)
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=SESSION_MS,
    )
    got: list[tuple[int, int, int]] = []
    fenced: list[CommitFailedError] = []
    try:
        deadline = time.monotonic() + DEADLINE_S
        while len(got) < 20:
            assert time.monotonic() < deadline, "the first 20 records"
            poll_into(consumer, got)
        broker.kill()  # SIGKILL: committed offsets were fsync'd before the answer
        broker.start()
        with KafkaAdminClient(bootstrap_servers=broker.bootstrap) as admin:
            offsets = admin.list_consumer_group_offsets(group)
        assert {tp.partition: om.offset for tp, om in offsets.items()} == {0: 10, 1: 10}
        produce(broker.bootstrap, topic, range(20, 30), 2)
        deadline = time.monotonic() + DEADLINE_S
        # The restarted coordinator does not know the member: it rejoins by itself. A
        # commit that races with that fails (CommitFailedError) and the records come
        # again from the committed offsets: at least once.
        while {v for _, _, v in got} != set(range(30)) or consumer.committed(
            TopicPartition(topic, 0)
        ) != 15:
            assert time.monotonic() < deadline, "the records produced after the restart"
            poll_into(consumer, got, fenced=fenced)
    finally:
        consumer.close()
    if not fenced:
        assert len(got) == 30, "without a failed commit no record comes twice"
    assert group_state(broker.bootstrap, group) == ("Empty", 0)


def test_committed_offset_deleted_by_retention_resets_and_says_so(
    shared_broker, unique_topic, caplog
):
    boot = shared_broker.bootstrap
    group = "g-" + unique_topic
    create(boot, unique_topic, 1, {"retention.ms": "1000", "segment.bytes": "512"})
    tp = TopicPartition(unique_topic, 0)
    with KafkaAdminClient(bootstrap_servers=boot) as admin:
        admin.alter_consumer_group_offsets(group, {tp: 0})
    old = int(time.time() * 1000) - 3_600_000
    with KafkaProducer(bootstrap_servers=boot, acks="all") as producer:
        for i in range(10):  # one batch each: several segments, all an hour old
            producer.send(unique_topic, b"%d" % i + b"." * 200, timestamp_ms=old).get(timeout=10)
    probe = KafkaConsumer(bootstrap_servers=boot)
    try:
        # every record is an hour old: retention takes every segment, the active one too
        # (as Kafka does), and the log start offset ends at the log end offset
        deadline = time.monotonic() + DEADLINE_S
        while probe.beginning_offsets([tp])[tp] < 10:
            assert time.monotonic() < deadline, "retention should delete old segments"
            time.sleep(0.1)
        log_start = probe.beginning_offsets([tp])[tp]
    finally:
        probe.close()
    with KafkaAdminClient(bootstrap_servers=boot) as admin:  # keep what comes next
        admin.alter_configs([ConfigResource("topic", unique_topic, {"retention.ms": "-1"})])
    with KafkaProducer(bootstrap_servers=boot, acks="all") as producer:
        producer.send(unique_topic, b"after").get(timeout=10)

    strict = KafkaConsumer(
        unique_topic,
        bootstrap_servers=boot,
        group_id=group,
        auto_offset_reset="none",
        enable_auto_commit=False,
    )
    try:
        with pytest.raises(OffsetOutOfRangeError) as info:  # noqa: PT012 - polls until the error arrives
            deadline = time.monotonic() + DEADLINE_S
            while time.monotonic() < deadline:
                strict.poll(timeout_ms=50)
        assert "retention" in str(info.value)
        assert f"starts at {log_start}" in str(info.value)
    finally:
        strict.close()

    caplog.set_level(logging.WARNING, logger="labkit.client.consumer")
    consumer = KafkaConsumer(
        unique_topic, bootstrap_servers=boot, group_id=group, auto_offset_reset="earliest"
    )
    try:
        first = []
        deadline = time.monotonic() + DEADLINE_S
        while not first:
            assert time.monotonic() < deadline, "records after the reset"
            first = [r for rs in consumer.poll(timeout_ms=50).values() for r in rs]
    finally:
        consumer.close()
    assert first[0].offset == log_start
    assert any(
        "committed offset 0" in r.getMessage() and "retention" in r.getMessage()
        for r in caplog.records
    ), caplog.text


def labkit(*args):
    result = subprocess.run(
        [sys.executable, "-m", "labkit", *args],
        capture_output=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "LABKIT_BOOTSTRAP"},
    )
    return (
        result.returncode,
        result.stdout.decode("utf-8", "replace"),
        result.stderr.decode("utf-8", "replace"),
    )


def test_console_consumer_group_commits_and_continues(shared_broker, unique_topic):
    boot = shared_broker.bootstrap
    group = "console-" + unique_topic
    create(boot, unique_topic, 1)
    produce(boot, unique_topic, range(1, 5), 1)
    common = (
        "console-consumer",
        "--topic",
        unique_topic,
        "--bootstrap-server",
        boot,
        "--from-beginning",
        "--max-messages",
        "2",
    )
    code, out, err = labkit(*common, "--group", group)
    assert (code, out) == (0, "1\n2\n"), err
    code, out, err = labkit(*common, "--group", group)
    assert (code, out) == (0, "3\n4\n"), "a group continues where it committed: " + err
    code, out, err = labkit(*common)  # no --group: no group, nothing committed
    assert (code, out) == (0, "1\n2\n"), err
    with KafkaAdminClient(bootstrap_servers=boot) as admin:
        groups = {g for g, _ in admin.list_consumer_groups()}
        offsets = admin.list_consumer_group_offsets(group)
    assert [g for g in groups if unique_topic in g] == [group]
    assert offsets[TopicPartition(unique_topic, 0)].offset == 4
