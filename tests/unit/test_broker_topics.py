"""The topic registry without sockets: name rules, create/delete/alter, persistence,
the data-directory lock."""

from __future__ import annotations

import json

import pytest

from labkit.broker.topic_files import DataDirLockedError
from labkit.broker.topics import (
    TopicRegistry,
    validate_replication_factor,
    validate_topic_name,
)
from labkit.errors import (
    InvalidConfigurationError,
    InvalidPartitionsError,
    InvalidReplicationFactorError,
    InvalidTopicError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)
from labkit.log.config import LogConfig
from labkit.testing import FakeClock


@pytest.fixture
def clock():
    return FakeClock()


def open_registry(path, clock, partitions=1, defaults=None):
    return TopicRegistry(path, defaults or LogConfig(), clock, partitions).open()


@pytest.fixture
def registry(tmp_path, clock):
    reg = open_registry(tmp_path / "data", clock)
    yield reg
    reg.close()


@pytest.mark.parametrize("name", ["t", "a.b_c-D9", "x" * 249, "..a", "-"])
def test_legal_names(name):
    assert validate_topic_name(name) == name


@pytest.mark.parametrize(
    "name", ["", ".", "..", "x" * 250, "a/b", "../x", "a b", "é", "a\0b", None, 5, "a\\b"]
)
def test_illegal_names(name):
    with pytest.raises(InvalidTopicError):
        validate_topic_name(name)


def test_replication_factor_must_be_one():
    validate_replication_factor(1)
    validate_replication_factor(-1)
    with pytest.raises(InvalidReplicationFactorError, match="replication factor 1"):
        validate_replication_factor(3)


def test_create_makes_partition_directories_and_metadata(registry):
    registry.create("orders", 3, 1, {"retention.ms": 5000})
    assert registry.names() == ["orders"]
    for p in range(3):
        assert (registry.data_dir / f"orders-{p}").is_dir()
    meta = json.loads((registry.data_dir / "topics.json").read_text())
    assert meta["topics"]["orders"] == {"partitions": 3, "configs": {"retention.ms": "5000"}}
    assert registry.partition("orders", 2) is registry.get("orders").partitions[2]


def test_create_errors(registry):
    registry.create("t", 1)
    with pytest.raises(TopicAlreadyExistsError):
        registry.create("t", 1)
    with pytest.raises(InvalidPartitionsError):
        registry.create("u", 0)
    with pytest.raises(InvalidPartitionsError):
        registry.create("u", "2")
    with pytest.raises(InvalidConfigurationError, match="unknown topic config"):
        registry.create("u", 1, 1, {"retention.days": "1"})
    with pytest.raises(InvalidTopicError):
        registry.create("../u", 1)
    assert registry.names() == ["t"]
    assert not (registry.data_dir.parent / "u-0").exists()


def test_default_partition_count(tmp_path, clock):
    reg = open_registry(tmp_path / "d", clock, partitions=4)
    try:
        assert len(reg.create("t", -1).partitions) == 4
        assert len(reg.create("u", None).partitions) == 4
    finally:
        reg.close()


def test_validate_only_changes_nothing(registry):
    assert registry.create("t", 2, validate_only=True) is None
    assert registry.names() == []
    assert not (registry.data_dir / "t-0").exists()


def test_unknown_partition(registry):
    registry.create("t", 2)
    with pytest.raises(UnknownTopicOrPartitionError, match=r"partitions 0\.\.1"):
        registry.partition("t", 2)
    with pytest.raises(UnknownTopicOrPartitionError, match="does not exist"):
        registry.partition("nope", 0)


def test_delete_removes_the_files(registry):
    registry.create("t", 2)
    registry.delete("t")
    assert registry.names() == []
    assert list(registry.data_dir.glob("t-*")) == []
    with pytest.raises(UnknownTopicOrPartitionError):
        registry.delete("t")


def test_create_partitions(registry):
    registry.create("t", 1)
    registry.create_partitions("t", 3)
    assert len(registry.get("t").partitions) == 3
    assert (registry.data_dir / "t-2").is_dir()
    with pytest.raises(InvalidPartitionsError, match="must be larger"):
        registry.create_partitions("t", 3)
    with pytest.raises(UnknownTopicOrPartitionError):
        registry.create_partitions("nope", 3)


def test_describe_and_alter_configs(registry):
    registry.create("t", 1, 1, {"retention.ms": "60000"})
    described = {c["name"]: c for c in registry.describe_configs("t")}
    assert described["retention.ms"] == {"name": "retention.ms", "value": "60000", "default": False}
    assert described["segment.bytes"]["default"] is True
    registry.alter_configs("t", {"cleanup.policy": "compact", "retention.ms": None})
    described = {c["name"]: c for c in registry.describe_configs("t")}
    assert described["cleanup.policy"]["value"] == "compact"
    assert described["retention.ms"]["default"] is True
    assert registry.get("t").config.compacts
    with pytest.raises(InvalidConfigurationError):
        registry.alter_configs("t", {"segment.bytes": "-5"})
    assert registry.get("t").config.cleanup_policy == "compact"  # unchanged by the failure


def test_topics_and_configs_survive_reopening(tmp_path, clock):
    path = tmp_path / "d"
    reg = open_registry(path, clock)
    reg.create("a", 2, 1, {"retention.ms": "1000"})
    reg.create("b", 1)
    reg.alter_configs("b", {"segment.bytes": "100000"})
    cluster_id = reg.cluster_id
    reg.close()
    reg = open_registry(path, clock)
    try:
        assert reg.names() == ["a", "b"]
        assert len(reg.get("a").partitions) == 2
        assert reg.get("a").config.retention_ms == 1000
        assert reg.get("b").overrides == {"segment.bytes": "100000"}
        assert reg.cluster_id == cluster_id
        assert cluster_id
    finally:
        reg.close()


def test_broker_defaults_apply_to_topics_without_overrides(tmp_path, clock):
    defaults = LogConfig.from_kafka({"retention.ms": "9000"})
    reg = open_registry(tmp_path / "d", clock, defaults=defaults)
    try:
        topic = reg.create("t", 1)
        assert topic.config.retention_ms == 9000
        assert {c["name"]: c for c in reg.describe_configs("t")}["retention.ms"]["default"]
        assert reg.shortest_retention_ms() == 9000
        reg.create("forever", 1, configs={"retention.ms": "-1"})
        assert reg.shortest_retention_ms() == 9000
        reg.create("nothing", 1, configs={"retention.ms": "0"})  # checked at the floor, 100 ms
        assert reg.shortest_retention_ms() == 0
    finally:
        reg.close()


def test_one_broker_per_data_directory(tmp_path, clock):
    first = open_registry(tmp_path / "d", clock)
    try:
        with pytest.raises(DataDirLockedError, match="in use by another broker"):
            open_registry(tmp_path / "d", clock)
    finally:
        first.close()
    open_registry(tmp_path / "d", clock).close()  # free again


def test_damaged_metadata_is_reported(tmp_path, clock):
    path = tmp_path / "d"
    path.mkdir()
    (path / "topics.json").write_text('{"topics": {"../evil": {"partitions": 1}}}')
    with pytest.raises(InvalidConfigurationError, match="damaged"):
        open_registry(path, clock)
    (path / "topics.json").write_text("not json")
    with pytest.raises(InvalidConfigurationError, match="damaged"):
        open_registry(path, clock)
    open_registry(path / "fresh", clock).close()


def test_leftovers_are_cleaned(tmp_path, clock):
    path = tmp_path / "d"
    (path / "t-0.1234abcd-delete").mkdir(parents=True)
    (path / "t-0").mkdir()
    (path / "t-0" / "00000000000000000000.log").write_bytes(b"stale bytes")
    reg = open_registry(path, clock)
    try:
        assert not (path / "t-0.1234abcd-delete").exists()
        assert reg.names() == []  # an orphan directory is not a topic
        reg.create("t", 1)  # ...and creating the name wipes it
        assert reg.partition("t", 0).log_end_offset == 0
    finally:
        reg.close()


def test_a_stored_config_below_a_floor_falls_back_alone(tmp_path, clock, caplog):
    # topics.json written by a labkit without the segment floors
    path = tmp_path / "d"
    path.mkdir()
    (path / "topics.json").write_text(
        json.dumps(
            {
                "version": 1,
                "cluster_id": "c",
                "topics": {
                    "old": {
                        "partitions": 1,
                        "configs": {"segment.bytes": "14", "retention.ms": "5000"},
                    }
                },
            }
        )
    )
    reg = open_registry(path, clock)
    try:
        topic = reg.get("old")
        assert topic.config.retention_ms == 5000
        assert topic.config.segment_bytes == LogConfig().segment_bytes
        assert topic.overrides == {"retention.ms": "5000"}
    finally:
        reg.close()
    assert "segment.bytes=14" in caplog.text
