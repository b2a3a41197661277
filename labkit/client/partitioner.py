"""Which partition a record goes to: Kafka's murmur2 partitioner, bit for bit.

``murmur2(data)`` is Kafka's ``Utils.murmur2`` (seed 0x9747b28c) returning the
unsigned 32-bit value (kafka-python's convention; Java prints it as a signed int).
A keyed record goes to ``(murmur2(key) & 0x7fffffff) % num_partitions``: the same
partition Kafka's Java client and kafka-python pick, so data produced by either
lands in the same place.

A partitioner is any callable ``partitioner(serialized_key, all_partitions,
available_partitions) -> partition`` (kafka-python's contract). For records without
a key the producer does not call the default partitioner: it keeps a "sticky"
partition per topic and moves on when a batch for it is sealed (Kafka's KIP-480),
so unkeyed records are spread across partitions batch by batch.
"""

from __future__ import annotations

import random
import sys
from array import array

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF
_BIG_ENDIAN = sys.byteorder == "big"


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash of ``data`` as an unsigned 32-bit int."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    body = length & ~3
    if body:
        words = array("I")
        if words.itemsize != 4:  # pragma: no cover - no such platform in practice
            words = array("L")
        words.frombytes(bytes(data[:body]))
        if _BIG_ENDIAN:  # pragma: no cover
            words.byteswap()
        for k in words:
            k = (k * _M) & _MASK
            k ^= k >> 24
            k = (k * _M) & _MASK
            h = ((h * _M) & _MASK) ^ k
    extra = length & 3
    if extra == 3:
        h ^= data[body + 2] << 16
    if extra >= 2:
        h ^= data[body + 1] << 8
    if extra >= 1:
        h ^= data[body]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def to_positive(n: int) -> int:
    """Kafka's ``Utils.toPositive``: clear the sign bit."""
    return n & 0x7FFFFFFF


class DefaultPartitioner:
    """kafka-python's DefaultPartitioner: murmur2 for keys, random among available otherwise.

    Call as ``DefaultPartitioner()(key_bytes, all_partitions, available_partitions)``.
    """

    _CACHE_LIMIT = 65536

    def __init__(self) -> None:
        self._hashes: dict[bytes, int] = {}

    def __call__(self, key, all_partitions, available=None):
        if key is None:
            pool = available if available else all_partitions
            return random.choice(list(pool))
        return all_partitions[self.index(key, len(all_partitions))]

    def index(self, key: bytes, num_partitions: int) -> int:
        """Position of ``key``'s partition among ``num_partitions`` sorted partitions."""
        h = self._hashes.get(key)
        if h is None:
            h = murmur2(key) & 0x7FFFFFFF
            if len(self._hashes) >= self._CACHE_LIMIT:
                self._hashes.clear()
            self._hashes[key] = h
        return h % num_partitions


class RoundRobinPartitioner:
    """Spread records over the partitions in turn (kafka-python has one too)."""

    def __init__(self) -> None:
        self._next = 0

    def __call__(self, key, all_partitions, available=None):
        pool = list(available) if available else list(all_partitions)
        choice = pool[self._next % len(pool)]
        self._next += 1
        return choice
