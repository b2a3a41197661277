"""Which segments retention deletes: Apache Kafka's rules (``UnifiedLog.deleteOldSegments``).

Theory of operation
-------------------
Pure: segments in, one reason per segment to delete out (the first ``len()`` segments
go). Kafka makes three walks over the segments, oldest first, each over what the
walks before it left and each stopping at the first segment it keeps:

1. the log start offset: a segment whose next segment starts at or below the log
   start offset (DeleteRecords moved the start past it);
2. ``retention.bytes``: when the log is at least that big, a segment goes while the
   log without it is still at least ``retention.bytes``;
3. ``retention.ms``: a segment whose largest record timestamp is more than
   ``retention.ms`` before now (record timestamps, not file times; a segment with a
   timestamp in the future is kept, and so is everything after it). The caller gives
   a segment whose records carry no timestamp its file's time, as Kafka does.

Every walk includes the **active** segment, unless it is empty (Kafka: "a final
segment that is empty will never be returned"). When the walks take every segment,
the caller first rolls a new empty active segment at the log end (a log always has
one), so the log start offset becomes the log end offset.

As Kafka, every walk also stops at the first segment whose records are not all below
the **high watermark** (its upper bound, the next segment's base offset or the log
end, is past it): the log start offset never passes the high watermark, so records
that the in-sync replicas may not all have yet (cluster mode) are never deleted. In
single-broker mode the high watermark is the log end, so that bound never stops a walk.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from labkit.log.config import LogConfig
from labkit.log.segment import SegmentInfo

# a rule: (segment, the segment after it or None) -> the reason it goes, or None: keep it
Rule = Callable[[SegmentInfo, SegmentInfo | None], str | None]


def _name(seg: SegmentInfo) -> str:
    if seg.next_offset > seg.base_offset:
        return f"segment {seg.base_offset:020d} (offsets {seg.base_offset}-{seg.next_offset - 1})"
    return f"empty segment {seg.base_offset:020d}"


def plan_retention(
    segments: Sequence[SegmentInfo],
    now_ms: int,
    config: LogConfig,
    log_start_offset: int = 0,
    high_watermark: int | None = None,
) -> list[str]:
    """One reason per segment to delete, oldest first; ``len()`` is how many.

    ``segments`` are all the partition's segments in offset order, the active last;
    ``high_watermark`` None: no bound (the log end).
    ``len()`` equal to ``len(segments)`` means every segment, the active one included:
    the caller rolls a new active segment before deleting them.
    """
    if not config.deletes:
        return []
    reasons: list[str] = []
    _walk(segments, reasons, _below_log_start(log_start_offset), high_watermark)
    if config.retention_bytes >= 0:
        rule = _over_size(segments[len(reasons) :], config.retention_bytes)
        _walk(segments, reasons, rule, high_watermark)
    if config.retention_ms >= 0:
        _walk(segments, reasons, _expired(now_ms, config.retention_ms), high_watermark)
    return reasons


def _walk(
    segments: Sequence[SegmentInfo],
    reasons: list[str],
    rule: Rule | None,
    high_watermark: int | None,
) -> None:
    """Extend ``reasons`` past the segments already taken while ``rule`` takes the next
    (never one with records at or past the high watermark)."""
    if rule is None:
        return
    for i in range(len(reasons), len(segments)):
        seg = segments[i]
        following = segments[i + 1] if i + 1 < len(segments) else None
        if following is None and seg.size_bytes == 0:
            return  # an empty active segment never goes
        upper = seg.next_offset if following is None else following.base_offset
        if high_watermark is not None and upper > high_watermark:
            return  # as Kafka's deletableSegments: not all of it is replicated yet
        reason = rule(seg, following)
        if reason is None:
            return
        reasons.append(reason)


def _below_log_start(log_start_offset: int) -> Rule:
    def rule(seg: SegmentInfo, following: SegmentInfo | None) -> str | None:
        if following is not None and following.base_offset <= log_start_offset:
            return f"{_name(seg)}: below the log start offset {log_start_offset}"
        return None

    return rule


def _over_size(remaining: Sequence[SegmentInfo], retention_bytes: int) -> Rule | None:
    excess = sum(seg.size_bytes for seg in remaining) - retention_bytes
    if excess < 0:
        return None

    def rule(seg: SegmentInfo, _following: SegmentInfo | None) -> str | None:
        nonlocal excess
        if excess - seg.size_bytes < 0:
            return None
        excess -= seg.size_bytes
        return f"{_name(seg)}: partition over retention.bytes={retention_bytes}"

    return rule


def _expired(now_ms: int, retention_ms: int) -> Rule:
    def rule(seg: SegmentInfo, _following: SegmentInfo | None) -> str | None:
        if seg.size_bytes == 0:  # a sealed segment without records (never the active one)
            return f"{_name(seg)} has no records"
        age = now_ms - seg.last_timestamp
        if age <= retention_ms:
            return None
        return f"{_name(seg)}: newest record is {age / 1000:.1f} s old, retention.ms={retention_ms}"

    return rule
