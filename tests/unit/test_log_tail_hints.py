"""The read path's tail hints (segment_reads.py): readers that keep up find their next
batch without walking headers, and a hint never makes a read return other bytes."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labkit.log import LogConfig, PartitionLog, segment_reads
from labkit.log.index import OffsetIndex
from labkit.protocol import records
from labkit.testing.clock import FakeClock
from tests.log_records import offsets_values

T0 = 1_700_000_000_000


def batch(*values: str):
    data = records.encode_batch([T0] * len(values), None, [v.encode() for v in values])
    return data, records.validate_batch(data)


@pytest.fixture
def plog(tmp_path):
    log = PartitionLog.open(tmp_path / "t-0", LogConfig(), FakeClock(start_ms=T0))
    yield log
    log.close()


def walks(monkeypatch) -> list[int]:
    """The offsets looked up in the offset index: each starts a header walk (the path a
    hint saves)."""
    calls: list[int] = []
    real = OffsetIndex.lookup

    def counting(self, offset):
        calls.append(offset)
        return real(self, offset)

    monkeypatch.setattr(OffsetIndex, "lookup", counting)
    return calls


def test_a_reader_that_keeps_up_is_answered_from_the_hint(plog, monkeypatch):
    for i in range(30):
        plog.append(*batch(f"v{i}"))
    walked = walks(monkeypatch)
    assert offsets_values(plog.read(0, 1 << 20))[-1] == (29, b"v29")  # to the end: a hint
    assert walked == [0]
    assert plog.read(30, 1 << 20) == b""  # at the end: nothing new, no walk
    assert plog._active.read(30, 1 << 20) is None  # the segment itself, asked: the same
    plog.append(*batch("v30", "v31"))
    assert offsets_values(plog.read(30, 1 << 20)) == [(30, b"v30"), (31, b"v31")]
    assert plog.read(32, 1 << 20) == b""
    assert walked == [0]
    assert offsets_values(plog.read(31, 1 << 20)) == [(30, b"v30"), (31, b"v31")]
    assert walked == [0, 31]  # not where a read ended: the walk from the index, as before


def test_a_hint_that_does_not_hold_is_not_trusted(plog):
    for i in range(10):
        plog.append(*batch(f"v{i}"))
    segment = plog._active
    first = plog.read(0, 1 << 20)
    positions = [start for start, _end in records.split_batches(first)]
    segment._hints[7] = positions[2]  # the batch of offset 2: a lie
    segment._hints[8] = positions[3] + 5  # not a batch boundary
    assert offsets_values(plog.read(7, 1 << 20))[0] == (7, b"v7")
    assert offsets_values(plog.read(8, 1 << 20))[0] == (8, b"v8")


def test_hints_are_bounded(plog):
    for i in range(3 * segment_reads.MAX_HINTS):
        plog.append(*batch(f"v{i}"))
        plog.read(i, 1 << 20)
    hints = plog._active._hints
    assert len(hints) == segment_reads.MAX_HINTS
    assert max(hints) == 3 * segment_reads.MAX_HINTS  # the newest stay


def read_without_hints(log: PartitionLog, offset: int, max_bytes: int) -> bytes:
    """What ``log.read`` returns with every segment's hints set aside for the call."""
    saved = [(segment, dict(segment._hints)) for segment in log._segments]
    for segment, _ in saved:
        segment._hints.clear()
    try:
        return log.read(offset, max_bytes)
    finally:
        for segment, hints in saved:
            segment._hints.update(hints)


def test_a_truncated_log_is_read_afresh(plog):
    for i in range(10):
        plog.append(*batch(f"old{i}"))
    plog.read(0, 1 << 20)  # a hint for offset 10 at the old end
    assert 10 in plog._active._hints
    plog.truncate_to(4)
    for i in range(4, 20, 2):
        plog.append(*batch(f"new{i}", f"new{i + 1}"))
    got = plog.read(10, 1 << 20)
    assert got == read_without_hints(plog, 10, 1 << 20)
    assert offsets_values(got)[:2] == [(10, b"new10"), (11, b"new11")]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    sizes=st.lists(st.integers(1, 4), min_size=1, max_size=25),
    asks=st.lists(st.integers(0, 70), min_size=1, max_size=8),
    max_bytes=st.sampled_from([1, 200, 1 << 20]),
)
def test_reads_with_hints_return_what_reads_without_them_return(
    tmp_path_factory, sizes, asks, max_bytes
):
    log = PartitionLog.open(
        tmp_path_factory.mktemp("hints") / "t-0", LogConfig(segment_bytes=2048), FakeClock(T0)
    )
    try:
        n = 0
        for size in sizes:
            log.append(*batch(*(f"r{n + i}" for i in range(size))))
            n += size
            for ask in [*asks, n - size, n]:  # and the tail, where hints are made and used
                if ask <= log.log_end_offset:
                    assert log.read(ask, max_bytes) == read_without_hints(log, ask, max_bytes)
    finally:
        log.close()
