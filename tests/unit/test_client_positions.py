"""Position resolution (labkit/client/positions.py, reached through
Fetcher.reset_offsets_if_needed) without sockets: a fake transport answers
list_offsets from a fixed log, a fake coordinator holds the committed offsets."""

from __future__ import annotations

import logging

import pytest

from labkit.client.positions import NoPositionError, OffsetLookup, PositionResolver
from labkit.client.structs import OffsetAndMetadata, TopicPartition
from labkit.client.subscription import SubscriptionState
from labkit.client.transport import Response
from labkit.errors import NoOffsetForPartitionError, OffsetOutOfRangeError

A, B = TopicPartition("t", 0), TopicPartition("t", 1)
LOG = {A: (10, 50), B: (0, 7)}  # tp -> (log start, log end)


class ListOffsets:
    def __init__(self):
        self.asked = []

    def call(self, api, header, *, timeout_ms=None):
        assert api == "list_offsets"
        rows = []
        for topic, partition, ts in header["partitions"]:
            tp = TopicPartition(topic, partition)
            self.asked.append((tp, ts))
            start, end = LOG[tp]
            rows.append([topic, partition, 0, start if ts == OffsetLookup.EARLIEST else end, -1])
        return Response({"error": 0, "partitions": rows}, [])


class Group:
    group_id = "g"

    def __init__(self, committed):
        self.committed = committed

    def fetch_committed_offsets(self, partitions, timeout_ms=None):
        return {tp: self.committed.get(tp) for tp in partitions}


def resolver(reset="earliest", partitions=(A, B)):
    sub = SubscriptionState(reset)
    sub.assign_from_user(partitions)
    transport = ListOffsets()
    return PositionResolver(sub, OffsetLookup(transport), "g"), sub, transport


def positions(sub):
    return {tp: st.position for tp, st in sub.assignment.items()}


def test_a_committed_offset_in_the_log_wins_the_rest_follow_auto_offset_reset(caplog):
    positions_of, sub, _ = resolver("latest")
    group = Group({A: OffsetAndMetadata(20, "", -1)})
    with caplog.at_level(logging.INFO):
        positions_of.reset_offsets_if_needed(group)
    assert positions(sub) == {A: 20, B: 7}
    # students expect 'earliest'/'latest' to apply: say where each partition starts, and why
    assert "starting t-0 at 20 from the offsets this group committed" in caplog.text
    assert "auto_offset_reset='latest' applies only" in caplog.text
    assert "t-1 had no committed offset" in caplog.text


def test_a_committed_offset_retention_deleted_falls_back_to_the_reset(caplog):
    positions_of, sub, _ = resolver("earliest")
    with caplog.at_level(logging.WARNING):
        positions_of.reset_offsets_if_needed(Group({A: OffsetAndMetadata(3, "", -1)}))
    assert positions(sub)[A] == 10
    assert "retention" in caplog.text
    assert "committed offset 3" in caplog.text


def test_with_none_a_deleted_committed_offset_raises_out_of_range():
    positions_of, _, _ = resolver("none", partitions=(A,))
    with pytest.raises(OffsetOutOfRangeError, match="log now starts at 10"):
        positions_of.reset_offsets_if_needed(Group({A: OffsetAndMetadata(3, "", -1)}))


def test_with_none_and_nothing_committed_raises_no_offset_for_partition():
    positions_of, _, _ = resolver("none", partitions=(B,))
    with pytest.raises(NoPositionError) as raised:
        positions_of.reset_offsets_if_needed(Group({}))
    assert isinstance(raised.value, NoOffsetForPartitionError)
    assert isinstance(raised.value, OffsetOutOfRangeError)


def test_a_pending_seek_to_end_skips_the_committed_offset_and_is_not_a_fresh_start(caplog):
    positions_of, sub, transport = resolver("earliest", partitions=(A,))
    sub.assignment[A].request_reset("latest")
    group = Group({A: OffsetAndMetadata(20, "", -1)})
    with caplog.at_level(logging.INFO):
        positions_of.reset_offsets_if_needed(group)
    assert positions(sub) == {A: 50}
    assert transport.asked == [(A, OffsetLookup.LATEST)]
    assert "starting" not in caplog.text  # nothing to explain: the user asked for it


def test_without_a_group_nothing_is_explained(caplog):
    positions_of, sub, _ = resolver("earliest", partitions=(B,))
    no_group = Group({})
    no_group.group_id = None
    with caplog.at_level(logging.INFO):
        positions_of.reset_offsets_if_needed(no_group)
    assert positions(sub) == {B: 0}
    assert "committed offset" not in caplog.text


def test_nothing_to_resolve_asks_nobody():
    positions_of, sub, transport = resolver()
    for st in sub.assignment.values():
        st.seek(1)
    positions_of.reset_offsets_if_needed(Group({}))
    assert transport.asked == []
