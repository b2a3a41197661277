"""labkit: a hands-on lab for event streaming.

``from labkit import KafkaProducer`` is all a kafka-python script needs to change::

    from labkit import KafkaProducer, KafkaConsumer, KafkaAdminClient, NewTopic
    from labkit import TopicPartition, OffsetAndMetadata, NoBrokersAvailable

Every error class of ``labkit.errors`` is importable from here too. The client
classes are loaded on first use, so ``import labkit`` stays light (no sockets,
no notebook libraries).
"""

from __future__ import annotations

import importlib
from typing import Any

from labkit import errors
from labkit.errors import KafkaError

__version__ = "0.1.0"

# name -> module that defines it (imported on first access)
_LAZY = {
    "KafkaProducer": "labkit.client.producer",
    "KafkaConsumer": "labkit.client.consumer",
    "KafkaAdminClient": "labkit.client.admin",
    "NewTopic": "labkit.client.admin",
    "NewPartitions": "labkit.client.admin",
    "ConfigResource": "labkit.client.admin",
    "ConfigResourceType": "labkit.client.admin",
    "ConsumerRebalanceListener": "labkit.client.subscription",
    "FutureRecordMetadata": "labkit.client.accumulator",
    "DefaultPartitioner": "labkit.client.partitioner",
    "TopicPartition": "labkit.client.structs",
    "OffsetAndMetadata": "labkit.client.structs",
    "OffsetAndTimestamp": "labkit.client.structs",
    "ConsumerRecord": "labkit.client.structs",
    "RecordMetadata": "labkit.client.structs",
    "BrokerMetadata": "labkit.client.structs",
    "GroupInformation": "labkit.client.group_admin",
    "MemberInformation": "labkit.client.group_admin",
}

_ERRORS = {
    name: value
    for name, value in vars(errors).items()
    if isinstance(value, type) and issubclass(value, KafkaError)
}
globals().update(_ERRORS)

__all__ = ["__version__", "errors", *sorted(_LAZY), *sorted(_ERRORS)]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'labkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
