"""The public value types, the package's exports, and the generic Future."""

import subprocess
import sys

import pytest

import labkit
from labkit import errors
from labkit.client.future import Future
from labkit.client.structs import (
    ConsumerRecord,
    OffsetAndMetadata,
    OffsetAndTimestamp,
    RecordMetadata,
    TopicPartition,
)
from labkit.errors import KafkaTimeoutError, NotLeaderForPartitionError


def test_topic_partition_is_a_hashable_namedtuple():
    tp = TopicPartition("rta", 2)
    assert tp == ("rta", 2)
    assert tp.topic == "rta"
    assert tp.partition == 2
    assert {tp: 1}[TopicPartition(topic="rta", partition=2)] == 1


def test_offset_and_metadata_two_and_three_field_forms():
    assert OffsetAndMetadata(5, "") == OffsetAndMetadata(5, "", -1)
    assert OffsetAndMetadata(5) == (5, "", -1)
    om = OffsetAndMetadata(offset=7, metadata="m", leader_epoch=3)
    assert (om.offset, om.metadata, om.leader_epoch) == (7, "m", 3)
    offset, metadata, epoch = OffsetAndMetadata(9, "x")
    assert (offset, metadata, epoch) == (9, "x", -1)


def test_offset_and_timestamp_fields():
    assert OffsetAndTimestamp(3, 1000) == (3, 1000, -1)
    assert OffsetAndTimestamp._fields == ("offset", "timestamp", "leader_epoch")


def test_consumer_record_fields_are_kafka_python_2x():
    assert ConsumerRecord._fields == (
        "topic",
        "partition",
        "leader_epoch",
        "offset",
        "timestamp",
        "timestamp_type",
        "key",
        "value",
        "headers",
        "checksum",
        "serialized_key_size",
        "serialized_value_size",
        "serialized_header_size",
    )


def test_record_metadata_fields():
    assert RecordMetadata._fields == (
        "topic",
        "partition",
        "topic_partition",
        "offset",
        "timestamp",
        "checksum",
        "serialized_key_size",
        "serialized_value_size",
        "serialized_header_size",
    )


def test_every_error_class_is_importable_from_labkit():
    names = [
        n
        for n, v in vars(errors).items()
        if isinstance(v, type) and issubclass(v, errors.KafkaError)
    ]
    assert "NoBrokersAvailable" in names
    assert "TopicAlreadyExistsError" in names
    for name in names:
        assert getattr(labkit, name) is getattr(errors, name)
    from labkit import MessageSizeTooLargeError, NoBrokersAvailable  # noqa: F401


def test_client_names_are_exported():
    from labkit import (  # noqa: F401
        ConfigResource,
        ConfigResourceType,
        ConsumerRebalanceListener,
        KafkaAdminClient,
        KafkaConsumer,
        KafkaProducer,
        NewPartitions,
        NewTopic,
    )

    assert labkit.TopicPartition is TopicPartition
    assert labkit.__version__
    with pytest.raises(AttributeError):
        labkit.NoSuchThing  # noqa: B018


def test_import_labkit_is_light():
    code = (
        "import sys, labkit; from labkit import NoBrokersAvailable; "
        "heavy = [m for m in ('zmq', 'ipywidgets', 'matplotlib') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_rebalance_listener_is_abstract():
    from labkit import ConsumerRebalanceListener

    with pytest.raises(TypeError):
        ConsumerRebalanceListener()

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            pass

        def on_partitions_assigned(self, assigned):
            pass

    Listener()


def test_future_success_callbacks_and_get():
    f = Future()
    seen = []
    f.add_callback(seen.append)
    f.add_errback(lambda e: seen.append("error"))
    f.success(5)
    f.success(6)  # a second resolution is ignored
    assert seen == [5]
    assert f.get(0) == 5
    assert f.succeeded()
    assert f.is_done
    f.add_callback(lambda extra, v: seen.append((extra, v)), "late")
    assert seen[-1] == ("late", 5)


def test_future_failure_and_timeout():
    f = Future()
    with pytest.raises(KafkaTimeoutError):
        f.get(timeout=0.01)
    seen = []
    f.add_errback(seen.append)
    f.failure(NotLeaderForPartitionError("x"))
    assert f.failed()
    assert f.retriable()
    with pytest.raises(NotLeaderForPartitionError):
        f.get()
    assert isinstance(seen[0], NotLeaderForPartitionError)
    with pytest.raises(TypeError):
        Future().failure("not an exception")


def test_future_chain():
    a, b = Future(), Future()
    a.chain(b)
    a.success("v")
    assert b.get(0) == "v"
