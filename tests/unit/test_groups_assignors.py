"""The partition assignors: Kafka's layouts, balance, idle members, stickiness."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labkit.broker.assignors import (
    ASSIGNORS,
    range_assign,
    roundrobin_assign,
    sticky_assign,
)


def tps(topic, *parts):
    return [(topic, p) for p in parts]


def test_range_splits_each_topic_into_contiguous_ranges():
    result = range_assign({"a": ["t"], "b": ["t"], "c": ["t"]}, {"t": 6})
    assert result == {"a": tps("t", 0, 1), "b": tps("t", 2, 3), "c": tps("t", 4, 5)}


def test_range_gives_the_remainder_to_the_first_members_per_topic():
    result = range_assign({"a": ["t", "u"], "b": ["t", "u"]}, {"t": 3, "u": 3})
    # Kafka's known range skew: member "a" gets the extra partition of every topic
    assert result == {"a": tps("t", 0, 1) + tps("u", 0, 1), "b": tps("t", 2) + tps("u", 2)}


def test_roundrobin_deals_partitions_of_all_topics_in_turn():
    result = roundrobin_assign({"a": ["t", "u"], "b": ["t", "u"]}, {"t": 3, "u": 3})
    assert result == {"a": [("t", 0), ("t", 2), ("u", 1)], "b": [("t", 1), ("u", 0), ("u", 2)]}


def test_roundrobin_skips_members_not_subscribed_to_a_topic():
    result = roundrobin_assign({"a": ["t"], "b": ["t", "u"]}, {"t": 2, "u": 2})
    assert result["a"] == tps("t", 0)
    assert result["b"] == [("t", 1), ("u", 0), ("u", 1)]


@pytest.mark.parametrize("name", ["range", "roundrobin", "sticky"])
def test_more_members_than_partitions_leaves_idle_members(name):
    result = ASSIGNORS[name]({m: ["t"] for m in "abcd"}, {"t": 3}, {})
    assert sorted(len(v) for v in result.values()) == [0, 1, 1, 1]
    assert set(result) == set("abcd")


@pytest.mark.parametrize("name", ["range", "roundrobin", "sticky"])
def test_missing_or_empty_topics_assign_nothing(name):
    result = ASSIGNORS[name]({"a": ["nope", "t"]}, {"t": 0}, {})
    assert result == {"a": []}


def test_sticky_keeps_partitions_in_place_when_a_member_joins():
    before = sticky_assign({"a": ["t"], "b": ["t"]}, {"t": 6}, {})
    after = sticky_assign({"a": ["t"], "b": ["t"], "c": ["t"]}, {"t": 6}, before)
    assert sorted(len(v) for v in after.values()) == [2, 2, 2]
    moved = [tp for m in ("a", "b") for tp in after[m] if tp not in before[m]]
    assert moved == []  # a and b only gave partitions away; c got exactly those


def test_sticky_keeps_survivors_partitions_when_a_member_leaves():
    before = sticky_assign({"a": ["t"], "b": ["t"], "c": ["t"]}, {"t": 6}, {})
    after = sticky_assign({"a": ["t"], "c": ["t"]}, {"t": 6}, {"a": before["a"], "c": before["c"]})
    assert set(before["a"]) <= set(after["a"])
    assert set(before["c"]) <= set(after["c"])
    # range, by contrast, would reshuffle: a keeps 0-2, c takes 3-5
    assert range_assign({"a": ["t"], "c": ["t"]}, {"t": 6}) == {
        "a": tps("t", 0, 1, 2),
        "c": tps("t", 3, 4, 5),
    }


def test_sticky_rebalances_a_lopsided_previous_assignment():
    previous = {"a": tps("t", 0, 1, 2, 3, 4, 5), "b": []}
    result = sticky_assign({"a": ["t"], "b": ["t"]}, {"t": 6}, previous)
    assert sorted(len(v) for v in result.values()) == [3, 3]


subscriptions = st.dictionaries(
    st.sampled_from(["m1", "m2", "m3", "m4", "m5"]),
    st.lists(st.sampled_from(["t", "u", "v"]), min_size=1, max_size=3, unique=True),
    min_size=1,
)
counts = st.fixed_dictionaries(
    {"t": st.integers(0, 7), "u": st.integers(0, 4), "v": st.integers(0, 3)}
)


@settings(max_examples=60, deadline=None)
@given(subscriptions, counts, st.sampled_from(["range", "roundrobin", "sticky"]))
def test_every_partition_goes_to_exactly_one_subscribed_member(subs, parts, name):
    result = ASSIGNORS[name](subs, parts, {})
    assert set(result) == set(subs)
    seen = [tp for tps_ in result.values() for tp in tps_]
    assert len(seen) == len(set(seen))
    wanted = {(t, p) for m in subs for t in subs[m] for p in range(parts[t])}
    assert set(seen) == wanted
    for member, assigned in result.items():
        assert all(t in subs[member] for t, _ in assigned)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(0, 20), st.sampled_from(["roundrobin", "sticky"]))
def test_uniform_subscriptions_are_balanced_within_one(members, partitions, name):
    subs = {f"m{i}": ["t"] for i in range(members)}
    result = ASSIGNORS[name](subs, {"t": partitions}, {})
    sizes = [len(v) for v in result.values()]
    assert max(sizes) - min(sizes) <= 1
