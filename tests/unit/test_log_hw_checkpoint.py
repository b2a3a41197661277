"""replication-offset-checkpoint: Kafka's format, atomic replacement, a bad file is empty."""

from __future__ import annotations

import pytest

from labkit.log import hw_checkpoint
from labkit.log.hw_checkpoint import CHECKPOINT


def test_round_trip_in_kafkas_format(tmp_path):
    marks = {("orders", 1): 1498, ("orders", 0): 1520, ("a.b-c", 3): 0}
    hw_checkpoint.write(tmp_path, marks)
    assert (tmp_path / CHECKPOINT).read_text() == "0\n3\na.b-c 3 0\norders 0 1520\norders 1 1498\n"
    assert hw_checkpoint.read(tmp_path) == marks


def test_no_file_is_no_marks(tmp_path):
    assert hw_checkpoint.read(tmp_path) == {}


@pytest.mark.parametrize(
    "content", [b"", b"1\n0\n", b"0\n2\nt 0 5\n", b"0\n1\nt 0\n", b"0\n1\nt -1 5\n", b"\xff"]
)
def test_a_malformed_file_is_read_as_empty(tmp_path, content, caplog):
    (tmp_path / CHECKPOINT).write_bytes(content)
    assert hw_checkpoint.read(tmp_path) == {}
    assert "unreadable high-watermark checkpoint" in caplog.text


def test_a_crash_mid_write_leaves_the_old_file(tmp_path):
    hw_checkpoint.write(tmp_path, {("t", 0): 7})
    (tmp_path / (CHECKPOINT + ".tmp")).write_bytes(b"0\n1\nt 0")  # torn temporary file
    assert hw_checkpoint.read(tmp_path) == {("t", 0): 7}
