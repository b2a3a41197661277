"""Topic administration on the real broker process: create, describe, alter, delete,
auto-create, name rules, and what survives a restart."""

from __future__ import annotations

import pytest

from labkit.protocol.records import decode_batch, encode_batch, split_batches
from labkit.testing import BrokerProcess, RawClient


def batch(*values):
    return encode_batch([1_700_000_000_000] * len(values), None, list(values))


def values_of(payload):
    out = []
    for start, _end in split_batches(payload):
        out.extend(decode_batch(payload, start).values)
    return out


def create_one(client, name, partitions=1, replication=1, configs=None, validate_only=False):
    header, _ = client.request(
        "create_topics",
        {
            "validate_only": validate_only,
            "topics": [
                {
                    "name": name,
                    "num_partitions": partitions,
                    "replication_factor": replication,
                    "configs": configs or {},
                }
            ],
        },
    )
    assert header["error"] == 0
    return header["topics"][0]


def metadata(client, topics, allow_auto_create=False):
    header, _ = client.request(
        "metadata", {"topics": topics, "allow_auto_create": allow_auto_create}
    )
    assert header["error"] == 0
    return header


def configs_of(client, name):
    header, _ = client.request("describe_configs", {"topics": [name]})
    entry = header["topics"][0]
    assert entry["error"] == 0, entry
    return {c["name"]: (c["value"], c["default"]) for c in entry["configs"]}


@pytest.fixture
def client(shared_broker):
    with RawClient(shared_broker.bootstrap) as c:
        yield c


def test_create_describe_and_list(shared_broker, client, unique_topic):
    assert create_one(client, unique_topic, partitions=3)["error"] == 0
    header = metadata(client, [unique_topic])
    assert header["brokers"] == [{"node_id": 0, "host": "127.0.0.1", "port": shared_broker.port}]
    (topic,) = header["topics"]
    assert topic["error"] == 0
    assert [p["partition"] for p in topic["partitions"]] == [0, 1, 2]
    assert topic["partitions"][0]["leader"] == 0
    assert unique_topic in [t["name"] for t in metadata(client, None)["topics"]]
    assert (shared_broker.data_dir / f"{unique_topic}-2").is_dir()


def test_create_errors_have_kafka_codes_and_plain_messages(client, unique_topic):
    assert create_one(client, unique_topic)["error"] == 0
    assert create_one(client, unique_topic)["error"] == 36  # already exists
    other = unique_topic + "-x"
    bad_rf = create_one(client, other, replication=3)
    assert bad_rf["error"] == 38
    assert "replication factor 1" in bad_rf["message"]
    assert create_one(client, other, partitions=0)["error"] == 37
    assert create_one(client, other, configs={"retention.ms": "soon"})["error"] == 40
    assert create_one(client, other, configs={"no.such.config": "1"})["error"] == 40
    assert metadata(client, [other])["topics"][0]["error"] == 3  # nothing was created


def test_validate_only_creates_nothing(client, unique_topic):
    assert create_one(client, unique_topic, validate_only=True)["error"] == 0
    assert metadata(client, [unique_topic])["topics"][0]["error"] == 3


@pytest.mark.parametrize(
    "name", ["../x", "..", ".", "a/b", "", "x" * 250, "sp ace", "ąę", "/abs", "..\\x"]
)
def test_invalid_topic_names_are_refused_and_touch_no_file(shared_broker, client, name):
    outside = shared_broker.data_dir.parent
    before = set(outside.iterdir())
    assert create_one(client, name)["error"] == 17
    header, _ = client.request("produce", {"acks": 1, "targets": [[name, 0]]}, [batch(b"v")])
    assert header["results"][0][1] == 17
    assert metadata(client, [name], allow_auto_create=True)["topics"][0]["error"] == 17
    assert set(outside.iterdir()) == before
    assert not (outside / "x-0").exists()


def test_auto_create_on_metadata_and_on_produce(client, unique_topic):
    assert metadata(client, [unique_topic])["topics"][0]["error"] == 3
    (topic,) = metadata(client, [unique_topic], allow_auto_create=True)["topics"]
    assert topic["error"] == 0
    assert len(topic["partitions"]) == 1
    header, _ = client.request(
        "produce", {"acks": 1, "targets": [[unique_topic + "-p", 0]]}, [batch(b"v")]
    )
    assert header["results"][0][:2] == [0, 0]


def test_auto_create_can_be_disabled(tmp_path):
    with (
        BrokerProcess(
            data_dir=tmp_path / "d",
            config={"auto.create.topics.enable": "false", "num.partitions": "2"},
        ) as broker,
        RawClient(broker.bootstrap) as client,
    ):
        header, _ = client.request("produce", {"acks": 1, "targets": [["nope", 0]]}, [batch(b"v")])
        assert header["results"][0][1] == 3
        assert "auto.create.topics.enable" in header["results"][0][3]
        assert metadata(client, ["nope"], allow_auto_create=True)["topics"][0]["error"] == 3
        create_one(client, "yes", partitions=-1)
        assert len(metadata(client, ["yes"])["topics"][0]["partitions"]) == 2


def test_describe_and_alter_configs_incrementally(client, unique_topic):
    create_one(client, unique_topic, configs={"retention.ms": "60000"})
    configs = configs_of(client, unique_topic)
    assert configs["retention.ms"] == ("60000", False)
    assert configs["cleanup.policy"] == ("delete", True)
    header, _ = client.request(
        "alter_configs",
        {"topics": {unique_topic: {"segment.bytes": "1048576", "cleanup.policy": "compact"}}},
    )
    assert header["topics"][0]["error"] == 0
    configs = configs_of(client, unique_topic)
    assert configs["retention.ms"] == ("60000", False)  # untouched key kept
    assert configs["segment.bytes"] == ("1048576", False)
    assert configs["cleanup.policy"] == ("compact", False)
    header, _ = client.request("alter_configs", {"topics": {unique_topic: {"retention.ms": None}}})
    assert header["topics"][0]["error"] == 0
    assert configs_of(client, unique_topic)["retention.ms"][1] is True  # back to default
    header, _ = client.request(
        "alter_configs", {"topics": {unique_topic: {"bogus": "1"}, "missing-topic-zz": {}}}
    )
    assert [t["error"] for t in header["topics"]] == [40, 3]


def test_create_partitions_grows_a_topic(client, unique_topic):
    create_one(client, unique_topic)
    header, _ = client.request("create_partitions", {"topics": {unique_topic: 3}})
    assert header["topics"][0]["error"] == 0
    assert len(metadata(client, [unique_topic])["topics"][0]["partitions"]) == 3
    header, _ = client.request(
        "produce", {"acks": 1, "targets": [[unique_topic, 2]]}, [batch(b"v")]
    )
    assert header["results"][0][1] == 0
    header, _ = client.request("create_partitions", {"topics": {unique_topic: 2}})
    assert header["topics"][0]["error"] == 37


def test_delete_removes_files_and_the_name_can_be_reused(shared_broker, client, unique_topic):
    create_one(client, unique_topic, partitions=2)
    client.request("produce", {"acks": 1, "targets": [[unique_topic, 0]]}, [batch(b"old")])
    header, _ = client.request("delete_topics", {"topics": [unique_topic, "never-was-zz"]})
    assert [t["error"] for t in header["topics"]] == [0, 3]
    assert not (shared_broker.data_dir / f"{unique_topic}-0").exists()
    assert metadata(client, [unique_topic])["topics"][0]["error"] == 3
    create_one(client, unique_topic)
    header, _ = client.request(
        "produce", {"acks": 1, "targets": [[unique_topic, 0]]}, [batch(b"new")]
    )
    assert header["results"][0][0] == 0


def test_parked_fetch_on_a_deleted_topic_is_answered(client, unique_topic):
    create_one(client, unique_topic)
    rid = client.send(
        "fetch",
        {
            "max_wait_ms": 20000,
            "min_bytes": 1,
            "max_bytes": 1 << 20,
            "partitions": [[unique_topic, 0, 0, 1 << 20]],
        },
    )
    assert client.receive(0.2) is None
    client.request("delete_topics", {"topics": [unique_topic]})
    header, _ = client.wait_for(rid, 5)
    assert header["partitions"][0][2] == 3


def test_restart_keeps_topics_data_and_configs(broker):
    with RawClient(broker.bootstrap) as client:
        create_one(client, "kept", partitions=2, configs={"retention.ms": "123456"})
        client.request("produce", {"acks": 1, "targets": [["kept", 1]]}, [batch(b"a", b"b")])
        client.request("alter_configs", {"topics": {"kept": {"segment.bytes": "2000000"}}})
        cluster_id = metadata(client, None)["cluster_id"]
    assert broker.restart() is broker
    with RawClient(broker.bootstrap) as client:
        header = metadata(client, None)
        assert header["cluster_id"] == cluster_id
        (topic,) = header["topics"]
        assert topic["name"] == "kept"
        assert len(topic["partitions"]) == 2
        configs = configs_of(client, "kept")
        assert configs["retention.ms"] == ("123456", False)
        assert configs["segment.bytes"] == ("2000000", False)
        header, payloads = client.request(
            "fetch",
            {
                "max_wait_ms": 0,
                "min_bytes": 1,
                "max_bytes": 1 << 20,
                "partitions": [["kept", 1, 0, 1 << 20]],
            },
        )
        assert values_of(payloads[0]) == [b"a", b"b"]
        header, _ = client.request("produce", {"acks": 1, "targets": [["kept", 1]]}, [batch(b"c")])
        assert header["results"][0][0] == 2
