"""Consumer-group administration for ``KafkaAdminClient`` (kafka-python 2.x names).

``GroupAdminMixin`` is mixed into ``KafkaAdminClient`` (labkit/client/admin.py);
it uses only ``self._transport.call(api, header, idempotent=...)``. Every method
is one blocking request of docs/groups.md (``list_groups``, ``describe_groups``,
``offset_fetch``, ``offset_commit``, ``delete_groups``, ``offset_delete``).

Shapes follow kafka-python 2.x so course code keeps working:

- ``list_consumer_groups()`` -> ``[(group_id, protocol_type), ...]``
- ``describe_consumer_groups(ids)`` -> ``[GroupInformation, ...]`` whose ``members``
  are ``MemberInformation`` with a decoded ``member_metadata``
  (``ConsumerProtocolMemberMetadata``: the subscription) and ``member_assignment``
  (``ConsumerProtocolMemberAssignment``: ``.assignment`` as ``[(topic, [partitions])]``,
  ``.partitions()`` as TopicPartitions).
- ``list_consumer_group_offsets(id)`` -> ``{TopicPartition: OffsetAndMetadata}``
- ``delete_consumer_groups(ids)`` -> ``[(group_id, error class), ...]`` (``NoError``
  on success; failures are also logged with the broker's explanation).
- ``alter_consumer_group_offsets(id, offsets)`` -> ``{TopicPartition: NoError}``.
- ``delete_group_offsets(id, partitions)`` (kafka-python 3.0) -> ``{TopicPartition:
  error class}`` (``NoError``, ``GroupSubscribedToTopicError``, ...).

Cluster mode (docs/replication.md): a group's requests go to its coordinator, found
with ``find_coordinator`` and found again after ``retry_backoff_ms`` on
NOT_COORDINATOR / COORDINATOR_NOT_AVAILABLE / COORDINATOR_LOAD_IN_PROGRESS
(client/group_route.py, one route per group asked); describing or deleting several
groups sends one request per group there, and ``list_consumer_groups`` asks every
broker and merges the answers (each broker lists the groups it coordinates), as Kafka's
admin client does. One broker: one request each, as always. ``group_coordinator_id``
and ``broker_ids`` are accepted and ignored. Thread-safe as its transport.
"""

from __future__ import annotations

import logging
from collections import namedtuple
from collections.abc import Iterable
from typing import Any

from labkit import errors
from labkit.client.group_route import COORDINATOR_ERRORS, GroupRoute
from labkit.client.metadata import refresh
from labkit.client.structs import OffsetAndMetadata, TopicPartition
from labkit.client.transport import raise_for_error
from labkit.errors import BrokerResponseError, IllegalArgumentError, for_code, from_wire
from labkit.protocol.messages import CommitOffset, committed_offsets, offset_fetch_request

log = logging.getLogger(__name__)

NoError = errors.NoError


MemberInformation = namedtuple(
    "MemberInformation",
    ["member_id", "client_id", "client_host", "member_metadata", "member_assignment"],
)
MemberInformation.__doc__ = """One member of a described group (kafka-python's fields).

``member_metadata`` is a ConsumerProtocolMemberMetadata (the subscribed topics),
``member_assignment`` a ConsumerProtocolMemberAssignment (the partitions it owns now).
"""

GroupInformation = namedtuple(
    "GroupInformation",
    [
        "error_code",
        "group",
        "state",
        "protocol_type",
        "protocol",
        "members",
        "authorized_operations",
    ],
)
GroupInformation.__doc__ = """One described group (kafka-python's fields).

``state``: Empty, PreparingRebalance, Stable (docs/groups.md); ``protocol``: the
assignor in use (``range``, ``roundrobin``, ``sticky``; ``''`` without members);
``members``: list of MemberInformation; ``authorized_operations``: None (no ACLs).
"""


class ConsumerProtocolMemberMetadata(
    namedtuple("ConsumerProtocolMemberMetadata", ["version", "subscription", "user_data"])
):
    """A member's subscription: ``subscription`` (also ``topics``) lists topic names."""

    __slots__ = ()

    @property
    def topics(self) -> list[str]:
        """The newer kafka-python name of ``subscription``."""
        return self.subscription


class ConsumerProtocolMemberAssignment(
    namedtuple("ConsumerProtocolMemberAssignment", ["version", "assignment", "user_data"])
):
    """A member's partitions: ``assignment`` (also ``assigned_partitions``) is
    ``[(topic, [partition, ...]), ...]``."""

    __slots__ = ()

    @property
    def assigned_partitions(self) -> list[tuple[str, list[int]]]:
        """The newer kafka-python name of ``assignment``."""
        return self.assignment

    def partitions(self) -> list[TopicPartition]:
        """The assigned partitions as TopicPartitions (kafka-python's method)."""
        return [TopicPartition(topic, p) for topic, parts in self.assignment for p in parts]


def _ids(group_ids: Any, what: str) -> list[str]:
    """A list of group ids; a single string is taken as one id (not its letters)."""
    if isinstance(group_ids, str):
        return [group_ids]
    ids = list(group_ids)
    if not all(isinstance(g, str) for g in ids):
        raise IllegalArgumentError(f"{what} takes a list of group ids (strings), got {ids!r}")
    return ids


def _by_topic(rows: Iterable) -> list[tuple[str, list[int]]]:
    topics: dict[str, list[int]] = {}
    for topic, partition in sorted((t, p) for t, p in rows):
        topics.setdefault(topic, []).append(partition)
    return list(topics.items())


def _member(entry: dict) -> MemberInformation:
    return MemberInformation(
        entry.get("member_id", ""),
        entry.get("client_id", ""),
        entry.get("client_host", ""),
        ConsumerProtocolMemberMetadata(0, list(entry.get("topics", [])), b""),
        ConsumerProtocolMemberAssignment(0, _by_topic(entry.get("assignment", [])), b""),
    )


def _group(entry: dict) -> GroupInformation:
    """A describe_groups entry as GroupInformation; raises its error (GroupIdNotFoundError)."""
    code = entry.get("error", 0)
    if code:
        raise from_wire(
            code,
            entry.get("message")
            or f"consumer group '{entry.get('group_id')}' could not be described",
        )
    return GroupInformation(
        0,
        entry["group_id"],
        entry.get("state", ""),
        entry.get("protocol_type", ""),
        entry.get("assignor", ""),
        [_member(m) for m in entry.get("members", [])],
        None,
    )


def _offsets(offsets: Any) -> list[CommitOffset]:
    """``{TopicPartition: OffsetAndMetadata or int}`` as offset_commit rows."""
    if not isinstance(offsets, dict) or not offsets:
        raise IllegalArgumentError(
            "alter_consumer_group_offsets needs a non-empty dict such as "
            "{TopicPartition('t', 0): OffsetAndMetadata(42, '', -1)}"
        )
    rows = []
    for tp, value in offsets.items():
        if not isinstance(tp, tuple) or len(tp) != 2:
            raise IllegalArgumentError(
                f"offsets keys must be TopicPartition('topic', 0), got {tp!r}"
            )
        topic, partition = tp
        if isinstance(value, int) and not isinstance(value, bool):
            value = OffsetAndMetadata(value, "", -1)
        offset = getattr(value, "offset", None)
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise IllegalArgumentError(
                f"the offset for {topic}-{partition} must be an integer >= 0 (the next record "
                f"to read), got {value!r}"
            )
        rows.append(
            CommitOffset(topic, int(partition), offset, getattr(value, "metadata", "") or "")
        )
    return sorted(rows)


class GroupAdminMixin:
    """Consumer-group methods of ``KafkaAdminClient`` (see the module docstring)."""

    _transport: Any
    _cluster: Any
    _clock: Any
    config: dict[str, Any]

    def _group_call(self, group_id: str, api: str, header: dict, idempotent: bool) -> dict:
        """One request for ``group_id``, at its coordinator (cluster mode); its header."""
        routes = self.__dict__.setdefault("_group_routes", {})
        route = routes.get(group_id)
        if route is None:
            backoff = self.config.get("retry_backoff_ms", 100)
            route = routes[group_id] = GroupRoute(self._transport, group_id, backoff, self._clock)
        timeout_ms = self._transport.request_timeout * 1000.0
        return raise_for_error(
            route.call(api, header, timeout_ms=timeout_ms, idempotent=idempotent)
        )

    def _groups_call(self, api: str, ids: list[str], idempotent: bool) -> list[dict]:
        """``describe_groups`` / ``delete_groups`` for ``ids``: one request on one broker;
        in a cluster one per group, each at its coordinator."""
        if len(ids) > 1 and not self._transport.routes.multi:
            try:
                header = self._transport.call(api, {"group_ids": ids}, idempotent=idempotent).header
                return header.get("groups", [])
            except BrokerResponseError as exc:
                if exc.errno not in COORDINATOR_ERRORS:
                    raise  # else: a cluster, whose groups have several coordinators
        groups: list[dict] = []
        for group_id in ids:
            header = self._group_call(group_id, api, {"group_ids": [group_id]}, idempotent)
            groups.extend(header.get("groups", []))
        return groups

    def group_coordinator(self, group_id: str) -> tuple[int, str | None, int | None]:
        """The group's coordinator as ``(node id, host, port)`` (Kafka's FindCoordinator;
        host and port of its Kafka listener, None on one broker: the bootstrap broker is
        it). labkit-only (kafka-python keeps this private). Raises CoordinatorNotAvailableError
        while the cluster has none for the group (retry)."""
        header = raise_for_error(
            self._transport.call("find_coordinator", {"key": group_id}, idempotent=True).header
        )
        node, host, port = header.get("node_id"), header.get("host"), header.get("port")
        return (
            node if type(node) is int else 0,
            host if isinstance(host, str) else None,
            port if type(port) is int else None,
        )

    def list_consumer_groups(self, broker_ids: Any = None) -> list[tuple[str, str]]:
        """Every group the broker knows, as ``(group_id, protocol_type)`` tuples, sorted.

        Includes groups with members and groups that only have committed offsets.
        Use ``describe_consumer_groups`` for their state and members.
        """
        transport = self._transport
        refresh(transport, self._cluster, [], False, self._clock.monotonic())  # the brokers
        nodes = sorted(transport.routes.nodes) if transport.routes.multi else [None]
        found: dict[str, str] = {}
        for node in nodes:  # in a cluster each broker lists the groups it coordinates
            header = transport.call("list_groups", {}, idempotent=True, node=node).header
            for g in header.get("groups", []):
                found.setdefault(g["group_id"], g.get("protocol_type", "consumer"))
        return sorted(found.items())

    def describe_consumer_groups(
        self,
        group_ids: Any,
        group_coordinator_id: Any = None,
        include_authorized_operations: bool = False,
    ) -> list[GroupInformation]:
        """State, assignor and members (with their partitions) of each group, in order.

        Raises GroupIdNotFoundError for a group the broker does not know (no members and
        no committed offsets); check the name with ``list_consumer_groups()``.
        """
        ids = _ids(group_ids, "describe_consumer_groups")
        if not ids:
            return []
        return [_group(entry) for entry in self._groups_call("describe_groups", ids, True)]

    def list_consumer_group_offsets(
        self,
        group_id: str,
        group_coordinator_id: Any = None,
        partitions: Iterable[TopicPartition] | None = None,
    ) -> dict[TopicPartition, OffsetAndMetadata]:
        """The group's committed offsets: ``{TopicPartition: OffsetAndMetadata}``.

        ``partitions=None``: every partition the group has committed. With a list, each
        partition asked for is in the result; one without a commit has offset -1 (as
        in Kafka). An unknown group gives ``{}`` (Kafka does not treat it as an error).
        Raises InvalidGroupIdError for an empty or too long group id.
        """
        if partitions is not None:
            partitions = [TopicPartition(t, p) for t, p in partitions]
        header = self._group_call(
            group_id, "offset_fetch", offset_fetch_request(group_id, partitions), True
        )
        result = {}
        for row in committed_offsets(header):
            if row.error:
                raise from_wire(
                    row.error,
                    f"offset_fetch failed for {row.topic}-{row.partition} of group '{group_id}'",
                )
            result[TopicPartition(row.topic, row.partition)] = OffsetAndMetadata(
                max(row.offset, -1), row.metadata if row.offset >= 0 else "", -1
            )
        return result

    def delete_consumer_groups(
        self, group_ids: Any, group_coordinator_id: Any = None
    ) -> list[tuple[str, type]]:
        """Delete groups and their committed offsets: ``[(group_id, error class), ...]``.

        As in kafka-python, failures are returned, not raised: ``NoError`` for a deleted
        group, ``NonEmptyGroupError`` while it has members (stop its consumers first),
        ``GroupIdNotFoundError`` for an unknown group. Each failure is also logged as a
        warning with the broker's explanation.
        """
        ids = _ids(group_ids, "delete_consumer_groups")
        if not ids:
            return []
        results = []
        for entry in self._groups_call("delete_groups", ids, False):
            code = entry.get("error", 0)
            if code:
                log.warning(
                    "consumer group '%s' was not deleted: %s",
                    entry["group_id"],
                    entry.get("message") or for_code(code).description,
                )
            results.append((entry["group_id"], for_code(code) if code else NoError))
        return results

    def alter_consumer_group_offsets(
        self, group_id: str, offsets: dict, group_coordinator_id: Any = None
    ) -> dict[TopicPartition, type]:
        """Set the group's committed offsets: ``{TopicPartition: OffsetAndMetadata or int}``.

        The offset is the next record the group will read. All or nothing; returns
        ``{TopicPartition: NoError}``. Creates the group's offsets if it had none.
        Raises UnknownMemberIdError while the group has active members (stop its
        consumers first), UnknownTopicOrPartitionError for a missing partition,
        IllegalArgumentError for a negative offset.
        """
        rows = _offsets(offsets)
        self._group_call(
            group_id,
            "offset_commit",
            {"group_id": group_id, "member_id": "", "generation": -1, "offsets": rows},
            True,
        )  # setting the same offsets twice is harmless
        return {TopicPartition(row.topic, row.partition): NoError for row in rows}

    def delete_group_offsets(
        self, group_id: str, partitions: Iterable[TopicPartition], group_coordinator_id: Any = None
    ) -> dict[TopicPartition, type]:
        """Forget the group's committed offsets of ``partitions`` (Kafka's OffsetDelete):
        ``{TopicPartition: error class}``, ``NoError`` for each one deleted.

        A partition of a topic the group's active members subscribe to is refused with
        ``GroupSubscribedToTopicError`` (stop those consumers first); one of a topic that
        does not exist gets ``UnknownTopicOrPartitionError``. Raises
        GroupIdNotFoundError for a group the broker does not know.
        """
        rows = [[t, p] for t, p in partitions]
        header = self._group_call(
            group_id, "offset_delete", {"group_id": group_id, "partitions": rows}, True
        )  # deleting the same offsets twice is harmless
        return {
            TopicPartition(topic, partition): for_code(code) if code else NoError
            for topic, partition, code, _message in header.get("partitions", [])
        }
