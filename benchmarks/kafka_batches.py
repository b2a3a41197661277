"""Kafka record batch v2 <-> labkit batch: labkit.kafka.batches against aiokafka's compiled
record code and kafka-python's pure-Python one (benchmarks/NOTES.md, section 10).

    .venv/bin/python benchmarks/kafka_batches.py            # 1,000 x 100 B, no keys
    .venv/bin/python benchmarks/kafka_batches.py mixed      # 16 B keys, a header, 50-150 B

Each figure is the median CPU time (``thread_time``, which other load disturbs less than
wall time) of ROUNDS rounds of REPEAT conversions of one batch, in ms per batch; the
rows take turns within each round. "records" is the parse of the records alone, with
the runs of batch_runs.py and with the reference loop alone. "read" is Kafka ->
records (the libraries stop at Python objects; labkit's figure includes encoding the
labkit batch, and "read+labkit" adds that step to the libraries'); "build" is labkit
batch -> Kafka batch (the libraries' figure includes decoding the labkit batch with ``decode_batch``, shown
on its own in the last row).
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import time

from aiokafka.record.default_records import DefaultRecordBatch as AioBatch
from aiokafka.record.default_records import DefaultRecordBatchBuilder as AioBuilder
from kafka.record.default_records import DefaultRecordBatch as KpBatch
from kafka.record.default_records import DefaultRecordBatchBuilder as KpBuilder

from labkit.kafka import batches
from labkit.protocol import records

COUNT = 1000
ROUNDS = 15
REPEAT = 20


def _records(mixed: bool):
    rng = random.Random(13)
    base = 1_765_000_000_000
    out = []
    for i in range(COUNT):
        size = rng.randint(50, 150) if mixed else 100
        key = rng.randbytes(16) if mixed else None
        headers = [("trace", rng.randbytes(8))] if mixed else []
        out.append((base + i // 10, key, rng.randbytes(size), headers))
    return out


def _kafka_batch(builder_cls, recs) -> bytes:
    builder = builder_cls(
        magic=2,
        compression_type=0,
        is_transactional=False,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 24,
    )
    for offset, (ts, key, value, headers) in enumerate(recs):
        builder.append(offset, timestamp=ts, key=key, value=value, headers=headers)
    return bytes(builder.build())


def _read_lib(batch_cls, raw: bytes, then_labkit: bool):
    batch = batch_cls(raw)
    batch.validate_crc()
    ts, keys, values, headers = [], [], [], []
    for record in batch:
        ts.append(record.timestamp)
        keys.append(record.key)
        values.append(record.value)
        headers.append(record.headers)
    if then_labkit:
        has_keys = any(k is not None for k in keys)
        has_headers = any(headers)
        records.encode_batch(
            ts, keys if has_keys else None, values, headers if has_headers else None
        )


def _build_lib(builder_cls, labkit_batch: bytes):
    decoded = records.decode_batch(labkit_batch)
    base = decoded.offsets[0]
    _kafka_batch(
        builder_cls,
        [
            (t, k, v, h)
            for o, t, k, v, h in zip(
                [o - base for o in decoded.offsets],
                decoded.timestamps,
                decoded.keys,
                decoded.values,
                decoded.headers,
                strict=True,
            )
        ],
    )


def _labkit_records(raw: bytes, runs: bool):
    """Just the records' parse (``batches._read_records``): with the runs (the fast path,
    batch_runs.py) or the reference loop alone."""
    header = batches.read_kafka_header(raw)
    return batches._read_records(raw[61:], header.record_count, header.base_timestamp, runs=runs)


def _measure(rows) -> list[float]:
    """Median ms per call of each row's function; the rows take turns in every round, so
    a change in the machine's load touches them all alike."""
    samples: list[list[float]] = [[] for _ in rows]
    for _ in range(ROUNDS):
        for sample, (_what, _who, fn) in zip(samples, rows, strict=True):
            start = time.thread_time()
            for _ in range(REPEAT):
                fn()
            sample.append((time.thread_time() - start) / REPEAT * 1000)
    return [statistics.median(sample) for sample in samples]


def main(argv: list[str]) -> None:
    mixed = bool(argv) and argv[0] == "mixed"
    recs = _records(mixed)
    raw = _kafka_batch(KpBuilder, recs)
    labkit_batch = batches.kafka_to_labkit(raw).labkit_batch
    rows = [
        ("read", "labkit", lambda: batches.kafka_to_labkit(raw)),
        ("records", "labkit runs", lambda: _labkit_records(raw, runs=True)),
        ("records", "labkit loop", lambda: _labkit_records(raw, runs=False)),
        ("read", "aiokafka", lambda: _read_lib(AioBatch, raw, False)),
        ("read", "kafka-python", lambda: _read_lib(KpBatch, raw, False)),
        ("read+labkit", "aiokafka", lambda: _read_lib(AioBatch, raw, True)),
        ("read+labkit", "kafka-python", lambda: _read_lib(KpBatch, raw, True)),
        ("build", "labkit", lambda: batches.labkit_to_kafka(labkit_batch)),
        ("build", "aiokafka", lambda: _build_lib(AioBuilder, labkit_batch)),
        ("build", "kafka-python", lambda: _build_lib(KpBuilder, labkit_batch)),
        ("(of which: labkit decode_batch)", "", lambda: records.decode_batch(labkit_batch)),
    ]
    print(
        f"{COUNT} records, {'mixed' if mixed else '100 B values, no keys/headers'}; "
        f"load average {os.getloadavg()[0]:.1f} at start"
    )
    for (what, who, _fn), ms in zip(rows, _measure(rows), strict=True):
        print(f"{what:12} {who:13} {ms:6.2f} ms")
    print(f"load average {os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main(sys.argv[1:])
