"""The one-record fast path (records.decode_single, fetch_decode's use of it) gives
exactly what the general, column-by-column path gives: the same records, the same
poison, the same refusal of a corrupt batch. One-record batches are what a classroom's
consumers decode all day (each producer sends one record a second)."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labkit.client import fetch_decode
from labkit.client.structs import TopicPartition
from labkit.errors import CorruptRecordError
from labkit.protocol import records as r

TP = TopicPartition("t", 0)
blobs = st.one_of(st.none(), st.binary(max_size=40))


def _general(buf, pos, header):
    return r.decode_columns(buf, pos, header)


def _outcome(fn, *args):
    try:
        return ("ok", fn(*args))
    except CorruptRecordError:
        return ("corrupt", None)


@given(
    key=blobs,
    value=blobs,
    keyed=st.booleans(),
    timestamp=st.integers(-(1 << 63), (1 << 63) - 1),
    base=st.integers(0, 1 << 40),
)
def test_a_one_record_batch_decodes_as_the_general_path_does(key, value, keyed, timestamp, base):
    batch = r.encode_batch([timestamp], [key] if keyed else None, [value], base_offset=base)
    header = r.read_header(batch)
    assert r.decode_single(batch, 0, header) is not None
    assert r.decode_batch(batch, 0, header) == _general(batch, 0, header)


@given(
    key=blobs,
    value=blobs,
    position=st.integers(44, 60),
    byte=st.integers(0, 255),
)
def test_a_damaged_one_record_batch_is_refused_or_read_as_the_general_path_does(
    key, value, position, byte
):
    """Damage in the columns (no CRC check here: decode_batch trusts its caller's)."""
    batch = bytearray(r.encode_batch([7], [key], [value], base_offset=3))
    if position < len(batch):
        batch[position] = byte
    header = r.read_header(batch)
    assert _outcome(r.decode_batch, batch, 0, header) == _outcome(_general, batch, 0, header)


def test_batches_it_does_not_take_go_the_general_way():
    with_headers = r.encode_batch([1], [b"k"], [b"v"], headers=[[("h", b"x")]])
    two = r.encode_batch([1, 2], None, [b"a", b"b"])
    sparse = r.encode_batch([1], None, [b"a"], offset_deltas=[3])
    for batch in (with_headers, two, sparse):
        assert r.decode_single(batch, 0, r.read_header(batch)) is None
    truncated = r.encode_batch([1], [b"key"], [b"value"])[:-1]
    assert r.decode_single(truncated, 0, r.read_header(truncated)) is None


def _payload(values, keys=None, start=10):
    return b"".join(
        r.encode_batch([1000 + i], None if keys is None else [keys[i]], [v], base_offset=start + i)
        for i, v in enumerate(values)
    )


def _without_fast_path(monkeypatch, *args):
    with monkeypatch.context() as m:
        m.setattr(fetch_decode, "decode_single", lambda *a: None)
        return fetch_decode.decode_records(*args)


@pytest.mark.parametrize("fetch_offset", [10, 12, 15])
def test_consumer_records_are_the_same_either_way(monkeypatch, fetch_offset):
    values = [json.dumps({"n": i}).encode() for i in range(5)] + [None]
    keys = [b"k%d" % i for i in range(5)] + [None]
    payload = _payload(values, keys)
    fast = fetch_decode.decode_records(TP, payload, fetch_offset, True, None, json.loads)
    slow = _without_fast_path(monkeypatch, TP, payload, fetch_offset, True, None, json.loads)
    assert fast == slow
    records, next_offset, poison = fast
    assert [rec.offset for rec in records] == list(range(fetch_offset, 16))
    assert next_offset == 16
    assert poison is None
    assert all(rec.headers == [] for rec in records)
    assert len({id(rec.headers) for rec in records}) == len(records)  # one list each


@pytest.mark.parametrize("which", ["key", "value"])
def test_a_poison_record_stops_decoding_the_same_way(monkeypatch, which):
    payload = _payload([b'{"a": 1}', b"not json", b'{"a": 3}'], keys=[b"1", b"x", b"3"])
    deserializers = (json.loads, None) if which == "key" else (None, json.loads)
    fast = fetch_decode.decode_records(TP, payload, 10, True, *deserializers)
    slow = _without_fast_path(monkeypatch, TP, payload, 10, True, *deserializers)
    (records, next_offset, poison), (s_records, s_next, s_poison) = fast, slow
    assert records == s_records
    assert next_offset == s_next == 11
    assert poison[0] == s_poison[0] == 11
    assert poison[2] == s_poison[2] == which
    assert type(poison[1]) is type(s_poison[1])


def test_a_deserializer_object_is_called_with_the_topic(monkeypatch):
    class Upper:
        def deserialize(self, topic, data):
            return topic + ":" + data.decode().upper()

    payload = _payload([b"a", b"b"])
    fast = fetch_decode.decode_records(TP, payload, 10, True, None, Upper())
    assert [rec.value for rec in fast[0]] == ["t:A", "t:B"]
    assert fast == _without_fast_path(monkeypatch, TP, payload, 10, True, None, Upper())


def test_a_bad_crc_is_still_caught_before_the_fast_path():
    batch = bytearray(r.encode_batch([1], None, [b"value"], base_offset=10))
    batch[-1] ^= 0xFF
    records, next_offset, poison = fetch_decode.decode_records(
        TP, bytes(batch), 10, True, None, None
    )
    assert records == []
    assert next_offset == 10
    assert poison is not None
    assert poison[2] == "batch"
    assert isinstance(poison[1], CorruptRecordError)


def test_the_fast_path_reads_the_fields_where_the_layout_puts_them():
    batch = r.encode_batch([123456789], [b"key"], [b"value!"], base_offset=5)
    start = r.HEADER_SIZE
    assert struct.unpack_from("<qii", batch, start) == (123456789, 3, 6)
    assert r.decode_single(batch, 0, r.read_header(batch)) == (123456789, b"key", b"value!", 3, 6)


LIES = [(k, v) for k in (-3, -2, -1, 0, 4, 5, 6, 1 << 30) for v in (-2, -1, 0, 6, 7, 11)]


@pytest.mark.parametrize(("key_length", "value_length"), LIES)
def test_every_lying_length_is_judged_as_the_general_path_judges_it(key_length, value_length):
    """A key of 5 bytes and a value of 6; the lengths rewritten (CRC not checked here)."""
    batch = bytearray(r.encode_batch([7], [b"abcde"], [b"uvwxyz"]))
    struct.pack_into("<ii", batch, r.HEADER_SIZE + 8, key_length, value_length)
    header = r.read_header(batch)
    fast = _outcome(r.decode_batch, batch, 0, header)
    assert fast == _outcome(_general, batch, 0, header)
    fills = max(key_length, 0) + max(value_length, 0) == 11  # the 11 bytes of the blobs
    assert (fast[0] == "ok") == (key_length >= -1 and value_length >= -1 and fills)


@pytest.mark.parametrize("value_length", [-2, -1, 0, 5, 6, 7, 1 << 30])
def test_a_keyless_batch_with_a_lying_value_length(value_length):
    batch = bytearray(r.encode_batch([7], None, [b"uvwxyz"]))
    struct.pack_into("<i", batch, r.HEADER_SIZE + 8, value_length)
    header = r.read_header(batch)
    fast = _outcome(r.decode_batch, batch, 0, header)
    assert fast == _outcome(_general, batch, 0, header)
    assert (fast[0] == "ok") == (value_length == 6)
