"""What ``KafkaProducer`` accepts: serializers, record fields, and settings checks.

Pure functions, no state: ``send()`` calls the serializers through ``serialize``
and checks what they return with ``bytes_or_error``; the constructor parses
``acks`` and checks ``enable_idempotence``; the sender explains a record the broker
refused as too large with ``record_too_large``. The messages say what to change.
"""

from __future__ import annotations

from typing import Any

from labkit.errors import KafkaConfigurationError, KafkaError, MessageSizeTooLargeError


def bytes_or_error(data: Any, what: str, serializer: Any) -> bytes | None:
    if data is None or type(data) is bytes:
        return data
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    if serializer is None:
        raise TypeError(
            f"the {what} must be bytes, got {type(data).__name__}. Pass a {what}_serializer to "
            f"KafkaProducer, e.g. {what}_serializer=lambda v: json.dumps(v).encode('utf-8') "
            f"(or str.encode for text), or encode the {what} yourself."
        )
    raise TypeError(
        f"the {what}_serializer returned {type(data).__name__}; it must return bytes "
        "(e.g. add .encode('utf-8') at its end)"
    )


def serialize(fn: Any, data: Any, what: str) -> Any:
    """``fn(data)``; when it fails on None, say why it was called with None."""
    try:
        return fn(data)
    except Exception as exc:
        if data is None:
            exc.add_note(
                f"KafkaProducer called the {what}_serializer with {what}=None, as kafka-python "
                f"does. Make it return None for None (e.g. lambda x: None if x is None else "
                f"...), or, for a {what}-only record, send {what}=None without a serializer."
            )
        raise


def check_idempotence(config: dict[str, Any], acks: int, user_configs: dict[str, Any]) -> None:
    """``enable_idempotence=True`` (kafka-python's rules when set explicitly): the broker
    drops a resent batch by its producer id and sequence, so retries are safe; it needs
    acks='all', retries > 0 and max_in_flight_requests_per_connection <= 5. Left unset,
    ``retries`` becomes unlimited (kafka-python's default), bounded by
    ``delivery_timeout_ms``."""
    if not config["enable_idempotence"]:
        return
    conflicts = []
    if acks != -1:
        conflicts.append(f"acks={config['acks']!r} (use acks='all', the default)")
    if "retries" in user_configs and config["retries"] == 0:
        conflicts.append(
            "retries=0 (leave retries unset: it then retries until delivery_timeout_ms)"
        )
    if config["max_in_flight_requests_per_connection"] > 5:
        conflicts.append(
            "max_in_flight_requests_per_connection="
            f"{config['max_in_flight_requests_per_connection']!r} (at most 5)"
        )
    if conflicts:
        raise KafkaConfigurationError(
            "enable_idempotence=True is incompatible with "
            + ", ".join(conflicts)
            + "; or set enable_idempotence=False"
        )
    if "retries" not in user_configs:
        config["retries"] = float("inf")


def serializer(fn: Any, what: str) -> Any:
    if fn is None or callable(fn):
        return fn
    if hasattr(fn, "serialize"):
        return lambda value, _s=fn: _s.serialize(None, value)
    raise KafkaConfigurationError(
        f"{what} must be a function taking the {what.split('_')[0]} and returning bytes, got {fn!r}"
    )


def parse_acks(acks: Any) -> int:
    if acks in ("all", "-1", -1):
        return -1
    if acks in (0, 1, "0", "1") and not isinstance(acks, bool):
        return int(acks)
    raise KafkaConfigurationError(f"acks must be 0, 1 or 'all' (-1), got {acks!r}")


def headers_size(headers: Any) -> int:
    if not isinstance(headers, list | tuple):
        raise TypeError("headers must be a list of (str, bytes) tuples")
    size = 2
    for item in headers:
        if not (
            isinstance(item, tuple)
            and len(item) == 2
            and isinstance(item[0], str)
            and (item[1] is None or isinstance(item[1], bytes))
        ):
            raise TypeError(f"All headers items must be (str, bytes) tuples, got {item!r}")
        size += 6 + len(item[0].encode("utf-8")) + (len(item[1]) if item[1] is not None else 0)
    return size


def record_too_large(
    topic: str, size: int, max_request_size: int, error: BaseException
) -> KafkaError:
    """The error for a record the broker refused as too large (MESSAGE_TOO_LARGE) although
    it was a ``size``-byte batch of its own: which limits to raise."""
    wrapped = MessageSizeTooLargeError(
        f"the broker refused a record for topic '{topic}': it is {size} bytes "
        "as a batch of its own, more than the topic's max.message.bytes. Send a smaller "
        f"record, or raise the topic's limit (labkit topics --alter --topic {topic} "
        "--config max.message.bytes=N) and keep the producer's max_request_size (now "
        f"{max_request_size}) at least that large. The broker said: {error}"
    )
    wrapped.__cause__ = error
    return wrapped
