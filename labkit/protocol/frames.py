"""The ZeroMQ message envelope shared by the broker and its clients.

Theory of operation
-------------------
A client owns one DEALER socket; the broker one ROUTER. Every request is one
multipart message::

    [MAGIC, request_id, api, header, *payloads]          client -> broker
    [MAGIC, request_id, header, *payloads]               broker -> client

- ``MAGIC`` is ``b"LK1"`` (protocol version 1). Anything else is rejected.
- ``request_id`` is opaque bytes (at most 16) chosen by the client and echoed
  back, so many requests can be in flight and answered out of order.
- ``api`` is an ASCII name from ``APIS`` (``b"produce"``, ``b"fetch"``...).
- ``header`` is one small JSON object per request (never per record). In a
  response it always carries ``"error"`` (a Kafka error code, 0 = none) and,
  on error, ``"message"``: a sentence a student can act on.
- ``payloads`` are raw frames: record batches, passed through untouched.

The ROUTER prepends the peer identity on receive; ``parse_request`` expects it
stripped. Parsing never raises anything but ``ProtocolError``.
"""

from __future__ import annotations

import json
from typing import Any

from labkit.errors import ProtocolError

MAGIC = b"LK1"
MAX_REQUEST_ID = 16
MAX_HEADER_BYTES = 1 << 20  # a JSON header is small; a megabyte means abuse

APIS = frozenset(
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
        # consumer groups
        "join_group",
        "heartbeat",
        "leave_group",
        "offset_commit",
        "offset_fetch",
        "list_groups",
        "describe_groups",
        "delete_groups",
        # client quotas
        "describe_client_quotas",
        "alter_client_quotas",
        "describe_client_throttles",
    }
)

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def encode_header(header: dict[str, Any]) -> bytes:
    return _dumps(header).encode("utf-8")


def decode_header(raw: bytes) -> dict[str, Any]:
    if len(raw) > MAX_HEADER_BYTES:
        raise ProtocolError(f"header frame of {len(raw)} bytes is over the limit")
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"header is not valid JSON: {exc}") from None
    if not isinstance(header, dict):
        raise ProtocolError("header must be a JSON object")
    return header


def build_request(request_id: bytes, api: str, header: dict[str, Any],
                  payloads: list[bytes] | tuple[bytes, ...] = ()) -> list[bytes]:
    return [MAGIC, request_id, api.encode("ascii"), encode_header(header), *payloads]


def parse_request(frames: list[bytes]) -> tuple[bytes, str, dict[str, Any], list[bytes]]:
    """Split a request (identity already removed) into (request_id, api, header, payloads).

    Raises ProtocolError for anything malformed; ``exc.request_id`` holds the id
    when it could be read, so the broker can still answer with an error.
    """
    if len(frames) < 4:
        raise ProtocolError(f"a request needs at least 4 frames, got {len(frames)}")
    magic, request_id, api_raw, header_raw = frames[0], frames[1], frames[2], frames[3]
    if bytes(magic) != MAGIC:
        raise ProtocolError(f"wrong magic {bytes(magic[:8])!r} (expected {MAGIC!r})")
    if len(request_id) > MAX_REQUEST_ID:
        raise ProtocolError(f"request id longer than {MAX_REQUEST_ID} bytes")
    try:
        api = bytes(api_raw).decode("ascii")
    except UnicodeDecodeError:
        exc = ProtocolError("API name is not ASCII")
        exc.request_id = bytes(request_id)
        raise exc from None
    try:
        header = decode_header(bytes(header_raw))
    except ProtocolError as exc:
        exc.request_id = bytes(request_id)
        raise
    return bytes(request_id), api, header, list(frames[4:])


def build_response(request_id: bytes, header: dict[str, Any],
                   payloads: list[bytes] | tuple[bytes, ...] = ()) -> list[bytes]:
    return [MAGIC, request_id, encode_header(header), *payloads]


def parse_response(frames: list[bytes]) -> tuple[bytes, dict[str, Any], list[bytes]]:
    """Split a response into (request_id, header, payloads). Raises ProtocolError."""
    if len(frames) < 3 or bytes(frames[0]) != MAGIC:
        raise ProtocolError("malformed response from broker")
    return bytes(frames[1]), decode_header(bytes(frames[2])), list(frames[3:])


def error_header(code: int, message: str) -> dict[str, Any]:
    return {"error": code, "message": message}
