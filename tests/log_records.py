"""Reading the log tests' results: (offset, value) of every record in read bytes (not a
test module)."""

from __future__ import annotations

from labkit.protocol import records


def offsets_values(data: bytes) -> list[tuple[int, bytes | None]]:
    """(offset, value) of every record of the whole batches in ``data``."""
    out: list[tuple[int, bytes | None]] = []
    for start, _end in records.split_batches(data):
        batch = records.decode_batch(data, start)
        out.extend(zip(batch.offsets, batch.values, strict=True))
    return out
