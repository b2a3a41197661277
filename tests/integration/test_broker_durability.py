"""Durability of the real broker process: records acknowledged with acks=-1 survive
repeated SIGKILLs with their offsets and values, no torn batch is ever served, and a
full disk gives KAFKA_STORAGE_ERROR without damage and recovers when space returns."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import threading

import pytest

from labkit.protocol.records import decode_batch, encode_batch, split_batches, validate_batch
from labkit.testing import BrokerProcess, RawClient

CYCLES = 20


def read_everything(client, topic, partition=0):
    """{offset: value} of the whole partition; every batch's CRC is checked."""
    header, _ = client.request("list_offsets", {"partitions": [[topic, partition, -1]]})
    end = header["partitions"][0][3]
    records = {}
    offset = 0
    while offset < end:
        header, payloads = client.request(
            "fetch",
            {
                "max_wait_ms": 0,
                "min_bytes": 1,
                "max_bytes": 1 << 20,
                "partitions": [[topic, partition, offset, 1 << 20]],
            },
        )
        assert header["partitions"][0][2] == 0, header
        payload = payloads[0]
        spans = split_batches(payload)
        assert spans
        assert spans[-1][1] == len(payload)  # whole batches only
        for start, _end in spans:
            validate_batch(payload, start, produced=False)
            batch = decode_batch(payload, start)
            records.update(zip(batch.offsets, batch.values, strict=True))
            offset = max(offset, batch.offsets[-1] + 1)
    return records


def produce_until_killed(broker, cycle, rng, acked):
    """Pipeline acks=-1 produces while a timer SIGKILLs the broker; record what was acked."""
    killer = threading.Timer(rng.uniform(0.05, 0.25), broker.proc.kill)
    pending = {}
    sent = 0
    with RawClient(broker.bootstrap, timeout=2) as client:
        killer.start()
        try:
            while True:
                alive = broker.proc.poll() is None
                while alive and len(pending) < 16:
                    values = [b"c%d-%d-%d" % (cycle, sent, j) for j in range(3)]
                    rid = client.send(
                        "produce",
                        {"acks": -1, "targets": [["crash", 0]]},
                        [encode_batch([1_700_000_000_000] * 3, None, values)],
                    )
                    pending[rid] = values
                    sent += 1
                got = client.receive(0.05 if alive else 0.3)
                if got is None:
                    if not alive:
                        return sent
                    continue
                rid, header, _payloads = got
                values = pending.pop(rid)
                base, code = header["results"][0][:2]
                if code == 0:
                    for j, value in enumerate(values):
                        assert acked.setdefault(base + j, value) == value
        finally:
            killer.cancel()
            broker.proc.wait(10)


def test_acked_records_survive_repeated_kill_9(broker):
    with RawClient(broker.bootstrap) as client:
        header, _ = client.request(
            "create_topics",
            {
                "topics": [
                    {
                        "name": "crash",
                        "num_partitions": 1,
                        "replication_factor": 1,
                        "configs": {"segment.bytes": "4096"},
                    }
                ]
            },
        )  # many segment rolls under fire
        assert header["topics"][0]["error"] == 0
    rng = random.Random(42)
    acked = {}
    for cycle in range(CYCLES):
        if cycle:
            broker.start()
        produce_until_killed(broker, cycle, rng, acked)
    assert len(acked) > CYCLES  # the test really produced under fire
    broker.start()
    with RawClient(broker.bootstrap) as client:
        stored = read_everything(client, "crash")
    missing = {o: v for o, v in acked.items() if stored.get(o) != v}
    assert not missing, f"{len(missing)} acknowledged records lost or changed"


def _mount_tmpfs(path, size):
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a small tmpfs")
    path.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")


def test_disk_full_is_a_storage_error_and_recovers(tmp_path):
    small = tmp_path / "small"
    _mount_tmpfs(small, "3m")
    try:
        ballast = small / "ballast"
        broker = BrokerProcess(data_dir=small / "data")
        with broker, RawClient(broker.bootstrap) as client:
            header, _ = client.request(
                "create_topics",
                {
                    "topics": [
                        {
                            "name": "full",
                            "num_partitions": 1,
                            "replication_factor": 1,
                            "configs": {"segment.bytes": "262144"},
                        }
                    ]
                },
            )
            assert header["topics"][0]["error"] == 0
            ballast.write_bytes(b"\0" * (1 << 20))
            acked = {}
            error = None
            for i in range(60):
                values = [b"%d-%d-" % (i, j) + b"x" * 1000 for j in range(50)]
                header, _ = client.request(
                    "produce",
                    {"acks": -1, "targets": [["full", 0]]},
                    [encode_batch([1_700_000_000_000] * 50, None, values)],
                )
                base, code, _lso, message = header["results"][0]
                if code != 0:
                    error = (code, message)
                    break
                acked.update((base + j, v) for j, v in enumerate(values))
            assert error is not None, "the 3 MiB disk never filled up"
            assert error[0] == 56, error
            assert "disk" in error[1].lower(), error
            assert acked
            assert read_everything(client, "full") == acked  # nothing damaged

            ballast.unlink()  # space returns
            header, _ = client.request(
                "produce",
                {"acks": -1, "targets": [["full", 0]]},
                [encode_batch([1], None, [b"after"])],
            )
            base, code = header["results"][0][:2]
            assert code == 0, header
            assert base == max(acked) + 1
            stored = read_everything(client, "full")
            assert stored == {**acked, base: b"after"}
            broker.restart()
            with RawClient(broker.bootstrap) as again:
                assert read_everything(again, "full") == stored
    finally:
        subprocess.run(["umount", "-l", str(small)], capture_output=True)
