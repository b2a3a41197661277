"""`labkit topics`: option rules and Kafka's --describe layout (pure functions)."""

import argparse

import pytest

from labkit.cli import topics
from labkit.cli._common import UsageError
from labkit.cli.topics import PartitionInfo, TopicInfo


def parse(argv):
    parser = argparse.ArgumentParser(prog="kafka-topics.sh")
    topics.add_arguments(parser)
    return parser.parse_args(argv)


def rta(configs=None, topic_id=None, offsets=True):
    parts = tuple(
        PartitionInfo(p, 0, (0,), (0,), 0 if offsets else None, 10 * p if offsets else None)
        for p in (2, 0, 1)
    )
    return TopicInfo("rta", parts, configs or {}, topic_id)


def test_describe_matches_kafkas_layout():
    lines = topics.describe_lines(
        rta({"retention.ms": "60000", "cleanup.policy": "compact"}, "abc")
    )
    assert lines[0] == (
        "Topic: rta\tTopicId: abc\tPartitionCount: 3\tReplicationFactor: 1\t"
        "Configs: cleanup.policy=compact,retention.ms=60000"
    )
    assert lines[1] == (
        "\tTopic: rta\tPartition: 0\tLeader: 0\tReplicas: 0\tIsr: 0"
        "\tLogStartOffset: 0\tLogEndOffset: 0"
    )
    assert [line.split("\t")[2] for line in lines[1:]] == [
        "Partition: 0",
        "Partition: 1",
        "Partition: 2",
    ]
    assert lines[3].endswith("\tLogEndOffset: 20")


def test_describe_without_id_configs_or_offsets():
    lines = topics.describe_lines(rta(offsets=False))
    assert lines[0] == (
        "Topic: rta\tTopicId: AAAAAAAAAAAAAAAAAAAAAA\tPartitionCount: 3\t"
        "ReplicationFactor: 1\tConfigs: "
    )
    assert lines[1] == "\tTopic: rta\tPartition: 0\tLeader: 0\tReplicas: 0\tIsr: 0"


def test_describe_leaderless_partition_and_several_replicas():
    topic = TopicInfo("t", (PartitionInfo(0, -1, (1, 2, 3), (2,)),))
    assert (
        topics.describe_lines(topic)[1]
        == "\tTopic: t\tPartition: 0\tLeader: none\tReplicas: 1,2,3\tIsr: 2"
    )
    assert topic.replication_factor == 3


def test_topic_selection_is_a_regex_full_match_like_kafka():
    names = ["rta", "rta2", "sensors", "__consumer_offsets", "a.b", "axb"]
    assert topics.select_topics(names, None) == sorted(names)
    assert topics.select_topics(names, "rta") == ["rta"]
    assert topics.select_topics(names, "rta.*") == ["rta", "rta2"]
    assert topics.select_topics(names, "a.b") == ["a.b", "axb"]
    assert topics.select_topics(names, "missing") == []
    assert topics.select_topics(["a[b"], "a[b") == ["a[b"], "an invalid regex is taken literally"


def test_collision_warning_only_for_dots_and_underscores():
    assert topics.collision_warning("rta") is None
    assert "period ('.') or underscore ('_')" in topics.collision_warning("rta.v1")
    assert topics.collision_warning("rta_v1") is not None


def test_exactly_one_action_is_required():
    with pytest.raises(SystemExit):
        parse(["--topic", "rta"])
    with pytest.raises(SystemExit):
        parse(["--create", "--list"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--create"], "--topic is required"),
        (["--delete"], "--topic is required"),
        (["--create", "--topic", "t", "--partitions", "0"], "greater than 0"),
        (["--create", "--topic", "t", "--replication-factor", "0"], "between 1 and 32767"),
        (["--list", "--partitions", "3"], "--partitions can only"),
        (["--describe", "--config", "a=b"], "--config can only"),
        (["--delete", "--topic", "t", "--if-not-exists"], "--if-not-exists can only"),
        (["--create", "--topic", "t", "--if-exists"], "--if-exists can only"),
        (["--alter", "--topic", "t"], "--alter needs"),
        (["--create", "--topic", "t", "--config", "retention.ms"], "key=value"),
        (["--create", "--topic", "t", "--delete-config", "x"], "--delete-config can only"),
    ],
)
def test_option_rules(argv, message):
    with pytest.raises(UsageError, match=message):
        topics.validate(parse(argv))


def test_valid_commands_pass():
    for argv in (
        ["--list"],
        ["--describe"],
        ["--describe", "--topic", "rta", "--if-exists"],
        [
            "--create",
            "--topic",
            "rta",
            "--partitions",
            "3",
            "--replication-factor",
            "1",
            "--config",
            "retention.ms=1000",
            "--config",
            "cleanup.policy=compact",
            "--if-not-exists",
        ],
        ["--alter", "--topic", "rta", "--partitions", "6"],
        ["--alter", "--topic", "rta", "--delete-config", "retention.ms"],
        ["--delete", "--topic", "rta", "--if-exists"],
    ):
        topics.validate(parse(argv))


def test_error_text_is_the_message_without_the_class_name():
    from labkit.errors import InvalidReplicationFactorError, TopicAlreadyExistsError

    assert (
        topics.admin_error_text(
            InvalidReplicationFactorError("Replication factor: 3 larger than available brokers: 1.")
        )
        == "Replication factor: 3 larger than available brokers: 1."
    )
    assert (
        topics.admin_error_text(TopicAlreadyExistsError()) == "Topic with this name already exists."
    )
