"""Field checks for consumer-group request headers (labkit's JSON wire): each returns
the field or raises. Pure, stateless.

A malformed field raises ``BadField``, which ``GroupService.handle`` (group_api.py) and
``handle_classic`` (classic_api.py) answer with INVALID_REQUEST (42) and the message; a group id outside Kafka's rules raises
InvalidGroupIdError (24), a topic name InvalidTopicError (17), a subscription longer
than ``MAX_SUBSCRIBED_TOPICS`` InvalidRequestError. The messages say what was expected
and what came.
"""

from __future__ import annotations

from typing import Any

from labkit.broker.topics import validate_topic_name
from labkit.errors import InvalidGroupIdError, InvalidRequestError

MAX_GROUP_ID = 255
MAX_SUBSCRIBED_TOPICS = 1000  # per member; a course's whole broker has fewer topics


class BadField(Exception):
    """A malformed request field (answered with INVALID_REQUEST)."""


def checked_str(header: dict, key: str, default: str | None = None) -> str:
    value = header.get(key, default)
    if not isinstance(value, str):
        raise BadField(f"'{key}' must be a string")
    return value


def checked_optional_str(header: dict, key: str) -> str | None:
    """A string field that may be null or left out (None)."""
    value = header.get(key)
    if value is not None and not isinstance(value, str):
        raise BadField(f"'{key}' must be a string")
    return value


def checked_int(header: dict, key: str, default: int | None = None) -> int:
    value = header.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadField(f"'{key}' must be an integer")
    return value


def checked_group_id(header: dict) -> str:
    group_id = header.get("group_id")
    if not isinstance(group_id, str) or not group_id or len(group_id) > MAX_GROUP_ID:
        raise InvalidGroupIdError(
            f"group_id must be a non-empty string of at most {MAX_GROUP_ID} characters, "
            f"got {group_id!r}"
        )
    return group_id


def checked_topics(header: dict, key: str = "topics") -> list[str]:
    """A member's subscription: legal topic names, at most MAX_SUBSCRIBED_TOPICS."""
    topics = header.get(key)
    if not isinstance(topics, list):
        raise BadField(f"'{key}' must be a list of topic names")
    if len(topics) > MAX_SUBSCRIBED_TOPICS:
        raise InvalidRequestError(
            f"a consumer may subscribe to at most {MAX_SUBSCRIBED_TOPICS} topics, this one "
            f"named {len(topics)}; subscribe to the topics you read (or a narrower pattern)"
        )
    for topic in topics:
        validate_topic_name(topic)  # InvalidTopicError (17) names the rule
    return topics


def checked_tps(value: Any, key: str, width: int = 2) -> list[list]:
    """A list of [topic, partition, ...] rows (``width`` fields each)."""
    if not isinstance(value, list):
        raise BadField(f"'{key}' must be a list of [topic, partition] pairs")
    for row in value:
        if (
            not isinstance(row, list)
            or len(row) != width
            or not isinstance(row[0], str)
            or not isinstance(row[1], int)
            or isinstance(row[1], bool)
            or row[1] < 0
        ):
            more = ", ..." if width > 2 else ""
            raise BadField(f"'{key}' entries must be [topic, partition{more}], got {row!r}")
    return value
