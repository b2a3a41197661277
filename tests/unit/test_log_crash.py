"""kill -9 a process that is appending: every acknowledged batch is there after recovery."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from labkit.log import LogConfig, PartitionLog
from labkit.protocol import records
from labkit.testing.clock import FakeClock

WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from labkit._clock import REAL_CLOCK
    from labkit.log import LogConfig, PartitionLog
    from labkit.protocol import records

    plog = PartitionLog.open(Path(sys.argv[1]), LogConfig(segment_bytes=4096), REAL_CLOCK)
    while True:
        n = plog.log_end_offset
        values = [b"value-%d" % (n + i) + b"." * (n % 97) for i in range(1 + n % 5)]
        data = records.encode_batch([0] * len(values), None, values)
        base = plog.append(data, records.validate_batch(data))
        if base % 3 == 0:
            plog.flush()  # acks=all: answered after fsync
        print(base, len(values), flush=True)  # the acknowledgement
""")

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")


def expected_value(offset: int, base: int) -> bytes:
    return b"value-%d" % offset + b"." * (base % 97)


@pytest.mark.parametrize("cycle", range(5))
def test_kill_minus_nine_keeps_every_acknowledged_batch(tmp_path, cycle):
    d = tmp_path / "t-0"
    acked: dict[int, int] = {}
    for round_ in range(2):  # the second round appends to a recovered log
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(d)],
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        wanted = 50 + 137 * cycle + 61 * round_
        for _ in range(wanted):
            line = proc.stdout.readline()
            if not line:
                break
            base, count = map(int, line.split())
            acked[base] = count
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    assert acked, "the writer did not start"
    plog = PartitionLog.open(d, LogConfig(segment_bytes=4096), FakeClock())
    got = {}
    offset = 0
    while offset < plog.log_end_offset:
        data = plog.read(offset, 1 << 16)
        spans = records.split_batches(data)
        assert spans
        assert spans[-1][1] == len(data)
        for start, _ in spans:
            header = records.validate_batch(data, start)
            got[header.base_offset] = records.decode_batch(data, start, header).values
            offset = header.next_offset
    for base, count in acked.items():
        assert base in got, f"acknowledged batch at offset {base} is missing"
        assert got[base] == [expected_value(base + i, base) for i in range(count)]
    assert max(acked) <= max(got)
    plog.close()
