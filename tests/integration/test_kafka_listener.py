"""The Kafka listener (issue 13) answered by real Kafka clients over real sockets:
kafka-python's KafkaAdminClient and Apache Kafka's own kafka-topics.sh, the latter
compared with Apache Kafka itself."""

from __future__ import annotations

import re
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest
from kafka import KafkaAdminClient as KafkaPythonAdmin
from kafka.admin import NewTopic, OffsetSpec
from kafka.errors import (
    InvalidReplicationFactorError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)
from kafka.errors import InvalidRequestError as KafkaInvalidRequestError
from kafka.structs import TopicPartition

from labkit import KafkaAdminClient as LabkitAdmin
from labkit import KafkaProducer as LabkitProducer
from labkit.broker.config import BrokerConfig
from labkit.broker.server import BrokerServer
from labkit.testing import BrokerProcess
from labkit.testing.apache_kafka import run_tool
from tests.integration.client_helpers import create_topic
from tests.raw_connections import read_frame

pytestmark = pytest.mark.usefixtures("kafka_python_garbage")


@pytest.fixture(scope="module")
def kafka_broker(tmp_path_factory):
    with BrokerProcess(data_dir=tmp_path_factory.mktemp("kafka-listener")) as proc:
        yield proc


def kafka_python_admin(broker) -> KafkaPythonAdmin:
    return KafkaPythonAdmin(bootstrap_servers=broker.bootstrap, client_id="kafka-python-test")


def api_versions_raw(port: int, version: int, correlation_id: int) -> tuple[int, int, bytes]:
    """Send one ApiVersions request of ``version`` with a v1 header; return (correlation
    id, error code, body after the error code) of the answer."""
    body = struct.pack(">hhih", 18, version, correlation_id, 4) + b"test"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(struct.pack(">i", len(body)) + body)
        answer = read_frame(sock)
    correlation, error = struct.unpack_from(">ih", answer)
    return correlation, error, answer[6:]


def test_kafka_python_lists_and_describes_topics(kafka_broker, unique_topic):
    create_topic(kafka_broker, unique_topic, partitions=3)
    admin = kafka_python_admin(kafka_broker)
    try:
        assert unique_topic in admin.list_topics()
        (described,) = admin.describe_topics([unique_topic])
        assert described["error_code"] == 0
        assert described["name"] == unique_topic
        assert [p["partition_index"] for p in described["partitions"]] == [0, 1, 2]
        for partition in described["partitions"]:
            assert partition["leader_id"] == 0
            assert partition["replica_nodes"] == [0]
            assert partition["isr_nodes"] == [0]
    finally:
        admin.close()


def test_kafka_python_sees_the_kafka_port_advertised(kafka_broker):
    """Kafka clients reconnect to the advertised address: it must be the Kafka port,
    not the ZeroMQ one."""
    admin = kafka_python_admin(kafka_broker)
    try:
        cluster = admin.describe_cluster()
    finally:
        admin.close()
    (broker,) = cluster["brokers"]
    assert (broker["host"], broker["port"]) == ("127.0.0.1", kafka_broker.port)
    assert cluster["controller_id"] == 0
    assert cluster["cluster_id"]


def test_kafka_python_describing_a_missing_topic_gets_kafkas_error(kafka_broker, unique_topic):
    admin = kafka_python_admin(kafka_broker)
    try:
        (described,) = admin.describe_topics([unique_topic])  # kafka-python 3.0 does not raise
        assert described["error_code"] == UnknownTopicOrPartitionError.errno
        assert described["partitions"] == []
        assert unique_topic not in admin.list_topics()  # and it was not auto-created
    finally:
        admin.close()


def test_kafka_python_creates_and_deletes_topics(kafka_broker, unique_topic):
    admin = kafka_python_admin(kafka_broker)
    try:
        created = admin.create_topics(
            [NewTopic(unique_topic, 3, 1, topic_configs={"retention.ms": "60000"})]
        )
        (row,) = created["topics"]
        assert (row["name"], row["error_code"], row["num_partitions"]) == (unique_topic, 0, 3)
        (described,) = admin.describe_topics([unique_topic])
        assert len(described["partitions"]) == 3
        with pytest.raises(TopicAlreadyExistsError):
            admin.create_topics([NewTopic(unique_topic, 3, 1)])
        with pytest.raises(InvalidReplicationFactorError, match="single broker"):
            admin.create_topics([NewTopic(unique_topic + "-rf3", 1, 3)])
        (row,) = admin.create_topics([NewTopic(unique_topic + "-d", -1, -1)])["topics"]
        assert (row["error_code"], row["num_partitions"], row["replication_factor"]) == (0, 1, 1)
        admin.delete_topics([unique_topic, unique_topic + "-d"])
        assert unique_topic not in admin.list_topics()
        with pytest.raises(UnknownTopicOrPartitionError):
            admin.delete_topics([unique_topic])
    finally:
        admin.close()
    # the labkit side sees the same topics: one broker state behind both protocols
    labkit_admin = LabkitAdmin(bootstrap_servers=kafka_broker.bootstrap)
    try:
        assert unique_topic not in labkit_admin.list_topics()
        assert unique_topic + "-rf3" not in labkit_admin.list_topics()
    finally:
        labkit_admin.close()


def test_kafka_python_lists_offsets(kafka_broker, unique_topic):
    create_topic(kafka_broker, unique_topic, partitions=2)
    producer = LabkitProducer(bootstrap_servers=kafka_broker.bootstrap)
    base = int(time.time() * 1000) - 60_000  # recent: older than 7 days would be retention's
    for i in range(10):
        producer.send(unique_topic, b"v%d" % i, partition=0, timestamp_ms=base + i * 1000)
    producer.flush()
    producer.close()
    tp0, tp1 = TopicPartition(unique_topic, 0), TopicPartition(unique_topic, 1)
    admin = kafka_python_admin(kafka_broker)
    try:
        offsets = admin.list_partition_offsets({tp0: OffsetSpec.EARLIEST, tp1: OffsetSpec.LATEST})
        assert (offsets[tp0].offset, offsets[tp1].offset) == (0, 0)
        assert admin.list_partition_offsets({tp0: OffsetSpec.LATEST})[tp0].offset == 10
        by_time = admin.list_partition_offsets({tp0: base + 4500})[tp0]
        assert (by_time.offset, by_time.timestamp) == (5, base + 5000)
        assert admin.list_partition_offsets({tp0: base + 10_000})[tp0].offset == -1  # none so late
        with pytest.raises(KafkaInvalidRequestError):  # max timestamp (-3): not yet
            admin.list_partition_offsets({tp0: OffsetSpec.MAX_TIMESTAMP})
    finally:
        admin.close()


def test_kafka_get_offsets_matches_apache_kafka(kafka_broker, apache_kafka, unique_topic):
    create = ["--create", "--topic", unique_topic, "--partitions", "2"]
    assert (
        run_tool(
            "kafka-topics.sh", "--bootstrap-server", kafka_broker.bootstrap, *create
        ).returncode
        == 0
    )
    assert apache_kafka.tool("kafka-topics.sh", *create).returncode == 0
    for spec in ("-1", "-2", "1700000000000"):
        command = ["--topic", unique_topic, "--time", spec]
        on_labkit = run_tool(
            "kafka-get-offsets.sh", "--bootstrap-server", kafka_broker.bootstrap, *command
        )
        on_kafka = apache_kafka.tool("kafka-get-offsets.sh", *command)
        assert on_labkit.returncode == on_kafka.returncode == 0, on_labkit.stderr
        assert on_labkit.stdout == on_kafka.stdout, spec


# -- the wire, by hand ---------------------------------------------------------------------


def test_an_unknown_api_versions_version_gets_error_35_and_the_brokers_range(kafka_broker):
    """KIP-511: a client newer than the broker learns the broker's range, in v0 format."""
    correlation, error, rest = api_versions_raw(kafka_broker.port, 99, 1234)
    assert (correlation, error) == (1234, 35)
    (count,) = struct.unpack_from(">i", rest)
    ranges = {
        struct.unpack_from(">hhh", rest, 4 + 6 * i)[0]: struct.unpack_from(">hhh", rest, 4 + 6 * i)[
            1:
        ]
        for i in range(count)
    }
    assert ranges[18] == (0, 4)
    assert ranges[3] == (0, 12)
    correlation, error, _ = api_versions_raw(kafka_broker.port, 0, 99)
    assert (correlation, error) == (99, 0)


def test_responses_leave_in_request_order(kafka_broker):
    """Many requests written at once, ApiVersions (answered by the listener) mixed with
    Metadata (answered by the broker): the answers come back in the order asked."""
    frames = []
    for correlation in range(200):
        if correlation % 2:
            body = struct.pack(">hhih", 3, 1, correlation, 1) + b"t" + struct.pack(">i", -1)
        else:
            body = struct.pack(">hhih", 18, 0, correlation, 1) + b"t"
        frames.append(struct.pack(">i", len(body)) + body)
    with socket.create_connection(("127.0.0.1", kafka_broker.port), timeout=30) as sock:
        sock.sendall(b"".join(frames))
        got = [struct.unpack_from(">i", read_frame(sock))[0] for _ in range(200)]
    assert got == list(range(200))


# -- Apache Kafka's own tool, compared with Apache Kafka ------------------------------------


def test_kafka_topics_list_matches_apache_kafka(kafka_broker, apache_kafka, unique_topic):
    names = [f"{unique_topic}-{i}" for i in range(3)]
    for name in names:
        create_topic(kafka_broker, name)
        assert apache_kafka.tool("kafka-topics.sh", "--create", "--topic", name).returncode == 0
    on_labkit = run_tool("kafka-topics.sh", "--bootstrap-server", kafka_broker.bootstrap, "--list")
    on_kafka = apache_kafka.tool("kafka-topics.sh", "--list")
    assert on_labkit.returncode == 0, on_labkit.stderr
    assert on_kafka.returncode == 0, on_kafka.stderr

    def ours(listing: str) -> list[str]:  # both brokers hold other tests' topics too
        return [line for line in listing.splitlines() if line.startswith(unique_topic)]

    assert ours(on_labkit.stdout) == ours(on_kafka.stdout) == sorted(names)


def test_kafka_topics_create_and_delete_match_apache_kafka(
    kafka_broker, apache_kafka, unique_topic
):
    """The same kafka-topics.sh commands print the same lines and exit codes on both."""
    commands = [
        ["--create", "--topic", unique_topic, "--partitions", "2"],
        ["--create", "--topic", unique_topic + "-c", "--config", "retention.ms=60000"],
        ["--create", "--topic", unique_topic],  # already exists
        ["--delete", "--topic", unique_topic + "-c"],
    ]
    for command in commands:
        on_labkit = run_tool(
            "kafka-topics.sh", "--bootstrap-server", kafka_broker.bootstrap, *command
        )
        on_kafka = apache_kafka.tool("kafka-topics.sh", *command)
        assert on_labkit.returncode == on_kafka.returncode, (command, on_labkit.stderr)
        assert first_line(on_labkit.stdout) == first_line(on_kafka.stdout).replace(
            "Topic '",
            "topic '",  # labkit's own message, same error (TOPIC_ALREADY_EXISTS)
        ).replace("' already exists.", "' already exists"), command
    listed = run_tool("kafka-topics.sh", "--bootstrap-server", kafka_broker.bootstrap, "--list")
    assert unique_topic in listed.stdout.split()
    assert unique_topic + "-c" not in listed.stdout.split()


def test_kafka_topics_describe_matches_apache_kafka(kafka_broker, apache_kafka, unique_topic):
    """Modulo what differs by design: Apache Kafka's topic ids (labkit's is the zero UUID,
    which the tool leaves out), its node id (1; labkit's broker is 0) and
    min.insync.replicas=1, which a KRaft node sets for the cluster and lists as a topic
    config. Both answer DescribeTopicPartitions, so the Elr and LastKnownElr columns are
    compared as printed."""
    create = ["--create", "--topic", unique_topic, "--partitions", "2"]
    create += ["--config", "retention.ms=100000"]
    assert (
        run_tool(
            "kafka-topics.sh", "--bootstrap-server", kafka_broker.bootstrap, *create
        ).returncode
        == 0
    )
    assert apache_kafka.tool("kafka-topics.sh", *create).returncode == 0
    paged = ["--describe", "--topic", unique_topic, "--partition-size-limit-per-response", "1"]
    for describe in (
        ["--describe", "--topic", unique_topic],
        paged,  # one partition per answer: the tool follows the cursor
        ["--describe", "--topic", "nope"],
    ):
        on_labkit = run_tool(
            "kafka-topics.sh", "--bootstrap-server", kafka_broker.bootstrap, *describe
        )
        on_kafka = apache_kafka.tool("kafka-topics.sh", *describe)
        assert on_labkit.returncode == on_kafka.returncode
        assert normalized(on_labkit.stdout) == normalized(on_kafka.stdout)
        assert first_line(on_labkit.stderr) == first_line(on_kafka.stderr)
        assert on_labkit.stdout.count(f"Topic: {unique_topic}\tPartition: ") == (
            0 if "nope" in describe else 2
        )


def normalized(listing: str) -> str:
    text = re.sub(r"TopicId: \S+\t", "", listing)
    text = re.sub(r"(Leader|Replicas|Isr): \d+", r"\1: N", text)
    return text.replace("min.insync.replicas=1,", "")


def first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


# -- inside the broker process -------------------------------------------------------------


def test_kafka_connections_are_not_in_the_zeromq_connection_table(tmp_path):
    """Each Kafka client is an inproc peer of the ROUTER: no TCP descriptor, so the
    ConnectionTable (TCP byte budgets) must not hold it, and the broker shuts down
    cleanly with Kafka clients still connected."""
    config = BrokerConfig.build("127.0.0.1", 0, tmp_path / "d")
    server = BrokerServer(config)
    server.start()
    kafka_port = server.config.port
    loop = threading.Thread(target=server.serve_forever, daemon=True)
    loop.start()
    admins = []
    try:
        for _ in range(3):
            admin = KafkaPythonAdmin(bootstrap_servers=f"127.0.0.1:{kafka_port}")
            admin.list_topics()
            admins.append(admin)
        assert server.kafka.stats["connections"] >= 3
        assert len(server.loop.connections) == 0
    finally:
        server.request_stop()
        loop.join(timeout=30)
        for admin in admins:
            admin.close()
    assert not loop.is_alive()


def test_the_kafka_port_taken_is_a_clear_start_error(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "labkit.broker",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--zmq-port",
                "0",
                "--data-dir",
                str(tmp_path / "d"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert f"port {port} on 127.0.0.1 (listener PLAINTEXT) is already in use" in result.stderr
    assert "--port" in result.stderr
