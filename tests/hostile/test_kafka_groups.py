"""Hostile Kafka group members against the classic coordinator, over the Kafka port of a
real broker: a member that joins and then never syncs nor heartbeats stalls the group
only for its own session timeout; garbage metadata and assignments, and too many
protocols, break nothing (the coordinator relays bytes, it never trusts them)."""

from __future__ import annotations

import datetime
import struct
import threading
import time

import pytest
from kafka import KafkaAdminClient
from kafka import KafkaConsumer as KpConsumer

from labkit.cli.main import run_command
from labkit.client.kafka_python_fixes import keep_unfinished_joins_wanted
from labkit.testing import BrokerProcess
from tests.integration.client_helpers import create_topic
from tests.raw_connections import KafkaConnection, nested_schema

pytestmark = pytest.mark.usefixtures("kafka_python_garbage")

WAIT_S = 30  # "does not stall": a generous bound on a loaded machine
JOIN, SYNC, DESCRIBE = 11, 14, 15


@pytest.fixture(scope="module")
def kafka_broker(tmp_path_factory):
    with BrokerProcess(data_dir=tmp_path_factory.mktemp("kafka-groups-hostile")) as proc:
        yield proc


class RawKafka(KafkaConnection):
    """A raw Kafka connection that joins groups with any protocols and metadata."""

    def join(self, group: str, member_id: str, protocols, session_ms=1000, rebalance_ms=2000):
        protocol = nested_schema(JOIN, 5, "JoinGroupRequestProtocol")
        return self.call(
            JOIN,
            5,
            group_id=group,
            session_timeout=datetime.timedelta(milliseconds=session_ms),
            rebalance_timeout=datetime.timedelta(milliseconds=rebalance_ms),
            member_id=member_id,
            group_instance_id=None,
            protocol_type="consumer",
            protocols=tuple(protocol(name=name, metadata=metadata) for name, metadata in protocols),
        )


class Member(threading.Thread):
    """A well-behaved kafka-python consumer, polled by its own thread."""

    def __init__(self, broker, group: str, topic: str):
        super().__init__(name="good-member")
        self.assignment: set[int] = set()
        self.error: BaseException | None = None
        self.stop = threading.Event()
        self.consumer = KpConsumer(
            bootstrap_servers=broker.bootstrap,
            group_id=group,
            heartbeat_interval_ms=300,
            enable_auto_commit=False,
        )
        keep_unfinished_joins_wanted(self.consumer)  # kafka-python 3.0.12's lost join rounds
        self.consumer.subscribe([topic])
        self.start()

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.consumer.poll(timeout_ms=100)
                self.assignment = {tp.partition for tp in self.consumer.assignment()}
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        finally:
            self.consumer.close()

    def close(self) -> None:
        self.stop.set()
        self.join(WAIT_S)


def wait_until(condition, what: str) -> float:
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < WAIT_S, f"timed out waiting for {what}"
        time.sleep(0.05)
    return time.monotonic() - start


def subscription(topic: str) -> bytes:
    raw = topic.encode()
    return struct.pack(">hih", 0, 1, len(raw)) + raw + struct.pack(">i", -1)


def test_a_member_that_joins_and_goes_silent_stalls_the_group_only_for_its_session(
    kafka_broker, unique_topic
):
    create_topic(kafka_broker, unique_topic, 2)
    group = f"{unique_topic}-group"
    good = Member(kafka_broker, group, unique_topic)
    hostile = RawKafka.connect(kafka_broker.port)
    try:
        wait_until(lambda: good.assignment == {0, 1}, "the good member's assignment")
        first = hostile.join(group, "", [("range", subscription(unique_topic))])
        assert first.error_code == 79  # MEMBER_ID_REQUIRED, with the id to use
        joined = hostile.join(group, first.member_id, [("range", subscription(unique_topic))])
        assert joined.error_code == 0
        assert joined.generation_id >= 2
        # the good member (the leader) gives the silent one a partition...
        wait_until(lambda: len(good.assignment) == 1, "the good member to share")
        # ...which returns to it after the silent member's 1 s session timeout
        recovered_s = wait_until(lambda: good.assignment == {0, 1}, "the group to recover")
        print(f"the group recovered {recovered_s:.2f} s after sharing with a silent member")
        assert kafka_broker.output().count("timed out (no heartbeat") >= 1
    finally:
        hostile.close()
        good.close()
    assert good.error is None


def test_garbage_metadata_and_assignments_break_nothing(kafka_broker, unique_topic, capsys):
    create_topic(kafka_broker, unique_topic, 2)
    group = f"{unique_topic}-garbage"
    garbage = b"\xff\xff\x7f\xff\xff\xff" + bytes(range(256))
    raw = RawKafka.connect(kafka_broker.port)
    try:
        first = raw.join(group, "", [("range", garbage), ("", b""), ("x" * 200, garbage)])
        joined = raw.join(
            group, first.member_id, [("range", garbage), ("", b""), ("x" * 200, garbage)], 30_000
        )
        assert joined.error_code == 0
        assert joined.members[0].metadata == garbage  # relayed untouched
        assignment = nested_schema(SYNC, 3, "SyncGroupRequestAssignment")
        synced = raw.call(
            SYNC,
            3,
            group_id=group,
            generation_id=joined.generation_id,
            member_id=joined.member_id,
            group_instance_id=None,
            assignments=(
                assignment(member_id=joined.member_id, assignment=garbage),
                assignment(member_id="nobody", assignment=garbage),
            ),
        )
        assert synced.error_code == 0
        assert synced.assignment == garbage
        too_many = raw.join(group, joined.member_id, [(f"p{i}", b"") for i in range(40)], 30_000)
        assert too_many.error_code == 42  # INVALID_REQUEST; the connection stays open
        described = raw.call(DESCRIBE, 5, groups=(group,), include_authorized_operations=False)
        member = described.groups[0].members[0]
        assert member.member_metadata == garbage
        assert member.member_assignment == garbage
        code = run_command(
            "consumer-groups",
            ["--bootstrap-server", kafka_broker.bootstrap, "--describe", "--group", group],
        )
        assert code == 0, capsys.readouterr()
        admin = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
        try:
            assert group in {g["group_id"] for g in admin.list_groups()}
        finally:
            admin.close()
    finally:
        raw.close()
