"""The record-batch codec: round trips, framing, CRC and corrupt input."""

import random
import struct
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labkit.errors import CorruptRecordError
from labkit.protocol import records as r


def test_round_trip_plain_values():
    batch = r.encode_batch([10, 11, 12], None, [b"a", b"bb", b"ccc"])
    header = r.validate_batch(batch)
    assert header.record_count == 3
    assert header.last_offset_delta == 2
    assert header.base_timestamp == 10
    assert header.max_timestamp == 12
    assert header.size == len(batch)
    decoded = r.decode_batch(r.with_base_offset(batch, 100))
    assert decoded.offsets == [100, 101, 102]
    assert decoded.values == [b"a", b"bb", b"ccc"]
    assert decoded.keys == [None, None, None]
    assert decoded.key_sizes == [-1, -1, -1]
    assert decoded.value_sizes == [1, 2, 3]


def test_keys_nulls_and_headers_round_trip():
    batch = r.encode_batch(
        [5, 3],
        [b"k1", None],
        [None, b"v"],
        headers=[[("trace", b"x"), ("empty", None)], []],
    )
    decoded = r.decode_batch(batch)
    assert decoded.keys == [b"k1", None]
    assert decoded.values == [None, b"v"]
    assert decoded.headers == [[("trace", b"x"), ("empty", None)], []]
    assert r.read_header(batch).max_timestamp == 5


def test_offset_deltas_keep_sparse_offsets():
    batch = r.encode_batch([1, 2], [b"a", b"b"], [b"1", b"2"], base_offset=40, offset_deltas=[0, 7])
    header = r.validate_batch(batch, produced=False)
    assert header.last_offset == 47
    assert r.decode_batch(batch).offsets == [40, 47]
    with pytest.raises(CorruptRecordError, match="implicit offsets"):
        r.validate_batch(batch, produced=True)


def test_empty_batch_is_refused():
    with pytest.raises(ValueError, match="at least one record"):
        r.encode_batch([], None, [])


def test_base_offset_is_outside_the_crc():
    batch = r.encode_batch([1], None, [b"x"])
    r.validate_batch(r.with_base_offset(batch, 123456))


def test_flipped_byte_fails_crc():
    batch = bytearray(r.encode_batch([1, 2], None, [b"hello", b"world"]))
    batch[-1] ^= 0xFF
    with pytest.raises(CorruptRecordError, match="CRC"):
        r.validate_batch(bytes(batch))


def test_truncated_batch_is_reported():
    batch = r.encode_batch([1], None, [b"hello"])
    with pytest.raises(CorruptRecordError):
        r.validate_batch(batch[:-1])
    with pytest.raises(CorruptRecordError, match="truncated"):
        r.validate_batch(batch[:10])


def test_unknown_magic_and_attributes_are_rejected():
    batch = bytearray(r.encode_batch([1], None, [b"x"]))
    bad_magic = bytearray(batch)
    bad_magic[16] = 9
    with pytest.raises(CorruptRecordError, match="magic"):
        r.validate_batch(bytes(bad_magic))
    bad_attr = bytearray(batch)
    bad_attr[17] = 0x80
    with pytest.raises(CorruptRecordError, match="attributes"):
        r.validate_batch(bytes(bad_attr))


def test_split_batches_stops_at_partial_tail():
    a = r.encode_batch([1], None, [b"a"])
    b = r.encode_batch([2, 3], None, [b"b", b"c"])
    buf = a + b + b[:20]
    assert r.split_batches(buf) == [(0, len(a)), (len(a), len(a) + len(b))]


def test_split_batches_rejects_nonsense_length():
    buf = struct.pack("<qi", 0, 3) + b"\0" * 40
    with pytest.raises(CorruptRecordError, match="invalid batch length"):
        r.split_batches(buf)


def test_inconsistent_lengths_are_corrupt():
    # A value length column that claims more bytes than the batch holds.
    batch = bytearray(r.encode_batch([1], None, [b"abc"]))
    struct.pack_into("<i", batch, r.HEADER_SIZE + 8, 2)  # value length 3 -> 2
    with pytest.raises(CorruptRecordError, match="add up"):
        r.decode_batch(bytes(batch))


@given(
    st.lists(
        st.tuples(
            st.one_of(st.none(), st.binary(max_size=20)),
            st.one_of(st.none(), st.binary(max_size=50)),
            st.integers(min_value=0, max_value=2**62),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_any_records_round_trip(items):
    keys = [k for k, _, _ in items]
    values = [v for _, v, _ in items]
    stamps = [t for _, _, t in items]
    batch = r.encode_batch(stamps, keys, values)
    header = r.validate_batch(batch)
    decoded = r.decode_batch(batch, 0, header)
    assert decoded.keys == keys
    assert decoded.values == values
    assert decoded.timestamps == stamps
    assert header.max_timestamp == max(stamps)


def _with_record_count(batch: bytes, count: int) -> bytes:
    """The batch with record_count rewritten and the CRC recomputed (a 'valid' lie)."""
    import zlib

    buf = bytearray(batch)
    struct.pack_into("<i", buf, 40, count)
    struct.pack_into("<i", buf, 20, count - 1)
    struct.pack_into("<I", buf, 12, zlib.crc32(bytes(buf[16:])))
    return bytes(buf)


def test_inflated_record_count_with_valid_crc_is_rejected():
    batch = _with_record_count(r.encode_batch([1], None, [b"x"]), 1000)
    with pytest.raises(CorruptRecordError, match="does not fit"):
        r.validate_batch(batch)
    # Followed by more bytes (as in a fetch response), decoding must not read past it.
    with pytest.raises(CorruptRecordError, match="does not fit"):
        r.decode_batch(batch + r.encode_batch([2], None, [b"y" * 5000]))


def test_each_record_gets_its_own_headers_list():
    decoded = r.decode_batch(r.encode_batch([1, 2], None, [b"a", b"b"]))
    decoded.headers[0].append(("x", b"1"))
    assert decoded.headers[1] == []


def _with_max_timestamp(batch: bytes, max_ts: int) -> bytes:
    data = bytearray(batch)
    struct.pack_into("<q", data, 32, max_ts)
    struct.pack_into("<I", data, 12, zlib.crc32(bytes(data[r.CRC_START :])))
    return bytes(data)


def test_produced_max_timestamp_must_be_the_records_largest_whatever_their_spread():
    """The byte-plane shortcut and the general path agree with a plain max()."""
    rng = random.Random(7)
    base = 1_765_000_000_000
    shapes = [
        lambda i: base,
        lambda i: base + i % 3,
        lambda i: base + 255 - i,
        lambda i: (base | 0xFF) + i,
        lambda i: base + rng.randrange(10**6),
        lambda i: rng.randrange(-5, 5),
        lambda i: rng.randrange(1 << 63),
    ]
    for shape in shapes:
        for n in (1, 2, 17, 300):
            ts = [shape(i) for i in range(n)]
            batch = r.encode_batch(ts, None, [b"v"] * n)
            assert r.validate_batch(batch).max_timestamp == max(ts)
            for wrong in (max(ts) + 1, max(ts) - 1, max(ts) + 256, max(ts) - 256, -1, 0):
                if wrong != max(ts) and -(1 << 63) <= wrong < (1 << 63):
                    with pytest.raises(CorruptRecordError, match="timestamps"):
                        r.validate_batch(_with_max_timestamp(batch, wrong))


def test_first_timestamp_outside_names_the_first_record_out_of_bounds():
    ts = [1000, 5000, 200, 3000]
    batch = r.encode_batch(ts, None, [b"v"] * 4)
    header = r.validate_batch(batch)
    assert r.first_timestamp_outside(batch, 0, header, -(1 << 63), 5000) is None
    assert r.first_timestamp_outside(batch, 0, header, -(1 << 63), 4999) == (1, 5000)
    assert r.first_timestamp_outside(batch, 0, header, 500, 10_000) == (2, 200)
    assert r.first_timestamp_outside(batch, 0, header, 200, 5000) is None
