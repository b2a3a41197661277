"""labkit.client: kafka-python's public API (producer, consumer, admin) over ZeroMQ.

Only ``labkit.client.transport`` imports zmq; everything else is plain Python.
See docs/client.md.
"""

from labkit.client.admin import (
    ConfigResource,
    ConfigResourceType,
    KafkaAdminClient,
    NewPartitions,
    NewTopic,
)
from labkit.client.backend import backend_for
from labkit.client.consumer import KafkaConsumer
from labkit.client.producer import KafkaProducer
from labkit.client.structs import (
    ConsumerRecord,
    OffsetAndMetadata,
    OffsetAndTimestamp,
    RecordMetadata,
    TopicPartition,
)
from labkit.client.subscription import ConsumerRebalanceListener

__all__ = [
    "ConfigResource",
    "ConfigResourceType",
    "ConsumerRebalanceListener",
    "ConsumerRecord",
    "KafkaAdminClient",
    "KafkaConsumer",
    "KafkaProducer",
    "NewPartitions",
    "NewTopic",
    "OffsetAndMetadata",
    "OffsetAndTimestamp",
    "RecordMetadata",
    "TopicPartition",
    "backend_for",
]
