"""Kafka's "consumer" embedded protocol: the bytes inside JoinGroup metadata and
SyncGroup assignments (ConsumerProtocolSubscription / ConsumerProtocolAssignment).

The coordinator never needs them to work (the clients assign); they are read only to
show a classic group's members in describe_groups (``labkit consumer-groups
--describe``) and written only to describe a labkit group to Kafka's tools. Decoding
is lenient: any version (the fields this reads are the same in v0..v3, later fields
are ignored), and ``None`` for bytes that do not parse, so a garbage assignment from
a hostile leader shows as "no partitions" and breaks nothing. Pure functions.
"""

from __future__ import annotations

import struct

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
MAX_ITEMS = 100_000  # a count larger than this is garbage, not a subscription


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def _take(self, size: int) -> bytes:
        if size < 0 or self.pos + size > len(self.data):
            raise ValueError("truncated")
        out = self.data[self.pos : self.pos + size]
        self.pos += size
        return out

    def i16(self) -> int:
        return _I16.unpack(self._take(2))[0]

    def i32(self) -> int:
        return _I32.unpack(self._take(4))[0]

    def string(self) -> str:
        return self._take(self.i16()).decode("utf-8")

    def count(self) -> int:
        n = self.i32()
        if n < 0 or n > MAX_ITEMS:
            raise ValueError("bad array length")
        return n


def decode_subscription(data: bytes) -> list[str] | None:
    """The topics a member subscribed to, or None when ``data`` does not parse."""
    try:
        reader = _Reader(data)
        if reader.i16() < 0:
            return None
        return [reader.string() for _ in range(reader.count())]
    except (ValueError, UnicodeDecodeError, struct.error):
        return None


def decode_assignment(data: bytes) -> list[tuple[str, int]] | None:
    """The partitions assigned to a member, or None when ``data`` does not parse
    (an empty assignment, b"", is no partitions)."""
    if not data:
        return []
    try:
        reader = _Reader(data)
        if reader.i16() < 0:
            return None
        out = []
        for _ in range(reader.count()):
            topic = reader.string()
            out += [(topic, reader.i32()) for _ in range(reader.count())]
        return out
    except (ValueError, UnicodeDecodeError, struct.error):
        return None


def _string(value: str) -> bytes:
    raw = value.encode("utf-8")
    return _I16.pack(len(raw)) + raw


def encode_subscription(topics: list[str]) -> bytes:
    """ConsumerProtocolSubscription v0 (no user data)."""
    return (
        _I16.pack(0) + _I32.pack(len(topics)) + b"".join(_string(t) for t in topics) + _I32.pack(-1)
    )


def encode_assignment(partitions: list[tuple[str, int]]) -> bytes:
    """ConsumerProtocolAssignment v0 (no user data), topics in order."""
    by_topic: dict[str, list[int]] = {}
    for topic, partition in partitions:
        by_topic.setdefault(topic, []).append(partition)
    body = b"".join(
        _string(topic) + _I32.pack(len(parts)) + b"".join(_I32.pack(p) for p in sorted(parts))
        for topic, parts in sorted(by_topic.items())
    )
    return _I16.pack(0) + _I32.pack(len(by_topic)) + body + _I32.pack(-1)
