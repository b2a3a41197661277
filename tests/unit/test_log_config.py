"""LogConfig: Kafka names in, typed values inside, clear errors for bad input."""

from __future__ import annotations

import pytest

from labkit.errors import InvalidConfigurationError
from labkit.log.config import (
    BROKER_CONFIG_KEYS,
    MIN_SEGMENT_BYTES,
    MIN_SEGMENT_INDEX_BYTES,
    MIN_SEGMENT_MS,
    TOPIC_CONFIG_KEYS,
    LogConfig,
    split_broker_configs,
)


def test_defaults_are_kafkas():
    config = LogConfig()
    assert config.segment_bytes == 1 << 30
    assert config.retention_ms == 7 * 24 * 3600 * 1000
    assert config.retention_bytes == -1
    assert config.cleanup_policy == "delete"
    assert config.max_message_bytes == 1_048_588
    assert config.deletes
    assert not config.compacts


def test_from_kafka_parses_strings_and_ints():
    config = LogConfig.from_kafka(
        {"retention.ms": "5000", "segment.bytes": 1024, "cleanup.policy": "compact"}
    )
    assert config.retention_ms == 5000
    assert config.segment_bytes == 1024
    assert config.compacts
    assert not config.deletes


def test_from_kafka_applies_over_given_defaults():
    defaults = LogConfig.from_kafka({"retention.ms": "9000", "segment.ms": "1000"})
    config = LogConfig.from_kafka({"segment.ms": "2000"}, defaults)
    assert (config.retention_ms, config.segment_ms) == (9000, 2000)


@pytest.mark.parametrize("raw", ["compact,delete", "delete,compact", " Delete , COMPACT "])
def test_cleanup_policy_both_ways_normalizes(raw):
    config = LogConfig.from_kafka({"cleanup.policy": raw})
    assert config.cleanup_policy == "compact,delete"
    assert config.compacts
    assert config.deletes


def test_to_kafka_has_every_key_as_strings_and_round_trips():
    config = LogConfig.from_kafka({"retention.ms": "-1", "cleanup.policy": "compact"})
    out = config.to_kafka()
    assert set(out) == TOPIC_CONFIG_KEYS
    assert all(isinstance(v, str) for v in out.values())
    assert out["retention.ms"] == "-1"
    assert LogConfig.from_kafka(out) == config


def test_changed_from_lists_only_overrides():
    config = LogConfig.from_kafka({"retention.ms": "5000"})
    assert config.changed_from(LogConfig()) == {"retention.ms": "5000"}


def test_unknown_key_names_the_key_and_the_known_ones():
    with pytest.raises(InvalidConfigurationError) as info:
        LogConfig.from_kafka({"retention.hours": "1"})
    message = str(info.value)
    assert "retention.hours" in message
    assert "retention.ms" in message


@pytest.mark.parametrize(
    ("key", "raw", "expect"),
    [
        ("retention.ms", "abc", "whole number"),
        ("retention.ms", "-2", ">= -1"),
        ("segment.bytes", "10", "between 512 and"),
        ("segment.bytes", str(1 << 31), "between 512 and"),
        ("segment.ms", "0", ">= 1000"),
        ("max.message.bytes", True, "expected"),
        ("cleanup.policy", "forever", "'delete'"),
        ("cleanup.policy", "", "'compact'"),
    ],
)
def test_bad_values_name_key_value_and_range(key, raw, expect):
    with pytest.raises(InvalidConfigurationError) as info:
        LogConfig.from_kafka({key: raw})
    message = str(info.value)
    assert key in message
    assert str(raw) in message
    assert expect in message


@pytest.mark.parametrize(
    ("key", "too_small", "smallest"),
    [
        ("segment.bytes", 14, MIN_SEGMENT_BYTES),
        ("segment.bytes", 511, MIN_SEGMENT_BYTES),
        ("segment.ms", 1, MIN_SEGMENT_MS),
        ("segment.ms", 999, MIN_SEGMENT_MS),
        ("segment.index.bytes", 4, MIN_SEGMENT_INDEX_BYTES),
    ],
)
def test_settings_that_would_roll_a_file_per_batch_are_refused_naming_the_minimum(
    key, too_small, smallest
):
    with pytest.raises(InvalidConfigurationError) as info:
        LogConfig.from_kafka({key: str(too_small)})
    message = str(info.value)
    assert f"{key}={too_small}" in message
    assert f"between {smallest} and" in message or f">= {smallest}" in message
    assert getattr(LogConfig.from_kafka({key: str(smallest)}), key.replace(".", "_")) == smallest


def test_the_notebooks_small_segments_stay_allowed():
    # notebook 07 shows retention and compaction with these (instructor/masters/07_*)
    LogConfig.from_kafka({"segment.bytes": "1024", "segment.ms": "1000", "retention.ms": "5000"})
    LogConfig.from_kafka({"segment.bytes": "512", "cleanup.policy": "compact"})


def test_broker_default_below_the_minimum_names_the_broker_key():
    with pytest.raises(InvalidConfigurationError, match=r"log\.segment\.bytes.*512"):
        split_broker_configs({"log.segment.bytes": "100"})


def test_config_is_frozen():
    with pytest.raises(AttributeError):
        LogConfig().retention_ms = 1  # type: ignore[misc]


def test_broker_configs_convert_units_and_return_the_rest():
    defaults, rest = split_broker_configs(
        {
            "log.retention.hours": "2",
            "log.segment.bytes": "4096",
            "num.partitions": "3",
            "log.retention.check.interval.ms": "1000",
        }
    )
    assert defaults.retention_ms == 2 * 3600 * 1000
    assert defaults.segment_bytes == 4096
    assert rest == {"num.partitions": "3", "log.retention.check.interval.ms": "1000"}


def test_broker_retention_ms_wins_over_hours_whatever_the_order():
    for configs in (
        {"log.retention.ms": "500", "log.retention.hours": "1"},
        {"log.retention.hours": "1", "log.retention.ms": "500"},
    ):
        assert split_broker_configs(configs)[0].retention_ms == 500


def test_broker_config_error_names_the_broker_key():
    with pytest.raises(InvalidConfigurationError) as info:
        split_broker_configs({"log.segment.bytes": "tiny"})
    assert "log.segment.bytes" in str(info.value)


def test_every_broker_key_maps_to_a_topic_key():
    assert {topic_key for topic_key, _ in BROKER_CONFIG_KEYS.values()} <= TOPIC_CONFIG_KEYS
