"""Retention decisions: which old segments to delete. Pure: no files, no clock.

Kafka's rules, applied when ``cleanup.policy`` has ``delete``:

- time: a sealed segment is expired when its newest record is more than
  ``retention.ms`` older than now (``now - last_timestamp > retention.ms``);
- size: while the partition is bigger than ``retention.bytes``, the oldest
  sealed segments go, as long as deleting one does not take it below the limit.

Both take whole segments from the oldest end and stop at the first one that is
kept; the larger of the two prefixes is deleted. The active (last) segment is
never deleted, so the log keeps its end offset and new data a home.
"""

from __future__ import annotations

from collections.abc import Sequence

from labkit.log.config import LogConfig
from labkit.log.segment import SegmentInfo


def _name(seg: SegmentInfo) -> str:
    if seg.next_offset > seg.base_offset:
        return f"segment {seg.base_offset:020d} (offsets {seg.base_offset}-{seg.next_offset - 1})"
    return f"empty segment {seg.base_offset:020d}"


def plan_retention(segments: Sequence[SegmentInfo], now_ms: int, config: LogConfig) -> list[str]:
    """One reason per segment to delete, oldest first; ``len()`` is how many.

    ``segments`` are all the partition's segments in offset order, the active last.
    """
    if not config.deletes or len(segments) < 2:
        return []
    sealed = segments[:-1]
    reasons: list[str] = []
    if config.retention_ms >= 0:
        for seg in sealed:
            age = now_ms - seg.last_timestamp
            if age <= config.retention_ms:
                break
            if seg.last_timestamp < 0:
                reasons.append(f"{_name(seg)} has no records")
            else:
                reasons.append(
                    f"{_name(seg)}: newest record is {age / 1000:.1f} s old, "
                    f"retention.ms={config.retention_ms}"
                )
    if config.retention_bytes >= 0:
        excess = sum(seg.size_bytes for seg in segments) - config.retention_bytes
        for i, seg in enumerate(sealed):
            if excess - seg.size_bytes < 0:
                break
            excess -= seg.size_bytes
            if i >= len(reasons):
                reasons.append(
                    f"{_name(seg)}: partition over retention.bytes={config.retention_bytes}"
                )
    return reasons
