"""``labkit configs`` (kafka-configs.sh): flag parsing and Kafka's output lines (pure)."""

from __future__ import annotations

import argparse

import pytest

from labkit.cli._common import UsageError
from labkit.cli.configs import (
    _entity,
    add_arguments,
    alter_line,
    describe_lines,
    parse_add_config,
    quota_ops,
)


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_add_config_is_kafkas_comma_list_with_brackets():
    assert parse_add_config("producer_byte_rate=1048576,consumer_byte_rate=2048") == {
        "producer_byte_rate": "1048576",
        "consumer_byte_rate": "2048",
    }
    assert parse_add_config("cleanup.policy=[compact,delete],retention.ms=5") == {
        "cleanup.policy": "compact,delete",
        "retention.ms": "5",
    }
    with pytest.raises(UsageError, match="key=value"):
        parse_add_config("producer_byte_rate")


def test_quota_ops_check_names_and_numbers():
    assert quota_ops({"producer_byte_rate": "1048576"}, ["consumer_byte_rate"]) == {
        "producer_byte_rate": 1048576,
        "consumer_byte_rate": None,
    }
    with pytest.raises(UsageError, match="producer_byte_rate, consumer_byte_rate"):
        quota_ops({"request_percentage": "10"}, [])
    with pytest.raises(UsageError, match="bytes per second"):
        quota_ops({"producer_byte_rate": "fast"}, [])


def test_entities_follow_kafkas_flags():
    assert _entity(_args("--alter", "--entity-type", "clients", "--entity-name", "X")) == (
        "clients",
        "X",
    )
    assert _entity(_args("--alter", "--entity-type", "clients", "--entity-default")) == (
        "clients",
        None,
    )
    assert _entity(_args("--describe", "--client", "X")) == ("clients", "X")
    assert _entity(_args("--describe", "--topic", "t")) == ("topics", "t")
    with pytest.raises(UsageError, match="client id only"):
        _entity(_args("--describe", "--entity-type", "users"))
    with pytest.raises(UsageError, match="--entity-default is for"):
        _entity(_args("--describe", "--entity-type", "topics", "--entity-default"))
    with pytest.raises(UsageError, match="needs --entity-name"):
        _entity(_args("--alter", "--entity-type", "clients"))


def test_output_lines_are_kafkas():
    entries = [
        {"entity": {"client-id": None}, "values": {"producer_byte_rate": 500.0}},
        {
            "entity": {"client-id": "X"},
            "values": {"producer_byte_rate": 1048576.0, "consumer_byte_rate": 2048.0},
        },
    ]
    assert describe_lines(entries) == [
        "Quota configs for the default client-id are producer_byte_rate=500.0",
        "Quota configs for client-id 'X' are consumer_byte_rate=2048.0, "
        "producer_byte_rate=1048576.0",
    ]
    assert alter_line("clients", "X") == "Completed updating config for client X."
    assert (
        alter_line("clients", None)
        == "Completed updating default config for clients in the cluster."
    )
