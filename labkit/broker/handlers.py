"""Request handlers: (api, JSON header, payload frames) -> Reply. No sockets here.

Theory of operation
-------------------
``Handlers.handle`` is called by the server's loop thread for every request that
is not a consumer-group request, and never raises: a ``KafkaError`` becomes its
Kafka error code, a malformed header becomes INVALID_REQUEST (42) and anything
unexpected becomes UNKNOWN (-1) with a log line. Per-target errors (one topic,
one partition) go inside the lists as in Kafka; one bad batch never fails the
others of the same request.

The ``Reply`` each returns, and how exceptions become Kafka error codes, live in
``broker/replies.py``; the topic admin APIs (create/delete topics and partitions,
configs, delete_records) in ``broker/topic_admin.py``, mixed into ``Handlers``.

The hot paths touch no record object: produce = CRC and column check (C-level over
the batch's columns, records.validate_batch) + the timestamp bounds + one append
per batch, fetch = one read per partition, whose bytes go out as a payload frame.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from typing import Any

from labkit._clock import Clock
from labkit.broker.config import BrokerConfig
from labkit.broker.descriptors import DescriptorGuard
from labkit.broker.idempotence import Idempotence, producer_rows
from labkit.broker.replica_api import ReplicaApi, fetch_rows
from labkit.broker.replies import Reply, error_of, error_reply, int_field, list_field, tp_rows
from labkit.broker.topic_admin import TopicAdmin
from labkit.broker.topics import Topic, TopicRegistry, validate_topic_name
from labkit.errors import (
    CorruptRecordError,
    InvalidRequestError,
    InvalidRequiredAcksError,
    InvalidTimestampError,
    InvalidTopicError,
    KafkaError,
    LeaderNotAvailableError,
    MessageSizeTooLargeError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
    UnsupportedVersionError,
)
from labkit.log.config import INT64_MAX
from labkit.log.partition import PartitionLog
from labkit.protocol.messages import TOPIC_APIS
from labkit.protocol.records import first_timestamp_outside, validate_batch

try:
    _labkit_version = importlib.metadata.version("labkit-streaming")
except importlib.metadata.PackageNotFoundError:  # running from a plain checkout
    _labkit_version = "0.1.0"

EARLIEST = -2
LATEST = -1
INT32_MAX = 2**31 - 1
MAX_FETCH_PARTITIONS = 10_000  # rows one fetch may name (each distinct)


class Handlers(TopicAdmin, ReplicaApi):
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
        self.idempotence = Idempotence(registry, config, clock)
        self.cluster: Any = None  # broker/cluster_sync.py's ClusterSync, in cluster mode only
        self.replication: Any = None  # broker/replication.py's Replication, cluster mode only
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
            "delete_records": self.delete_records,
            "init_producer_id": self.idempotence.init_producer_id,
            "offsets_for_leader_epoch": self.offsets_for_leader_epoch,
        }
        if {*self._apis, "fetch"} != TOPIC_APIS:  # api_versions lists only what is handled
            raise RuntimeError(f"handlers do not match {sorted(TOPIC_APIS)}: {sorted(self._apis)}")
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
                        "error": UnsupportedVersionError.errno,
                        "message": "this broker does not support the {!r} "
                        "API; it supports: {}".format(api, ", ".join(self.api_names)),
                    }
                )
            return handler(header, payloads)
        except Exception as exc:  # noqa: BLE001 - a handler must never take the broker down
            return error_reply(exc)

    # -- cluster ---------------------------------------------------------------

    def api_versions(self, header: dict, payloads: list) -> Reply:
        return Reply(
            {
                "error": 0,
                "broker": "labkit",
                "version": _labkit_version,
                "apis": self.api_names,
                "node_id": 0 if self.cluster is None else self.cluster.broker_id,
            }
        )

    def _auto_create(self, name: str) -> Topic | None:
        if not self.config.auto_create_topics_enable:
            return None
        if self.cluster is not None and self.cluster.is_internal(name):
            return self.registry.get(name)  # created by the group coordinators, as Kafka
        if self.registry.get(name) is None:
            self.descriptors.check(self.config.num_partitions)  # before connections starve
            if self.cluster is not None:  # the whole cluster's topic, default.replication.factor
                try:
                    self.cluster.create_topic(name, self.config.num_partitions, -1, {})
                except TopicAlreadyExistsError:
                    pass  # in ZooKeeper already: this broker creates its local log
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
        if self.cluster is not None:
            return self._cluster_metadata(wanted, allow)
        names = _wanted_topics(wanted, self.registry.names)
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
                topics.append(_topic_error_row(name, exc))
        brokers = [
            {"node_id": 0, "host": self.config.advertised_host, "port": self.config.advertised_port}
        ]
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

    def _cluster_metadata(self, wanted: object, allow: bool) -> Reply:
        """Cluster mode: the live brokers, the controller and every partition's leader,
        replicas, ISR and leader epoch, as ZooKeeper holds them."""
        cluster = self.cluster
        names = _wanted_topics(wanted, cluster.topic_names)
        topics = []
        changed = []
        for name in names:
            try:
                validate_topic_name(name)
                row = cluster.metadata_topic(name)
                if row is None and allow and self.config.auto_create_topics_enable:
                    if self.registry.get(name) is None:
                        changed.append(name)
                    self._auto_create(name)
                    raise LeaderNotAvailableError(f"topic {name!r} is being created; retry")
                if row is None:
                    raise UnknownTopicOrPartitionError(f"topic {name!r} does not exist")
                topics.append(row)
            except Exception as exc:  # noqa: BLE001
                topics.append(_topic_error_row(name, exc))
        return Reply(
            {
                "error": 0,
                "cluster_id": cluster.snapshot.cluster_id or self.registry.cluster_id,
                "controller_id": cluster.snapshot.controller_id,
                "brokers": cluster.metadata_brokers(),
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
        targets = tp_rows(list_field(header, "targets"), 2)
        if len(targets) != len(payloads):
            raise InvalidRequestError(
                f"{len(targets)} targets but {len(payloads)} payload frames; "
                "send one record batch per target"
            )
        producers = producer_rows(header, len(targets))
        if producers is not None:
            self.idempotence.maybe_expire()
        registry = self.registry
        results: list[list[Any]] = []  # [base offset, error, log start, message] per target
        appended = []
        created = []
        sync: list[tuple[int, PartitionLog]] | None = [] if acks == -1 else None
        replicate: list | None = [] if acks == -1 and self.cluster is not None else None
        rolled: list[PartitionLog] = []
        for index, ((name, partition), batch) in enumerate(zip(targets, payloads, strict=False)):
            try:
                if self.cluster is not None and self.cluster.is_internal(name):
                    raise InvalidTopicError(  # as Kafka: only the group coordinators write it
                        f"Cannot append to internal topic {name}: it holds the "
                        "groups' committed offsets; commit with a consumer (commit()) or "
                        "`labkit consumer-groups --reset-offsets` instead"
                    )
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
                if self.cluster is not None:
                    self.cluster.check_leader(name, partition)
                    if self.replication is not None:
                        self.replication.check_produce(name, partition, replicate is not None)
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
                fields = producers[index] if producers is not None else None
                if fields is None:
                    base = plog.append(batch, batch_header)
                    appended.append((name, partition))
                else:  # an idempotent producer's batch: a retry is not appended again
                    duplicate = self.idempotence.check(plog, fields, batch_header)
                    if duplicate is None:
                        base = plog.append(batch, batch_header)
                        appended.append((name, partition))
                        self.idempotence.record(plog, fields, batch_header, base)
                    else:
                        base = duplicate
                results.append([base, 0, plog.log_start_offset, None])
                if plog.sealed_unindexed:
                    rolled.append(plog)
                if sync is not None:  # a duplicate too: its original may not be durable yet
                    sync.append((index, plog))
                if replicate is not None:  # cluster mode: the ISR must have it (a duplicate too)
                    replicate.append((index, name, partition, plog, plog.log_end_offset))
            except Exception as exc:  # noqa: BLE001
                code, text = error_of(exc)
                results.append([-1, code, -1, text])
        return Reply(
            {"error": 0, "results": results},
            silent=acks == 0,
            sync=sync,
            appended=appended,
            changed_topics=created,
            rolled=rolled or None,
            replicate=replicate or None,
            replicate_timeout_ms=_timeout_ms(header),
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
            return error_reply(exc)

    def _fetch(self, header: dict, final: bool) -> Reply:
        try:
            max_wait, min_bytes, budget, wanted = self._fetch_fields(header)
            replica_id = self.replica_id_of(header)
        except KafkaError as exc:
            return error_reply(exc)
        rows = []
        payloads = []
        total = 0
        failed = False
        moved: list = []  # partitions whose high watermark a replica's fetch moved
        for name, partition, offset, part_max, current_epoch in wanted:
            plog = None
            try:
                self.check_leader_epoch(name, partition, current_epoch)  # KIP-320, first
                if self.cluster is not None:
                    self.cluster.check_leader(name, partition)
                plog = self.registry.partition(name, partition)
                full = budget <= total and total > 0  # the response is full
                limit = max(1, min(part_max, budget - total))
                # consumers up to the high watermark, replicas to the log end (replica_api)
                data, _end = self.read_for(
                    name, partition, plog, offset, limit, replica_id, full, moved
                )
                row = [name, partition, 0, plog.high_watermark, plog.log_start_offset]
                if replica_id >= 0:
                    row += self.replica_extras(plog, offset)
                rows.append(row)
                payloads.append(data)
                total += len(data)
            except Exception as exc:  # noqa: BLE001
                code, _text = error_of(exc)
                failed = True
                if plog is None:
                    row = [name, partition, code, -1, -1]
                else:  # e.g. OFFSET_OUT_OF_RANGE: say where the log is now
                    row = [name, partition, code, plog.high_watermark, plog.log_start_offset]
                rows.append([*row, [], []] if replica_id >= 0 else row)
                payloads.append(b"")
        appended = moved or None  # the loop re-checks consumer fetches parked on these
        if final or failed or total >= min_bytes or max_wait == 0:
            return Reply({"error": 0, "partitions": rows}, payloads, appended=appended)
        keys = [(row[0], row[1]) for row in wanted]
        return Reply(
            {"error": 0, "partitions": rows},
            payloads,
            park_ms=max_wait,
            keys=keys,
            appended=appended,
        )

    def _fetch_fields(self, header: dict) -> tuple[int, int, int, list]:
        """(wait ms, min bytes, max bytes, partitions) of a fetch, within the broker's
        bounds. Raises InvalidRequestError."""
        max_wait = int_field(header, "max_wait_ms", 500, 0)
        if max_wait > INT32_MAX:  # Kafka's field is an int32: such a wait cannot be asked for
            raise InvalidRequestError(
                f"max_wait_ms={max_wait} is too large (at most {INT32_MAX};"
                " consumers usually wait 500 ms: fetch_max_wait_ms)"
            )
        min_bytes = int_field(header, "min_bytes", 1)
        budget = min(int_field(header, "max_bytes", 52428800, 0), self.config.fetch_max_bytes)
        wanted = fetch_rows(list_field(header, "partitions"))
        if len(wanted) > MAX_FETCH_PARTITIONS:
            raise InvalidRequestError(
                f"a fetch may name at most {MAX_FETCH_PARTITIONS} "
                f"partitions, this one names {len(wanted)}"
            )
        seen = set()
        for name, partition, *_rest in wanted:
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
        for name, partition, timestamp in tp_rows(list_field(header, "partitions"), 3):
            try:
                if self.cluster is not None:
                    self.cluster.check_leader(name, partition)
                plog = self.registry.partition(name, partition)
                if timestamp == EARLIEST:
                    rows.append([name, partition, 0, plog.log_start_offset, -1])
                elif timestamp == LATEST:  # as Kafka: what consumers may read
                    rows.append([name, partition, 0, plog.high_watermark, -1])
                else:
                    found = plog.offset_for_timestamp(timestamp)
                    offset, ts = found if found is not None else (-1, -1)
                    rows.append([name, partition, 0, offset, ts])
            except Exception as exc:  # noqa: BLE001
                rows.append([name, partition, error_of(exc)[0], -1, -1])
        return Reply({"error": 0, "partitions": rows})


def _topic_error_row(name: object, exc: Exception) -> dict:
    """A metadata row for a topic that cannot be answered: its error and no partitions."""
    code, text = error_of(exc)
    return {"name": name, "error": code, "message": text, "is_internal": False, "partitions": []}


def _wanted_topics(wanted: object, every: Callable[[], list[str]]) -> list:
    """A metadata request's ``topics``: null means every topic (``every()``)."""
    if wanted is None:
        return every()
    if isinstance(wanted, list):
        return wanted
    raise InvalidRequestError("field 'topics' must be null or a list of names")


def _timeout_ms(header: dict) -> int:
    """A produce's ``timeout_ms`` (Kafka's: how long acks=all may wait for the ISR)."""
    value = header.get("timeout_ms", 30_000)
    return value if type(value) is int and value >= 0 else 30_000
