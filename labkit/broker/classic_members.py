"""What the classic group coordinator keeps per group and member
(broker/classic_groups.py), and the shapes of its answers.

Plain records and pure functions over them: a ``ClassicMember`` holds its protocols
(name, metadata bytes), the assignment its leader gave it, when it was last heard from
and the requests of its that wait in the coordinator (``join_waiter``, ``sync_waiter``);
a ``ClassicGroup`` holds Kafka's group state, generation, chosen protocol, leader,
members, the member ids handed out with MEMBER_ID_REQUIRED (``pending``) and its
deadlines. Not thread-safe: the broker's loop thread owns them.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from labkit.kafka.consumer_protocol import decode_assignment, decode_subscription

EMPTY, PREPARING, COMPLETING, STABLE, DEAD = (
    "Empty",
    "PreparingRebalance",
    "CompletingRebalance",
    "Stable",
    "Dead",
)

Waiter = Any  # opaque to the coordinator: the loop's (client identity, request id)
Answer = tuple[Waiter, dict]


@dataclass(slots=True)
class ClassicMember:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    session_timeout: float  # seconds
    rebalance_timeout: float  # seconds
    protocol_type: str
    protocols: list[tuple[str, bytes]]  # (name, metadata) in the member's preference order
    last_seen: float
    assignment: bytes = b""
    join_waiter: Waiter | None = None
    sync_waiter: Waiter | None = None
    synced: bool = False  # sent its SyncGroup in the current generation

    def metadata_for(self, protocol: str) -> bytes:
        for name, metadata in self.protocols:
            if name == protocol:
                return metadata
        return b""


@dataclass(slots=True)
class ClassicGroup:
    group_id: str
    state: str = EMPTY
    generation: int = 0
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader: str | None = None
    members: dict[str, ClassicMember] = field(default_factory=dict)
    pending: dict[str, float] = field(default_factory=dict)  # MEMBER_ID_REQUIRED ids -> expiry
    join_deadline: float = 0.0  # PreparingRebalance ends by then
    delay_until: float = 0.0  # the initial rebalance delay of a group that was empty
    sync_deadline: float = 0.0  # CompletingRebalance: members not synced by then go
    empty_since_ms: int | None = None
    timer: float | None = None  # the earliest deadline scheduled in the heap


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def describe_group(group: ClassicGroup) -> dict:
    """A group in describe_groups' wire shape (docs/wire.md); member bytes decoded
    leniently (garbage shows as no topics, no partitions)."""
    members = []
    for m in sorted(group.members.values(), key=lambda m: m.member_id):
        metadata = m.metadata_for(group.protocol_name or "")
        subscription = decode_subscription(metadata) if group.protocol_type == "consumer" else None
        assignment = decode_assignment(m.assignment) if group.protocol_type == "consumer" else None
        members.append(
            {
                "member_id": m.member_id,
                "group_instance_id": m.group_instance_id,
                "client_id": m.client_id,
                "client_host": m.client_host,
                "topics": sorted(subscription or ()),
                "assignment": [list(tp) for tp in sorted(assignment or ())],
                "target": [],
                "metadata": b64(metadata),
                "member_assignment": b64(m.assignment),
            }
        )
    return {
        "group_id": group.group_id,
        "error": 0,
        "state": group.state,
        "protocol": "classic",
        "protocol_type": group.protocol_type or "",
        "assignor": group.protocol_name or "",
        "generation": group.generation,
        "members": members,
    }


def everyone(group: ClassicGroup) -> list[dict]:
    """Every member's metadata for the chosen protocol: what the leader's JoinGroup
    answer carries, so that it can assign."""
    return [
        {
            "member_id": m.member_id,
            "group_instance_id": m.group_instance_id,
            "metadata": b64(m.metadata_for(group.protocol_name or "")),
        }
        for m in group.members.values()
    ]


def join_answer(group: ClassicGroup, member_id: str, members: list[dict]) -> dict:
    """A JoinGroup's answer (``members``: every member's metadata for the leader, else [])."""
    return {
        "error": 0,
        "generation": group.generation,
        "protocol_type": group.protocol_type,
        "protocol_name": group.protocol_name,
        "leader": group.leader,
        "member_id": member_id,
        "members": members,
    }


def sync_answer(group: ClassicGroup, member: ClassicMember) -> dict:
    return {
        "error": 0,
        "protocol_type": group.protocol_type,
        "protocol_name": group.protocol_name,
        "assignment": b64(member.assignment),
    }


def error_answer(code: int) -> dict:
    return {"error": code}


def static_member(group: ClassicGroup, instance_id: str) -> ClassicMember | None:
    """The member with this group.instance.id (static membership), if any."""
    for m in group.members.values():
        if m.group_instance_id == instance_id:
            return m
    return None
