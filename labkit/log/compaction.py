"""Log compaction: keep the latest record per key, with its offset unchanged.

Theory of operation
-------------------
Planning is pure (``cleanable_count``, ``plan_groups``, ``filter_batch``):

- only sealed segments are cleaned, and only the leading run of them whose newest
  record is at least ``min.compaction.lag.ms`` old (Kafka's "first uncleanable
  offset"); the active segment is never touched;
- the offset map holds, for every key in those segments, the offset of its last
  record there; a record survives if it is that last one, or has no key;
- a tombstone (null value) that survives is kept while its timestamp is newer than
  ``now - delete.retention.ms``, so consumers that read the log from the start see
  the delete; after that it goes too;
- consecutive segments are cleaned together into one while their current sizes add
  up to at most ``segment.bytes``, so small segments merge over time.

A batch whose records all survive is copied byte for byte; one that lost records
is re-encoded with explicit offset deltas (records.encode_batch), keeping its base
offset; an empty one is dropped. Offsets never change. A corrupt batch (bad CRC,
inconsistent columns) contributes no keys and is copied as it is, with a log line.

The rewrite (``Cleaner``) reads the sources through duplicated file descriptors
and writes ``<base>.log.cleaned`` (+ indexes), fsynced, without holding the log's
lock. Installing takes the lock: rename the cleaned files to ``.swap`` (the
``.log.swap`` rename commits), delete the sources, rename the swap files into
place (recovery.install_swap; recovery finishes it after a crash). A group whose
single segment lost nothing is left as it is.

Not thread-safe by itself: PartitionLog runs one compaction at a time.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from labkit.errors import CorruptRecordError
from labkit.log.batchio import FileOps, decode_checked, iter_batches
from labkit.log.config import INT64_MAX, LogConfig
from labkit.log.recovery import CLEANED, SWAP, install_swap
from labkit.log.segment import MAX_RELATIVE_OFFSET, Segment, SegmentInfo, segment_paths
from labkit.protocol.records import BatchHeader, encode_batch, read_header

log = logging.getLogger(__name__)


class Stopped(Exception):
    """The log was closed while compacting; nothing was changed."""


def cleanable_count(sealed: Sequence[SegmentInfo], now_ms: int, config: LogConfig) -> int:
    """How many of the leading ``sealed`` segments (the active one excluded) may be compacted."""
    count = 0
    for seg in sealed:
        if now_ms - seg.last_timestamp < config.min_compaction_lag_ms:
            break
        count += 1
    return count


def plan_groups(segments: Sequence[SegmentInfo], segment_bytes: int) -> list[tuple[int, int]]:
    """``[start, end)`` index ranges of consecutive segments to clean into one each."""
    groups: list[tuple[int, int]] = []
    start = 0
    while start < len(segments):
        end = start + 1
        total = segments[start].size_bytes
        while (
            end < len(segments)
            and total + segments[end].size_bytes <= segment_bytes
            and segments[end].next_offset - segments[start].base_offset <= MAX_RELATIVE_OFFSET
        ):
            total += segments[end].size_bytes
            end += 1
        groups.append((start, end))
        start = end
    return groups


def filter_batch(
    buf, off: int, header: BatchHeader, latest: dict[bytes, int], horizon_ms: int, where: str = ""
) -> tuple[bytes | None, int, int | None]:
    """(the batch to keep or None, records removed, oldest kept tombstone timestamp or None).

    A corrupt batch (bad CRC, columns that do not add up) is kept as it is, with a log
    line naming ``where`` (the partition): never lose, nor re-encode as if valid, what
    cannot be read; its readers report it (the consumer raises CorruptRecordError).
    """
    try:
        batch = decode_checked(buf, off, header)
    except CorruptRecordError as exc:
        log.warning(
            "%scompaction keeps a corrupt batch untouched and goes on: %s",
            f"{where}: " if where else "",
            exc,
        )
        return bytes(memoryview(buf)[off : off + header.size]), 0, None
    keep = []
    oldest_tombstone = None
    for i, (offset, key, value) in enumerate(
        zip(batch.offsets, batch.keys, batch.values, strict=False)
    ):
        if key is not None:
            if latest.get(key) != offset:
                continue
            if value is None:
                ts = header.max_timestamp if batch.log_append_time else batch.timestamps[i]
                if ts < horizon_ms:
                    continue
                oldest_tombstone = ts if oldest_tombstone is None else min(oldest_tombstone, ts)
        keep.append(i)
    removed = len(batch.offsets) - len(keep)
    if not keep:
        return None, removed, None
    if not removed:
        return bytes(memoryview(buf)[off : off + header.size]), 0, oldest_tombstone
    headers = [batch.headers[i] for i in keep]
    encoded = encode_batch(
        [batch.timestamps[i] for i in keep],
        [batch.keys[i] for i in keep],
        [batch.values[i] for i in keep],
        headers if any(headers) else None,
        base_offset=header.base_offset,
        offset_deltas=[batch.offsets[i] - header.base_offset for i in keep],
        log_append_time=batch.log_append_time,
    )
    return encoded, removed, oldest_tombstone


@dataclass(frozen=True)
class CleanState:
    """What the last compaction left: its segments and when a kept tombstone expires."""

    sources: tuple[tuple[int, int], ...]  # (base offset, size) of the cleaned segments
    due_ms: int

    def covers(self, segments: Sequence[SegmentInfo], now_ms: int) -> bool:
        """True when compacting ``segments`` now would change nothing."""
        return now_ms < self.due_ms and self.sources == tuple(
            (s.base_offset, s.size_bytes) for s in segments
        )


@dataclass
class Cleaned:
    """One group's output, written as ``.cleaned`` files (``segment`` is closed)."""

    start: int
    end: int  # source index range [start, end)
    segment: Segment | None  # None: the group stays as it is


class Cleaner:
    """Rewrites sealed segments (given as (fd, size) pairs) into cleaned ones."""

    def __init__(
        self,
        directory: Path,
        config: LogConfig,
        now_ms: int,
        ops: FileOps,
        should_stop: Callable[[], bool],
    ):
        self.directory = directory
        self.config = config
        self.horizon = now_ms - config.delete_retention_ms
        self.ops = ops
        self.should_stop = should_stop
        self.removed = 0
        self.oldest_tombstone: int | None = None

    def _batches(self, fd: int, size: int):
        for item in iter_batches(fd, 0, size, validate=False):
            if self.should_stop():
                raise Stopped()
            yield item

    def offset_map(self, sources: Sequence[tuple[int, int]]) -> dict[bytes, int]:
        latest: dict[bytes, int] = {}
        for fd, size in sources:
            for _pos, header, buf, off in self._batches(fd, size):
                try:
                    batch = decode_checked(buf, off, header)
                except CorruptRecordError:
                    continue  # kept untouched by filter_batch
                for key, offset in zip(batch.keys, batch.offsets, strict=False):
                    if key is not None:
                        latest[key] = offset
        return latest

    def run(
        self, infos: Sequence[SegmentInfo], sources: Sequence[tuple[int, int]]
    ) -> list[Cleaned]:
        """Clean every group; on any error the cleaned files written so far are removed."""
        latest = self.offset_map(sources)
        out: list[Cleaned] = []
        try:
            for start, end in plan_groups(infos, self.config.segment_bytes):
                out.append(self._clean_group(infos, sources, start, end, latest))
        except BaseException:
            self.discard(out)
            raise
        return out

    def _clean_group(
        self, infos, sources, start: int, end: int, latest: dict[bytes, int]
    ) -> Cleaned:
        base = infos[start].base_offset
        seg = Segment.create(self.directory, base, self.ops, suffix=CLEANED)
        removed = 0
        try:
            for fd, size in sources[start:end]:
                for _pos, header, buf, off in self._batches(fd, size):
                    data, dropped, tombstone = filter_batch(
                        buf, off, header, latest, self.horizon, self.directory.name
                    )
                    removed += dropped
                    if tombstone is not None and (
                        self.oldest_tombstone is None or tombstone < self.oldest_tombstone
                    ):
                        self.oldest_tombstone = tombstone
                    if data is not None:
                        h = header if not dropped else read_header(data)
                        seg.append(
                            (data,),
                            len(data),
                            h.base_offset,
                            h.next_offset,
                            h.max_timestamp,
                            self.config.index_interval_bytes,
                            0,
                        )
            self.removed += removed
            if removed == 0 and end - start == 1:
                seg.delete_files()
                return Cleaned(start, end, None)
            seg.sync()
            seg.seal()
        except BaseException:
            seg.delete_files()
            raise
        return Cleaned(start, end, seg)

    def discard(self, cleaned: Sequence[Cleaned]) -> None:
        for item in cleaned:
            if item.segment is not None:
                item.segment.delete_files()

    def install(self, cleaned: Sequence[Cleaned], sources: Sequence[Segment]) -> list[Segment]:
        """Swap the cleaned files in (log lock held); returns the segments replacing
        ``sources``. Raises OSError, after which only a reopen (recovery) is safe."""
        result: list[Segment] = []
        for item in cleaned:
            group = sources[item.start : item.end]
            if item.segment is None:
                result.extend(group)
                continue
            base = group[0].base_offset
            for src, dst in zip(
                segment_paths(self.directory, base, CLEANED)[::-1],
                segment_paths(self.directory, base, SWAP)[::-1],
                strict=True,
            ):
                if dst.suffixes[-2] == ".log" or src.exists():  # a missing index is rebuilt
                    os.replace(src, dst)  # .timeindex, .index, then .log: the commit point
            for seg in group:
                seg.close()
            install_swap(self.directory, base, [seg.base_offset for seg in group], sync=False)
            seg, _note = Segment.open_existing(
                self.directory, base, self.config.index_interval_bytes, active=False, ops=self.ops
            )
            result.append(seg)
        return result

    def state(self, segments: Sequence[Segment]) -> CleanState:
        due = INT64_MAX
        if self.oldest_tombstone is not None:
            due = self.oldest_tombstone + self.config.delete_retention_ms + 1
        return CleanState(tuple((s.base_offset, s.size) for s in segments), due)
