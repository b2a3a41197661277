"""The sparse offset index and the time index: lookups and file round trips."""

from __future__ import annotations

from labkit.log.index import OFFSET_ENTRY, TIME_ENTRY, OffsetIndex, TimeIndex


def _offset_index() -> OffsetIndex:
    index = OffsetIndex(100)
    for offset, position in [(110, 4096), (125, 8200), (140, 12300)]:
        index.append(offset, position)
    return index


def test_offset_lookup_returns_last_entry_at_or_below():
    index = _offset_index()
    assert index.lookup(100) == 0
    assert index.lookup(109) == 0
    assert index.lookup(110) == 4096
    assert index.lookup(124) == 4096
    assert index.lookup(125) == 8200
    assert index.lookup(10_000) == 12300


def test_floor_position():
    index = _offset_index()
    assert index.floor_position(100) == 0
    assert index.floor_position(8200) == 8200
    assert index.floor_position(8199) == 4096
    assert index.floor_position(1 << 30) == 12300


def test_offset_index_file_round_trip_is_little_endian():
    index = _offset_index()
    data = index.to_bytes()
    assert data[: OFFSET_ENTRY.size] == OFFSET_ENTRY.pack(10, 4096)
    back = OffsetIndex.from_bytes(data, 100, log_size=20_000)
    assert back is not None
    assert list(back.offsets) == [10, 25, 40]
    assert list(back.positions) == [4096, 8200, 12300]


def test_offset_index_rejects_inconsistent_files():
    data = _offset_index().to_bytes()
    assert OffsetIndex.from_bytes(data[:-3], 100, 20_000) is None  # partial entry
    assert OffsetIndex.from_bytes(data, 100, 12_000) is None  # points past the log
    swapped = OFFSET_ENTRY.pack(25, 8200) + OFFSET_ENTRY.pack(10, 4096)
    assert OffsetIndex.from_bytes(swapped, 100, 20_000) is None  # not increasing
    assert OffsetIndex.from_bytes(OFFSET_ENTRY.pack(0, 0), 100, 20_000) is None  # position 0
    assert OffsetIndex.from_bytes(b"", 100, 0) is not None


def test_time_index_lookup_starts_where_no_earlier_record_can_match():
    index = TimeIndex(0)
    index.maybe_append(1000, 10)
    index.maybe_append(1000, 20)  # not a new maximum: ignored
    index.maybe_append(2000, 30)
    assert len(index) == 2
    assert index.lookup(500) == 0  # before the first entry: search from the base
    assert index.lookup(1000) == 0  # a record with ts 1000 may be before offset 10
    assert index.lookup(1001) == 10
    assert index.lookup(2001) == 30
    assert index.last_timestamp == 2000


def test_time_index_seal_adds_the_last_batch_once():
    index = TimeIndex(0)
    index.maybe_append(1000, 10)
    index.seal(1500, 42)
    index.seal(1500, 42)
    assert list(index.offsets) == [10, 42]
    assert index.last_offset == 42
    assert index.last_timestamp == 1500


def test_time_index_file_round_trip_and_rejects_garbage():
    index = TimeIndex(7)
    index.maybe_append(1000, 10)
    index.maybe_append(3000, 20)
    data = index.to_bytes()
    assert data[: TIME_ENTRY.size] == TIME_ENTRY.pack(1000, 3)
    back = TimeIndex.from_bytes(data, 7)
    assert back is not None
    assert back.lookup(2000) == 10
    assert TimeIndex.from_bytes(data[:-1], 7) is None
    assert TimeIndex.from_bytes(TIME_ENTRY.pack(3000, 1) + TIME_ENTRY.pack(1000, 2), 7) is None
