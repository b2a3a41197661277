"""How notebook helpers reach the broker: the address, the client classes, and
turning a connection failure into one sentence that says what to do.

The client classes are imported when first needed, so importing a helper module
stays light.
"""

from __future__ import annotations

from typing import Any

from labkit import errors as Errors
from labkit._address import bootstrap_list
from labkit.errors import KafkaError

# what a student sees when the broker is down or too slow to answer
_UNREACHABLE = (
    Errors.NoBrokersAvailable,
    Errors.KafkaConnectionError,
    Errors.NodeNotReadyError,
    Errors.KafkaTimeoutError,
    Errors.BrokerNotAvailableError,
    Errors.RequestTimedOutError,
)
DOCTOR_HINT = "run nb.doctor() (or `labkit doctor` in a terminal) to see what is wrong"


def bootstrap_servers(value: str | list[str] | None = None) -> list[str]:
    """``value`` (``"h:p,h:p"`` or a list), else ``$LABKIT_BOOTSTRAP``, else localhost:9092."""
    return bootstrap_list(value)


def consumer_class() -> Any:
    from labkit import KafkaConsumer

    return KafkaConsumer


def producer_class() -> Any:
    from labkit import KafkaProducer

    return KafkaProducer


def admin_class() -> Any:
    from labkit import KafkaAdminClient

    return KafkaAdminClient


def topic_partition(topic: str, partition: int) -> Any:
    """The client's ``TopicPartition`` (a namedtuple, as in kafka-python)."""
    from labkit import TopicPartition

    return TopicPartition(topic, partition)


def explain(exc: BaseException) -> str:
    """One line for a student: what failed and what to do next."""
    name = type(exc).__name__
    text = " ".join(str(exc).split())
    if isinstance(exc, _UNREACHABLE):
        where = ",".join(bootstrap_servers())
        return (
            f"cannot reach the broker at {where} ({text or name}). Start it with "
            f"`labkit broker` (or `docker-compose up`), then try again; {DOCTOR_HINT}."
        )
    if isinstance(exc, KafkaError):
        return text or name
    return f"{name}: {text}" if text and not text.startswith(name) else (text or name)
