"""BrokerConfig: Kafka's broker key names, validation, derived values."""

from __future__ import annotations

import pytest

from labkit.broker.config import BrokerConfig, parse_config_flags
from labkit.errors import KafkaConfigurationError


def test_defaults_are_kafkas():
    config = BrokerConfig.build()
    assert config.auto_create_topics_enable is True
    assert config.num_partitions == 1
    assert config.message_max_bytes == 1048588
    assert config.log_retention_check_interval_ms == 300_000
    assert config.log_defaults.retention_ms == 7 * 24 * 3600 * 1000
    assert config.log_defaults.segment_bytes == 1 << 30


def test_broker_keys_and_log_defaults():
    config = BrokerConfig.build(
        "0.0.0.0",
        9093,
        "/tmp/x",
        {
            "auto.create.topics.enable": "false",
            "num.partitions": "3",
            "log.retention.hours": "2",
            "log.segment.bytes": "1048576",
            "message.max.bytes": "2000000",
            "log.retention.check.interval.ms": "1000",
        },
    )
    assert config.auto_create_topics_enable is False
    assert config.num_partitions == 3
    assert config.log_defaults.retention_ms == 2 * 3600 * 1000
    assert config.log_defaults.segment_bytes == 1048576
    assert config.message_max_bytes == 2000000
    assert config.log_defaults.max_message_bytes == 2000000
    assert config.log_retention_check_interval_ms == 1000


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"log.retention.weeks": "1"}, "unknown broker config 'log.retention.weeks'"),
        ({"retention.ms": "1000"}, "go on the topic"),
        ({"num.partitions": "0"}, "at least 1"),
        ({"num.partitions": "three"}, "whole number"),
        ({"auto.create.topics.enable": "maybe"}, "true or false"),
        ({"log.retention.ms": "soon"}, "log.retention.ms"),
    ],
)
def test_bad_settings_name_the_key(overrides, fragment):
    with pytest.raises(KafkaConfigurationError, match=fragment.replace(".", r"\.")):
        BrokerConfig.build(overrides=overrides)


def test_bad_port():
    with pytest.raises(KafkaConfigurationError, match="not a TCP port"):
        BrokerConfig.build(port=70000)


def test_parse_config_flags():
    assert parse_config_flags(["a.b=1", " c = x=y "]) == {"a.b": "1", "c": "x=y"}
    assert parse_config_flags(None) == {}
    with pytest.raises(KafkaConfigurationError, match="key=value"):
        parse_config_flags(["novalue"])


def test_hosts():
    assert BrokerConfig.build("localhost").bind_host == "127.0.0.1"
    assert BrokerConfig.build("localhost").advertised_host == "localhost"
    assert BrokerConfig.build("0.0.0.0").advertised_host == "localhost"
    assert BrokerConfig.build("0.0.0.0").bind_host == "0.0.0.0"
    named = BrokerConfig.build("0.0.0.0", overrides={"advertised.host.name": "broker"})
    assert named.advertised_host == "broker"


def test_frame_limit_covers_the_largest_batch():
    config = BrokerConfig.build(
        overrides={"socket.request.max.bytes": "1024", "message.max.bytes": "5000000"}
    )
    assert config.max_frame_bytes > 5000000


def test_cleaner_runs_sooner_for_short_retention():
    config = BrokerConfig.build()
    assert config.retention_check_interval_s(None) == 300.0
    assert config.retention_check_interval_s(5000) == 1.25
    assert config.retention_check_interval_s(10) == 0.1  # never busier than 100 ms
    assert config.retention_check_interval_s(10**12) == 300.0
    assert config.retention_check_interval_s(None, compacting=True) == 15.0
    fast = BrokerConfig.build(overrides={"log.cleaner.backoff.ms": "500"})
    assert fast.retention_check_interval_s(5000, compacting=True) == 0.5


def test_client_limits():
    config = BrokerConfig.build()
    assert config.fetch_max_bytes == 57_671_680  # Kafka's fetch.max.bytes
    assert config.fetch_max_wait_max_ms == 30_000
    assert config.connection_max_buffered_bytes == 32 << 20
    config = BrokerConfig.build(
        overrides={
            "fetch.max.bytes": "1048576",
            "fetch.max.wait.max.ms": "5000",
            "connection.max.buffered.bytes": str(64 << 20),
        }
    )
    assert (
        config.fetch_max_bytes,
        config.fetch_max_wait_max_ms,
        config.connection_max_buffered_bytes,
    ) == (1 << 20, 5000, 64 << 20)
    with pytest.raises(KafkaConfigurationError, match="smaller than the largest request"):
        BrokerConfig.build(overrides={"connection.max.buffered.bytes": str(8 << 20)})
