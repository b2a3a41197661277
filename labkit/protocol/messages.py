"""The APIs and the rows of their JSON headers, shared by the broker and its clients.

Theory of operation
-------------------
``frames.py`` carries a header as one JSON object; this module names what is inside
(docs/wire.md lists every API). Lists of per-partition items travel as JSON arrays
(``["t", 0, 42, ""]``: compact, one per partition); here each has a ``NamedTuple``, so
code reads ``row.offset`` instead of ``row[2]``. A NamedTuple *is* a tuple, so
``encode_header`` writes it as the same JSON array: the bytes on the wire do not
change. ``rows(cls, value)`` turns a received list back into named rows and raises
ProtocolError for a row of the wrong width.

``APIS`` is every API of the envelope, by family: the broker checks at start that it
has a handler for each one and answers ``api_versions`` with this list, so an API
listed without a handler cannot happen (tests/unit/test_protocol_messages.py).
Pure data: no I/O, no state.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple, TypeVar

from labkit.errors import ProtocolError, from_wire

# -- the APIs ------------------------------------------------------------------------------

TOPIC_APIS = frozenset(
    {
        "api_versions",
        "metadata",
        "produce",
        "fetch",
        "list_offsets",
        "create_topics",
        "delete_topics",
        "create_partitions",
        "describe_configs",
        "alter_configs",
        "delete_records",
        "init_producer_id",
        "offsets_for_leader_epoch",
    }
)
GROUP_APIS = frozenset(
    {
        "join_group",
        "heartbeat",
        "leave_group",
        "offset_commit",
        "offset_fetch",
        "list_groups",
        "describe_groups",
        "delete_groups",
        "offset_delete",
        "find_coordinator",
    }
)
# Kafka's classic group protocol, for Kafka clients on the Kafka listener (client-side
# assignment; broker/classic_api.py)
CLASSIC_GROUP_APIS = frozenset(
    {"classic_join", "classic_sync", "classic_heartbeat", "classic_leave"}
)
QUOTA_APIS = frozenset(
    {"describe_client_quotas", "alter_client_quotas", "describe_client_throttles"}
)
APIS = TOPIC_APIS | GROUP_APIS | CLASSIC_GROUP_APIS | QUOTA_APIS

# -- rows --------------------------------------------------------------------------------


class FetchedPartition(NamedTuple):
    """One partition of a fetch reply (its records are the matching payload frame)."""

    topic: str
    partition: int
    error: int
    high_watermark: int
    log_start_offset: int


class ListedOffset(NamedTuple):
    """One partition of a list_offsets reply (-1, -1 when no record is that late)."""

    topic: str
    partition: int
    error: int
    offset: int
    timestamp: int


class CommitOffset(NamedTuple):
    """One partition of an offset_commit request: the next offset the group reads."""

    topic: str
    partition: int
    offset: int
    metadata: str | None


class CommittedOffset(NamedTuple):
    """One partition of an offset_fetch reply (offset -1: nothing committed)."""

    topic: str
    partition: int
    offset: int
    metadata: str
    error: int
    log_end_offset: int


class DeleteRecordsPartition(NamedTuple):
    """One partition of a delete_records request: records below ``offset`` go (-1 =
    up to the high watermark)."""

    topic: str
    partition: int
    offset: int


class DeletedRecords(NamedTuple):
    """One partition of a delete_records reply: its new log start offset."""

    topic: str
    partition: int
    error: int
    low_watermark: int
    message: str | None


Row = TypeVar("Row", bound=tuple)


def rows(cls: type[Row], value: Any, what: str = "") -> list[Row]:
    """``value`` (a JSON list of arrays) as ``cls`` rows. Raises ProtocolError."""
    if not isinstance(value, list):
        raise ProtocolError(f"{what or cls.__name__} rows must be a list, got {value!r:.80}")
    width = len(cls._fields)  # type: ignore[attr-defined]
    out = []
    for row in value:
        if not isinstance(row, list | tuple) or len(row) != width:
            raise ProtocolError(
                f"each {what or cls.__name__} row has {width} fields "
                f"({', '.join(cls._fields)}), got {row!r:.80}"  # type: ignore[attr-defined]
            )
        out.append(cls(*row))
    return out


# -- offset_fetch (consumers, the admin client and the CLI share these) ------------------


def offset_fetch_request(
    group_id: str, partitions: Iterable[tuple[str, int]] | None = None
) -> dict[str, Any]:
    """The offset_fetch header (``partitions=None``: every partition the group committed)."""
    wanted = None if partitions is None else [[t, p] for t, p in sorted(partitions)]
    return {"group_id": group_id, "partitions": wanted}


def committed_offsets(header: dict[str, Any]) -> list[CommittedOffset]:
    """The rows of an offset_fetch reply. Raises the reply's error (a KafkaError) or
    ProtocolError for a malformed one."""
    code = header.get("error", 0)
    if code:
        raise from_wire(code, header.get("message"))
    return rows(CommittedOffset, header.get("partitions", []), "offset_fetch")
