"""The classic group APIs on labkit's wire: validate JSON headers, run the classic
coordinator (broker/classic_groups.py), answer. What the Kafka listener's JoinGroup,
SyncGroup, Heartbeat and LeaveGroup become (docs/wire.md, "Classic consumer groups").

Contract with broker/loop.py: every request whose API is in ``CLASSIC_GROUP_APIS`` goes
to ``handle_classic(groups, waiter, api, header)``, which never raises and returns the
answers due now, ``[(waiter, response header), ...]``: none for a request that waits
(a JoinGroup until the join phase ends, a follower's SyncGroup until the leader's), or
several when one request completes others'. The loop sends them, and sends what
``groups.classic.tick()`` returns each tick. A group id used by labkit's own
(server-side) groups is refused with INCONSISTENT_GROUP_PROTOCOL (23), and the other
way round (broker/group_api.py). Bytes (metadata, assignments) travel base64-encoded.
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Any

from labkit.broker.classic_groups import Answer, Waiter
from labkit.broker.group_api import (
    MAX_SESSION_TIMEOUT_MS,
    MIN_SESSION_TIMEOUT_MS,
    GroupService,
)
from labkit.broker.group_checks import (
    BadField,
    checked_int,
    checked_optional_str,
    checked_str,
)
from labkit.broker.group_checks import checked_group_id as _checked_group_id
from labkit.errors import (
    InconsistentGroupProtocolError,
    InvalidRequestError,
    InvalidSessionTimeoutError,
    KafkaError,
    MemberIdRequiredError,
    UnknownError,
)
from labkit.protocol.messages import CLASSIC_GROUP_APIS

log = logging.getLogger(__name__)

MAX_MEMBER_METADATA = 32 * 1024  # bytes of JoinGroup metadata per member, all protocols
MAX_PROTOCOLS = 32  # protocols (assignment strategies) per JoinGroup


def handle_classic(groups: GroupService, waiter: Waiter, api: str, h: dict) -> list[Answer]:
    """Answer one classic group request (see the module docstring); never raises."""
    handler = _HANDLERS.get(api)
    try:
        if handler is None:
            raise BadField(f"{api!r} is not a classic group API")
        return handler(groups, waiter, h)
    except MemberIdRequiredError as exc:
        return [(waiter, _error(exc, member_id=getattr(exc, "member_id", "")))]
    except KafkaError as exc:
        return [(waiter, _error(exc))]
    except BadField as exc:
        return [
            (
                waiter,
                {
                    "error": InvalidRequestError.errno,
                    "message": f"malformed {api} request: {exc} (see docs/wire.md)",
                },
            )
        ]
    except Exception:  # the broker must never die from a request
        log.exception("classic groups: %s failed", api)
        return [
            (
                waiter,
                {
                    "error": UnknownError.errno,
                    "message": "internal error in the classic group coordinator (see the broker log)",
                },
            )
        ]


def _error(exc: KafkaError, **extra: Any) -> dict:
    errno = getattr(exc, "errno", None)
    message = str(exc.args[0]) if exc.args else str(exc)
    return {"error": UnknownError.errno if errno is None else errno, "message": message, **extra}


def _bytes(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise BadField(f"{what} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BadField(f"{what} is not valid base64") from None


def _group_id(groups: GroupService, h: dict, joining: bool = False) -> str:
    group_id = _checked_group_id(h)
    if joining and groups.coordinator.has_members(group_id):
        raise InconsistentGroupProtocolError(
            f"group '{group_id}' is a labkit consumer group (labkit's own consumers, "
            "server-side assignment); a Kafka consumer cannot join it. Use another group id"
        )
    return group_id


def _join(groups: GroupService, waiter: Waiter, h: dict) -> list[Answer]:
    group_id = _group_id(groups, h, joining=True)
    session_ms = checked_int(h, "session_timeout_ms")
    if not MIN_SESSION_TIMEOUT_MS <= session_ms <= MAX_SESSION_TIMEOUT_MS:
        raise InvalidSessionTimeoutError(
            f"session.timeout.ms={session_ms} is outside {MIN_SESSION_TIMEOUT_MS}.."
            f"{MAX_SESSION_TIMEOUT_MS}; pick a value in that range (45000 is Kafka's default)"
        )
    rebalance_ms = checked_int(h, "rebalance_timeout_ms", session_ms)
    if rebalance_ms < 0:
        rebalance_ms = session_ms  # JoinGroup v0 has none: Kafka uses the session timeout
    rebalance_ms = min(rebalance_ms, MAX_SESSION_TIMEOUT_MS)
    raw = h.get("protocols")
    if not isinstance(raw, list) or len(raw) > MAX_PROTOCOLS:
        raise BadField(
            f"'protocols' must be a list of at most {MAX_PROTOCOLS} [name, metadata] pairs"
        )
    protocols: list[tuple[str, bytes]] = []
    for row in raw:
        if not isinstance(row, list) or len(row) != 2 or not isinstance(row[0], str):
            raise BadField("'protocols' entries must be [name, base64 metadata]")
        protocols.append((row[0], _bytes(row[1], f"the metadata of protocol {row[0]!r}")))
    size = sum(len(metadata) for _, metadata in protocols)
    if size > MAX_MEMBER_METADATA:
        raise InvalidRequestError(
            f"a JoinGroup's protocol metadata is {size} bytes, over labkit's "
            f"{MAX_MEMBER_METADATA}; subscribe to fewer topics"
        )
    return groups.classic.join(
        waiter,
        group_id,
        member_id=checked_str(h, "member_id", ""),
        group_instance_id=checked_optional_str(h, "group_instance_id"),
        client_id=checked_str(h, "client_id", ""),
        client_host=checked_str(h, "client_host", ""),
        session_timeout_ms=session_ms,
        rebalance_timeout_ms=rebalance_ms,
        protocol_type=checked_str(h, "protocol_type"),
        protocols=protocols,
        require_member_id=bool(h.get("require_member_id", False)),
    )


def _sync(groups: GroupService, waiter: Waiter, h: dict) -> list[Answer]:
    raw = h.get("assignments", [])
    if not isinstance(raw, list):
        raise BadField("'assignments' must be a list of [member_id, base64 assignment] pairs")
    assignments: dict[str, bytes] = {}
    for row in raw:
        if not isinstance(row, list) or len(row) != 2 or not isinstance(row[0], str):
            raise BadField("'assignments' entries must be [member_id, base64 assignment]")
        assignments[row[0]] = _bytes(row[1], f"the assignment of member {row[0]!r}")
    return groups.classic.sync(
        waiter,
        _group_id(groups, h),
        member_id=checked_str(h, "member_id"),
        generation=checked_int(h, "generation"),
        protocol_type=checked_optional_str(h, "protocol_type"),
        protocol_name=checked_optional_str(h, "protocol_name"),
        assignments=assignments,
        group_instance_id=checked_optional_str(h, "group_instance_id"),
    )


def _heartbeat(groups: GroupService, waiter: Waiter, h: dict) -> list[Answer]:
    answer = groups.classic.heartbeat(
        _group_id(groups, h),
        checked_str(h, "member_id"),
        checked_int(h, "generation"),
        checked_optional_str(h, "group_instance_id"),
    )
    return [(waiter, answer)]


def _leave(groups: GroupService, waiter: Waiter, h: dict) -> list[Answer]:
    members = h.get("members")
    if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
        raise BadField("'members' must be a list of member ids")
    codes, answers = groups.classic.leave(_group_id(groups, h), members)
    reply = {"error": 0, "members": [[m, code] for m, code in zip(members, codes, strict=True)]}
    return [(waiter, reply), *answers]


_HANDLERS = {
    "classic_join": _join,
    "classic_sync": _sync,
    "classic_heartbeat": _heartbeat,
    "classic_leave": _leave,
}
if set(_HANDLERS) != CLASSIC_GROUP_APIS:  # api_versions lists every name of the family
    raise RuntimeError(f"classic group handlers do not match {sorted(CLASSIC_GROUP_APIS)}")
