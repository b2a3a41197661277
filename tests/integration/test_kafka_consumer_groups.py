"""Kafka consumer groups (the classic protocol) through the Kafka listener: kafka-python,
confluent-kafka and aiokafka consumers in groups against a real broker process; their
offsets in labkit's one store; groups of the two protocols kept apart."""

from __future__ import annotations

import asyncio
import re
import threading
import time

import pytest
from confluent_kafka import Consumer as ConfluentConsumer
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka import TopicPartition as ConfluentPartition
from kafka import KafkaConsumer as KpConsumer
from kafka import KafkaProducer as KpProducer
from kafka.errors import InconsistentGroupProtocolError as KpInconsistent
from kafka.structs import OffsetAndMetadata, TopicPartition

from labkit import KafkaAdminClient as LabkitAdmin
from labkit import KafkaConsumer as LabkitConsumer
from labkit import KafkaProducer as LabkitProducer
from labkit import TopicPartition as LabkitPartition
from labkit.cli.main import run_command
from labkit.client.kafka_python_fixes import keep_unfinished_joins_wanted
from labkit.errors import InconsistentGroupProtocolError
from labkit.nb.dashboard_widget import collect
from labkit.testing import BrokerProcess, RawClient
from labkit.testing.apache_kafka import run_tool
from tests.integration.client_helpers import create_topic

pytestmark = pytest.mark.usefixtures("kafka_python_garbage")

WAIT_S = 30  # generous: the machine is shared


@pytest.fixture(scope="module")
def kafka_broker(tmp_path_factory):
    with BrokerProcess(data_dir=tmp_path_factory.mktemp("kafka-groups")) as proc:
        yield proc


def produce(broker, topic: str, partitions: int, per_partition: int, tag: str) -> None:
    producer = LabkitProducer(bootstrap_servers=broker.bootstrap, acks=1)
    try:
        for p in range(partitions):
            for i in range(per_partition):
                producer.send(topic, value=f"{tag}-{p}-{i}".encode(), partition=p)
        producer.flush()
    finally:
        producer.close()


def committed(broker, group: str, topic: str, partitions: int) -> dict[int, int | None]:
    consumer = LabkitConsumer(bootstrap_servers=broker.bootstrap, group_id=group)
    try:
        return {p: consumer.committed(LabkitPartition(topic, p)) for p in range(partitions)}
    finally:
        consumer.close()


def wait_until(condition, what: str) -> float:
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < WAIT_S, f"timed out waiting for {what}"
        time.sleep(0.05)
    return time.monotonic() - start


class KpMember:
    """One kafka-python consumer in a group, polled and committed by its own thread."""

    def __init__(self, broker, group: str, topic: str, name: str):
        self.values: list[bytes] = []
        self.assignment: set[int] = set()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._consumer = KpConsumer(
            bootstrap_servers=broker.bootstrap,
            group_id=group,
            client_id=name,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            heartbeat_interval_ms=500,
            session_timeout_ms=10_000,
        )
        keep_unfinished_joins_wanted(self._consumer)  # kafka-python 3.0.12's lost join rounds
        self._consumer.subscribe([topic])
        self._thread = threading.Thread(target=self._run, name=name)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                batches = self._consumer.poll(timeout_ms=200)
                for records in batches.values():
                    self.values += [r.value for r in records]
                if batches:
                    self._consumer.commit()
                self.assignment = {tp.partition for tp in self._consumer.assignment()}
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        finally:
            self._consumer.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(WAIT_S)
        assert not self._thread.is_alive()


def test_two_kafka_python_consumers_share_a_topic_hand_over_and_resume(kafka_broker, unique_topic):
    create_topic(kafka_broker, unique_topic, 4)
    produce(kafka_broker, unique_topic, 4, 10, "first")
    group = f"{unique_topic}-group"
    first = KpMember(kafka_broker, group, unique_topic, "first")
    wait_until(lambda: first.assignment == {0, 1, 2, 3}, "the first member to own everything")
    second = KpMember(kafka_broker, group, unique_topic, "second")
    rebalance_s = wait_until(
        lambda: (
            len(first.assignment) == 2
            and len(second.assignment) == 2
            and not first.assignment & second.assignment
        ),
        "two members sharing four partitions",
    )
    print(f"rebalance for a second kafka-python member: {rebalance_s:.2f} s")
    wait_until(lambda: len(first.values) + len(second.values) >= 40, "40 records")
    second.close()  # LeaveGroup: the first member gets everything at its next heartbeat
    handover_s = wait_until(lambda: first.assignment == {0, 1, 2, 3}, "the hand-over")
    print(f"hand-over after a LeaveGroup: {handover_s:.2f} s")
    produce(kafka_broker, unique_topic, 4, 5, "second")
    wait_until(lambda: len(first.values) + len(second.values) >= 60, "60 records")
    first.close()
    assert first.error is None, first.error
    assert second.error is None, second.error
    everything = sorted(first.values + second.values)
    assert len(everything) == len(set(everything)) == 60  # nothing read twice
    assert committed(kafka_broker, group, unique_topic, 4) == {p: 15 for p in range(4)}
    produce(kafka_broker, unique_topic, 4, 2, "third")
    restarted = KpMember(kafka_broker, group, unique_topic, "restarted")
    wait_until(lambda: len(restarted.values) >= 8, "the restarted consumer's records")
    time.sleep(0.5)
    restarted.close()
    assert sorted(restarted.values) == sorted(
        f"third-{p}-{i}".encode() for p in range(4) for i in range(2)
    )


@pytest.mark.parametrize("strategy", ["range", "cooperative-sticky"])
def test_confluent_kafka_consumers_in_a_group(kafka_broker, unique_topic, strategy):
    create_topic(kafka_broker, unique_topic, 4)
    produce(kafka_broker, unique_topic, 4, 10, "c")
    group = f"{unique_topic}-group"
    config = {
        "bootstrap.servers": kafka_broker.bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "partition.assignment.strategy": strategy,
        "heartbeat.interval.ms": 500,
        "fetch.wait.max.ms": 200,
    }
    consumers = [ConfluentConsumer({**config, "client.id": f"c{i}"}) for i in range(2)]
    got: list[bytes] = []
    # A synchronous commit that races a rebalance fails on Apache Kafka too (ILLEGAL_GENERATION
    # once the group moved to the next generation, REBALANCE_IN_PROGRESS while it completes):
    # as a real application does, retry it afterwards while the member still owns the partition.
    pending: list[dict[int, int]] = [{}, {}]

    def commit(index: int, partition: int, offset: int) -> None:
        try:
            consumers[index].commit(
                offsets=[ConfluentPartition(unique_topic, partition, offset)], asynchronous=False
            )
            pending[index].pop(partition, None)
        except KafkaException as exc:
            if exc.args[0].code() not in (
                KafkaError.ILLEGAL_GENERATION,
                KafkaError.REBALANCE_IN_PROGRESS,
            ):
                raise
            pending[index][partition] = offset

    try:
        for consumer in consumers:
            consumer.subscribe([unique_topic])

        def poll_both() -> bool:
            for index, consumer in enumerate(consumers):
                msg = consumer.poll(0.1)
                if msg is not None and msg.error() is None:
                    got.append(msg.value())
                    commit(index, msg.partition(), msg.offset() + 1)
                owns = {tp.partition for tp in consumer.assignment()}
                for partition, offset in list(pending[index].items()):
                    if partition in owns:
                        commit(index, partition, offset)
                    else:  # its new owner reads the partition again and commits
                        pending[index].pop(partition)
            owned = [{tp.partition for tp in c.assignment()} for c in consumers]
            return (
                len(set(got)) >= 40
                and not any(pending)
                and all(len(o) == 2 for o in owned)
                and owned[0] | owned[1] == {0, 1, 2, 3}
            )

        wait_until(poll_both, f"two {strategy} members sharing four partitions")
    finally:
        for consumer in consumers:
            consumer.close()
    # at least once: a record whose commit was lost to a rebalance may come twice
    assert set(got) == {f"c-{p}-{i}".encode() for p in range(4) for i in range(10)}
    assert committed(kafka_broker, group, unique_topic, 4) == {p: 10 for p in range(4)}


def test_aiokafka_consumer_in_a_group_commits(kafka_broker, unique_topic):
    from aiokafka import AIOKafkaConsumer

    create_topic(kafka_broker, unique_topic, 2)
    produce(kafka_broker, unique_topic, 2, 3, "a")
    group = f"{unique_topic}-group"

    async def scenario():
        consumer = AIOKafkaConsumer(
            unique_topic,
            bootstrap_servers=kafka_broker.bootstrap,
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        got = []
        try:
            deadline = time.monotonic() + WAIT_S
            while len(got) < 6 and time.monotonic() < deadline:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    got += [r.value for r in records]
            await consumer.commit()
        finally:
            await consumer.stop()
        return got

    got = asyncio.run(scenario())
    assert sorted(got) == sorted(f"a-{p}-{i}".encode() for p in range(2) for i in range(3))
    assert committed(kafka_broker, group, unique_topic, 2) == {0: 3, 1: 3}


def test_a_group_cannot_mix_labkit_and_kafka_consumers(kafka_broker, unique_topic):
    create_topic(kafka_broker, unique_topic, 2)
    kafka_group, labkit_group = f"{unique_topic}-kafka", f"{unique_topic}-labkit"
    member = KpMember(kafka_broker, kafka_group, unique_topic, "kafka-member")
    try:
        wait_until(lambda: member.assignment == {0, 1}, "the Kafka consumer's assignment")
        intruder = LabkitConsumer(
            unique_topic, bootstrap_servers=kafka_broker.bootstrap, group_id=kafka_group
        )
        try:
            with pytest.raises(InconsistentGroupProtocolError, match="Kafka consumers"):
                intruder.poll(timeout_ms=WAIT_S * 1000)
        finally:
            intruder.close()
        owner = LabkitConsumer(
            unique_topic, bootstrap_servers=kafka_broker.bootstrap, group_id=labkit_group
        )
        try:
            wait_until(
                lambda: owner.poll(timeout_ms=200) is not None and owner.assignment(),
                "labkit's assignment",
            )
            kafka_intruder = KpConsumer(
                unique_topic,
                bootstrap_servers=kafka_broker.bootstrap,
                group_id=labkit_group,
            )
            try:
                with pytest.raises(KpInconsistent):
                    kafka_intruder.poll(timeout_ms=WAIT_S * 1000)
            finally:
                kafka_intruder.close()
        finally:
            owner.close()
    finally:
        member.close()
    assert member.error is None


def test_labkit_consumer_groups_describe_shows_a_kafka_group(kafka_broker, unique_topic, capsys):
    create_topic(kafka_broker, unique_topic, 2)
    produce(kafka_broker, unique_topic, 2, 5, "d")
    group = f"{unique_topic}-group"
    member = KpMember(kafka_broker, group, unique_topic, "kafka-member")
    try:
        wait_until(lambda: len(member.values) >= 10, "10 records")
        produce(kafka_broker, unique_topic, 2, 3, "late")  # lag 3 on each partition...
        wait_until(lambda: len(member.values) >= 16, "16 records")
    finally:
        member.close()  # ...then consumed and committed: lag 0; the group is empty again
    produce(kafka_broker, unique_topic, 1, 4, "unread")  # lag 4 on partition 0
    code = run_command(
        "consumer-groups",
        ["--bootstrap-server", kafka_broker.bootstrap, "--describe", "--group", group],
    )
    out = capsys.readouterr().out
    assert code == 0, out
    rows = [row for row in map(str.split, out.splitlines()) if row[1:2] == [unique_topic]]
    by_partition = {int(row[2]): row[3:6] for row in rows}
    assert by_partition == {0: ["8", "12", "4"], 1: ["8", "8", "0"]}, out
    # nb.dashboard()'s snapshot shows the same committed offsets
    admin = LabkitAdmin(bootstrap_servers=kafka_broker.bootstrap)
    consumer = LabkitConsumer(bootstrap_servers=kafka_broker.bootstrap)
    try:
        snapshot = collect(admin, consumer, at=0.0, topics=[unique_topic])
    finally:
        consumer.close()
        admin.close()
    assert snapshot.groups[group] == {(unique_topic, 0): 8, (unique_topic, 1): 8}


# -- Apache Kafka's kafka-consumer-groups.sh, on labkit and on Apache Kafka ------------


def kafka_python_group_scenario(bootstrap: str, topic: str, group: str) -> KpConsumer:
    """Produce 5 records to each of 2 partitions, read them in ``group`` and commit 5 and
    3 (lag 0 and 2): the same steps on either broker. Returns the consumer, still in the
    group."""
    producer = KpProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False)
    try:
        for i in range(10):
            producer.send(topic, value=b"v%d" % i, partition=i % 2)
        producer.flush(WAIT_S)
    finally:
        producer.close()
    consumer = KpConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        client_id="groups-tool-test",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    keep_unfinished_joins_wanted(consumer)  # kafka-python 3.0.12's lost join rounds
    consumer.subscribe([topic])
    read = 0
    deadline = time.monotonic() + WAIT_S
    while read < 10 and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            read += len(records)
    assert read == 10
    consumer.commit(
        {
            TopicPartition(topic, 0): OffsetAndMetadata(5, "", -1),
            TopicPartition(topic, 1): OffsetAndMetadata(3, "", -1),
        }
    )
    return consumer


def normalized(output: str, member_ids: list[str]) -> list[list[str]]:
    """The tool's table rows, split on whitespace, member ids and coordinator address
    masked, rows sorted (the tool prints partitions in its map's order)."""
    rows = []
    for line in output.splitlines():
        words = line.split()
        if not words:
            continue
        words = ["<member>" if w in member_ids else w for w in words]
        words = [re.sub(r"^127\.0\.0\.1:\d+$", "<coordinator>", w) for w in words]
        words = [re.sub(r"^\(\d\)$", "(<node>)", w) for w in words]
        rows.append(words)
    return rows[:1] + sorted(rows[1:])


def test_kafka_consumer_groups_tool_matches_apache_kafka(kafka_broker, apache_kafka, unique_topic):
    group = f"{unique_topic}-group"
    brokers = {"labkit": kafka_broker.bootstrap, "kafka": apache_kafka.bootstrap}
    create = ["--create", "--topic", unique_topic, "--partitions", "2"]
    outputs: dict[str, dict[str, list]] = {}
    for name, bootstrap in brokers.items():
        created = run_tool("kafka-topics.sh", "--bootstrap-server", bootstrap, *create)
        assert created.returncode == 0, created.stderr
        consumer = kafka_python_group_scenario(bootstrap, unique_topic, group)
        member_ids = [consumer._coordinator._generation.member_id]  # masked

        def tool(*args, bootstrap=bootstrap):
            done = run_tool("kafka-consumer-groups.sh", "--bootstrap-server", bootstrap, *args)
            assert done.returncode == 0, done.stderr
            return done.stdout

        try:
            outputs[name] = {
                "describe": normalized(tool("--describe", "--group", group), member_ids),
                "members": normalized(
                    tool("--describe", "--group", group, "--members"), member_ids
                ),
                "state": normalized(tool("--describe", "--group", group, "--state"), member_ids),
            }
        finally:
            consumer.close()
        outputs[name]["empty"] = normalized(tool("--describe", "--group", group), member_ids)
        listed = tool("--list").split()
        assert group in listed
        outputs[name]["delete"] = normalized(tool("--delete", "--group", group), member_ids)
    assert outputs["labkit"] == outputs["kafka"]


def test_a_static_confluent_follower_restarts_without_a_rebalance(kafka_broker, unique_topic):
    create_topic(kafka_broker, unique_topic, 2)
    group = f"{unique_topic}-static"
    config = {
        "bootstrap.servers": kafka_broker.bootstrap,
        "group.id": group,
        "session.timeout.ms": 30_000,
        "heartbeat.interval.ms": 500,
    }

    def generation() -> int:
        with RawClient(kafka_broker.bootstrap) as client:
            header, _ = client.request("describe_groups", {"group_ids": [group]})
        return header["groups"][0]["generation"]

    def member(name: str) -> ConfluentConsumer:
        consumer = ConfluentConsumer({**config, "group.instance.id": name})
        consumer.subscribe([unique_topic])
        return consumer

    def one_partition_each(*consumers) -> bool:
        for consumer in consumers:
            consumer.poll(0.1)
        return all(len(c.assignment()) == 1 for c in consumers)

    leader = member("desk-1")
    try:
        wait_until(lambda: one_partition_each(leader) or len(leader.assignment()) == 2, "desk-1")
        follower = member("desk-2")
        try:
            wait_until(lambda: one_partition_each(leader, follower), "one partition each")
            before = generation()
        finally:
            follower.close()  # a static member does not leave the group on close
        follower = member("desk-2")
        try:
            wait_until(lambda: one_partition_each(leader, follower), "desk-2 back")
            assert generation() == before  # no rebalance
        finally:
            follower.close()
    finally:
        leader.close()
