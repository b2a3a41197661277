"""The __consumer_offsets mapping and record codec, checked against Kafka's own answers
(computed with Kafka 4.1.1's jars: ``String.hashCode``, ``Utils.abs(h) % n`` and
``MessageUtil.toVersionPrefixedBytes`` of OffsetCommitKey v1 / OffsetCommitValue v3)."""

from __future__ import annotations

import pytest

from labkit.cluster.offsets_topic import (
    decode_key,
    decode_value,
    encode_key,
    encode_value,
    java_string_hash,
    partition_for,
)

# group id, Java's hashCode, partition of 50 (Kafka's default), partition of 3 (labkit's)
JAVA = [
    ("", 0, 0, 0),
    ("a", 97, 47, 1),
    ("hello", 99162322, 22, 1),
    ("polygenelubricants", -2147483648, 0, 0),  # Integer.MIN_VALUE: Utils.abs gives 0
    ("grupa-żółw", -1755706658, 8, 2),
    ("g\U0001f600", 1871882, 32, 2),  # a surrogate pair counts as two UTF-16 units
    ("check-12345", -383118546, 46, 0),
]


@pytest.mark.parametrize(("group", "java_hash", "of_50", "of_3"), JAVA)
def test_the_group_lands_on_the_partition_kafka_picks(group, java_hash, of_50, of_3):
    assert java_string_hash(group) == java_hash
    assert partition_for(group, 50) == of_50
    assert partition_for(group, 3) == of_3


def test_no_partitions_is_refused():
    with pytest.raises(ValueError, match="at least one partition"):
        partition_for("g", 0)


def test_records_have_kafkas_bytes_and_read_back():
    key = encode_key("g1", "rta", 2)
    value = encode_value(42, "m", 1700000000000)
    assert key.hex() == "000100026731000372746100000002"
    assert value.hex() == "0003000000000000002affffffff00016d0000018bcfe56800"
    assert decode_key(key) == ("g1", "rta", 2)
    assert decode_value(value) == (42, "m", 1700000000000)
    unicode_key = encode_key("grupa-żółw", "tópico", 7)
    assert decode_key(unicode_key) == ("grupa-żółw", "tópico", 7)


def test_other_keys_are_skipped_and_cut_records_refused():
    group_metadata_key = bytes.fromhex("00020002" + "6731")  # GroupMetadataKey v2 "g1"
    assert decode_key(group_metadata_key) is None
    assert decode_key(None) is None
    with pytest.raises(ValueError, match=r"cut short|past the end"):
        decode_key(encode_key("g1", "rta", 2)[:-2])
    with pytest.raises(ValueError, match=r"cut short|past the end"):
        decode_value(encode_value(42, "m", 1)[:-3])
    with pytest.raises(ValueError, match="version 9"):
        decode_value(b"\x00\x09" + bytes(20))
