"""labkit's bootstrap request: a labkit client asks the Kafka port where ZeroMQ is.

The broker's main port speaks Kafka's wire protocol; labkit's own client talks ZeroMQ on
another port. To keep ``bootstrap_servers='localhost:9092'`` working, the client sends one
request in Kafka's framing with an API key no Kafka client sends (``KEY``, 19531: the
ASCII bytes ``LK``), answered by the Kafka listener itself, and learns the ZeroMQ
endpoint for the listener it came in on (docs/wire.md, "Bootstrap over the Kafka port").

Request (Kafka request header v1, no body)::

    int32 size | int16 KEY | int16 version (0) | int32 correlation id | string client id

Response::

    int32 size | int32 correlation id | int16 error code | string JSON answer

The JSON answer: ``{"broker": "labkit", "version": ..., "listener": NAME,
"zmq_host": HOST or null, "zmq_port": PORT, "versions": [0, 0]}``; ``zmq_host`` null
means "the host you reached me at". A version other than 0 gets error 35
(UNSUPPORTED_VERSION) with ``versions``, so a future client can fall back.

A ZeroMQ peer writes its greeting first (ZMTP 3: a signature starting with 0xFF); a
Kafka answer starts with a 4-byte size whose first byte is 0 (frames under 16 MiB), so
the first byte read tells a client which protocol it reached (``ZMTP_FIRST_BYTE``).
Pure bytes: no sockets here. Decoding raises only ``ProtocolError``.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from labkit.errors import ProtocolError

KEY = 0x4C4B  # b"LK"; Kafka's API keys are small numbers (under 100 in Kafka 4.1)
KEY_BYTES = struct.pack(">h", KEY)
VERSION = 0
UNSUPPORTED_VERSION = 35  # Kafka's error code
ZMTP_FIRST_BYTE = 0xFF  # a ZMTP 3.x greeting's signature starts with it
MAX_ANSWER_BYTES = 4096  # a client refuses a bigger answer (nothing legitimate is close)
_HEAD = struct.Struct(">hhih")  # api key, version, correlation id, client id length


def is_bootstrap_request(frame: bytes | bytearray | memoryview) -> bool:
    """Whether a Kafka request frame (size prefix removed) is labkit's bootstrap."""
    return bytes(frame[:2]) == KEY_BYTES


def encode_request(correlation_id: int, client_id: str, version: int = VERSION) -> bytes:
    """The request with its 4-byte size prefix."""
    name = client_id.encode("utf-8")[:1000]
    body = _HEAD.pack(KEY, version, correlation_id, len(name)) + name
    return struct.pack(">i", len(body)) + body


def decode_request(frame: bytes | bytearray | memoryview) -> tuple[int, int]:
    """(version, correlation id) of a request frame without its size prefix."""
    frame = bytes(frame)
    if len(frame) < _HEAD.size:
        raise ProtocolError("labkit bootstrap request: too short")
    key, version, correlation, name_len = _HEAD.unpack_from(frame)
    if key != KEY:
        raise ProtocolError(f"labkit bootstrap request: API key {key}")
    expected = _HEAD.size + max(name_len, 0)
    if name_len < -1 or len(frame) != expected:
        raise ProtocolError("labkit bootstrap request: its client id length lies")
    return version, correlation


def encode_response(correlation_id: int, version: int, answer: dict[str, Any]) -> bytes:
    """The response (size prefix included); error 35 when ``version`` is not known."""
    error = 0 if version == VERSION else UNSUPPORTED_VERSION
    text = json.dumps({**answer, "versions": [VERSION, VERSION]}).encode("utf-8")
    body = struct.pack(">ihh", correlation_id, error, len(text)) + text
    return struct.pack(">i", len(body)) + body


def decode_response(frame: bytes) -> tuple[int, int, dict[str, Any]]:
    """(correlation id, error code, answer) of a response frame without its size prefix."""
    if len(frame) < 8:
        raise ProtocolError("labkit bootstrap answer: too short")
    correlation, error, length = struct.unpack_from(">ihh", frame)
    if length < 0 or len(frame) != 8 + length:
        raise ProtocolError("labkit bootstrap answer: its length lies")
    try:
        answer = json.loads(frame[8:].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ProtocolError("labkit bootstrap answer: not JSON") from None
    if not isinstance(answer, dict):
        raise ProtocolError("labkit bootstrap answer: not a JSON object")
    if not error:
        port, host = answer.get("zmq_port"), answer.get("zmq_host")
        if type(port) is not int or not 0 < port < 65536:
            raise ProtocolError(f"labkit bootstrap answer: zmq_port {port!r}")
        if host is not None and (not isinstance(host, str) or not host):
            raise ProtocolError(f"labkit bootstrap answer: zmq_host {host!r}")
    return correlation, error, answer
