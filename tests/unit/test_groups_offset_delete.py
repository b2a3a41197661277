"""OffsetDelete (Kafka's API 47; labkit's ``offset_delete``) without sockets: the
GroupService answers as Kafka's coordinator does, and the offsets store keeps the
deletion durably (a ``"d"`` record in offsets.log)."""

from __future__ import annotations

import base64

import pytest

from labkit.broker.classic_api import handle_classic
from labkit.broker.group_api import GroupService
from labkit.broker.offsets import OffsetStore
from labkit.kafka.consumer_protocol import encode_subscription
from labkit.testing import FakeClock

SUBSCRIBED = 86  # GROUP_SUBSCRIBED_TO_TOPIC
NOT_FOUND = 69  # GROUP_ID_NOT_FOUND


@pytest.fixture
def clock():
    return FakeClock()


def make(tmp_path, clock) -> GroupService:
    return GroupService(tmp_path, clock, {"t": 2, "u": 2}.get, lambda t, p: 10)


@pytest.fixture
def svc(tmp_path, clock):
    service = make(tmp_path, clock)
    yield service
    service.close()


def commit(svc, group, offsets):
    header = {"group_id": group, "member_id": "", "generation": -1, "offsets": offsets}
    assert svc.handle("offset_commit", header) == {"error": 0}


def fetched(svc, group) -> dict:
    rows = svc.handle("offset_fetch", {"group_id": group, "partitions": None})["partitions"]
    return {(t, p): o for t, p, o, *_ in rows}


def delete(svc, group, partitions) -> dict:
    return svc.handle("offset_delete", {"group_id": group, "partitions": partitions})


def test_an_unknown_group_is_group_id_not_found(svc):
    answer = delete(svc, "nobody", [["t", 0]])
    assert answer["error"] == NOT_FOUND
    assert "nobody" in answer["message"]


def test_offsets_of_an_empty_group_are_deleted_durably(tmp_path, clock, svc):
    commit(svc, "g", [["t", 0, 5, ""], ["t", 1, 6, ""], ["u", 0, 7, ""]])
    answer = delete(svc, "g", [["t", 0], ["u", 1]])  # u-1 had no offset: still no error
    assert answer == {"error": 0, "partitions": [["t", 0, 0, None], ["u", 1, 0, None]]}
    assert fetched(svc, "g") == {("t", 1): 6, ("u", 0): 7}
    svc.close()
    again = make(tmp_path, clock)  # replays offsets.log
    try:
        assert fetched(again, "g") == {("t", 1): 6, ("u", 0): 7}
    finally:
        again.close()


def test_a_group_left_with_no_offsets_is_gone(svc):
    commit(svc, "g", [["t", 0, 5, ""]])
    assert delete(svc, "g", [["t", 0]])["error"] == 0
    assert svc.handle("list_groups", {})["groups"] == []
    assert delete(svc, "g", [["t", 0]])["error"] == NOT_FOUND


def test_a_topic_a_labkit_member_subscribes_to_is_refused(svc):
    commit(svc, "g", [["t", 0, 5, ""], ["u", 0, 7, ""]])
    joined = svc.handle("join_group", {"group_id": "g", "member_id": "", "topics": ["t"]})
    assert joined["error"] == 0, joined
    answer = delete(svc, "g", [["t", 0], ["u", 0]])
    assert answer["error"] == 0
    (t0, u0) = answer["partitions"]
    assert t0[:3] == ["t", 0, SUBSCRIBED]
    assert "subscribed" in t0[3]
    assert u0 == ["u", 0, 0, None]
    assert fetched(svc, "g") == {("t", 0): 5}


def test_a_topic_a_kafka_consumer_subscribes_to_is_refused(svc):
    commit(svc, "k", [["t", 0, 5, ""], ["u", 0, 7, ""]])
    kafka_join = {
        "group_id": "k",
        "member_id": "",
        "session_timeout_ms": 10_000,
        "protocol_type": "consumer",
        "protocols": [["range", base64.b64encode(encode_subscription(["t"])).decode()]],
    }
    ((_, answer),) = handle_classic(svc, "w", "classic_join", kafka_join)
    assert answer["error"] == 0, answer
    answer = delete(svc, "k", [["t", 1], ["u", 0]])
    assert [row[2] for row in answer["partitions"]] == [SUBSCRIBED, 0]
    assert fetched(svc, "k") == {("t", 0): 5}


@pytest.mark.parametrize(
    "header",
    [
        {"group_id": "g"},
        {"group_id": "g", "partitions": [["t"]]},
        {"group_id": "g", "partitions": [["t", "0"]]},
        {"group_id": "g", "partitions": [[0, 0]]},
        {"group_id": "g", "partitions": [["t", True]]},
        {"group_id": "", "partitions": []},
    ],
)
def test_malformed_requests_say_what_is_wrong(svc, header):
    commit(svc, "g", [["t", 0, 5, ""]])
    answer = svc.handle("offset_delete", header)
    assert answer["error"] in (42, 24), answer  # INVALID_REQUEST, INVALID_GROUP_ID
    assert answer["message"]
    assert fetched(svc, "g") == {("t", 0): 5}


def test_the_store_replays_and_compacts_deletions(tmp_path, clock):
    store = OffsetStore(tmp_path, clock)
    store.commit("g", [("t", 0, 1, ""), ("t", 1, 2, "")])
    assert store.delete_offsets("g", [("t", 0), ("x", 9)]) == [("t", 0)]
    assert store.delete_offsets("g", [("t", 0)]) == []  # nothing left to write
    store.close()
    reopened = OffsetStore(tmp_path, clock)  # 2 records, 1 live group: compacted on open
    try:
        assert reopened.fetch("g") == {("t", 1): store.fetch("g")[("t", 1)]}
    finally:
        reopened.close()
    compacted = OffsetStore(tmp_path, clock)
    try:
        assert list(compacted.fetch("g")) == [("t", 1)]
    finally:
        compacted.close()
