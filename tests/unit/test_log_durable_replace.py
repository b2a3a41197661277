"""Small files replaced durably (``log.recovery.write_atomically``) stay whole when a write
comes up short: the log start offset checkpoint, the producer-id block checkpoint.

A disk that fills up, or a file size limit, makes ``write(2)`` write part of the bytes
and return their count; the next write fails. The checkpoints were written with one
``os.write`` whose count was not looked at, so a short write was fsynced and renamed
over the good file: a log start offset of 123456 came back as 1234, and the producer-id
checkpoint ``7000`` as ``700``, so the broker would hand out ids it had handed out
before. ``write_atomically`` writes through a buffered file, which writes the rest or
raises, so the rename never happens and the old file stays. A child process with
``RLIMIT_FSIZE`` (SIGXFSZ ignored) makes the short write real.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit.broker import producer_ids
from labkit.log import start_offset
from labkit.log.recovery import write_atomically
from labkit.testing.processes import run_with_file_size_limit

REPO = Path(__file__).resolve().parents[2]


def test_a_short_write_leaves_the_log_start_offset_as_it_was(tmp_path):
    start_offset.write(tmp_path, 7)
    out = run_with_file_size_limit(
        4,
        "import sys, pathlib\n"
        "from labkit.log import start_offset\n"
        "try:\n"
        "    start_offset.write(pathlib.Path(sys.argv[1]), 123456)\n"
        "except OSError as exc:\n"
        "    print('refused:', exc)\n",
        str(tmp_path),
    )
    assert out.startswith("refused:")
    assert start_offset.read(tmp_path) == 7


def test_a_short_write_never_makes_the_broker_reuse_producer_ids(tmp_path):
    assert producer_ids.reserve_block(tmp_path) == 0
    for _ in range(5):
        producer_ids.reserve_block(tmp_path)  # the checkpoint now says 6000
    out = run_with_file_size_limit(
        3,
        "import sys, pathlib\n"
        "from labkit.broker import producer_ids\n"
        "try:\n"
        "    producer_ids.reserve_block(pathlib.Path(sys.argv[1]))\n"
        "except OSError as exc:\n"
        "    print('refused:', exc)\n",
        str(tmp_path),
    )
    assert out.startswith("refused:")
    assert producer_ids.reserve_block(tmp_path) == 6000  # not 700: ids 700.. were handed out before


def test_write_atomically_replaces_the_whole_file_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "state"
    path.write_bytes(b"old and longer than the new one")
    write_atomically(path, b"new")
    assert path.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]


def test_write_atomically_raises_and_keeps_the_old_file_when_the_write_fails(tmp_path):
    path = tmp_path / "state"
    path.write_bytes(b"old")
    (tmp_path / "state.tmp").mkdir()  # the temp file cannot be created
    with pytest.raises(IsADirectoryError):
        write_atomically(path, b"new")
    assert path.read_bytes() == b"old"
