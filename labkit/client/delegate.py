"""labkit's client classes on a Kafka broker that is not labkit: delegation to kafka-python.

Theory of operation
-------------------
``KafkaProducer(...)``, ``KafkaConsumer(...)`` and ``KafkaAdminClient(...)`` ask
``backend_for`` (client/backend.py) which broker their ``bootstrap_servers`` reach; for
``"kafka"`` they build a ``DelegatingProducer`` / ``DelegatingConsumer`` (here) or a
``DelegatingAdmin`` (client/delegate_admin.py) instead, which holds kafka-python's client
of the same name and forwards every call to it, so the API stays kafka-python's.

At the edge of each call: labkit's ``TopicPartition``, ``OffsetAndMetadata`` and
``OffsetAndTimestamp`` go in as kafka-python's (kafka-python checks their class), and
come out as labkit's (the same namedtuples); kafka-python's errors come out as labkit's
class of the same name (``except labkit.NoBrokersAvailable`` keeps working), with
kafka-python's exception as ``__cause__``. Settings: labkit's names are kafka-python's;
the few kafka-python 2.0 names that 3.0 dropped (``legacy_iterator``...) are left out,
and an unknown name raises labkit's "did you mean" error.

A group member slower than ``max_poll_interval_ms``: Kafka's Java consumer has left its
group within ``retry_backoff_ms`` of that (its heartbeat thread looks at the poll timer
every 100 ms), so the next ``commit()`` raises CommitFailedError and the next ``poll()``
joins again. kafka-python 3.0.12's heartbeat task looks at the timer only when the next
heartbeat is due (``heartbeat_interval_ms``, 3 s), so a commit in between went through.
``DelegatingConsumer`` therefore leaves the group itself, as Java would have, before a
``poll()``, ``commit()``, ``commit_async()`` or ``close()`` that finds the timer expired.

A join that completes between two ``poll()`` calls is applied: kafka-python 3.0.12 alone
would leave the member owning nothing (client/kafka_python_fixes.py).

kafka-python is not a core dependency of labkit (a labkit broker needs only pyzmq): it
comes with ``pip install 'labkit-streaming[lab]'``, and without it the constructor says so.
Stateless apart from the kafka-python client each object holds.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from labkit import errors
from labkit._address import bootstrap_list
from labkit.client import structs
from labkit.client.backend import forget
from labkit.client.config import CONNECTION_DEFAULTS, IGNORED_COMMON, refuse_unknown
from labkit.client.delegate_poison import guarded, poison_error, poison_of, split_poll
from labkit.client.kafka_python_fixes import keep_unfinished_joins_wanted
from labkit.errors import KafkaConfigurationError, KafkaError

MIN_KAFKA_PYTHON = (3, 0)
log = logging.getLogger(__name__)
# the Java consumer's warning (AbstractCoordinator.handlePollTimeoutExpiry), kafka-python's names
POLL_TIMEOUT_EXPIRED = (
    "consumer poll timeout has expired. This means the time between subsequent calls to "
    "poll() was longer than the configured max_poll_interval_ms, which typically implies "
    "that the poll loop is spending too much time processing messages. You can address "
    "this either by increasing max_poll_interval_ms or by reducing the maximum size of "
    "batches returned in poll() with max_poll_records."
)

_LABKIT_ERRORS = {
    name: value
    for name, value in vars(errors).items()
    if isinstance(value, type) and issubclass(value, KafkaError)
}


def kafka_python(where: Any = None) -> Any:
    """The ``kafka`` module (kafka-python >= 3.0). Raises KafkaConfigurationError
    saying what to install when it is missing or too old."""
    place = f" at {','.join(bootstrap_list(where))}" if where is not None else ""
    try:
        import kafka
    except ImportError:
        raise KafkaConfigurationError(
            f"the broker{place} is a Kafka broker, not labkit's; labkit's client talks to "
            "it through kafka-python, which is not installed: pip install "
            "'labkit-streaming[lab]' (or pip install 'kafka-python>=3.0'), then restart the "
            "program (in Jupyter: the kernel)"
        ) from None
    version = tuple(int(p) for p in kafka.__version__.split(".")[:2] if p.isdigit())
    if version < MIN_KAFKA_PYTHON:
        raise KafkaConfigurationError(
            f"the broker{place} is a Kafka broker, not labkit's; labkit's client talks to "
            f"it through kafka-python >= 3.0, and {kafka.__version__} is installed: "
            "pip install -U 'kafka-python>=3.0', then restart the program (in Jupyter: the kernel)"
        )
    return kafka


# -- values across the edge ---------------------------------------------------------


def to_kafka(value: Any) -> Any:
    """labkit's structs (also inside dicts, lists, sets, tuples) as kafka-python's."""
    kafka = kafka_python()
    if isinstance(value, structs.TopicPartition):
        return kafka.TopicPartition(*value)
    if isinstance(value, structs.OffsetAndMetadata):
        return kafka.OffsetAndMetadata(*value)
    if isinstance(value, structs.OffsetAndTimestamp):
        return kafka.structs.OffsetAndTimestamp(*value)
    if isinstance(value, dict):
        return {to_kafka(k): to_kafka(v) for k, v in value.items()}
    if isinstance(value, list | set | frozenset) or type(value) is tuple:
        return type(value)(to_kafka(v) for v in value)
    return value


def to_labkit(value: Any) -> Any:
    """kafka-python's structs (also inside dicts, lists, sets) as labkit's."""
    module = type(value).__module__
    if module.startswith("kafka"):
        name = type(value).__name__
        if name in ("TopicPartition", "OffsetAndMetadata", "OffsetAndTimestamp"):
            return getattr(structs, name)(*value)
        if name == "RecordMetadata" and len(value) == len(structs.RecordMetadata._fields):
            return structs.RecordMetadata(*value)
        if isinstance(value, type) and issubclass(value, Exception):
            return labkit_error_class(value)
        return value
    if isinstance(value, dict):
        return {to_labkit(k): to_labkit(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return type(value)(to_labkit(v) for v in value)
    if isinstance(value, list) and value and not _is_record(value[0]):
        return [to_labkit(v) for v in value]
    return value


def _is_record(value: Any) -> bool:
    return type(value).__name__ == "ConsumerRecord"


def labkit_error_class(kafka_class: type) -> type:
    """labkit's error class of the same name (else of the same errno, else KafkaError)."""
    found = _LABKIT_ERRORS.get(kafka_class.__name__)
    if found is not None:
        return found
    code = getattr(kafka_class, "errno", None)
    if isinstance(code, int):
        return errors.for_code(code)
    return KafkaError


def labkit_error(exc: BaseException) -> BaseException:
    """kafka-python's exception as labkit's (other exceptions as they are)."""
    if isinstance(exc, KafkaError) or not type(exc).__module__.startswith("kafka"):
        return exc
    translated = labkit_error_class(type(exc))(*exc.args)
    translated.__cause__ = exc
    return translated


def translated(call: Any) -> Any:
    """``call`` with labkit's values in, labkit's values and errors out."""

    @functools.wraps(call)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            result = call(*to_kafka(args), **to_kafka(kwargs))
        except Exception as exc:
            mapped = labkit_error(exc)
            if mapped is exc:
                raise
            raise mapped from exc
        return to_labkit(result)

    return wrapper


def kafka_configs(kind: str, labkit_defaults: dict, kafka_defaults: dict, configs: dict) -> dict:
    """The settings kafka-python takes, from labkit's; raises for an unknown name."""
    known = {**IGNORED_COMMON, **CONNECTION_DEFAULTS, **labkit_defaults, **kafka_defaults}
    refuse_unknown(kind, known, configs)
    out = {k: v for k, v in configs.items() if k in kafka_defaults}
    out["bootstrap_servers"] = bootstrap_list(configs.get("bootstrap_servers"))
    for key, value in out.items():
        if key.endswith("_serializer") or key.endswith("_deserializer"):
            out[key] = _wrapped(key, value)
    return out


def _wrapped(key: str, function: Any) -> Any:
    """A plain function as kafka-python 3.0's (De)Serializer (a plain one is deprecated
    there); a deserializer is not called for None, as in labkit's client, and does not
    raise inside kafka-python's fetcher (client/delegate_poison.py)."""
    kafka = kafka_python()
    if function is None or isinstance(
        function, kafka.serializer.Serializer | kafka.serializer.Deserializer
    ):
        return function
    if key.endswith("_deserializer"):
        function = guarded(function, key.removesuffix("_deserializer"))

        class Deserialize(kafka.serializer.Deserializer):  # type: ignore[name-defined]
            def deserialize(self, topic: str, headers: Any, data: Any) -> Any:
                return None if data is None else function(data)

        return Deserialize()
    return kafka.serializer.SerializeWrapper(function)


# -- the delegating classes -----------------------------------------------------------


class Delegating:
    """Forwards attributes to ``self._inner`` (kafka-python's client), translated."""

    _inner: Any

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "_inner":
            raise AttributeError(name)
        value = getattr(self._inner, name)
        return translated(value) if callable(value) else value

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<labkit {type(self).__name__} over kafka-python: {self._inner!r}>"


def _build(kind: str, labkit_class: Any, configs: dict) -> Any:
    kafka = kafka_python(configs.get("bootstrap_servers"))
    kafka_class = getattr(kafka, kind)
    settings = kafka_configs(kind, labkit_class.DEFAULT_CONFIG, kafka_class.DEFAULT_CONFIG, configs)
    try:
        return translated(kafka_class)(**settings)
    except KafkaError:
        forget(settings["bootstrap_servers"])  # the next client asks again what is there
        raise


class DelegatingProducer(Delegating):
    """labkit's ``KafkaProducer`` on a Kafka broker: kafka-python's, translated."""

    def __init__(self, labkit_class: type, **configs: Any):
        self._inner = _build("KafkaProducer", labkit_class, configs)
        self.config = self._inner.config

    def send(self, topic: str, value: Any = None, key: Any = None, **kwargs: Any) -> Any:
        """kafka-python's ``send``; the future gives labkit's RecordMetadata and errors."""
        future = translated(self._inner.send)(topic, value=value, key=key, **kwargs)
        return DelegatingFuture(future)

    def close(self, timeout: float | None = None) -> None:
        translated(self._inner.close)(timeout=timeout)


class DelegatingFuture:
    """kafka-python's FutureRecordMetadata with labkit's values and errors."""

    def __init__(self, inner: Any):
        self._inner = inner

    def get(self, timeout: float | None = None) -> Any:
        return translated(self._inner.get)(timeout=timeout)

    def add_callback(self, fn: Any, *args: Any, **kwargs: Any) -> DelegatingFuture:
        self._inner.add_callback(lambda value: fn(*args, to_labkit(value), **kwargs))
        return self

    def add_errback(self, fn: Any, *args: Any, **kwargs: Any) -> DelegatingFuture:
        self._inner.add_errback(lambda exc: fn(*args, labkit_error(exc), **kwargs))
        return self

    def add_both(self, fn: Any, *args: Any, **kwargs: Any) -> DelegatingFuture:
        self.add_callback(fn, *args, **kwargs)
        return self.add_errback(fn, *args, **kwargs)

    def succeeded(self) -> bool:
        return self._inner.succeeded()

    def failed(self) -> bool:
        return self._inner.failed()

    def is_done(self) -> bool:
        return self._inner.is_done

    @property
    def value(self) -> Any:
        return to_labkit(self._inner.value)

    @property
    def exception(self) -> Any:
        exc = self._inner.exception
        return None if exc is None else labkit_error(exc)


class DelegatingConsumer(Delegating):
    """labkit's ``KafkaConsumer`` on a Kafka broker: kafka-python's, translated."""

    def __init__(self, labkit_class: type, *topics: str, **configs: Any):
        self._inner = _build("KafkaConsumer", labkit_class, configs)
        self.config = self._inner.config
        self._poison: tuple | None = None  # (partition, offset, error) for the next poll()
        keep_unfinished_joins_wanted(self._inner)
        if topics:
            self.subscribe(topics=list(topics))

    def subscribe(self, topics: Any = (), pattern: Any = None, listener: Any = None) -> None:
        """kafka-python's ``subscribe``; a rebalance listener gets labkit's TopicPartitions."""
        if listener is not None:
            listener = _listener_in_labkit_terms(listener)
        translated(self._inner.subscribe)(topics=topics, pattern=pattern, listener=listener)

    def commit(self, *args: Any, **kwargs: Any) -> Any:
        self._leave_group_if_poll_timeout_expired()
        return translated(self._inner.commit)(*args, **kwargs)

    def commit_async(self, *args: Any, **kwargs: Any) -> Any:
        self._leave_group_if_poll_timeout_expired()
        return translated(self._inner.commit_async)(*args, **kwargs)

    def __iter__(self) -> DelegatingConsumer:
        return self

    def __next__(self) -> Any:
        self._leave_group_if_poll_timeout_expired()
        record = translated(self._inner.__next__)()
        poison = poison_of(record)
        if poison is None:
            return record
        tp, error = poison_error(record, poison)
        self._inner.seek(to_kafka(tp), record.offset)  # kafka-python moved past it
        raise error

    def poll(self, timeout_ms: int = 0, max_records: int | None = None, **kwargs: Any) -> dict:
        """kafka-python's ``poll``, with labkit's answer to a poison message: the records
        before it now, its deserializer's exception at the next call."""
        self._leave_group_if_poll_timeout_expired()
        pending, self._poison = self._poison, None
        if pending is not None:
            tp, offset, error = pending
            kafka_tp = to_kafka(tp)
            if kafka_tp in self._inner.assignment() and self._inner.position(kafka_tp) == offset:
                raise error  # not sought past it since
        result = translated(self._inner.poll)(
            timeout_ms=timeout_ms, max_records=max_records, **kwargs
        )
        good, cuts = split_poll(result)
        for tp, offset, _ in cuts:
            self._inner.seek(to_kafka(tp), offset)
        if cuts and not good:
            raise cuts[0][2]
        if cuts:
            self._poison = cuts[0]
        return good

    def close(self, autocommit: bool = True, timeout_ms: float | None = None) -> None:
        self._leave_group_if_poll_timeout_expired()
        translated(self._inner.close)(autocommit=autocommit, timeout_ms=timeout_ms)

    def _leave_group_if_poll_timeout_expired(self) -> None:
        """Leave the group now if ``max_poll_interval_ms`` passed since the last poll(),
        as Kafka's Java heartbeat thread has by then (module docstring); kafka-python then
        refuses a commit with CommitFailedError and rejoins on the next poll()."""
        inner = self._inner
        coordinator: Any = getattr(inner, "_coordinator", None)
        heartbeat = getattr(coordinator, "heartbeat", None)
        if heartbeat is None or inner.config.get("group_id") is None:
            return
        if not inner._subscription.partitions_auto_assigned():
            return  # assign(): no membership to lose
        if coordinator.stable() and heartbeat.poll_timeout_expired():
            log.warning("Leaving group %s: %s", inner.config["group_id"], POLL_TIMEOUT_EXPIRED)
            translated(coordinator.maybe_leave_group)(reason="consumer poll timeout has expired.")


def _listener_in_labkit_terms(listener: Any) -> Any:
    """``listener`` as kafka-python's ConsumerRebalanceListener (it checks the class),
    its callbacks seeing labkit's TopicPartitions."""
    kafka = kafka_python()

    class Listener(kafka.ConsumerRebalanceListener):  # type: ignore[name-defined]
        def on_partitions_revoked(self, revoked: Any) -> None:
            listener.on_partitions_revoked(to_labkit(revoked))

        def on_partitions_assigned(self, assigned: Any) -> None:
            listener.on_partitions_assigned(to_labkit(assigned))

        def on_partitions_lost(self, lost: Any) -> None:
            handler = getattr(listener, "on_partitions_lost", None)
            if handler is None:  # kafka-python's default: treat them as revoked
                listener.on_partitions_revoked(to_labkit(lost))
            else:
                handler(to_labkit(lost))

    return Listener()
