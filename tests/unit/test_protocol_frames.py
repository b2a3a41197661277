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


@pytest.mark.parametrize("frames, reason", [
    ([b"LK1", b"id", b"metadata"], "at least 4"),
    ([b"XX9", b"id", b"metadata", b"{}"], "magic"),
    ([b"LK1", b"x" * 17, b"metadata", b"{}"], "request id"),
    ([b"LK1", b"id", b"\xff", b"{}"], "ASCII"),
    ([b"LK1", b"id", b"metadata", b"{not json"], "JSON"),
    ([b"LK1", b"id", b"metadata", b"[1, 2]"], "object"),
])
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
