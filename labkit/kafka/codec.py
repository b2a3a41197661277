"""Kafka's request/response framing over kio: bytes in, entities out, and back.

Theory of operation
-------------------
Kafka frames every message with a 4-byte big-endian size. A request's body starts
with its header (api key, api version, correlation id, client id; flexible versions
add tagged fields), then the API's own fields. ``FrameReader`` cuts frames out of the
bytes a connection delivers and refuses a size over ``socket.request.max.bytes`` or
below zero (``FrameTooLarge``); ``decode_request`` turns one frame into
``(RequestHeader, request entity)`` with kio's native readers, one cached per
(api key, version) since building one costs microseconds; ``encode_response`` writes
a response entity with the response header its schema names (kio knows that
ApiVersions always answers with header v0, KIP-511).

``SUPPORTED`` is what the listener advertises, and a request outside it never reaches
kio: an unsupported ApiVersions version is decoded as v0 so that the listener can
answer error 35 with the broker's own range (KIP-511); any other unsupported
(api key, version), and any frame kio cannot parse, raise
``BadRequest`` and the listener closes the connection, as Kafka does. Nothing here
raises anything else for any input bytes: kio's readers raise a handful of
exception types on garbage, all turned into ``BadRequest``.

No sockets, no threads: pure functions, tested with random and truncated frames.
"""

from __future__ import annotations

import functools
import io
import struct
from typing import Any

from kio.index import load_request_schema
from kio.serial import entity_reader, entity_writer
from kio.serial.errors import SerialError

API_VERSIONS_KEY = 18

# api key -> (min, max) advertised in ApiVersions; only what the listener answers
SUPPORTED: dict[int, tuple[int, int]] = {
    0: (3, 9),  # Produce
    1: (4, 12),  # Fetch
    2: (1, 7),  # ListOffsets
    3: (0, 12),  # Metadata
    18: (0, 4),  # ApiVersions
    19: (2, 7),  # CreateTopics
    20: (1, 5),  # DeleteTopics
    21: (0, 2),  # DeleteRecords
    22: (0, 4),  # InitProducerId (labkit/kafka/producer_ids.py)
    32: (1, 4),  # DescribeConfigs
    33: (0, 2),  # AlterConfigs
    37: (0, 3),  # CreatePartitions
    44: (0, 1),  # IncrementalAlterConfigs
    8: (2, 8),  # OffsetCommit (group_apis.py)
    9: (1, 7),  # OffsetFetch
    10: (0, 3),  # FindCoordinator
    11: (0, 7),  # JoinGroup
    12: (0, 4),  # Heartbeat
    13: (0, 4),  # LeaveGroup
    14: (0, 5),  # SyncGroup
    15: (0, 5),  # DescribeGroups
    16: (0, 4),  # ListGroups
    42: (0, 2),  # DeleteGroups
    47: (0, 0),  # OffsetDelete (group_apis.py)
    75: (0, 0),  # DescribeTopicPartitions (topic_partitions.py)
}

_SIZE = struct.Struct(">i")
_KEY_VERSION = struct.Struct(">hh")
_CORRELATION = struct.Struct(">i")
_HEAD = _KEY_VERSION.size + _CORRELATION.size


# what kio's readers raise on garbage: its own errors, and KeyError for an unknown
# tagged field or enum value
_GARBAGE = (SerialError, KeyError, ValueError, TypeError, IndexError, OverflowError)


class BadRequest(ValueError):
    """A frame that is not a request the listener can answer: close the connection."""


class FrameTooLarge(BadRequest):
    """A frame size over ``socket.request.max.bytes`` or negative."""


class FrameReader:
    """Cuts size-prefixed frames out of a byte stream, holding at most one frame."""

    def __init__(self, max_frame_bytes: int):
        self.max_frame_bytes = max_frame_bytes
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes received and not yet handed out as frames."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the frames now complete. Raises FrameTooLarge."""
        buffer = self._buffer
        buffer += data
        frames = []
        start = 0
        while len(buffer) - start >= _SIZE.size:
            (size,) = _SIZE.unpack_from(buffer, start)
            if size < 0 or size > self.max_frame_bytes:
                raise FrameTooLarge(
                    f"a request frame of {size} bytes (socket.request.max.bytes="
                    f"{self.max_frame_bytes})"
                )
            end = start + _SIZE.size + size
            if len(buffer) < end:
                break
            frames.append(bytes(buffer[start + _SIZE.size : end]))  # kio wants read-only bytes
            start = end
        if start:
            del buffer[:start]
        return frames


def peek_correlation_id(frame: bytes) -> int | None:
    """The correlation id of a frame, when it is long enough to hold one."""
    if len(frame) < _HEAD:
        return None
    return _CORRELATION.unpack_from(frame, _KEY_VERSION.size)[0]


@functools.cache
def _readers(api_key: int, version: int):
    """(request schema, header reader, body reader) of one (api key, version)."""
    schema = load_request_schema(api_key, version)
    return schema, entity_reader(schema.__header_schema__), entity_reader(schema)


def decode_request(frame: bytes) -> tuple[Any, Any]:
    """``(RequestHeader, request)`` of one frame (its size prefix removed).

    An ApiVersions request of a version the listener does not know comes back as
    ``(header, None)`` (answer it with error 35). Raises BadRequest for the rest.
    """
    if len(frame) < _HEAD:
        raise BadRequest(f"a request of {len(frame)} bytes is shorter than a request header")
    api_key, version = _KEY_VERSION.unpack_from(frame)
    supported = SUPPORTED.get(api_key)
    if supported is None:
        raise BadRequest(f"api key {api_key} is not supported by this listener")
    low, high = supported
    unknown_api_versions = api_key == API_VERSIONS_KEY and not low <= version <= high
    if unknown_api_versions:
        version = 0  # KIP-511: read the header as v0's; the body is not read
    elif not low <= version <= high:
        raise BadRequest(f"api key {api_key} version {version} is not supported ({low}-{high})")
    schema, read_header, read_body = _readers(api_key, version)
    try:
        header, used = read_header(frame, 0)
        if unknown_api_versions:
            return header, None
        request, _size = read_body(frame, used)
    except _GARBAGE as exc:
        raise BadRequest(f"{schema.__name__} v{version} does not parse: {exc}") from None
    # bytes after the fields are ignored, as Apache Kafka ignores them (librdkafka 2.16
    # sends 3 after a Metadata v12 for every topic; Kafka answers it)
    return header, request


def encode_response(correlation_id: int, response: Any) -> bytes:
    """One response frame (size prefix included) with its schema's response header."""
    header_schema = response.__header_schema__
    out = io.BytesIO()
    out.write(b"\0\0\0\0")
    entity_writer(header_schema)(out, header_schema(correlation_id=correlation_id))
    entity_writer(type(response))(out, response)
    frame = out.getbuffer()
    _SIZE.pack_into(frame, 0, len(frame) - _SIZE.size)
    del frame
    return out.getvalue()
