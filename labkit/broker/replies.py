"""What a request handler returns (``Reply``) and how an exception becomes a Kafka error.

Theory of operation
-------------------
A ``Reply`` tells the server what to do besides sending ``header`` + ``payloads``:

- ``silent``: send nothing (produce with ``acks=0``);
- ``sync``: ``[(result index, log)]`` appended with ``acks=-1``; the server answers
  after one fsync of those logs (group commit) and patches the results of any log
  whose fsync failed;
- ``appended``: partitions that got data, so parked fetches on them are re-checked;
- ``park_ms``/``keys``: a fetch short of ``min_bytes``; the server parks it and
  calls ``fetch(header, final)`` again when one of ``keys`` grows or time is up;
- ``topics_changed``: an admin change; parked fetches are re-checked;
- ``changed_topics``: names of topics created (also auto-created), deleted or
  grown, for the group coordinator (groups rebalance on them; nothing scans).
- ``log_starts``: ``[(row index, log)]`` of a delete_records whose new log start
  offsets are not durable yet; the server answers after the flusher's round wrote
  them and patches the rows whose write failed.
- ``replicate``: cluster mode, acks=-1: after the fsync round the reply also waits
  for the in-sync replicas (broker/replication.py).
- ``rolled``: logs whose active segment a produce sealed; the flusher thread writes
  the sealed segment's index files (``PartitionLog.write_sealed_indexes``) in its next
  round, so the loop thread never does (the reply does not wait for it).

``error_of`` maps any exception to (Kafka error code, message for the student): a
``KafkaError`` keeps its code, an ``OSError`` is KAFKA_STORAGE_ERROR (56) saying what
to do, anything else is UNKNOWN (-1) with a log line. ``int_field``, ``list_field``
and ``tp_rows`` check a request header's fields and raise INVALID_REQUEST (42).
Pure: no state, no sockets.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from labkit.broker.descriptors import out_of_descriptors
from labkit.errors import InvalidRequestError, KafkaError, KafkaStorageError, UnknownError

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Reply:
    header: dict[str, Any]
    payloads: list = field(default_factory=list)
    silent: bool = False
    sync: list | None = None
    appended: list | None = None
    park_ms: int = 0
    keys: list | None = None
    topics_changed: bool = False
    changed_topics: list[str] | tuple[()] = ()
    request: dict | None = None  # a parked fetch's request (its client's quota is charged)
    log_starts: list | None = None  # delete_records: (row, log) to save before replying
    rolled: list | None = None  # logs a produce rolled: the flusher writes their indexes
    # cluster mode, acks=all: [(result index, topic, partition, log, end offset)] the high
    # watermark must reach before the reply goes (broker/replication.py), and for how long
    replicate: list | None = None
    replicate_timeout_ms: int = 30_000


def target_ok(header: dict[str, Any], index: int) -> bool:
    """Whether a produce's result row ``index`` (or a group answer: the answer) is a success."""
    results = header.get("results")
    return header.get("error") == 0 if results is None else results[index][1] == 0


# a replicated offset commit's append error -> the group error Kafka's coordinator answers
# (GroupMetadataManager.storeOffsets): the client finds the coordinator again, or retries
_GROUP_ERROR_OF_APPEND = {
    6: 16,  # NOT_LEADER_OR_FOLLOWER -> NOT_COORDINATOR
    56: 16,  # KAFKA_STORAGE_ERROR -> NOT_COORDINATOR
    7: 15,  # REQUEST_TIMED_OUT -> COORDINATOR_NOT_AVAILABLE
    19: 15,  # NOT_ENOUGH_REPLICAS -> COORDINATOR_NOT_AVAILABLE
    20: 15,  # NOT_ENOUGH_REPLICAS_AFTER_APPEND -> COORDINATOR_NOT_AVAILABLE
}


def fail_target(header: dict[str, Any], index: int, code: int, text: str) -> None:
    """Turn a produce's result row (or a group answer: the answer) into an error."""
    results = header.get("results")
    if results is None:  # a replicated offset commit (broker/offsets_log.py)
        if header.get("error") == 0:
            header["error"] = _GROUP_ERROR_OF_APPEND.get(code, code)
            header["message"] = text
        return
    results[index] = [-1, code, -1, text]


def error_of(exc: BaseException) -> tuple[int, str]:
    """(Kafka error code, message for the student) for any exception."""
    if isinstance(exc, KafkaError):
        code = getattr(exc, "errno", None)
        text = (
            str(exc.args[0])
            if exc.args
            else (getattr(exc, "description", None) or type(exc).__name__)
        )
        if isinstance(code, int):
            return code, text
        return InvalidRequestError.errno, text
    if isinstance(exc, OSError):
        text = out_of_descriptors(exc)
        if text is not None:
            return KafkaStorageError.errno, text
        return KafkaStorageError.errno, (
            f"storage error: {exc} (is the disk full? the broker keeps "
            "running; free space and try again)"
        )
    log.error("unexpected error in a request handler", exc_info=exc)
    return (
        UnknownError.errno,
        f"unexpected broker error {type(exc).__name__}: {exc} (see the broker log)",
    )


def error_reply(exc: BaseException) -> Reply:
    code, text = error_of(exc)
    return Reply({"error": code, "message": text})


def int_field(
    header: dict, key: str, default: int | None = None, minimum: int | None = None
) -> int:
    value = header.get(key, default)
    if type(value) is not int:
        raise InvalidRequestError(f"field {key!r} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise InvalidRequestError(f"field {key!r} must be at least {minimum}, got {value}")
    return value


def list_field(header: dict, key: str, default: list | None = None) -> list:
    value = header.get(key, default)
    if not isinstance(value, list):
        raise InvalidRequestError(f"field {key!r} must be a list")
    return value


def tp_rows(items: list, width: int) -> list:
    """Check ``[[topic, partition, int...], ...]`` rows of a given width."""
    for item in items:
        if (
            not isinstance(item, list)
            or len(item) != width
            or not isinstance(item[0], str)
            or any(type(x) is not int for x in item[1:])
        ):
            extra = ", int" * (width - 2)
            raise InvalidRequestError(f"each entry must be [topic, partition{extra}], got {item!r}")
    return items
