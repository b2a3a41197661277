"""Kafka's group APIs as labkit requests, and back. No sockets (pairs as in apis.py).

Theory of operation
-------------------
Kafka clients use the *classic* group protocol: JoinGroup, SyncGroup, Heartbeat and
LeaveGroup become labkit's ``classic_*`` requests, answered by the broker's classic
coordinator (broker/classic_groups.py; a JoinGroup's answer waits in the broker, as a
long-poll fetch does, and the listener's connection with it). Member metadata and
assignments are opaque bytes the clients write and read: they cross labkit's JSON
wire in base64. Offsets, listing, describing and deleting groups (and OffsetDelete) go to the same labkit
APIs labkit's own consumers use (``offset_commit`` with ``"classic": true`` so the
broker checks Kafka's generation and member id), so committed offsets are one store
for groups of either protocol. FindCoordinator is labkit's ``find_coordinator``: one
broker names itself (this listener's address); in cluster mode the broker names the
leader of the group's ``__consumer_offsets`` partition, with its Kafka address, and
COORDINATOR_NOT_AVAILABLE while there is none (broker/offsets_log.py).
"""

from __future__ import annotations

import base64
from typing import Any

from kio.index import load_response_schema
from kio.schema.errors import ErrorCode

from labkit.kafka.consumer_protocol import encode_assignment, encode_subscription
from labkit.kafka.kio_glue import NO_THROTTLE as _NO_THROTTLE
from labkit.kafka.kio_glue import error_code as _error
from labkit.kafka.kio_glue import make as _make
from labkit.kafka.kio_glue import ms as _ms
from labkit.kafka.kio_glue import nested as _nested

Context = Any  # apis.Context (this module is imported by apis.py)
NODE_ID = 0  # the one broker (apis.NODE_ID)

FIND_COORDINATOR_KEY = 10
JOIN_GROUP_KEY = 11
HEARTBEAT_KEY = 12
LEAVE_GROUP_KEY = 13
SYNC_GROUP_KEY = 14
OFFSET_COMMIT_KEY = 8
OFFSET_FETCH_KEY = 9
DESCRIBE_GROUPS_KEY = 15
LIST_GROUPS_KEY = 16
DELETE_GROUPS_KEY = 42
OFFSET_DELETE_KEY = 47
GROUP_KEY_TYPE, TRANSACTION_KEY_TYPE = 0, 1  # FindCoordinator's key types


def _b64(data: bytes | None) -> str:
    return base64.b64encode(data or b"").decode("ascii")


def _unb64(text: Any) -> bytes:
    try:
        return base64.b64decode(text or "")
    except (ValueError, TypeError):
        return b""


# -- FindCoordinator -------------------------------------------------------------------


def find_coordinator_to_labkit(request: Any, version: int) -> tuple[str, dict]:
    key_type = getattr(request, "key_type", GROUP_KEY_TYPE)
    if key_type != GROUP_KEY_TYPE or not request.key:
        return "api_versions", {}  # refused below; the request only proves the broker answers
    return "find_coordinator", {"key": request.key}


def find_coordinator_to_kafka(reply: dict, request: Any, version: int, context: Context) -> Any:
    cls = load_response_schema(FIND_COORDINATOR_KEY, version)
    key_type = getattr(request, "key_type", GROUP_KEY_TYPE)
    error, message = ErrorCode.none, None
    if key_type == TRANSACTION_KEY_TYPE:  # as InitProducerId answers a transactional id
        error = ErrorCode.unsupported_version
        message = "labkit has no transaction coordinator (transactions are not supported)"
    elif key_type != GROUP_KEY_TYPE:
        error, message = ErrorCode.invalid_request, f"unknown coordinator key type {key_type}"
    elif not request.key:
        error, message = ErrorCode.invalid_request, "the group id is empty"
    elif reply.get("error"):
        error = _error(reply["error"])  # NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE...
        message = reply.get("message")
    ok = error == ErrorCode.none
    return _make(
        cls,
        throttle_time=_NO_THROTTLE,
        error_code=error,
        error_message=message,
        node_id=reply.get("node_id", NODE_ID) if ok else -1,
        host=reply.get("host", context.host) if ok else "",  # cluster mode: the leader's
        port=reply.get("port", context.port) if ok else -1,
    )


# -- JoinGroup / SyncGroup / Heartbeat / LeaveGroup --------------------------------------


def join_group_to_labkit(request: Any, version: int) -> tuple[str, dict]:
    session_ms = _ms(request.session_timeout)
    rebalance = getattr(request, "rebalance_timeout", None)  # v0 has none
    return "classic_join", {
        "group_id": request.group_id,
        "member_id": request.member_id,
        "group_instance_id": getattr(request, "group_instance_id", None),
        "session_timeout_ms": session_ms,
        "rebalance_timeout_ms": session_ms if rebalance is None else _ms(rebalance),
        "protocol_type": request.protocol_type,
        "protocols": [[p.name, _b64(p.metadata)] for p in request.protocols],
        "require_member_id": version >= 4,  # KIP-394: MEMBER_ID_REQUIRED on a first join
    }


def join_group_to_kafka(reply: dict, request: Any, version: int, context: Context) -> Any:
    cls = load_response_schema(JOIN_GROUP_KEY, version)
    member_cls = _nested(cls, "JoinGroupResponseMember")
    error = reply.get("error", 0)
    members = tuple(
        _make(
            member_cls,
            member_id=m["member_id"],
            group_instance_id=m.get("group_instance_id"),
            metadata=_unb64(m.get("metadata")),
        )
        for m in (reply.get("members") or () if not error else ())
    )
    protocol_name = reply.get("protocol_name") if not error else None
    if protocol_name is None and version < 7:  # nullable only from v7
        protocol_name = ""
    return _make(
        cls,
        throttle_time=_NO_THROTTLE,
        error_code=_error(error),
        generation_id=reply.get("generation", -1) if not error else -1,
        protocol_type=reply.get("protocol_type") if not error else None,
        protocol_name=protocol_name,
        leader=reply.get("leader") or "" if not error else "",
        member_id=reply.get("member_id") or request.member_id,
        members=members,
    )


def sync_group_to_labkit(request: Any, version: int) -> tuple[str, dict]:
    return "classic_sync", {
        "group_id": request.group_id,
        "member_id": request.member_id,
        "generation": request.generation_id,
        "group_instance_id": getattr(request, "group_instance_id", None),
        "protocol_type": getattr(request, "protocol_type", None),
        "protocol_name": getattr(request, "protocol_name", None),
        "assignments": [[a.member_id, _b64(a.assignment)] for a in request.assignments],
    }


def sync_group_to_kafka(reply: dict, request: Any, version: int, context: Context) -> Any:
    cls = load_response_schema(SYNC_GROUP_KEY, version)
    error = reply.get("error", 0)
    return _make(
        cls,
        throttle_time=_NO_THROTTLE,
        error_code=_error(error),
        protocol_type=None if error else reply.get("protocol_type"),
        protocol_name=None if error else reply.get("protocol_name"),
        assignment=b"" if error else _unb64(reply.get("assignment")),
    )


def heartbeat_to_labkit(request: Any, version: int) -> tuple[str, dict]:
    return "classic_heartbeat", {
        "group_id": request.group_id,
        "member_id": request.member_id,
        "generation": request.generation_id,
        "group_instance_id": getattr(request, "group_instance_id", None),  # v3+
    }


def heartbeat_to_kafka(reply: dict, request: Any, version: int, context: Context) -> Any:
    cls = load_response_schema(HEARTBEAT_KEY, version)
    return _make(cls, throttle_time=_NO_THROTTLE, error_code=_error(reply.get("error", 0)))


def leave_group_to_labkit(request: Any, version: int) -> tuple[str, dict]:
    # v3+ (KIP-345): a batch of members
    members = [m.member_id for m in request.members] if version >= 3 else [request.member_id]
    return "classic_leave", {"group_id": request.group_id, "members": members}


def leave_group_to_kafka(reply: dict, request: Any, version: int, context: Context) -> Any:
    cls = load_response_schema(LEAVE_GROUP_KEY, version)
    error = reply.get("error", 0)
    codes = dict(map(tuple, reply.get("members") or ()))
    if version < 3:
        code = error or codes.get(request.member_id, 0)
        return _make(cls, throttle_time=_NO_THROTTLE, error_code=_error(code))
    member_cls = _nested(cls, "MemberResponse")
    members = tuple(
        _make(
            member_cls,
            member_id=m.member_id,
            group_instance_id=m.group_instance_id,
            error_code=_error(codes.get(m.member_id, error)),
        )
        for m in request.members
    )
    return _make(cls, throttle_time=_NO_THROTTLE, error_code=_error(error), members=members)


# -- OffsetCommit / OffsetFetch ---------------------------------------------------------


def offset_commit_to_labkit(request: Any, version: int) -> tuple[str, dict]:
    offsets = [
        [topic.name, p.partition_index, p.committed_offset, p.committed_metadata]
        for topic in request.topics
        for p in topic.partitions
    ]
    return "offset_commit", {
        "group_id": request.group_id,
        "member_id": request.member_id,
        "generation": request.generation_id_or_member_epoch,
        "offsets": offsets,
        "classic": True,
    }


def offset_commit_to_kafka(reply: dict, request: Any, version: int, context: Context) -> Any:
    cls = load_response_schema(OFFSET_COMMIT_KEY, version)
    topic_cls = _nested(cls, "OffsetCommitResponseTopic")
    partition_cls = _nested(cls, "OffsetCommitResponsePartition")
    error = _error(reply.get("error", 0))  # labkit commits all or nothing
    topics = tuple(
        _make(
            topic_cls,
            name=topic.name,
            partitions=tuple(
                _make(partition_cls, partition_index=p.partition_index, error_code=error)
                for p in topic.partitions
            ),
        )
        for topic in request.topics
    )
    return _make(cls, throttle_time=_NO_THROTTLE, topics=topics)


def offset_fetch_to_labkit(request: Any, version: int) -> tuple[str, dict]:
    if request.topics is None:  # v2+: every partition the group committed
        partitions = None
    else:
        partitions = [[t.name, p] for t in request.topics for p in t.partition_indexes]
    return "offset_fetch", {"group_id": request.group_id, "partitions": partitions}


def offset_fetch_to_kafka(reply: dict, request: Any, version: int, context: Context) -> Any:
    cls = load_response_schema(OFFSET_FETCH_KEY, version)
    topic_cls = _nested(cls, "OffsetFetchResponseTopic")
    partition_cls = _nested(cls, "OffsetFetchResponsePartition")
    error = reply.get("error", 0)
    by_topic: dict[str, list] = {}
    if error:  # every asked partition carries it (v1 has no top-level code)
        for t in request.topics or ():
            by_topic[t.name] = [(p, -1, "", error) for p in t.partition_indexes]
    else:
        for row in reply.get("partitions") or ():
            topic, partition, offset, metadata, code = row[:5]
            by_topic.setdefault(topic, []).append((partition, offset, metadata, code))
    topics = tuple(
        _make(
            topic_cls,
            name=name,
            partitions=tuple(
                _make(
                    partition_cls,
                    partition_index=partition,
                    committed_offset=offset,
                    committed_leader_epoch=-1,
                    metadata=metadata or "",
                    error_code=_error(code),
                )
                for partition, offset, metadata, code in rows
            ),
        )
        for name, rows in by_topic.items()
    )
    return _make(cls, throttle_time=_NO_THROTTLE, topics=topics, error_code=_error(error))


# -- ListGroups / DescribeGroups / DeleteGroups -----------------------------------------


def list_groups_to_labkit(request: Any, version: int) -> tuple[str, dict]:
    return "list_groups", {}


def list_groups_to_kafka(reply: dict, request: Any, version: int, context: Context) -> Any:
    cls = load_response_schema(LIST_GROUPS_KEY, version)
    row_cls = _nested(cls, "ListedGroup")
    wanted = {s.lower() for s in getattr(request, "states_filter", ()) or ()}
    groups = tuple(
        _make(
            row_cls,
            group_id=g["group_id"],
            protocol_type=g.get("protocol_type", "consumer"),
            group_state=g.get("state", ""),
        )
        for g in reply.get("groups") or ()
        if not wanted or str(g.get("state", "")).lower() in wanted
    )
    return _make(
        cls,
        throttle_time=_NO_THROTTLE,
        error_code=_error(reply.get("error", 0)),
        groups=groups,
    )


def describe_groups_to_labkit(request: Any, version: int) -> tuple[str, dict]:
    return "describe_groups", {"group_ids": list(request.groups)}


def describe_groups_to_kafka(reply: dict, request: Any, version: int, context: Context) -> Any:
    cls = load_response_schema(DESCRIBE_GROUPS_KEY, version)
    group_cls = _nested(cls, "DescribedGroup")
    member_cls = _nested(cls, "DescribedGroupMember")
    rows = {g.get("group_id"): g for g in reply.get("groups") or ()}
    groups = []
    for group_id in request.groups:
        g = rows.get(group_id) or {"error": reply.get("error", 0) or -1}
        if g.get("error") == 69:  # GROUP_ID_NOT_FOUND: before v6, Kafka answers Dead
            g = {"state": "Dead", "members": []}
        members = tuple(
            _make(
                member_cls,
                member_id=m["member_id"],
                group_instance_id=m.get("group_instance_id"),
                client_id=m.get("client_id", ""),
                client_host=m.get("client_host", ""),
                member_metadata=_unb64(m["metadata"])
                if "metadata" in m
                else encode_subscription(list(m.get("topics", ()))),
                member_assignment=_unb64(m["member_assignment"])
                if "member_assignment" in m
                else encode_assignment([(t, p) for t, p in m.get("assignment", ())]),
            )
            for m in g.get("members") or ()
        )
        groups.append(
            _make(
                group_cls,
                error_code=_error(g.get("error", 0)),
                group_id=group_id,
                group_state=g.get("state", "Dead"),
                protocol_type=g.get("protocol_type", ""),
                protocol_data=g.get("assignor", ""),
                members=members,
                authorized_operations=-(2**31),
            )
        )
    return _make(cls, throttle_time=_NO_THROTTLE, groups=tuple(groups))


def delete_groups_to_labkit(request: Any, version: int) -> tuple[str, dict]:
    return "delete_groups", {"group_ids": list(request.groups_names)}


def delete_groups_to_kafka(reply: dict, request: Any, version: int, context: Context) -> Any:
    cls = load_response_schema(DELETE_GROUPS_KEY, version)
    row_cls = _nested(cls, "DeletableGroupResult")
    codes = {g.get("group_id"): g.get("error", 0) for g in reply.get("groups") or ()}
    results = tuple(
        _make(
            row_cls,
            group_id=name,
            error_code=_error(codes.get(name, reply.get("error", 0))),
        )
        for name in request.groups_names
    )
    return _make(cls, throttle_time=_NO_THROTTLE, results=results)


# -- OffsetDelete ------------------------------------------------------------------------


def offset_delete_to_labkit(request: Any, version: int) -> tuple[str, dict]:
    partitions = [[t.name, p.partition_index] for t in request.topics for p in t.partitions]
    return "offset_delete", {"group_id": request.group_id, "partitions": partitions}


def offset_delete_to_kafka(reply: dict, request: Any, version: int, context: Context) -> Any:
    cls = load_response_schema(OFFSET_DELETE_KEY, version)
    topic_cls = _nested(cls, "OffsetDeleteResponseTopic")
    partition_cls = _nested(cls, "OffsetDeleteResponsePartition")
    error = reply.get("error", 0)
    rows_in = () if error else reply.get("partitions") or ()  # a group error: no topics
    by_topic: dict[str, list] = {}
    for topic, partition, code, _message in rows_in:
        row = _make(partition_cls, partition_index=partition, error_code=_error(code))
        by_topic.setdefault(topic, []).append(row)
    topics = tuple(
        _make(topic_cls, name=name, partitions=tuple(rows)) for name, rows in by_topic.items()
    )
    return _make(cls, error_code=_error(error), throttle_time=_NO_THROTTLE, topics=topics)


# api key -> (to_labkit, to_kafka): bridges.BRIDGED's rows for the group APIs (the
# versions advertised are codec.SUPPORTED's rows)
PAIRS: dict[int, tuple[Any, Any]] = {
    FIND_COORDINATOR_KEY: (find_coordinator_to_labkit, find_coordinator_to_kafka),
    JOIN_GROUP_KEY: (join_group_to_labkit, join_group_to_kafka),
    SYNC_GROUP_KEY: (sync_group_to_labkit, sync_group_to_kafka),
    HEARTBEAT_KEY: (heartbeat_to_labkit, heartbeat_to_kafka),
    LEAVE_GROUP_KEY: (leave_group_to_labkit, leave_group_to_kafka),
    OFFSET_COMMIT_KEY: (offset_commit_to_labkit, offset_commit_to_kafka),
    OFFSET_FETCH_KEY: (offset_fetch_to_labkit, offset_fetch_to_kafka),
    LIST_GROUPS_KEY: (list_groups_to_labkit, list_groups_to_kafka),
    DESCRIBE_GROUPS_KEY: (describe_groups_to_labkit, describe_groups_to_kafka),
    DELETE_GROUPS_KEY: (delete_groups_to_labkit, delete_groups_to_kafka),
    OFFSET_DELETE_KEY: (offset_delete_to_labkit, offset_delete_to_kafka),
}
