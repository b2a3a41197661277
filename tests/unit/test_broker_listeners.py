"""Kafka's listeners / advertised.listeners as broker config (broker/listeners.py), the
ZeroMQ port's default, and labkit's bootstrap request bytes (protocol/bootstrap.py)."""

from __future__ import annotations

import struct

import pytest

from labkit.broker.config import BrokerConfig
from labkit.broker.listeners import Listener
from labkit.errors import KafkaConfigurationError, ProtocolError
from labkit.protocol import bootstrap as wire


def test_the_default_layout_is_kafka_on_9092_and_zeromq_on_9192():
    config = BrokerConfig.build()
    assert config.listeners == (Listener("PLAINTEXT", "127.0.0.1", 9092, "localhost", 0, False),)
    assert (config.port, config.zmq_port) == (9092, 9192)
    assert BrokerConfig.build(port=19092).zmq_port == 19192
    assert BrokerConfig.build(port=0).zmq_port == 0  # any free port for both
    assert BrokerConfig.build(overrides={"zmq.port": "5555"}).zmq_port == 5555


def test_the_docker_compose_layout():
    config = BrokerConfig.build(
        "0.0.0.0",
        overrides={
            "listeners": "INTERNAL://0.0.0.0:9092,EXTERNAL://0.0.0.0:19092",
            "advertised.listeners": "INTERNAL://broker:9092,EXTERNAL://localhost:9092",
            "listener.security.protocol.map": "INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT",
        },
    )
    assert config.listeners == (
        Listener("INTERNAL", "0.0.0.0", 9092, "broker", 9092, True),
        Listener("EXTERNAL", "0.0.0.0", 19092, "localhost", 9092, True),
    )
    assert (config.port, config.zmq_port) == (9092, 9192)
    assert (config.advertised_host, config.advertised_port) == ("broker", 9092)


def test_a_listener_without_an_advertised_entry_advertises_itself():
    config = BrokerConfig.build(
        overrides={
            "listeners": "A://:9092,B://127.0.0.1:9093,C://[::1]:9094",
            "advertised.listeners": "A://lab.example:9092",
        }
    )
    assert [(x.advertised_host, x.advertised_port, x.explicit) for x in config.listeners] == [
        ("lab.example", 9092, True),
        ("127.0.0.1", 0, False),
        ("::1", 0, False),
    ]
    assert config.listeners[0].bind_host == "0.0.0.0"  # an empty host: every interface
    named = BrokerConfig.build("0.0.0.0", overrides={"advertised.host.name": "teacher-pc"})
    assert named.listeners[0].advertised_host == "teacher-pc"
    assert named.listeners[0].explicit


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"listeners": "localhost:9092"}, "is not NAME://host:port"),
        ({"listeners": "PLAINTEXT://localhost:port"}, "has no TCP port"),
        ({"listeners": "PLAINTEXT://localhost:70000"}, "has no TCP port"),
        ({"listeners": ""}, "listeners is empty"),
        ({"listeners": "A://:9092,a://:9093"}, "appears twice"),
        ({"listeners": "A://:9092,B://127.0.0.1:9092"}, "same port"),
        ({"listeners": "SSL://:9093"}, "labkit speaks only PLAINTEXT"),
        ({"listeners": "SASL_SSL://:9093"}, "no TLS, no SASL"),
        (
            {"listeners": "A://:9092", "listener.security.protocol.map": "A:SASL_PLAINTEXT"},
            "labkit speaks only PLAINTEXT",
        ),
        ({"listener.security.protocol.map": "PLAINTEXT"}, "is not NAME:PROTOCOL"),
        ({"listener.security.protocol.map": "PLAINTEXT:GOPHER"}, "unknown security protocol"),
        ({"advertised.listeners": "OTHER://h:1"}, "not in listeners"),
        ({"advertised.listeners": "PLAINTEXT://0.0.0.0:9092"}, "cannot be advertised"),
        ({"advertised.listeners": "PLAINTEXT://h:0"}, "cannot be advertised"),
        ({"zmq.port": "9092"}, "also a Kafka listener's port"),
        ({"zmq.port": "65536"}, "zmq.port"),
    ],
)
def test_bad_listener_settings_say_what_to_write(overrides, says):
    with pytest.raises(KafkaConfigurationError, match=says):
        BrokerConfig.build(overrides=overrides)


def test_a_main_port_too_high_for_the_zeromq_default_says_to_choose_one():
    with pytest.raises(KafkaConfigurationError, match="--zmq-port"):
        BrokerConfig.build(port=65500)
    assert BrokerConfig.build(port=65500, overrides={"zmq.port": "65501"}).zmq_port == 65501


def test_the_old_kafka_port_setting_is_one_more_listener():
    config = BrokerConfig.build("127.0.0.1", 9092, overrides={"kafka.port": "19092"})
    assert [(x.name, x.bind_host, x.port) for x in config.listeners] == [
        ("PLAINTEXT", "127.0.0.1", 9092),
        ("KAFKA_PORT", "127.0.0.1", 19092),
    ]


def test_the_bootstrap_request_round_trips_and_is_told_apart():
    request = wire.encode_request(7, "client-ö")
    (size,) = struct.unpack_from(">i", request)
    body = request[4:]
    assert size == len(body)
    assert wire.is_bootstrap_request(body)
    assert not wire.is_bootstrap_request(struct.pack(">hhih", 18, 0, 1, -1))  # ApiVersions
    assert wire.decode_request(body) == (0, 7)
    answer = {"broker": "labkit", "zmq_host": None, "zmq_port": 9192}
    response = wire.encode_response(7, 0, answer)
    assert wire.decode_response(response[4:]) == (7, 0, {**answer, "versions": [0, 0]})
    refused = wire.encode_response(8, 1, {})
    assert wire.decode_response(refused[4:])[:2] == (8, wire.UNSUPPORTED_VERSION)


def test_every_truncation_of_the_bootstrap_bytes_raises_only_protocol_error():
    request = wire.encode_request(7, "client")[4:]
    response = wire.encode_response(7, 0, {"zmq_port": 9192})[4:]
    for cut in range(len(request)):
        with pytest.raises(ProtocolError):
            wire.decode_request(request[:cut])
    for cut in range(len(response)):
        with pytest.raises(ProtocolError):
            wire.decode_response(response[:cut])
