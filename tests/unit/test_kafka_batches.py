"""Kafka record batch v2 <-> labkit batch (labkit/kafka/batches.py), cross-checked against
kafka-python's and aiokafka's own record builders and readers."""

import struct
import sys
import types
import zlib

import crc32c
import pytest
from aiokafka.record.default_records import DefaultRecordBatch as AioBatch
from aiokafka.record.default_records import DefaultRecordBatchBuilder as AioBuilder
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.record.default_records import DefaultRecordBatch as KpBatch
from kafka.record.default_records import DefaultRecordBatchBuilder as KpBuilder
from kafka.record.legacy_records import LegacyRecordBatchBuilder

from labkit.errors import (
    CorruptRecordError,
    InvalidRecordError,
    KafkaError,
    MessageSizeTooLargeError,
    UnsupportedCompressionTypeError,
)
from labkit.kafka import batches as kb
from labkit.kafka import compression
from labkit.protocol import records

KAFKA_ERRORS = (
    CorruptRecordError,
    InvalidRecordError,
    UnsupportedCompressionTypeError,
    MessageSizeTooLargeError,
)

# -- helpers ------------------------------------------------------------------------------


def build(builder_cls, recs, *, codec=0, transactional=False, producer=(-1, -1, -1)):
    """A Kafka v2 batch of ``recs`` [(timestamp, key, value, headers)] by a library."""
    builder = builder_cls(
        magic=2,
        compression_type=codec,
        is_transactional=transactional,
        producer_id=producer[0],
        producer_epoch=producer[1],
        base_sequence=producer[2],
        batch_size=1 << 24,
    )
    for offset, (ts, key, value, headers) in enumerate(recs):
        builder.append(offset, timestamp=ts, key=key, value=value, headers=headers)
    return bytes(builder.build())


def read_lib(batch_cls, raw):
    """[(offset, timestamp, key, value, headers)] as a library reads ``raw``."""
    batch = batch_cls(raw)
    assert batch.validate_crc()
    return [(r.offset, r.timestamp, r.key, r.value, list(r.headers)) for r in batch]


def labkit_rows(labkit_batch):
    d = records.decode_batch(labkit_batch)
    return [
        (o, t, k, v, h)
        for o, t, k, v, h in zip(d.offsets, d.timestamps, d.keys, d.values, d.headers, strict=True)
    ]


def recrc(raw) -> bytes:
    """``raw`` with its CRC-32C recomputed (to reach the checks behind the CRC)."""
    raw = bytearray(raw)
    raw[17:21] = struct.pack(">I", crc32c.crc32c(bytes(raw[21:])))
    return bytes(raw)


def with_attributes(raw, attributes: int) -> bytes:
    raw = bytearray(raw)
    raw[21:23] = struct.pack(">h", attributes)
    return recrc(raw)


SAMPLE = [
    (1_700_000_000_000, None, b"v0", []),
    (1_699_999_999_000, b"k", None, [("h", b"x"), ("n", None)]),
    (1_700_000_100_000, b"", b"", []),
    (1_700_000_000_001, b"key" * 30, b"v" * 300, [("\u00e9t\u00e9", b"")]),
]

header_lists = st.lists(
    st.tuples(st.text(max_size=8), st.none() | st.binary(max_size=8)), max_size=3
)
record_lists = st.lists(
    st.tuples(
        st.integers(0, 1 << 45),
        st.none() | st.binary(max_size=20),
        st.none() | st.binary(max_size=300),
        header_lists,
    ),
    min_size=1,
    max_size=12,
)

# -- Kafka -> labkit ----------------------------------------------------------------------


@pytest.mark.parametrize("builder_cls", [KpBuilder, AioBuilder], ids=["kafka-python", "aiokafka"])
def test_a_library_batch_converts_record_for_record(builder_cls):
    raw = build(builder_cls, SAMPLE, producer=(7, 1, 5))
    converted = kb.kafka_to_labkit(raw)
    assert converted.kafka_header[9:12] == (7, 1, 5)  # producer id, epoch, base sequence
    records.validate_batch(converted.labkit_batch)  # what the broker checks on produce
    assert labkit_rows(converted.labkit_batch) == [
        (i, ts, key, value, headers) for i, (ts, key, value, headers) in enumerate(SAMPLE)
    ]


@settings(max_examples=25, deadline=None)
@given(record_lists)
def test_random_records_from_both_libraries_convert_exactly(recs):
    expected = [(i, ts, k, v, h) for i, (ts, k, v, h) in enumerate(recs)]
    for builder_cls in (KpBuilder, AioBuilder):
        converted = kb.kafka_to_labkit(build(builder_cls, recs))
        records.validate_batch(converted.labkit_batch)
        assert labkit_rows(converted.labkit_batch) == expected


@pytest.mark.parametrize("builder_cls", [KpBuilder, AioBuilder], ids=["kafka-python", "aiokafka"])
def test_gzip_batches_are_decompressed(builder_cls):
    raw = build(builder_cls, SAMPLE * 50, codec=compression.GZIP)
    assert raw[22] & 7 == compression.GZIP
    rows = labkit_rows(kb.kafka_to_labkit(raw).labkit_batch)
    # repeated records: their headers are parsed once and shared by value only
    assert rows == [(i, *record) for i, record in enumerate(SAMPLE * 50)]


def test_a_gzip_bomb_is_refused_at_the_limit():
    recs = [(1, None, b"\0" * 100_000, [])] * 20
    raw = build(KpBuilder, recs, codec=compression.GZIP)
    assert len(raw) < 20_000
    with pytest.raises(MessageSizeTooLargeError, match="expands past 1000000 bytes"):
        kb.kafka_to_labkit(raw, max_decompressed=1_000_000)
    assert len(kb.kafka_to_labkit(raw, max_decompressed=3_000_000).labkit_batch) > 2_000_000


@pytest.mark.parametrize(
    ("codec", "package"),
    [
        (compression.SNAPPY, "python-snappy"),
        (compression.LZ4, "lz4"),
        (compression.ZSTD, "zstandard"),
    ],
)
def test_a_codec_without_its_package_names_the_package(monkeypatch, codec, package):
    module = compression._PACKAGES[codec][0]
    monkeypatch.setitem(sys.modules, module, None)  # import fails, installed or not
    raw = with_attributes(build(KpBuilder, SAMPLE), codec)
    with pytest.raises(UnsupportedCompressionTypeError, match=f"pip install {package}"):
        kb.kafka_to_labkit(raw)


def test_an_unknown_codec_is_unsupported():
    with pytest.raises(UnsupportedCompressionTypeError, match="not one of Kafka's"):
        kb.kafka_to_labkit(with_attributes(build(KpBuilder, SAMPLE), 6))


def test_xerial_snappy_framing_is_read_block_by_block(monkeypatch):
    # a stand-in codec: "compressed" blocks are the bytes reversed
    fake = types.SimpleNamespace(decompress=lambda block: bytes(reversed(block)))
    monkeypatch.setitem(sys.modules, "snappy", fake)
    plain = build(KpBuilder, SAMPLE)
    body = plain[61:]
    blocks = [body[:10], body[10:]]
    framed = b"\x82SNAPPY\x00" + struct.pack(">ii", 1, 1)
    framed += b"".join(struct.pack(">i", len(b)) + bytes(reversed(b)) for b in blocks)
    raw = bytearray(plain[:61] + framed)
    raw[8:12] = struct.pack(">i", len(raw) - 12)
    raw = with_attributes(raw, compression.SNAPPY)
    assert labkit_rows(kb.kafka_to_labkit(raw).labkit_batch) == labkit_rows(
        kb.kafka_to_labkit(plain).labkit_batch
    )
    truncated = bytearray(raw[:-5])
    truncated[8:12] = struct.pack(">i", len(truncated) - 12)
    with pytest.raises(CorruptRecordError, match="snappy block"):
        kb.kafka_to_labkit(recrc(truncated))


def test_a_flipped_byte_fails_the_crc():
    raw = bytearray(build(KpBuilder, SAMPLE))
    raw[70] ^= 0x01
    with pytest.raises(CorruptRecordError, match="CRC-32C mismatch"):
        kb.kafka_to_labkit(bytes(raw))


def test_magic_1_is_refused_with_invalid_record():
    builder = LegacyRecordBatchBuilder(magic=1, compression_type=0, batch_size=1 << 20)
    builder.append(0, timestamp=1, key=None, value=b"old")
    raw = bytes(builder.build())
    with pytest.raises(InvalidRecordError, match="magic 1"):
        kb.kafka_to_labkit(raw)
    with pytest.raises(InvalidRecordError, match="magic 1"):
        kb.produced_batches(raw)


def test_transactional_and_control_batches_are_refused():
    with pytest.raises(InvalidRecordError, match="transactional"):
        kb.kafka_to_labkit(build(KpBuilder, SAMPLE, transactional=True, producer=(3, 0, 0)))
    with pytest.raises(InvalidRecordError, match="control"):
        kb.kafka_to_labkit(with_attributes(build(KpBuilder, SAMPLE), kb.CONTROL))


def test_a_producer_may_not_claim_log_append_time():
    raw = with_attributes(build(KpBuilder, SAMPLE), kb.LOG_APPEND_TIME)
    with pytest.raises(InvalidRecordError, match="LogAppendTime"):
        kb.kafka_to_labkit(raw)
    stored = kb.kafka_to_labkit(raw, produced=False).labkit_batch
    decoded = records.decode_batch(stored)
    assert decoded.log_append_time
    assert decoded.timestamps == [max(ts for ts, *_ in SAMPLE)] * len(SAMPLE)


def test_a_produced_batch_needs_offset_deltas_from_zero():
    builder = KpBuilder(
        magic=2,
        compression_type=0,
        is_transactional=False,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    builder.append(0, timestamp=1, key=None, value=b"a", headers=[])
    builder.append(5, timestamp=1, key=None, value=b"b", headers=[])
    raw = bytes(builder.build())
    with pytest.raises(InvalidRecordError, match="last_offset_delta"):
        kb.kafka_to_labkit(raw)
    assert records.decode_batch(kb.kafka_to_labkit(raw, produced=False).labkit_batch).offsets == [
        0,
        5,
    ]


def test_a_record_labkit_cannot_store_is_invalid():
    raw = build(KpBuilder, [(1, None, b"v", [("k" * 70_000, b"")])])
    with pytest.raises(InvalidRecordError, match="65,535"):
        kb.kafka_to_labkit(raw)


def test_lengths_that_do_not_fit_are_corrupt():
    raw = build(KpBuilder, SAMPLE)
    with pytest.raises(CorruptRecordError, match="does not match"):
        kb.kafka_to_labkit(raw[:-1])
    with pytest.raises(CorruptRecordError, match="header bytes"):
        kb.kafka_to_labkit(raw[:40])
    too_many = bytearray(raw)
    too_many[57:61] = struct.pack(">i", 5)
    too_many[23:27] = struct.pack(">i", 4)
    with pytest.raises(InvalidRecordError, match="past the end"):  # Kafka: invalid record count
        kb.kafka_to_labkit(recrc(too_many))
    huge = bytearray(raw)
    huge[57:61] = struct.pack(">i", 1 << 30)
    with pytest.raises(InvalidRecordError, match="does not fit"):
        kb.kafka_to_labkit(recrc(huge), produced=False)


def test_split_kafka_batches_keeps_whole_batches_only():
    one, two = build(KpBuilder, SAMPLE), build(AioBuilder, SAMPLE[:1])
    buf = one + two + two[:30]
    assert kb.split_kafka_batches(buf) == [(0, len(one)), (len(one), len(one) + len(two))]
    with pytest.raises(CorruptRecordError, match="too small"):
        kb.split_kafka_batches(one[:8] + struct.pack(">i", 3) + one[12:])


# -- labkit -> Kafka ----------------------------------------------------------------------


def _labkit(recs, **kwargs):
    ts = [r[0] for r in recs]
    keys = [r[1] for r in recs]
    return records.encode_batch(
        ts,
        keys if any(k is not None for k in keys) else None,
        [r[2] for r in recs],
        [r[3] for r in recs] if any(r[3] for r in recs) else None,
        **kwargs,
    )


@pytest.mark.parametrize("batch_cls", [KpBatch, AioBatch], ids=["kafka-python", "aiokafka"])
def test_libraries_read_a_converted_batch(batch_cls):
    stored = _labkit(SAMPLE, base_offset=1000)
    raw = kb.labkit_to_kafka(stored, partition_leader_epoch=3)
    assert read_lib(batch_cls, raw) == labkit_rows(stored)
    batch = batch_cls(raw)
    assert batch.base_offset == 1000
    assert batch.magic == 2
    assert batch.producer_id == -1
    assert batch.compression_type == 0


@settings(max_examples=25, deadline=None)
@given(record_lists, st.integers(0, 1 << 40))
def test_random_labkit_batches_read_the_same_in_both_libraries(recs, base_offset):
    stored = _labkit(recs, base_offset=base_offset)
    raw = kb.labkit_to_kafka(stored)
    expected = labkit_rows(stored)
    assert read_lib(KpBatch, raw) == expected
    assert read_lib(AioBatch, raw) == expected
    # and back: the same labkit batch, byte for byte
    assert kb.kafka_to_labkit(raw).labkit_batch == stored


@settings(max_examples=20, deadline=None)
@given(record_lists, st.data())
def test_compacted_batches_keep_their_offsets_both_ways(recs, data):
    gaps = data.draw(st.lists(st.integers(1, 5000), min_size=len(recs), max_size=len(recs)))
    deltas = [sum(gaps[: i + 1]) - gaps[0] for i in range(len(recs))]
    stored = _labkit(recs, base_offset=77, offset_deltas=deltas)
    raw = kb.labkit_to_kafka(stored)
    assert [r[0] for r in read_lib(AioBatch, raw)] == [77 + d for d in deltas]
    assert [r[0] for r in read_lib(KpBatch, raw)] == [77 + d for d in deltas]
    back = kb.kafka_to_labkit(raw, produced=False).labkit_batch
    records.validate_batch(back, produced=False)
    # the same records and offsets (deltas 0, 1, 2, ... come back implicit)
    assert labkit_rows(back) == labkit_rows(stored)


def test_log_append_time_batches_keep_the_flag():
    stored = _labkit([(5, None, b"a", []), (9, None, b"b", [])], log_append_time=True)
    raw = kb.labkit_to_kafka(stored)
    for batch_cls in (KpBatch, AioBatch):
        batch = batch_cls(raw)
        assert batch.timestamp_type == 1
        assert [r.timestamp for r in batch] == [9, 9]  # Kafka readers take max_timestamp


def test_a_batch_compaction_emptied_converts_to_an_empty_kafka_batch():
    stored = records.encode_batch([], None, [], base_offset=40, offset_deltas=[])
    raw = kb.labkit_to_kafka(stored)
    assert read_lib(KpBatch, raw) == []
    assert read_lib(AioBatch, raw) == []
    assert kb.kafka_to_labkit(raw, produced=False).labkit_batch == stored
    with pytest.raises(InvalidRecordError):
        kb.kafka_to_labkit(raw)


def test_a_fetch_result_converts_batch_by_batch():
    first = _labkit(SAMPLE, base_offset=0)
    second = _labkit(SAMPLE[:2], base_offset=4)
    raw = kb.labkit_batches_to_kafka(first + second + second[:20])
    spans = kb.split_kafka_batches(raw)
    assert len(spans) == 2
    assert [r[0] for r in read_lib(AioBatch, raw[spans[1][0] :])] == [4, 5]


# -- corrupted bytes: nothing but Kafka's errors ------------------------------------------


def _sweep_once(raw, produced):
    try:
        kb.kafka_to_labkit(raw, produced=produced)
    except KAFKA_ERRORS:
        pass


@pytest.mark.parametrize("codec", [0, compression.GZIP], ids=["plain", "gzip"])
def test_corrupted_byte_sweep_raises_only_kafka_errors(codec):
    raw = build(KpBuilder, SAMPLE, codec=codec)
    for pos in range(len(raw)):
        for flip in (0x01, 0x80, 0xFF):
            broken = bytearray(raw)
            broken[pos] ^= flip
            for candidate in (bytes(broken), recrc(broken)):  # before and behind the CRC
                for produced in (True, False):
                    _sweep_once(candidate, produced)
    for cut in range(len(raw)):
        _sweep_once(raw[:cut], True)
        _sweep_once(recrc(raw[:61] + raw[61:cut]) if cut > 61 else raw[:cut], False)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 20))
def test_random_record_bytes_behind_a_good_crc_raise_only_kafka_errors(body, count):
    header = build(KpBuilder, SAMPLE[:1])[:61]
    raw = bytearray(header + body)
    raw[8:12] = struct.pack(">i", len(raw) - 12)
    raw[57:61] = struct.pack(">i", count)
    raw[23:27] = struct.pack(">i", count - 1)
    for produced in (True, False):
        _sweep_once(recrc(raw), produced)


def test_a_corrupt_labkit_batch_raises_corrupt_record_only():
    stored = _labkit(SAMPLE)
    for pos in range(len(stored)):
        broken = bytearray(stored)
        broken[pos] ^= 0xFF
        try:
            kb.labkit_to_kafka(bytes(broken))
        except CorruptRecordError:
            pass


def test_every_error_is_a_kafka_error_with_its_code():
    assert CorruptRecordError.errno == 2
    assert UnsupportedCompressionTypeError.errno == 76
    assert InvalidRecordError.errno == 87
    assert all(issubclass(e, KafkaError) for e in KAFKA_ERRORS)


def test_gzip_with_garbage_is_corrupt():
    raw = with_attributes(build(KpBuilder, SAMPLE), compression.GZIP)
    with pytest.raises(CorruptRecordError, match="gzip"):
        kb.kafka_to_labkit(raw)
    truncated = zlib.compressobj(wbits=31)
    body = truncated.compress(b"x" * 1000) + truncated.flush()
    raw = bytearray(build(KpBuilder, SAMPLE)[:61] + body[:-4])
    raw[8:12] = struct.pack(">i", len(raw) - 12)
    with pytest.raises(CorruptRecordError, match="truncated"):
        kb.kafka_to_labkit(with_attributes(raw, compression.GZIP))


@pytest.mark.parametrize("builder_cls", [KpBuilder, AioBuilder], ids=["kafka-python", "aiokafka"])
def test_varints_of_every_width_round_trip(builder_cls):
    # lengths and deltas around the one-, two- and three-byte varint boundaries (zigzag:
    # 63/64 and 8191/8192) and past the encoder's table (16,384), in both directions
    sizes = [0, 1, 63, 64, 65, 8191, 8192, 8193, 16383, 16384, 20000]
    base = 1_765_000_000_000
    recs = [
        (base + i * 37, None if i % 3 else b"k" * size, b"v" * size, [])
        for i, size in enumerate(sizes * 12)
    ]
    raw = build(builder_cls, recs)
    stored = kb.kafka_to_labkit(raw).labkit_batch
    records.validate_batch(stored)
    expected = [(i, ts, k, v, h) for i, (ts, k, v, h) in enumerate(recs)]
    assert labkit_rows(stored) == expected
    back = kb.labkit_to_kafka(stored)
    assert read_lib(KpBatch, back) == expected
    assert read_lib(AioBatch, back) == expected
    # the same bytes as the library's builder, but for the leader epoch (-1 here, 0 in
    # kafka-python's builder, -1 in aiokafka's)
    assert back[:12] + back[16:] == raw[:12] + raw[16:]


def test_small_timestamp_deltas_use_the_table_and_match_the_libraries():
    recs = [(1_765_000_000_000 + i // 10, None, b"x" * 100, []) for i in range(1000)]
    raw = build(AioBuilder, recs)
    stored = kb.kafka_to_labkit(raw).labkit_batch
    assert kb.labkit_to_kafka(stored) == raw


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_any_buffer_converts_at_any_position(wrap):
    raw = build(KpBuilder, SAMPLE)
    stored = _labkit(SAMPLE, base_offset=9)
    padded = wrap(b"\0" * 7 + raw)
    assert kb.kafka_to_labkit(padded, 7).labkit_batch == kb.kafka_to_labkit(raw).labkit_batch
    assert kb.labkit_to_kafka(wrap(b"\0" * 5 + stored), 5) == kb.labkit_to_kafka(stored)


def test_a_produce_requests_records_convert_batch_by_batch():
    one, two = build(KpBuilder, SAMPLE), build(AioBuilder, SAMPLE[:2])
    converted = kb.produced_batches(one + two)
    assert [labkit_rows(c.labkit_batch) for c in converted] == [
        labkit_rows(kb.kafka_to_labkit(one).labkit_batch),
        labkit_rows(kb.kafka_to_labkit(two).labkit_batch),
    ]
    with pytest.raises(InvalidRecordError, match="at least one record batch"):
        kb.produced_batches(b"")
    with pytest.raises(CorruptRecordError, match="past its last batch"):
        kb.produced_batches(one + two[:30])
