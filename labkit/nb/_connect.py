"""How notebook helpers reach the broker: the address, the client classes, and
turning a connection failure into one sentence that says what to do.

The client classes are imported when first needed, so importing a helper module
stays light. The lab may point at a Kafka cluster that is not labkit (a university's, a
managed one): ``is_labkit_broker`` asks the client's switch (``labkit.client.backend_for``:
labkit's bootstrap request and Kafka's ApiVersions on the Kafka port, cached), and the
``*_class()`` functions then give kafka-python's
clients (the admin client behind ``labkit.nb._kafka_admin``, which keeps labkit's
kafka-python-2.0 admin API), so the dashboard, the doctor, live plots, streams and the
graded checks work there unchanged.
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
_UNREACHABLE_NAMES = {cls.__name__ for cls in _UNREACHABLE}  # kafka-python's have these names
DOCTOR_HINT = "run nb.doctor() (or `labkit doctor` in a terminal) to see what is wrong"


def bootstrap_servers(value: str | list[str] | None = None) -> list[str]:
    """``value`` (``"h:p,h:p"`` or a list), else ``$LABKIT_BOOTSTRAP``, else localhost:9092."""
    return bootstrap_list(value)


def is_labkit_broker(servers: str | list[str] | None = None) -> bool:
    """False when ``servers`` (default: the lab's) reach a Kafka broker that is not labkit.

    The client's own switch (``labkit.client.backend_for``) answers, so the notebook
    helpers and the client classes never disagree; an address nobody answers counts as
    labkit (its client then says what is wrong, as before).
    """
    from labkit.client.backend import backend_for

    return backend_for(bootstrap_servers(servers)) == "labkit"


def forget_broker_kinds() -> None:
    """Ask the bootstrap servers again next time (tests; a kernel that switched clusters)."""
    from labkit.client.backend import forget

    forget()


def _kafka_python(servers: str | list[str] | None) -> Any:
    """The ``kafka`` package (kafka-python 3.0+: the admin layer uses its calls, and 2.0
    does not speak Kafka 4's API versions), or an error that says what to install."""
    from labkit.i18n import _

    where = ",".join(bootstrap_servers(servers))
    try:
        import kafka
    except ImportError:
        raise ModuleNotFoundError(
            _(
                "{where} is a Kafka cluster, not a labkit broker: labkit talks to it through kafka-python, which is not installed here. Run `pip install 'kafka-python>=3'` (the lab's extras: pip install 'labkit-streaming[lab]'), then restart the kernel"
            ).format(where=where),
            name="kafka",
        ) from None
    version = getattr(kafka, "__version__", "0")
    if int(version.split(".")[0] or 0) < 3:
        raise ImportError(
            _(
                "{where} is a Kafka cluster, not a labkit broker: labkit talks to it through kafka-python 3.0 or newer, and this is kafka-python {version}. Run `pip install 'kafka-python>=3'` (the lab's extras: pip install 'labkit-streaming[lab]'), then restart the kernel"
            ).format(where=where, version=version),
            name="kafka",
        )
    return kafka


def consumer_class(servers: str | list[str] | None = None) -> Any:
    if not is_labkit_broker(servers):
        return _kafka_python(servers).KafkaConsumer
    from labkit import KafkaConsumer

    return KafkaConsumer


def producer_class(servers: str | list[str] | None = None) -> Any:
    if not is_labkit_broker(servers):
        return _kafka_python(servers).KafkaProducer
    from labkit import KafkaProducer

    return KafkaProducer


def admin_class(servers: str | list[str] | None = None) -> Any:
    if not is_labkit_broker(servers):
        _kafka_python(servers)
        from labkit.nb._kafka_admin import KafkaAdmin

        return KafkaAdmin
    from labkit import KafkaAdminClient

    return KafkaAdminClient


def topic_partition(topic: str, partition: int, consumer: Any = None) -> Any:
    """The ``TopicPartition`` that ``consumer``'s client takes (a namedtuple; both clients
    check the class): kafka-python's for its consumer, else labkit's."""
    if consumer is not None and type(consumer).__module__.startswith("kafka."):
        from kafka import TopicPartition as KafkaPythonTopicPartition

        return KafkaPythonTopicPartition(topic, partition)
    from labkit import TopicPartition

    return TopicPartition(topic, partition)


def serializer_for(producer_cls: Any, fn: Any) -> Any:
    """``fn`` as ``producer_cls`` wants a value serializer: kafka-python 3 deprecates plain
    callables (a DeprecationWarning per producer), so its producer gets its wrapper."""
    if producer_cls.__module__.startswith("kafka."):
        from kafka.serializer import SerializeWrapper

        return SerializeWrapper(fn)
    return fn


def client_errors() -> tuple[type[BaseException], ...]:
    """The error bases of the clients in use: labkit's, and kafka-python's if installed."""
    try:
        from kafka.errors import KafkaError as KafkaPythonError
    except ImportError:
        return (KafkaError,)
    return (KafkaError, KafkaPythonError)


def explain(exc: BaseException) -> str:
    """One line for a student: what failed and what to do next."""
    name = type(exc).__name__
    text = " ".join(str(exc).split())
    if isinstance(exc, _UNREACHABLE) or name in _UNREACHABLE_NAMES:
        where = ",".join(bootstrap_servers())
        return (
            f"cannot reach the broker at {where} ({text or name}). Start it with "
            f"`labkit broker` (or `docker-compose up`), then try again; {DOCTOR_HINT}."
        )
    if isinstance(exc, client_errors()):
        return text or name
    return f"{name}: {text}" if text and not text.startswith(name) else (text or name)
