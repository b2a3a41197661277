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
- ``api`` is an ASCII name from ``APIS`` (``b"produce"``, ``b"fetch"``...; the list
  and the rows inside headers are in ``messages.py``).
- ``header`` is one small JSON object per request (never per record), UTF-8
  text. In a response it always carries ``"error"`` (a Kafka error code, 0 =
  none) and, on error, ``"message"``: a sentence a student can act on.
  Decoding refuses what could break the broker later, at the door: bytes that
  are not strict UTF-8, strings holding a lone UTF-16 surrogate (``"\\ud800"``:
  not Unicode text, so no reply could carry it), integers outside 64 bits
  (before Python parses a 4,000-digit number), NaN/Infinity, and nesting deep
  enough to exhaust the parser's recursion.
- ``payloads`` are raw frames: record batches, passed through untouched.

The ROUTER prepends the peer identity on receive; ``parse_request`` expects it
stripped. Parsing never raises anything but ``ProtocolError``.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from labkit.errors import ProtocolError
from labkit.protocol.messages import APIS as APIS  # the envelope's API names, re-exported

MAGIC = b"LK1"
MAX_REQUEST_ID = 16
MAX_HEADER_BYTES = 1 << 20  # a JSON header is small; a megabyte means abuse
# a reply's header lists what the broker holds (list_groups of 20,000 groups is 1.4 MB):
# bounded against a rogue peer, not against a big but honest broker
MAX_RESPONSE_HEADER_BYTES = 64 << 20
MAX_INT_DIGITS = 20  # -9223372036854775808 is the longest 64-bit integer
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
# a \uD800-\uDFFF escape may be half of a pair (fine) or alone (not text): look closer
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")
# a run of 19 digits may be an integer past int64 (or just digits in a string): only
# then pay for a Python call per integer. translate + `in` is ~7x faster than a regex.
_DIGITS_ONLY = bytes(48 if 48 <= b <= 57 else 32 for b in range(256))  # digit->0, else space
_LONG_DIGIT_RUN = b"0" * 19

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class _Refused(ValueError):
    """A JSON value labkit headers never hold (raised from the decoder's hooks)."""


def _parse_int(text: str) -> int:
    # checked before int(): Python 3.11 refuses > 4300 digits, but parses 4000 slowly
    if len(text) > MAX_INT_DIGITS:
        raise _Refused(f"has a {len(text)}-digit integer; integers in a header are 64-bit")
    value = int(text)
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise _Refused(f"has the integer {value}, outside the 64-bit range")
    return value


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"has the number {text[:40]}, too large for a 64-bit float")
    return value


def _refuse_constant(name: str) -> float:
    raise _Refused(f"has {name}, which is not a JSON number")


# the float and constant hooks run only on floats/NaN/Infinity (rare): always on
_decode = json.JSONDecoder(parse_float=_parse_float, parse_constant=_refuse_constant).decode
_decode_strictly = json.JSONDecoder(
    parse_int=_parse_int, parse_float=_parse_float, parse_constant=_refuse_constant
).decode


def encode_header(header: dict[str, Any]) -> bytes:
    return _dumps(header).encode("utf-8")


def decode_header(raw: bytes, limit: int = MAX_HEADER_BYTES) -> dict[str, Any]:
    """The JSON object of a header frame. Raises ProtocolError (see the module doc)."""
    if len(raw) > limit:
        raise ProtocolError(f"header frame of {len(raw)} bytes is over the limit ({limit})")
    try:
        text = raw.decode("utf-8")  # strict: no encoded surrogates, no UTF-16/32
    except UnicodeDecodeError as exc:
        raise ProtocolError(
            f"header is not valid UTF-8 text ({exc}); send JSON encoded as UTF-8"
        ) from None
    try:
        long_digits = _LONG_DIGIT_RUN in raw.translate(_DIGITS_ONLY)
        header = (_decode_strictly if long_digits else _decode)(text)
    except _Refused as exc:
        raise ProtocolError(f"header {exc}") from None
    except ValueError as exc:
        raise ProtocolError(f"header is not valid JSON: {exc}") from None
    except RecursionError:
        raise ProtocolError(
            "header nests JSON arrays/objects too deeply; labkit headers nest a few levels"
        ) from None
    if not isinstance(header, dict):
        raise ProtocolError("header must be a JSON object")
    if _SURROGATE_ESCAPE.search(raw) is not None and not _is_text(header):
        raise ProtocolError(
            "header has a string with a lone UTF-16 surrogate escape (such as "
            "\\ud800), which is not Unicode text; send valid text in "
            "group_id, client_id and every other string"
        )
    return header


def _is_text(header: dict[str, Any]) -> bool:
    """True when every string in ``header`` can be sent back as UTF-8."""
    try:
        encode_header(header)
    except (UnicodeEncodeError, RecursionError):
        return False
    return True


def build_request(
    request_id: bytes,
    api: str,
    header: dict[str, Any],
    payloads: list[bytes] | tuple[bytes, ...] = (),
) -> list[bytes]:
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


def build_response(
    request_id: bytes, header: dict[str, Any], payloads: list[bytes] | tuple[bytes, ...] = ()
) -> list[bytes]:
    return [MAGIC, request_id, encode_header(header), *payloads]


def parse_response(frames: list[bytes]) -> tuple[bytes, dict[str, Any], list[bytes]]:
    """Split a response into (request_id, header, payloads). Raises ProtocolError."""
    if len(frames) < 3 or bytes(frames[0]) != MAGIC:
        raise ProtocolError("malformed response from broker")
    header = decode_header(bytes(frames[2]), MAX_RESPONSE_HEADER_BYTES)
    return bytes(frames[1]), header, list(frames[3:])


def error_header(code: int, message: str) -> dict[str, Any]:
    return {"error": code, "message": message}
