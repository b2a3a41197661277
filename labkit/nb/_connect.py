"""How notebook helpers reach the broker: the address, which kind of broker is there, and
turning a connection failure into one sentence that says what to do.

The helpers use labkit's own client classes (``from labkit import KafkaConsumer``...): on a
Kafka cluster that is not labkit (a university's, a managed one) they delegate to
kafka-python by themselves (``labkit.client.backend_for``, client/delegate.py), so the
dashboard, the doctor, live plots, streams and the graded checks work there unchanged.
``is_labkit_broker`` asks the same switch, for the doctor's line about the broker.
"""

from __future__ import annotations

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
