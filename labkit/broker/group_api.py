"""Consumer-group requests: validate JSON headers, run the coordinator, answer.

Contract with broker/loop.py: the loop builds one ``GroupService`` at start,
passes every request whose API is in ``GROUP_APIS`` to ``handle`` (which never
raises and returns the response header), calls ``tick()`` about every 100 ms,
``topics_changed(names)`` after topics were created, deleted or got partitions
(this is how groups notice: the tick does not scan subscriptions), and
``close()`` at shutdown. The wire shapes are in docs/groups.md.

Theory of operation: ``GroupService`` glues three pure parts together — the
``Coordinator`` (membership, generations, assignment; labkit/broker/groups.py),
the ``OffsetStore`` (committed offsets, fsync'd; labkit/broker/offsets.py) and
the broker's topic registry (``partitions_of``, ``log_end_offset`` callbacks).
Every request is answered synchronously; nothing is parked (members poll with
short heartbeats during a rebalance instead). Not thread-safe: one I/O thread.

Expiry (Kafka's ``offsets.retention.minutes``, checked every
``offsets.retention.check.interval.ms`` from ``tick``): a group without members
and without committed offsets is forgotten at the next check; one with offsets
once it has been empty for the retention time, counted from when its last member
left (or from its newest commit if that is later, e.g. a tool's; for a group known
only by its offsets, as after a restart, from its newest commit). Its offsets go
with it: a delete record each, written and fsync'd by the flusher's next round (the
loop thread never waits for the disk).

The glue of the two coordinators (labkit's and Kafka clients' classic one, which share
the offsets, the list, describe and delete APIs) is here; the state machines live in
groups.py and classic_groups.py, the header field checks in group_checks.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labkit._clock import Clock
from labkit.broker.classic_groups import DEFAULT_INITIAL_DELAY_MS, ClassicCoordinator
from labkit.broker.group_checks import (
    MAX_SUBSCRIBED_TOPICS,
    BadField,
    checked_group_id,
    checked_int,
    checked_str,
    checked_topics,
    checked_tps,
)
from labkit.broker.group_members import DEAD, EMPTY
from labkit.broker.groups import DEFAULT_MAX_GROUP_SIZE, Coordinator
from labkit.broker.offsets import MAX_METADATA, OffsetStore
from labkit.errors import (
    GroupIdNotFoundError,
    GroupSubscribedToTopicError,
    InconsistentGroupProtocolError,
    InvalidRequestError,
    InvalidSessionTimeoutError,
    KafkaError,
    KafkaStorageError,
    NonEmptyGroupError,
    OffsetMetadataTooLargeError,
    UnknownError,
    UnknownTopicOrPartitionError,
)
from labkit.protocol.messages import GROUP_APIS

log = logging.getLogger(__name__)

__all__ = ["GROUP_APIS", "MAX_SUBSCRIBED_TOPICS", "GroupService"]  # as imported before

MIN_SESSION_TIMEOUT_MS = 100
MAX_SESSION_TIMEOUT_MS = 3_600_000
OFFSETS_RETENTION_MS = 7 * 24 * 3600 * 1000  # Kafka's offsets.retention.minutes=10080
RETENTION_CHECK_INTERVAL_MS = 600_000  # offsets.retention.check.interval.ms


class GroupService:
    """Answers the consumer-group APIs (see docs/groups.md)."""

    def __init__(
        self,
        data_dir: Path,
        clock: Clock,
        partitions_of: Callable[[str], int | None],
        log_end_offset: Callable[[str, int], int | None],
        *,
        offsets_retention_ms: int = OFFSETS_RETENTION_MS,
        retention_check_interval_ms: int = RETENTION_CHECK_INTERVAL_MS,
        max_group_size: int = DEFAULT_MAX_GROUP_SIZE,
        initial_rebalance_delay_ms: int = DEFAULT_INITIAL_DELAY_MS,
    ):
        self._clock = clock
        self._retention_ms = offsets_retention_ms
        self._check_interval_s = retention_check_interval_ms / 1000.0
        self._next_check = clock.monotonic() + self._check_interval_s
        self._partitions_of = partitions_of
        self._log_end_offset = log_end_offset
        self.coordinator = Coordinator(clock, partitions_of, max_group_size)
        # Kafka clients' groups (classic protocol; broker/classic_api.py answers them)
        self.classic = ClassicCoordinator(clock, initial_rebalance_delay_ms, max_group_size)
        self.offsets = OffsetStore(data_dir, clock)
        if self.offsets.truncated_bytes:
            log.warning(
                "consumer offsets: cut %d bytes of a torn write at the end of the "
                "offsets file (the broker was killed mid-commit); earlier commits kept",
                self.offsets.truncated_bytes,
            )
        self._handlers: dict[str, Callable[[dict], dict]] = {
            "join_group": self._join,
            "heartbeat": self._heartbeat,
            "leave_group": self._leave,
            "offset_commit": self._commit,
            "offset_fetch": self._fetch,
            "list_groups": self._list,
            "describe_groups": self._describe,
            "delete_groups": self._delete,
            "offset_delete": self._offset_delete,
            "find_coordinator": self._find_coordinator,
        }
        # cluster mode: the leader of the group's __consumer_offsets partition
        # (broker/offsets_log.py); single-broker mode: this broker
        self.coordinator_of: Callable[[str], dict] | None = None
        if set(self._handlers) != GROUP_APIS:  # api_versions lists every GROUP_APIS name
            raise RuntimeError(f"group handlers do not match {sorted(GROUP_APIS)}")

    def handle(self, api: str, header: dict[str, Any]) -> dict[str, Any]:
        """Answer one request; never raises (errors become the header's code and message)."""
        handler = self._handlers.get(api)
        if handler is None:
            return {
                "error": InvalidRequestError.errno,
                "message": f"{api!r} is not a consumer-group API",
            }
        try:
            return handler(header)
        except KafkaError as exc:
            errno = getattr(exc, "errno", None)
            if errno is None:
                errno = UnknownError.errno
            return {"error": errno, "message": str(exc.args[0]) if exc.args else str(exc)}
        except BadField as exc:
            return {
                "error": InvalidRequestError.errno,
                "message": f"malformed {api} request: {exc} (see docs/groups.md)",
            }
        except OSError as exc:
            log.error("consumer offsets: %s failed: %s", api, exc)
            return {
                "error": KafkaStorageError.errno,
                "message": f"the broker could not write committed offsets ({exc}); check the "
                "disk space and permissions of the data directory",
            }
        except Exception:  # the broker must never die from a request
            log.exception("consumer groups: %s failed", api)
            return {
                "error": UnknownError.errno,
                "message": "internal error in the group coordinator (see the broker log)",
            }

    def tick(self) -> None:
        try:
            self.coordinator.tick()
            if self._clock.monotonic() >= self._next_check:
                self._next_check = self._clock.monotonic() + self._check_interval_s
                self.expire_groups()
            self.offsets.maybe_compact()
        except Exception:  # a periodic task must not kill the broker loop
            log.exception("consumer groups: tick failed")

    def topics_changed(self, topics: list[str]) -> None:
        """Topics were created, deleted or got partitions; never raises."""
        try:
            self.coordinator.topics_changed(topics)
        except Exception:  # the broker loop must not die from a rebalance
            log.exception("consumer groups: reacting to changed topics failed")

    def close(self) -> None:
        self.offsets.close()

    def unload(self, belongs: Callable[[str], bool]) -> list:
        """Cluster mode: this broker stopped coordinating the groups for which
        ``belongs(group)`` (broker/offsets_log.py). Kafka clients' groups are dropped, their
        parked requests answered NOT_COORDINATOR (the answers to send)."""
        answers = []
        for group_id in self.classic.group_ids():
            if belongs(group_id):
                answers += self.classic.unload(group_id)
        return answers

    def expire_groups(self) -> list[str]:
        """Forget empty groups whose time is up (see "Expiry" above); returns their ids.

        Raises OSError when the offsets file cannot be written (nothing is forgotten then).
        """
        now_ms = self._clock.time_ms()
        expired, with_offsets = [], []
        for group_id in self._known_groups():
            if self.coordinator.has_members(group_id) or self.classic.has_members(group_id):
                continue
            committed = self.offsets.fetch(group_id)
            if committed:
                newest_commit = max(c.commit_ms for c in committed.values())
                empty_since = max(
                    self.coordinator.empty_since_ms(group_id) or 0,
                    self.classic.empty_since_ms(group_id) or 0,
                )
                since = max(empty_since, newest_commit)
                if now_ms - since < self._retention_ms:
                    continue
                with_offsets.append(group_id)
            expired.append(group_id)
        self.offsets.delete_groups(with_offsets)
        for group_id in expired:
            self.coordinator.forget(group_id)
            self.classic.forget(group_id)
        if expired:
            log.info(
                "consumer groups: forgot %d empty group(s) (%d with offsets older than "
                "offsets.retention.minutes=%d): %s",
                len(expired),
                len(with_offsets),
                self._retention_ms // 60_000,
                ", ".join(expired[:10]) + (", ..." if len(expired) > 10 else ""),
            )
        return expired

    # -- membership -------------------------------------------------------------

    def _join(self, h: dict) -> dict:
        group_id = checked_group_id(h)
        if self.classic.has_members(group_id):
            raise InconsistentGroupProtocolError(
                f"group '{group_id}' is used by Kafka consumers (the classic group protocol, "
                "over the Kafka port); give labkit's consumers another group_id"
            )
        session_ms = checked_int(h, "session_timeout_ms", 10_000)
        if not MIN_SESSION_TIMEOUT_MS <= session_ms <= MAX_SESSION_TIMEOUT_MS:
            raise InvalidSessionTimeoutError(
                f"session_timeout_ms={session_ms} is outside {MIN_SESSION_TIMEOUT_MS}.."
                f"{MAX_SESSION_TIMEOUT_MS}; pick a value in that range (45000 is the default)"
            )
        max_poll_ms = checked_int(h, "max_poll_interval_ms", 300_000)
        if max_poll_ms < 1:
            raise BadField("'max_poll_interval_ms' must be positive")
        assignors = h.get("assignors", ["range"])
        if not isinstance(assignors, list) or not all(isinstance(a, str) for a in assignors):
            raise BadField("'assignors' must be a list of names such as [\"range\"]")
        return self.coordinator.join(
            group_id,
            client_id=checked_str(h, "client_id", ""),
            client_host=checked_str(h, "client_host", ""),
            topics=checked_topics(h),
            assignors=assignors,
            session_timeout_ms=session_ms,
            max_poll_interval_ms=max_poll_ms,
            member_id=checked_str(h, "member_id", ""),
        )

    def _heartbeat(self, h: dict) -> dict:
        topics = checked_topics(h) if h.get("topics") is not None else None
        owned = checked_tps(h.get("owned", []), "owned")
        return self.coordinator.heartbeat(
            checked_group_id(h),
            checked_str(h, "member_id"),
            checked_int(h, "generation", -1),
            [(t, p) for t, p in owned],
            topics,
        )

    def _leave(self, h: dict) -> dict:
        self.coordinator.leave(checked_group_id(h), checked_str(h, "member_id"))
        return {"error": 0}

    # -- offsets ------------------------------------------------------------------

    def _commit(self, h: dict) -> dict:
        group_id = checked_group_id(h)
        rows = checked_tps(h.get("offsets"), "offsets", width=4)
        offsets = []
        for topic, partition, offset, metadata in rows:
            if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
                raise BadField(
                    f"offset for {topic}-{partition} must be an integer >= 0, got {offset!r}"
                )
            metadata = "" if metadata is None else metadata
            if not isinstance(metadata, str):
                raise BadField(f"metadata for {topic}-{partition} must be a string or null")
            if len(metadata.encode("utf-8")) > MAX_METADATA:
                raise OffsetMetadataTooLargeError(
                    f"the metadata string for {topic}-{partition} is over {MAX_METADATA} "
                    "bytes; keep it short"
                )
            count = self._partitions_of(topic)
            if count is None or partition >= count:
                why = "does not exist" if count is None else f"has only {count} partition(s)"
                raise UnknownTopicOrPartitionError(
                    f"cannot commit an offset for {topic}-{partition}: the topic {why}; "
                    "check the topic name"
                )
            offsets.append((topic, partition, offset, metadata))
        if h.get("classic") or self.classic.has_members(group_id):
            # a Kafka client's OffsetCommit: Kafka's generation and member checks
            if self.coordinator.has_members(group_id):
                raise InconsistentGroupProtocolError(
                    f"group '{group_id}' is a labkit consumer group with active members; "
                    "a Kafka client cannot commit to it (use another group id)"
                )
            self.classic.check_commit(
                group_id, checked_str(h, "member_id", ""), checked_int(h, "generation", -1)
            )
        else:
            self.coordinator.check_commit(
                group_id,
                checked_str(h, "member_id", ""),
                checked_int(h, "generation", -1),
                [(t, p) for t, p, _, _ in offsets],
            )
        self.offsets.commit(group_id, offsets)
        return {"error": 0}

    def _fetch(self, h: dict) -> dict:
        group_id = checked_group_id(h)
        wanted = h.get("partitions")
        if wanted is None:
            committed = self.offsets.fetch(group_id)
            tps = sorted(committed)
        else:
            tps = [(t, p) for t, p in checked_tps(wanted, "partitions")]
            committed = self.offsets.fetch(group_id, tps)
        rows = []
        for tp in tps:
            c = committed.get(tp)
            end = self._log_end_offset(*tp)
            rows.append(  # a CommittedOffset row (protocol/messages.py), as a plain list
                [
                    tp[0],
                    tp[1],
                    c.offset if c else -1,
                    c.metadata if c else "",
                    0,
                    -1 if end is None else end,
                ]
            )
        return {"error": 0, "partitions": rows}

    def _find_coordinator(self, h: dict) -> dict:
        """The broker that coordinates a group (Kafka's FindCoordinator): its node id and,
        in cluster mode, its Kafka and ZeroMQ addresses."""
        group_id = checked_str(h, "key")
        if not group_id:
            raise BadField("'key' must be the group id")
        if self.coordinator_of is None:
            return {"error": 0, "node_id": 0}
        return self.coordinator_of(group_id)

    # -- admin --------------------------------------------------------------------

    def _known_groups(self) -> list[str]:
        return sorted(
            set(self.coordinator.group_ids())
            | set(self.classic.group_ids())
            | set(self.offsets.groups())
        )

    def _list(self, h: dict) -> dict:
        groups = []
        for group_id in self._known_groups():
            state = self.coordinator.state_of(group_id)
            if state in (DEAD, EMPTY):
                state = self.classic.state_of(group_id)
            groups.append(
                {
                    "group_id": group_id,
                    "protocol_type": "consumer",
                    "state": EMPTY if state == DEAD else state,
                }
            )
        return {"error": 0, "groups": groups}

    def _describe(self, h: dict) -> dict:
        group_ids = h.get("group_ids")
        if not isinstance(group_ids, list) or not all(isinstance(g, str) for g in group_ids):
            raise BadField("'group_ids' must be a list of group ids")
        groups = []
        for group_id in group_ids:
            described = self.coordinator.describe(group_id)
            if described is None or (
                not described["members"] and self.classic.has_members(group_id)
            ):
                described = self.classic.describe(group_id) or described
            if described is None and self.offsets.has_group(group_id):
                described = {
                    "group_id": group_id,
                    "error": 0,
                    "state": EMPTY,
                    "protocol_type": "consumer",
                    "assignor": "",
                    "generation": -1,
                    "members": [],
                }
            if described is None:
                described = {
                    "group_id": group_id,
                    "error": GroupIdNotFoundError.errno,
                    "message": f"consumer group '{group_id}' does not exist",
                    "state": DEAD,
                    "protocol_type": "",
                    "assignor": "",
                    "generation": -1,
                    "members": [],
                }
            groups.append(described)
        return {"error": 0, "groups": groups}

    def _delete(self, h: dict) -> dict:
        group_ids = h.get("group_ids")
        if not isinstance(group_ids, list) or not all(isinstance(g, str) for g in group_ids):
            raise BadField("'group_ids' must be a list of group ids")
        results = []
        for group_id in group_ids:
            error, message = 0, None
            if group_id not in self._known_groups():
                error = GroupIdNotFoundError.errno
                message = f"consumer group '{group_id}' does not exist"
            else:
                try:
                    self.coordinator.delete(group_id)
                    if not self.classic.forget(group_id):
                        raise NonEmptyGroupError(
                            f"group '{group_id}' still has active Kafka consumers; stop "
                            "(close) them and try again"
                        )
                    self.offsets.delete_group(group_id)
                except NonEmptyGroupError as exc:
                    error, message = exc.errno, str(exc.args[0])
            results.append({"group_id": group_id, "error": error, "message": message})
        return {"error": 0, "groups": results}

    def _offset_delete(self, h: dict) -> dict:
        """Kafka's OffsetDelete: forget some committed offsets of a group; a partition of
        a topic the group's members subscribe to is refused (GROUP_SUBSCRIBED_TO_TOPIC)."""
        group_id = checked_group_id(h)
        partitions = h.get("partitions")
        if not isinstance(partitions, list) or not all(
            isinstance(row, list)
            and len(row) == 2
            and isinstance(row[0], str)
            and isinstance(row[1], int)
            and not isinstance(row[1], bool)
            for row in partitions
        ):
            raise BadField("'partitions' must be a list of [topic, partition]")
        if group_id not in self._known_groups():
            raise GroupIdNotFoundError(f"consumer group '{group_id}' does not exist")
        classic_topics = self.classic.subscribed_topics(group_id)
        if classic_topics is None:
            raise NonEmptyGroupError(
                f"group '{group_id}' has members that are not Kafka consumers (another "
                "protocol type); stop them and try again"
            )
        subscribed = classic_topics | self.coordinator.subscribed_topics(group_id)
        rows, deletable = [], []
        for topic, partition in partitions:
            if self._partitions_of(topic) is None:  # as Kafka's KafkaApis checks first
                error = UnknownTopicOrPartitionError.errno
                message = f"topic '{topic}' does not exist"
            elif topic in subscribed:
                error = GroupSubscribedToTopicError.errno
                message = (
                    f"group '{group_id}' has members subscribed to topic '{topic}': stop "
                    "them (or have them unsubscribe) before deleting its offsets"
                )
            else:
                error, message = 0, None
                deletable.append((topic, partition))
            rows.append([topic, partition, error, message])
        self.offsets.delete_offsets(group_id, deletable)
        return {"error": 0, "partitions": rows}
