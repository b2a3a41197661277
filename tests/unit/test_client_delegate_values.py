"""What crosses the edge between labkit's client classes and kafka-python (no sockets):
structs, errors, settings, serializers, and the ApiVersions bytes of backend detection."""

from __future__ import annotations

import struct
import sys
import types

import kafka
import pytest

import labkit
from labkit.client import backend, delegate, delegate_admin
from labkit.client.structs import OffsetAndMetadata, OffsetAndTimestamp, TopicPartition


def test_labkit_structs_go_in_as_kafka_pythons_and_come_back_as_labkits():
    tp = TopicPartition("t", 1)
    sent = delegate.to_kafka({"offsets": {tp: OffsetAndMetadata(5, "m", -1)}, "tps": [tp]})
    (key,) = sent["offsets"]
    assert type(key) is kafka.TopicPartition
    assert type(sent["offsets"][key]) is kafka.OffsetAndMetadata
    assert type(sent["tps"][0]) is kafka.TopicPartition
    back = delegate.to_labkit(
        {key: kafka.structs.OffsetAndTimestamp(3, 1000, -1), "set": {key}, "list": [key]}
    )
    assert back == {tp: OffsetAndTimestamp(3, 1000, -1), "set": {tp}, "list": [tp]}
    assert type(next(iter(back["set"]))) is TopicPartition
    assert type(back[tp]) is OffsetAndTimestamp


def test_consumer_records_are_passed_through_untouched():
    record_class = type("ConsumerRecord", (tuple,), {})
    records = [record_class((1, 2))]
    assert delegate.to_labkit(records) is records


def test_kafka_pythons_errors_become_labkits_of_the_same_name():
    original = kafka.errors.TopicAlreadyExistsError("Topic 't' already exists.")
    mapped = delegate.labkit_error(original)
    assert type(mapped) is labkit.TopicAlreadyExistsError
    assert mapped.__cause__ is original
    assert (
        delegate.labkit_error_class(kafka.errors.KafkaConnectionError)
        is labkit.KafkaConnectionError
    )
    assert delegate.labkit_error(ValueError("x")).__class__ is ValueError

    def fails():
        raise kafka.errors.CoordinatorNotAvailableError("busy")

    with pytest.raises(labkit.CoordinatorNotAvailableError) as raised:
        delegate.translated(fails)()
    assert raised.value.retriable


def test_per_item_results_in_kafka_pythons_forms_become_error_classes():
    assert delegate_admin._error_class("OK") is labkit.NoError
    assert delegate_admin._error_class(None) is labkit.NoError
    found = delegate_admin._error_class("[Error 69] GroupIdNotFoundError: Group g not found.")
    assert found is labkit.GroupIdNotFoundError
    assert delegate_admin._error_class(kafka.errors.NonEmptyGroupError) is labkit.NonEmptyGroupError


def test_settings_unknown_names_are_refused_and_old_names_left_out(monkeypatch):
    producer = kafka.KafkaProducer.DEFAULT_CONFIG
    with pytest.raises(labkit.KafkaConfigurationError, match="did you mean 'linger_ms'"):
        delegate.kafka_configs("KafkaProducer", {}, producer, {"linger_msec": 5})
    monkeypatch.setenv("LABKIT_BOOTSTRAP", "kafka1:9092,kafka2:9092")
    consumer = labkit.KafkaConsumer.DEFAULT_CONFIG
    out = delegate.kafka_configs(
        "KafkaConsumer",
        consumer,
        kafka.KafkaConsumer.DEFAULT_CONFIG,
        {"legacy_iterator": False, "group_id": "g"},
    )
    assert out == {"group_id": "g", "bootstrap_servers": ["kafka1:9092", "kafka2:9092"]}


def test_plain_function_serializers_are_wrapped_and_none_is_not_deserialized():
    out = delegate.kafka_configs(
        "KafkaConsumer",
        {},
        kafka.KafkaConsumer.DEFAULT_CONFIG,
        {"value_deserializer": bytes.decode, "key_deserializer": None},
    )
    deserializer = out["value_deserializer"]
    assert isinstance(deserializer, kafka.serializer.Deserializer)
    assert deserializer.deserialize("t", [], b"abc") == "abc"
    assert deserializer.deserialize("t", [], None) is None  # a tombstone stays None
    assert out["key_deserializer"] is None
    serializer = delegate.kafka_configs(
        "KafkaProducer", {}, kafka.KafkaProducer.DEFAULT_CONFIG, {"value_serializer": str.encode}
    )["value_serializer"]
    assert serializer.serialize("t", [], "x") == b"x"


def test_without_kafka_python_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "kafka", None)
    with pytest.raises(
        labkit.KafkaConfigurationError, match=r"pip install 'labkit-streaming\[lab\]'"
    ):
        delegate.kafka_python("k1:9092")
    monkeypatch.setitem(sys.modules, "kafka", types.SimpleNamespace(__version__="2.0.2"))
    with pytest.raises(labkit.KafkaConfigurationError, match=r"2\.0\.2 is installed"):
        delegate.kafka_python("k1:9092")


def test_api_versions_request_and_answer_bytes():
    request = backend.api_versions_request(7, "labkit")
    size, key, version, correlation, name_len = struct.unpack_from(">ihhih", request)
    assert (size, key, version, correlation, name_len) == (len(request) - 4, 18, 0, 7, 6)
    assert request.endswith(b"labkit")
    answer = struct.pack(">ihi", 7, 0, 2) + struct.pack(">hhhhhh", 0, 0, 11, 18, 0, 4)
    assert backend.parse_api_versions(answer) == (7, {0: (0, 11), 18: (0, 4)})
    assert backend.parse_api_versions(struct.pack(">ihi", 7, 35, 0)) is None  # an error
    assert backend.parse_api_versions(struct.pack(">ihi", 7, 0, 5)) is None  # count lies


def test_a_delegated_client_that_cannot_start_drops_what_was_known(monkeypatch):
    class Unreachable:
        DEFAULT_CONFIG = kafka.KafkaAdminClient.DEFAULT_CONFIG

        def __init__(self, **configs):
            raise kafka.errors.KafkaTimeoutError("Unable to bootstrap from ['k1:9092']")

    monkeypatch.setattr(kafka, "KafkaAdminClient", Unreachable)
    backend.remember(["PLAINTEXT://k1:9092"], "kafka")
    with pytest.raises(labkit.KafkaTimeoutError, match="Unable to bootstrap"):
        delegate_admin.DelegatingAdmin(labkit.KafkaAdminClient, bootstrap_servers="k1")
    assert ("k1:9092",) not in backend._cache
