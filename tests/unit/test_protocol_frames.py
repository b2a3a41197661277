"""The envelope parser rejects malformed requests with ProtocolError only."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labkit.errors import ProtocolError
from labkit.protocol import frames as f


def test_request_round_trip():
    msg = f.build_request(b"\x00\x01", "produce", {"acks": 1}, [b"batch"])
    assert f.parse_request(msg) == (b"\x00\x01", "produce", {"acks": 1}, [b"batch"])


def test_response_round_trip():
    msg = f.build_response(b"id", {"error": 0, "x": [1]}, [b"p"])
    assert f.parse_response(msg) == (b"id", {"error": 0, "x": [1]}, [b"p"])


@pytest.mark.parametrize(
    ("frames", "reason"),
    [
        ([b"LK1", b"id", b"metadata"], "at least 4"),
        ([b"XX9", b"id", b"metadata", b"{}"], "magic"),
        ([b"LK1", b"x" * 17, b"metadata", b"{}"], "request id"),
        ([b"LK1", b"id", b"\xff", b"{}"], "ASCII"),
        ([b"LK1", b"id", b"metadata", b"{not json"], "JSON"),
        ([b"LK1", b"id", b"metadata", b"[1, 2]"], "object"),
    ],
)
def test_malformed_requests(frames, reason):
    with pytest.raises(ProtocolError, match=reason):
        f.parse_request(frames)


def test_error_keeps_request_id_when_readable():
    with pytest.raises(ProtocolError) as info:
        f.parse_request([b"LK1", b"rid", b"metadata", b"{oops"])
    assert info.value.request_id == b"rid"


@given(st.lists(st.binary(max_size=64), max_size=6))
def test_random_frames_never_raise_anything_else(frames):
    try:
        f.parse_request(frames)
    except ProtocolError:
        pass


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (b'{"group_id": "\\ud800"}', "lone UTF-16 surrogate"),
        (b'{"client_id": "ok", "\\uDFFF": 1}', "lone UTF-16 surrogate"),
        (b'{"group_id": "\xed\xa0\x80"}', "not valid UTF-8"),  # a surrogate, UTF-8 encoded
        ('{"group_id": "g"}'.encode("utf-16"), "not valid UTF-8"),
        (b'{"max_wait_ms": ' + b"9" * 4000 + b"}", "4000-digit integer"),
        (b'{"offset": 9223372036854775808}', "outside the 64-bit range"),
        (b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nests JSON"),
        (b'{"a": NaN}', "NaN"),
        (b'{"a": -Infinity}', "Infinity"),
        (b'{"a": 1e400}', "too large"),
    ],
)
def test_headers_that_would_break_the_broker_later_are_refused_at_decode(header, reason):
    """Issue 11 item 10: each of these used to pass decoding and then fail later
    (a reply that cannot be encoded, OverflowError, RecursionError) as -1 UNKNOWN."""
    with pytest.raises(ProtocolError, match=reason):
        f.parse_request([b"LK1", b"rid", b"join_group", header])


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b'{"group_id": "\\ud83d\\ude00"}', {"group_id": "\U0001f600"}),  # a proper pair
        ('{"group_id": "gr\u00fcn-\U0001f600"}'.encode(), {"group_id": "gr\u00fcn-\U0001f600"}),
        (b'{"path": "C:\\\\ud800"}', {"path": "C:\\ud800"}),  # an escaped backslash
        (
            b'{"topic": "12345678901234567890123", "offset": -9223372036854775808}',
            {"topic": "12345678901234567890123", "offset": -(2**63)},
        ),
        (b'{"ratio": 1.5e300, "tiny": 1e-400}', {"ratio": 1.5e300, "tiny": 0.0}),
    ],
)
def test_unusual_but_valid_headers_still_decode(header, expected):
    assert f.decode_header(header) == expected


def test_a_big_reply_header_is_read_but_a_big_request_header_is_not():
    """list_groups over 20,000 groups answers a 1.4 MB header; the client refused it."""
    groups = [
        {"group_id": f"group-{i:05d}", "protocol_type": "consumer", "state": "Empty"}
        for i in range(20_000)
    ]
    reply = f.build_response(b"id", {"error": 0, "groups": groups})
    assert len(reply[2]) > f.MAX_HEADER_BYTES
    assert len(f.parse_response(reply)[1]["groups"]) == 20_000
    with pytest.raises(ProtocolError, match="over the limit"):
        f.parse_request(f.build_request(b"id", "list_groups", {"groups": groups}))
