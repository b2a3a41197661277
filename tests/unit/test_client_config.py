"""Client configuration: kafka-python's names, unknown keys rejected, bootstrap parsing."""

import pytest

from labkit.client import config as cfg
from labkit.client.producer import KafkaProducer
from labkit.client.producer_checks import bytes_or_error, headers_size, parse_acks
from labkit.errors import InvalidTopicError, KafkaConfigurationError


def test_unknown_key_is_named_with_a_suggestion():
    with pytest.raises(KafkaConfigurationError) as info:
        cfg.resolve("KafkaProducer", {"value_serializer": None}, {"bootstrap_server": "x"})
    text = str(info.value)
    assert "'bootstrap_server'" in text
    assert "did you mean 'bootstrap_servers'" in text
    assert "KafkaProducer" in text


def test_defaults_are_merged_and_cluster_only_settings_are_accepted():
    config = cfg.resolve(
        "KafkaConsumer",
        {"fetch_min_bytes": 1},
        {"fetch_min_bytes": 5, "api_version": (2, 0, 0), "ssl_cafile": None},
    )
    assert config["fetch_min_bytes"] == 5
    assert config["request_timeout_ms"] == 30000
    assert config["api_version"] == (2, 0, 0)


def test_tls_is_refused_with_a_clear_message():
    with pytest.raises(KafkaConfigurationError, match="plaintext only"):
        cfg.resolve("KafkaProducer", {}, {"security_protocol": "SSL"})


def test_bad_numbers_are_refused():
    with pytest.raises(KafkaConfigurationError, match="request_timeout_ms"):
        cfg.resolve("KafkaProducer", {}, {"request_timeout_ms": -1})
    config = cfg.resolve("KafkaProducer", {"batch_size": 1}, {"batch_size": "big"})
    with pytest.raises(KafkaConfigurationError, match="batch_size"):
        cfg.check_numbers(config, {"batch_size": 0})


@pytest.mark.parametrize(
    ("servers", "expected"),
    [
        ("localhost:9092", [("localhost", 9092)]),
        ("h1:1,h2:2", [("h1", 1), ("h2", 2)]),
        (["127.0.0.1:9092", "broker"], [("127.0.0.1", 9092), ("broker", 9092)]),
        ("PLAINTEXT://kafka:29092", [("kafka", 29092)]),
        ("[::1]:9093", [("::1", 9093)]),
        ("localhost", [("localhost", 9092)]),
    ],
)
def test_parse_bootstrap(servers, expected):
    assert cfg.parse_bootstrap(servers) == expected


def test_bootstrap_default_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("LABKIT_BOOTSTRAP", "broker:19092")
    assert cfg.parse_bootstrap(None) == [("broker", 19092)]
    monkeypatch.delenv("LABKIT_BOOTSTRAP")
    assert cfg.parse_bootstrap(None) == [("localhost", 9092)]


@pytest.mark.parametrize("bad", ["host:notaport", "host:0", ":9092", 9092])
def test_bad_bootstrap_is_refused(bad):
    with pytest.raises(KafkaConfigurationError):
        cfg.parse_bootstrap(bad)


def test_format_address_brackets_ipv6():
    assert cfg.format_address("::1", 9092) == "[::1]:9092"
    assert cfg.format_address("localhost", 9092) == "localhost:9092"


@pytest.mark.parametrize("name", ["rta", "a.b_c-D9", "x" * 249])
def test_valid_topic_names(name):
    assert cfg.validate_topic(name) == name


@pytest.mark.parametrize("name", ["", ".", "..", "../x", "a b", "zażółć", "x" * 250])
def test_invalid_topic_names(name):
    with pytest.raises(InvalidTopicError):
        cfg.validate_topic(name)


def test_topic_must_be_a_string():
    with pytest.raises(TypeError):
        cfg.validate_topic(b"rta")


@pytest.mark.parametrize(("acks", "expected"), [(0, 0), (1, 1), ("all", -1), (-1, -1), ("1", 1)])
def test_acks(acks, expected):
    assert parse_acks(acks) == expected


@pytest.mark.parametrize("acks", [2, "some", True, None])
def test_bad_acks(acks):
    with pytest.raises(KafkaConfigurationError, match="acks"):
        parse_acks(acks)


def test_value_that_is_not_bytes_names_value_serializer():
    with pytest.raises(TypeError, match="value_serializer"):
        bytes_or_error({"id": 1}, "value", None)
    with pytest.raises(TypeError, match="key_serializer"):
        bytes_or_error("k", "key", None)
    with pytest.raises(TypeError, match="must return bytes"):
        bytes_or_error("json text", "value", lambda v: v)
    assert bytes_or_error(bytearray(b"ab"), "value", None) == b"ab"
    assert bytes_or_error(None, "value", None) is None


def test_headers_must_be_str_bytes_pairs():
    assert headers_size([("a", b"xy")]) == 2 + 6 + 1 + 2
    with pytest.raises(TypeError):
        headers_size([("a", "text")])
    with pytest.raises(TypeError):
        headers_size("a=b")


def test_one_bootstrap_resolver_serves_client_tools_and_notebooks(monkeypatch):
    from labkit._address import bootstrap_list
    from labkit.cli._common import bootstrap_servers as tool_servers
    from labkit.nb._connect import bootstrap_servers as nb_servers
    from labkit.nb.stream import bootstrap_servers as notebook_address

    monkeypatch.delenv("LABKIT_BOOTSTRAP", raising=False)
    assert bootstrap_list() == tool_servers(None) == nb_servers() == ["localhost:9092"]
    assert notebook_address() == "localhost:9092"
    monkeypatch.setenv("LABKIT_BOOTSTRAP", " broker:9092, other:9093 ")
    assert (
        bootstrap_list(None)
        == tool_servers(None)
        == nb_servers("")
        == ["broker:9092", "other:9093"]
    )
    assert notebook_address() == "broker:9092,other:9093"
    assert bootstrap_list(["a:1,b:2", " c:3 "]) == ["a:1", "b:2", "c:3"]
    assert bootstrap_list("x:1") == tool_servers("x:1") == nb_servers(["x:1"]) == ["x:1"]


def test_group_instance_id_is_refused_not_silently_ignored():
    from labkit import KafkaConsumer
    from labkit.errors import KafkaConfigurationError

    with pytest.raises(KafkaConfigurationError, match="static membership"):
        KafkaConsumer(bootstrap_servers="127.0.0.1:1", group_id="g", group_instance_id="a-1")


@pytest.mark.parametrize(
    ("configs", "match"),
    [
        ({"retries": 0}, "retries=0"),
        ({"acks": 1}, "acks='all'"),
        ({"acks": 0, "retries": 0}, "acks='all'"),
        ({"max_in_flight_requests_per_connection": 6}, "at most 5"),
    ],
)
def test_enable_idempotence_refuses_what_kafka_python_refuses(configs, match):
    """kafka-python 3.0's rules for an explicit enable_idempotence=True."""
    with pytest.raises(KafkaConfigurationError, match=match):
        KafkaProducer(bootstrap_servers="localhost:1", enable_idempotence=True, **configs)
