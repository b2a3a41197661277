"""murmur2 and the default partitioner, checked against Kafka's published vectors."""

import pytest

from labkit.client.partitioner import (
    DefaultPartitioner,
    RoundRobinPartitioner,
    murmur2,
    to_positive,
)


def signed(n):
    return n - (1 << 32) if n >= 1 << 31 else n


# Apache Kafka clients/src/test/.../utils/UtilsTest.java, testMurmur2 (Java prints signed ints)
@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ],
)
def test_murmur2_matches_kafka_utils_test(data, expected):
    assert signed(murmur2(data)) == expected


# kafka-python test/test_partitioner.py: "compare with output from Kafka's Partitioner"
@pytest.mark.parametrize(
    ("key", "partition"),
    [
        (b"", 681),
        (b"a", 524),
        (b"ab", 434),
        (b"abc", 107),
        (b"123456789", 566),
        (b"\x00 ", 742),
    ],
)
def test_default_partitioner_matches_java_client_over_1000_partitions(key, partition):
    partitions = list(range(1000))
    assert DefaultPartitioner()(key, partitions, partitions) == partition


def test_murmur2_is_unsigned_32_bit_and_handles_high_bytes():
    for data in (b"\xa4", b"\x81" * 1000, bytes(range(256))):
        h = murmur2(data)
        assert 0 <= h < 1 << 32
    assert murmur2(bytearray(b"foobar")) == murmur2(b"foobar")


def test_to_positive_clears_only_the_sign_bit():
    assert to_positive(0xFFFFFFFF) == 0x7FFFFFFF
    assert to_positive(5) == 5


def test_partition_index_is_stable_and_uses_the_formula():
    p = DefaultPartitioner()
    for key in (b"sensor-1", b"user-42", b"x" * 100):
        expected = (murmur2(key) & 0x7FFFFFFF) % 6
        assert p.index(key, 6) == expected
        assert p.index(key, 6) == expected  # second call comes from the cache
        assert p(key, list(range(6)), []) == expected


def test_unkeyed_default_partitioner_picks_an_available_partition():
    p = DefaultPartitioner()
    assert p(None, list(range(10)), [7]) == 7
    assert p(None, list(range(3)), []) in range(3)


def test_round_robin_cycles():
    p = RoundRobinPartitioner()
    assert [p(None, [0, 1, 2]) for _ in range(4)] == [0, 1, 2, 0]
