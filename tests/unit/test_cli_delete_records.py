"""``labkit delete-records``: the offset JSON file as Kafka's tool reads it, and its lines
(with a stand-in admin client; the real broker is in tests/integration)."""

from __future__ import annotations

import io

import pytest

from labkit.cli._common import CommandError
from labkit.cli.delete_records import delete, parse_offset_json
from labkit.errors import OffsetOutOfRangeError


def test_reads_kafkas_format_in_file_order():
    text = '{"partitions": [{"topic": "b", "partition": 1, "offset": -1},'
    text += ' {"topic": "a", "partition": 0, "offset": 3}], "version": 1}'
    assert parse_offset_json(text) == [("b", 1, -1), ("a", 0, 3)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{nope", "The input string is not a valid JSON"),
        ('{"version": 1}', "Missing partitions field"),
        ('{"partitions": [], "version": 2}', "Not supported version field value 2"),
        ('{"partitions": [{"topic": "a", "partition": "0", "offset": 1}]}', "integer partition"),
        (
            '{"partitions": [{"topic": "a", "partition": 0, "offset": 1},'
            ' {"topic": "a", "partition": 0, "offset": 2}]}',
            "duplicate topic partitions: a-0",
        ),
    ],
)
def test_bad_files_get_kafkas_message_and_the_format(text, message):
    with pytest.raises(CommandError, match=message) as caught:
        parse_offset_json(text)
    assert '"partitions"' in caught.value.hint or "once" in caught.value.hint


class FakeAdmin:
    def delete_records(self, wanted):
        ((tp, offset),) = wanted.items()
        if offset > 5:
            raise OffsetOutOfRangeError(f"offset {offset} is past the high watermark 5")
        return {tp: {"partition_index": tp.partition, "low_watermark": offset, "error_code": 0}}


def test_prints_a_line_per_partition_and_reports_failure():
    out = io.StringIO()
    assert delete(FakeAdmin(), [("t", 0, 3), ("t", 1, 9)], out) is False
    assert out.getvalue().splitlines() == [
        "Executing records delete operation",
        "Records delete operation completed:",
        "partition: t-0\tlow_watermark: 3",
        "partition: t-1\terror: OffsetOutOfRangeError: offset 9 is past the high watermark 5",
    ]
