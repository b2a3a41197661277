"""Opening a partition directory after a clean stop or a crash.

Theory of operation
-------------------
A partition directory holds segments (``<base>.log/.index/.timeindex``) and,
after an interrupted compaction, files with a suffix:

- ``*.cleaned``: a compaction's output still being written. Never committed, so
  it is deleted.
- ``<base>.index.writing`` (``.timeindex.writing``): a sealed segment's index files
  being written off the loop thread (``PartitionLog.write_sealed_indexes``), not yet
  renamed: deleted; the segment's own index files are then still the empty ones of
  its creation, which fail the checks below, so the index is rebuilt.
- ``<base>.log.swap`` (with ``.index.swap``/``.timeindex.swap``): a finished,
  fsynced compaction output for the segments starting at ``<base>``. Renaming the
  ``.log.cleaned`` to ``.log.swap`` is the commit point, so a swap is completed:
  every segment whose base offset lies in ``[base, last offset of the swap]`` is
  replaced by it (those are exactly the segments it was cleaned from, or the part
  of them whose records it still holds; later ones keep their uncleaned records,
  which is still a consistent log). ``install_swap`` does the same in the live
  path, so a crash anywhere in it leaves a state this module finishes.

Then every segment is opened in base-offset order: sealed ones trust their index
files after cheap checks (else rebuild with a CRC scan), the last (active) one is
always scanned and truncated at the first torn or corrupt batch. An empty
directory gets one empty segment at offset 0. What recovery did is logged.

Lost records are reported, never silently absorbed: every gap in offsets recovery
finds is logged with topic, partition and offset range (``_report_gaps``) --
index files whose ``.log`` is gone (a deleted segment file), a hole between two
segments of a log that is not compacted (compaction leaves holes on purpose), a
cut tail, and an active segment whose ``.log`` ends before the offsets its index
files (written at the last clean stop) name, e.g. an emptied file. What cannot be
seen (every file of the oldest segments deleted) looks like retention.

Runs once per open, before the log is shared; not thread-safe.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path

from labkit.errors import CorruptRecordError
from labkit.log.batchio import O_BINARY, FileOps, iter_batches
from labkit.log.config import LogConfig
from labkit.log.index import OFFSET_ENTRY, TIME_ENTRY
from labkit.log.segment import (
    INDEX,
    LOG,
    MAX_RELATIVE_OFFSET,
    TIMEINDEX,
    WRITING,
    Segment,
    segment_paths,
)

log = logging.getLogger(__name__)

CLEANED, SWAP = ".cleaned", ".swap"
_SEGMENT_FILE = re.compile(r"^(\d{20})(\.log|\.index|\.timeindex)$")


def fsync_dir(directory: Path) -> None:
    """Make renames/unlinks in ``directory`` durable. A no-op where unsupported (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes) -> None:
    """Replace the small file ``path`` with ``data`` so that a crash at any point leaves
    either the old or the new file, whole: a temp file beside it, fsync, rename, fsync
    of the directory. Raises OSError (``path`` is then unchanged)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _segment_bases(directory: Path) -> list[int]:
    return sorted(
        int(p.name[:20])
        for p in directory.iterdir()
        if p.name.endswith(LOG) and _SEGMENT_FILE.match(p.name)
    )


def _swap_last_offset(path: Path, base: int) -> int:
    """Last offset held by a swap file (``base - 1`` when it holds none)."""
    last = base - 1
    fd = os.open(path, os.O_RDONLY | O_BINARY)
    try:
        for _pos, header, _buf, _off in iter_batches(fd, 0, os.fstat(fd).st_size, validate=True):
            last = header.last_offset
    except CorruptRecordError as exc:
        log.warning("%s is damaged (%s); keeping only its valid batches", path, exc)
    finally:
        os.close(fd)
    return last


def install_swap(
    directory: Path, base: int, replaced: Iterable[int] | None = None, *, sync: bool = True
) -> None:
    """Replace segments by the ``<base>.log.swap`` files. Raises OSError.

    ``replaced`` are the base offsets of the segments it was cleaned from (the live
    path knows them); recovery passes None and replaces those the swap overlaps.
    ``sync=False`` leaves the directory fsync to the caller (any state a power cut
    leaves behind is one recovery handles).
    """
    swap_log, swap_index, swap_timeindex = segment_paths(directory, base, SWAP)
    if replaced is None:
        last_offset = _swap_last_offset(swap_log, base)
        replaced = [
            old for old in _segment_bases(directory) if base <= old <= max(base, last_offset)
        ]
    for old in replaced:
        for path in segment_paths(directory, old)[::-1]:  # the .log last (Segment.delete_files)
            path.unlink(missing_ok=True)
    final_log, final_index, final_timeindex = segment_paths(directory, base)
    for src, dst in ((swap_index, final_index), (swap_timeindex, final_timeindex)):
        if src.exists():
            os.replace(src, dst)
    os.replace(swap_log, final_log)
    if sync:
        fsync_dir(directory)


def _tidy(directory: Path) -> dict[int, int | None]:
    """Delete uncommitted leftovers, finish committed swaps, drop orphan index files.

    Returns the orphans: {base offset of index files without a .log: the last offset
    they name, or None}."""
    for path in sorted(directory.iterdir()):
        if path.name.endswith(CLEANED):
            log.warning("removing %s left over from an interrupted clean-up", path)
            path.unlink(missing_ok=True)
        elif path.name.endswith(WRITING):  # never renamed: its segment's index is rebuilt
            path.unlink(missing_ok=True)
    for path in sorted(directory.glob("*" + LOG + SWAP)):
        log.warning("finishing an interrupted compaction: installing %s", path)
        install_swap(directory, int(path.name[:20]))
    bases = set(_segment_bases(directory))
    orphans: dict[int, int | None] = {}
    for path in sorted(directory.iterdir()):
        if path.name.endswith(SWAP):
            path.unlink(missing_ok=True)
            continue
        match = _SEGMENT_FILE.match(path.name)
        if match and match.group(2) in (INDEX, TIMEINDEX) and int(match.group(1)) not in bases:
            base = int(match.group(1))
            orphans[base] = _max_or_none(orphans.get(base), _indexed_last_offset(path, base))
            path.unlink(missing_ok=True)
    return orphans


def _max_or_none(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def _indexed_last_offset(path: Path, base: int) -> int | None:
    """The largest offset an index file names (its last entry), or None."""
    entry = OFFSET_ENTRY if path.name.endswith(INDEX) else TIME_ENTRY
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if len(data) < entry.size or len(data) % entry.size:
        return None
    fields = entry.unpack_from(data, len(data) - entry.size)
    relative = fields[0] if entry is OFFSET_ENTRY else fields[1]
    return base + relative if relative <= MAX_RELATIVE_OFFSET else None


def _where(directory: Path) -> str:
    topic, _, partition = directory.name.rpartition("-")
    return f"topic {topic!r} partition {partition}" if topic else directory.name


def _report_gaps(
    directory: Path,
    config: LogConfig,
    segments: list[Segment],
    orphans: dict[int, int | None],
    active_claims: int | None,
) -> None:
    """Log every range of offsets recovery found missing (module docstring)."""
    where = _where(directory)
    bases = [s.base_offset for s in segments]
    explained = set()
    for base, named in sorted(orphans.items()):
        later = [b for b in bases if b > base]
        if later:
            upto = f"up to {later[0] - 1}"
            explained.add(later[0])
        else:
            upto = f"up to at least {named}" if named is not None else "onwards"
        log.warning(
            "%s: offsets from %d %s are lost: the segment file %s is missing (its "
            "index files were still there)",
            where,
            base,
            upto,
            segment_paths(directory, base)[0].name,
        )
    if not config.compacts:
        for prev, seg in itertools.pairwise(segments):
            if prev.next_offset < seg.base_offset and seg.base_offset not in explained:
                log.warning(
                    "%s: offsets %d to %d are lost: no segment holds them (%s ends "
                    "at %d, %s starts at %d; a deleted or truncated segment file)",
                    where,
                    prev.next_offset,
                    seg.base_offset - 1,
                    prev.log_path.name,
                    prev.next_offset - 1,
                    seg.log_path.name,
                    seg.base_offset,
                )
    active = segments[-1]
    if active_claims is not None and active_claims >= active.next_offset:
        log.warning(
            "%s: offsets from %d up to at least %d are lost: %s ends at %d bytes but "
            "its index files, written at the last clean stop, name offset %d "
            "(the file was truncated or emptied)",
            where,
            active.next_offset,
            active_claims,
            active.log_path.name,
            active.size,
            active_claims,
        )


def load_segments(directory: Path, config: LogConfig, ops: FileOps) -> list[Segment]:
    """Open (creating if needed) a partition directory; the last segment is the active one.

    Raises OSError when the directory or its files cannot be read or repaired.
    """
    directory.mkdir(parents=True, exist_ok=True)
    orphans = _tidy(directory)
    bases = _segment_bases(directory)
    segments: list[Segment] = []
    active_claims = None
    if bases:  # what the active segment's index files named at the last clean stop
        active_paths = segment_paths(directory, bases[-1])
        active_claims = _max_or_none(
            _indexed_last_offset(active_paths[1], bases[-1]),
            _indexed_last_offset(active_paths[2], bases[-1]),
        )
    try:
        for i, base in enumerate(bases):
            seg, note = Segment.open_existing(
                directory, base, config.index_interval_bytes, active=i == len(bases) - 1, ops=ops
            )
            if note:
                log.warning("recovered %s (%s): %s", seg.log_path, _where(directory), note)
            if segments and segments[-1].next_offset > base:
                log.warning(
                    "%s holds offsets up to %d, past the next segment's base %d",
                    segments[-1].log_path,
                    segments[-1].next_offset - 1,
                    base,
                )
            segments.append(seg)
        if not segments:
            segments.append(Segment.create(directory, 0, ops))
            fsync_dir(directory)
        _report_gaps(directory, config, segments, orphans, active_claims)
    except OSError:
        for seg in segments:
            seg.close()
        raise
    return segments
