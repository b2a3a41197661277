"""Request handlers: (api, JSON header, payload frames) -> Reply. No sockets here.

Theory of operation
-------------------
``Handlers.handle`` is called by the server's loop thread for every request that
is not a consumer-group request, and never raises: a ``KafkaError`` becomes its
Kafka error code, a malformed header becomes INVALID_REQUEST (42) and anything
unexpected becomes UNKNOWN (-1) with a log line. Per-target errors (one topic,
one partition) go inside the lists as in Kafka; one bad batch never fails the
others of the same request.

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

The hot paths touch no record object: produce = CRC and column check (C-level over
the batch's columns, records.validate_batch) + the timestamp bounds + one append
per batch, fetch = one read per partition, whose bytes go out as a payload frame.
"""

from __future__ import annotations

import importlib.metadata
import logging
from dataclasses import dataclass, field
from typing import Any

from labkit._clock import Clock
from labkit.broker.config import BrokerConfig
from labkit.broker.descriptors import DescriptorGuard, out_of_descriptors
from labkit.broker.topics import Topic, TopicRegistry, validate_topic_name
from labkit.errors import (
    CorruptRecordError,
    InvalidRequestError,
    InvalidRequiredAcksError,
    InvalidTimestampError,
    KafkaError,
    MessageSizeTooLargeError,
    UnknownTopicOrPartitionError,
)
from labkit.log.config import INT64_MAX
from labkit.protocol.records import first_timestamp_outside, validate_batch

log = logging.getLogger(__name__)

try:
    _labkit_version = importlib.metadata.version("labkit-streaming")
except importlib.metadata.PackageNotFoundError:  # running from a plain checkout
    _labkit_version = "0.1.0"

EARLIEST = -2
LATEST = -1
STORAGE_ERROR = 56
INT32_MAX = 2**31 - 1
MAX_FETCH_PARTITIONS = 10_000  # rows one fetch may name (each distinct)


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
            return STORAGE_ERROR, text
        return STORAGE_ERROR, (
            f"storage error: {exc} (is the disk full? the broker keeps "
            "running; free space and try again)"
        )
    log.error("unexpected error in a request handler", exc_info=exc)
    return -1, f"unexpected broker error {type(exc).__name__}: {exc} (see the broker log)"


def _error_reply(exc: BaseException) -> Reply:
    code, text = error_of(exc)
    return Reply({"error": code, "message": text})


def _int(header: dict, key: str, default: int | None = None, minimum: int | None = None) -> int:
    value = header.get(key, default)
    if type(value) is not int:
        raise InvalidRequestError(f"field {key!r} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise InvalidRequestError(f"field {key!r} must be at least {minimum}, got {value}")
    return value


def _list(header: dict, key: str, default: list | None = None) -> list:
    value = header.get(key, default)
    if not isinstance(value, list):
        raise InvalidRequestError(f"field {key!r} must be a list")
    return value


def _tp_items(items: list, width: int) -> list:
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


class Handlers:
    """The broker's non-group APIs over one TopicRegistry."""

    def __init__(
        self,
        registry: TopicRegistry,
        config: BrokerConfig,
        clock: Clock,
        extra_apis: frozenset[str] = frozenset(),
    ):
        self.registry = registry
        self.config = config
        self.clock = clock
        self.descriptors = DescriptorGuard()
        self._apis = {
            "api_versions": self.api_versions,
            "metadata": self.metadata,
            "produce": self.produce,
            "list_offsets": self.list_offsets,
            "create_topics": self.create_topics,
            "delete_topics": self.delete_topics,
            "create_partitions": self.create_partitions,
            "describe_configs": self.describe_configs,
            "alter_configs": self.alter_configs,
        }
        self.api_names = sorted({*self._apis, "fetch", *extra_apis})

    def handle(self, api: str, header: dict[str, Any], payloads: list) -> Reply:
        """Answer one request. Never raises."""
        try:
            if api == "fetch":
                return self._fetch(header, final=False)
            handler = self._apis.get(api)
            if handler is None:
                return Reply(
                    {
                        "error": 35,
                        "message": "this broker does not support the {!r} "
                        "API; it supports: {}".format(api, ", ".join(self.api_names)),
                    }
                )
            return handler(header, payloads)
        except Exception as exc:  # noqa: BLE001 - a handler must never take the broker down
            return _error_reply(exc)

    # -- cluster ---------------------------------------------------------------

    def api_versions(self, header: dict, payloads: list) -> Reply:
        return Reply(
            {
                "error": 0,
                "broker": "labkit",
                "version": _labkit_version,
                "apis": self.api_names,
                "node_id": 0,
            }
        )

    def _auto_create(self, name: str) -> Topic | None:
        if not self.config.auto_create_topics_enable:
            return None
        if self.registry.get(name) is None:
            self.descriptors.check(self.config.num_partitions)  # before connections starve
        return self.registry.auto_create(name, self.config.num_partitions)

    def try_auto_create(self, name: object) -> None:
        """Start creating ``name`` if it is a new, legal name and auto-create is on."""
        try:
            self._auto_create(validate_topic_name(name))
        except KafkaError:
            pass  # the request, handled later, reports it

    def metadata(self, header: dict, payloads: list) -> Reply:
        wanted = header.get("topics")
        allow = header.get("allow_auto_create", False) is True
        if wanted is None:
            names = self.registry.names()
        elif isinstance(wanted, list):
            names = wanted
        else:
            raise InvalidRequestError("field 'topics' must be null or a list of names")
        topics = []
        changed = []
        for name in names:
            try:
                validate_topic_name(name)
                topic = self.registry.get(name)
                if topic is None and allow:
                    topic = self._auto_create(name)
                    if topic is not None:
                        changed.append(name)
                if topic is None:
                    raise UnknownTopicOrPartitionError(f"topic {name!r} does not exist")
                parts = [
                    {"partition": p, "leader": 0, "replicas": [0], "isr": [0]}
                    for p in range(len(topic.partitions))
                ]
                topics.append({"name": name, "error": 0, "is_internal": False, "partitions": parts})
            except Exception as exc:  # noqa: BLE001
                code, text = error_of(exc)
                topics.append(
                    {
                        "name": name,
                        "error": code,
                        "message": text,
                        "is_internal": False,
                        "partitions": [],
                    }
                )
        brokers = [{"node_id": 0, "host": self.config.advertised_host, "port": self.config.port}]
        return Reply(
            {
                "error": 0,
                "cluster_id": self.registry.cluster_id,
                "controller_id": 0,
                "brokers": brokers,
                "topics": topics,
            },
            topics_changed=bool(changed),
            changed_topics=changed,
        )

    # -- data ------------------------------------------------------------------

    def produce(self, header: dict, payloads: list) -> Reply:
        acks = header.get("acks", 1)
        if acks not in (0, 1, -1) or type(acks) is not int:
            raise InvalidRequiredAcksError(f"acks must be 0, 1 or -1 ('all'), got {acks!r}")
        targets = _tp_items(_list(header, "targets"), 2)
        if len(targets) != len(payloads):
            raise InvalidRequestError(
                f"{len(targets)} targets but {len(payloads)} payload frames; "
                "send one record batch per target"
            )
        registry = self.registry
        results: list[list[Any]] = []  # [base offset, error, log start, message]
        appended = []
        created = []
        sync: list[tuple[int, Any]] | None = [] if acks == -1 else None
        for index, ((name, partition), batch) in enumerate(zip(targets, payloads, strict=False)):
            try:
                topic = registry.topics.get(name)
                if topic is None:
                    validate_topic_name(name)
                    topic = self._auto_create(name)
                    if topic is None:
                        raise UnknownTopicOrPartitionError(
                            f"topic {name!r} does not exist and auto.create.topics.enable "
                            "is false; "
                            f"create it first (labkit topics --create --topic {name})"
                        )
                    created.append(name)
                plog = registry.partition(name, partition)
                size = len(batch)
                if size > topic.max_message_bytes:
                    raise MessageSizeTooLargeError(
                        f"a batch of {size} bytes is larger than max.message.bytes="
                        f"{topic.max_message_bytes} of topic {name!r}; send smaller batches "
                        "(batch_size, max_request_size) or raise the topic's max.message.bytes"
                    )
                try:
                    batch_header = validate_batch(batch)
                except CorruptRecordError as exc:
                    raise CorruptRecordError(
                        f"the record batch for {name}-{partition} is malformed and was not "
                        f"stored: {exc.args[0] if exc.args else exc}. labkit's and Kafka's "
                        "producers never build such a batch: check the code that "
                        "encoded it"
                    ) from None
                if batch_header.size != size:
                    extra = size - batch_header.size
                    raise CorruptRecordError(
                        f"payload frame holds {extra} bytes "
                        "after its batch; send exactly one batch per "
                        "target"
                    )
                self._check_timestamps(name, topic, batch, batch_header)
                base = plog.append(batch, batch_header)
                results.append([base, 0, plog.log_start_offset, None])
                appended.append((name, partition))
                if sync is not None:
                    sync.append((index, plog))
            except Exception as exc:  # noqa: BLE001
                code, text = error_of(exc)
                results.append([-1, code, -1, text])
        return Reply(
            {"error": 0, "results": results},
            silent=acks == 0,
            sync=sync,
            appended=appended,
            changed_topics=created,
        )

    def _check_timestamps(self, name: str, topic: Topic, batch, header) -> None:
        """Kafka's message.timestamp.after.max.ms / before.max.ms: a record stamped far
        from now would hold retention up (or let it delete at once). Raises
        InvalidTimestampError (INVALID_TIMESTAMP) naming the record and the bound."""
        config = topic.config
        now = self.clock.time_ms()
        after, before = (
            config.message_timestamp_after_max_ms,
            config.message_timestamp_before_max_ms,
        )
        low = now - before if before < INT64_MAX else -(1 << 63)  # Kafka: Long.MAX = no limit
        bad = first_timestamp_outside(batch, 0, header, low, now + after)
        if bad is None:
            return
        index, timestamp = bad
        if timestamp > now:
            how_far, key = f"{timestamp - now} ms ahead of", "message.timestamp.after.max.ms"
        else:
            how_far, key = f"{now - timestamp} ms behind", "message.timestamp.before.max.ms"
        raise InvalidTimestampError(
            f"record {index} of the batch for topic {name!r} has timestamp {timestamp}, "
            f"{how_far} the broker's clock ({now}); the topic allows {key}="
            f"{getattr(config, key.replace('.', '_'))}. Send records stamped with the "
            "current time (leave timestamp_ms unset), or raise the topic's " + key + "."
        )

    def fetch(self, header: dict, final: bool) -> Reply:
        """Read every requested partition; ask to park when short of min_bytes.

        Never raises (the server calls it again for parked fetches)."""
        try:
            return self._fetch(header, final)
        except Exception as exc:  # noqa: BLE001
            return _error_reply(exc)

    def _fetch(self, header: dict, final: bool) -> Reply:
        try:
            max_wait, min_bytes, budget, wanted = self._fetch_fields(header)
        except KafkaError as exc:
            return _error_reply(exc)
        rows = []
        payloads = []
        total = 0
        failed = False
        for name, partition, offset, part_max in wanted:
            plog = None
            try:
                plog = self.registry.partition(name, partition)
                end = plog.log_end_offset
                if offset == end or (budget <= total and total > 0):
                    data = b""  # nothing new, or the response is full
                else:
                    limit = max(1, min(part_max, budget - total))
                    data = plog.read(offset, limit)
                rows.append([name, partition, 0, end, plog.log_start_offset])
                payloads.append(data)
                total += len(data)
            except Exception as exc:  # noqa: BLE001
                code, _text = error_of(exc)
                failed = True
                if plog is None:
                    rows.append([name, partition, code, -1, -1])
                else:  # e.g. OFFSET_OUT_OF_RANGE: say where the log is now
                    rows.append([name, partition, code, plog.log_end_offset, plog.log_start_offset])
                payloads.append(b"")
        if final or failed or total >= min_bytes or max_wait == 0:
            return Reply({"error": 0, "partitions": rows}, payloads)
        keys = [(name, partition) for name, partition, _o, _m in wanted]
        return Reply({"error": 0, "partitions": rows}, payloads, park_ms=max_wait, keys=keys)

    def _fetch_fields(self, header: dict) -> tuple[int, int, int, list]:
        """(wait ms, min bytes, max bytes, partitions) of a fetch, within the broker's
        bounds. Raises InvalidRequestError."""
        max_wait = _int(header, "max_wait_ms", 500, 0)
        if max_wait > INT32_MAX:  # Kafka's field is an int32: such a wait cannot be asked for
            raise InvalidRequestError(
                f"max_wait_ms={max_wait} is too large (at most {INT32_MAX};"
                " consumers usually wait 500 ms: fetch_max_wait_ms)"
            )
        min_bytes = _int(header, "min_bytes", 1)
        budget = min(_int(header, "max_bytes", 52428800, 0), self.config.fetch_max_bytes)
        wanted = _tp_items(_list(header, "partitions"), 4)
        if len(wanted) > MAX_FETCH_PARTITIONS:
            raise InvalidRequestError(
                f"a fetch may name at most {MAX_FETCH_PARTITIONS} "
                f"partitions, this one names {len(wanted)}"
            )
        seen = set()
        for name, partition, _offset, _max in wanted:
            if (name, partition) in seen:  # as Kafka: one row per partition in a fetch
                raise InvalidRequestError(
                    f"partition {name}-{partition} appears more than "
                    "once in this fetch; name each partition once"
                )
            seen.add((name, partition))
        # a long poll may always end early: waits beyond the broker's bound are cut to it
        return min(max_wait, self.config.fetch_max_wait_max_ms), min_bytes, budget, wanted

    def list_offsets(self, header: dict, payloads: list) -> Reply:
        rows = []
        for name, partition, timestamp in _tp_items(_list(header, "partitions"), 3):
            try:
                plog = self.registry.partition(name, partition)
                if timestamp == EARLIEST:
                    rows.append([name, partition, 0, plog.log_start_offset, -1])
                elif timestamp == LATEST:
                    rows.append([name, partition, 0, plog.log_end_offset, -1])
                else:
                    found = plog.offset_for_timestamp(timestamp)
                    offset, ts = found if found is not None else (-1, -1)
                    rows.append([name, partition, 0, offset, ts])
            except Exception as exc:  # noqa: BLE001
                rows.append([name, partition, error_of(exc)[0], -1, -1])
        return Reply({"error": 0, "partitions": rows})

    # -- admin -----------------------------------------------------------------

    @staticmethod
    def _outcome(name: Any, exc: BaseException | None) -> dict:
        if exc is None:
            return {"name": name, "error": 0, "message": None}
        code, text = error_of(exc)
        return {"name": name, "error": code, "message": text}

    def create_topics(self, header: dict, payloads: list) -> Reply:
        validate_only = header.get("validate_only", False) is True
        out = []
        changed: list[str] = []
        for spec in _list(header, "topics"):
            if not isinstance(spec, dict):
                raise InvalidRequestError("each topic must be an object with a 'name'")
            name = spec.get("name")
            try:
                count = spec.get("num_partitions", -1)
                if type(count) is int and isinstance(name, str) and self.registry.get(name) is None:
                    self.descriptors.check(self.config.num_partitions if count == -1 else count)
                self.registry.create(
                    name,
                    count,
                    spec.get("replication_factor", 1),
                    spec.get("configs"),
                    validate_only=validate_only,
                )
                out.append(self._outcome(name, None))
                if not validate_only:
                    changed.append(str(name))  # create() accepted it: a topic name
            except Exception as exc:  # noqa: BLE001
                out.append(self._outcome(name, exc))
        return Reply(
            {"error": 0, "topics": out}, topics_changed=not validate_only, changed_topics=changed
        )

    def delete_topics(self, header: dict, payloads: list) -> Reply:
        out = []
        changed = []
        for name in _list(header, "topics"):
            try:
                self.registry.delete(name)
                out.append(self._outcome(name, None))
                changed.append(name)
            except Exception as exc:  # noqa: BLE001
                out.append(self._outcome(name, exc))
        return Reply({"error": 0, "topics": out}, topics_changed=True, changed_topics=changed)

    def create_partitions(self, header: dict, payloads: list) -> Reply:
        wanted = header.get("topics")
        if not isinstance(wanted, dict):
            raise InvalidRequestError("field 'topics' must be an object of topic -> new count")
        validate_only = header.get("validate_only", False) is True
        out = []
        changed = []
        for name, total in wanted.items():
            try:
                topic = self.registry.get(name) if isinstance(name, str) else None
                if topic is not None and type(total) is int:
                    self.descriptors.check(total - len(topic.partitions))
                self.registry.create_partitions(name, total, validate_only=validate_only)
                out.append(self._outcome(name, None))
                if not validate_only:
                    changed.append(name)
            except Exception as exc:  # noqa: BLE001
                out.append(self._outcome(name, exc))
        return Reply(
            {"error": 0, "topics": out}, topics_changed=not validate_only, changed_topics=changed
        )

    def describe_configs(self, header: dict, payloads: list) -> Reply:
        wanted = header.get("topics")
        names = self.registry.names() if wanted is None else _list(header, "topics")
        out = []
        for name in names:
            try:
                configs = self.registry.describe_configs(name)
                out.append({**self._outcome(name, None), "configs": configs})
            except Exception as exc:  # noqa: BLE001
                out.append({**self._outcome(name, exc), "configs": []})
        return Reply({"error": 0, "topics": out})

    def alter_configs(self, header: dict, payloads: list) -> Reply:
        wanted = header.get("topics")
        if not isinstance(wanted, dict):
            raise InvalidRequestError("field 'topics' must be an object of topic -> configs")
        validate_only = header.get("validate_only", False) is True
        out = []
        for name, changes in wanted.items():
            try:
                self.registry.alter_configs(name, changes, validate_only=validate_only)
                out.append(self._outcome(name, None))
            except Exception as exc:  # noqa: BLE001
                out.append(self._outcome(name, exc))
        return Reply({"error": 0, "topics": out})
