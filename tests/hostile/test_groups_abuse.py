"""Hostile clients against the consumer-group APIs of a real broker (issue 11, items 7, 10, 12).

Each test sends, over a raw DEALER socket, what a runaway script or a curious student
could send, and checks that the broker refuses it with a clear error while a
well-behaved client keeps getting prompt answers. Bounds on time are generous
(seconds): the shared test machine is slow, and the point is "not starved".
"""

from __future__ import annotations

import time

import pytest

from labkit.testing import BrokerProcess, RawClient

SUBSCRIPTION_LIMIT = 1000  # labkit.broker.group_api.MAX_SUBSCRIBED_TOPICS


def call(client: RawClient, api: str, header: dict, timeout: float = 30.0) -> dict:
    return client.request(api, header, timeout=timeout)[0]


def send_raw_header(client: RawClient, api: str, header: bytes, timeout: float = 30.0) -> dict:
    """Send a header frame exactly as given (bytes the client library would never build)."""
    rid = client.new_id()
    client.send_raw([b"LK1", rid, api.encode("ascii"), header])
    return client.wait_for(rid, timeout)[0]


def join_header(group_id: str, topics: list[str], **extra) -> dict:
    return {
        "group_id": group_id,
        "member_id": "",
        "client_id": "hostile",
        "client_host": "/127.0.0.1",
        "topics": topics,
        "session_timeout_ms": 3_600_000,
        **extra,
    }


def slowest_answer_s(client: RawClient, requests: int = 40) -> float:
    """The slowest of ``requests`` api_versions round trips of a well-behaved client."""
    worst = 0.0
    for _ in range(requests):
        start = time.monotonic()
        assert call(client, "api_versions", {})["error"] == 0
        worst = max(worst, time.monotonic() - start)
        time.sleep(0.01)
    return worst


# -- item 7: subscriptions are bounded; the tick does not scan them ------------------------


def test_joins_naming_100k_topics_are_refused_and_others_keep_prompt_answers(broker):
    with (
        RawClient(broker.bootstrap, timeout=30) as evil,
        RawClient(broker.bootstrap, timeout=30) as good,
    ):
        names = [f"{i:x}" for i in range(100_000)]  # short: the header stays under 1 MiB
        for g in range(10):
            answer = call(evil, "join_group", join_header(f"evil{g}", names))
            assert answer["error"] == 42, answer
            assert f"at most {SUBSCRIPTION_LIMIT} topics" in answer["message"]
        at_limit = [f"nx-{i}" for i in range(SUBSCRIPTION_LIMIT)]
        for g in range(10):  # the most a join may name, in ten groups that live an hour
            assert call(evil, "join_group", join_header(f"big{g}", at_limit))["error"] == 0
        time.sleep(0.5)  # several ticks
        assert slowest_answer_s(good) < 1.0
        # the groups still notice a topic that appears among the names they subscribe to
        created = call(good, "create_topics", {"topics": [{"name": "nx-7", "num_partitions": 2}]})
        assert created["topics"][0]["error"] == 0
        described = call(good, "describe_groups", {"group_ids": ["big3"]})["groups"][0]
        assert described["generation"] == 2
        assert described["members"][0]["target"] == [["nx-7", 0], ["nx-7", 1]]


def test_a_subscription_with_an_illegal_topic_name_is_refused(broker):
    with RawClient(broker.bootstrap) as client:
        answer = call(client, "join_group", join_header("g", ["ok", "../escape"]))
        assert answer["error"] == 17
        assert "not legal" in answer["message"]


# -- item 10: identifiers that are not text, huge integers, deep nesting -------------------

LONE = "\\ud800"  # as it appears in JSON text: a lone UTF-16 surrogate escape


def test_a_lone_surrogate_in_any_identifier_is_refused_and_replies_stay_sound(broker):
    """One join with group_id "\\ud800" used to make every later list_groups answer
    -1 "the broker built a bad reply", for every client, until a restart."""
    attempts = [
        ("join_group", f'{{"group_id":"{LONE}","member_id":"","topics":["t"]}}'),
        ("join_group", f'{{"group_id":"g","member_id":"","client_id":"{LONE}","topics":["t"]}}'),
        ("join_group", f'{{"group_id":"g","member_id":"{LONE}","topics":["t"]}}'),
        (
            "join_group",
            f'{{"group_id":"g","member_id":"","group_instance_id":"{LONE}","topics":["t"]}}',
        ),
        ("heartbeat", f'{{"group_id":"g","member_id":"{LONE}","generation":1,"owned":[]}}'),
        (
            "offset_commit",
            f'{{"group_id":"{LONE}","member_id":"","generation":-1,"offsets":[["t",0,1,null]]}}',
        ),
        ("describe_groups", f'{{"group_ids":["{LONE}"]}}'),
        ("delete_groups", f'{{"group_ids":["{LONE}"]}}'),
        ("metadata", f'{{"topics":["t{LONE}"]}}'),
        ("create_topics", f'{{"topics":[{{"name":"t{LONE}","num_partitions":1}}]}}'),
    ]
    with RawClient(broker.bootstrap) as hostile, RawClient(broker.bootstrap) as good:
        for api, header in attempts:
            answer = send_raw_header(hostile, api, header.encode("ascii"))
            assert answer["error"] == 42, (api, answer)
            assert "surrogate" in answer["message"], (api, answer)
        utf8_surrogate = b'{"group_id":"\xed\xa0\x80","member_id":"","topics":["t"]}'
        answer = send_raw_header(hostile, "join_group", utf8_surrogate)
        assert answer["error"] == 42
        assert "UTF-8" in answer["message"]
        assert call(good, "join_group", join_header("fine", ["t"]))["error"] == 0
        listed = call(good, "list_groups", {})
        assert listed["error"] == 0, listed
        assert [g["group_id"] for g in listed["groups"]] == ["fine"]
        described = call(good, "describe_groups", {"group_ids": ["fine"]})["groups"][0]
        assert described["members"][0]["client_id"] == "hostile"


def test_a_huge_integer_or_deep_nesting_gets_invalid_request_not_unknown(broker):
    with RawClient(broker.bootstrap) as hostile, RawClient(broker.bootstrap) as good:
        digits = b"9" * 4000
        for api, header in [
            ("join_group", b'{"group_id":"g","topics":["t"],"max_poll_interval_ms":%s}' % digits),
            ("fetch", b'{"max_wait_ms":%s,"partitions":[["t",0,0,100]]}' % digits),
            (
                "offset_commit",
                b'{"group_id":"g","member_id":"","generation":-1,'
                b'"offsets":[["t",0,%s,null]]}' % digits,
            ),
            ("metadata", b'{"topics":' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
            (
                "join_group",
                b'{"group_id":"g","topics":["t"],"x":' + b'{"a":' * 50_000 + b"1" + b"}" * 50_001,
            ),
        ]:
            answer = send_raw_header(hostile, api, header)
            assert answer["error"] == 42, (api, answer)
            assert "64-bit" in answer["message"] or "nests" in answer["message"], answer
        assert call(good, "api_versions", {})["error"] == 0


# -- item 12: one-shot empty groups are forgotten ------------------------------------------


@pytest.fixture
def quick_expiry_broker(tmp_path):
    with BrokerProcess(
        data_dir=tmp_path / "data", config={"offsets.retention.check.interval.ms": "200"}
    ) as proc:
        yield proc


def test_one_shot_empty_groups_are_forgotten_and_committed_ones_kept(quick_expiry_broker):
    """20,000 groups that join, leave and never commit used to stay forever (+21 MB)."""
    with RawClient(quick_expiry_broker.bootstrap) as client:
        assert (
            call(client, "create_topics", {"topics": [{"name": "t", "num_partitions": 1}]})[
                "topics"
            ][0]["error"]
            == 0
        )
        kept = call(client, "join_group", join_header("kept", ["t"]))
        assert (
            call(
                client,
                "offset_commit",
                {
                    "group_id": "kept",
                    "member_id": kept["member_id"],
                    "generation": 1,
                    "offsets": [["t", 0, 7, None]],
                },
            )["error"]
            == 0
        )
        assert (
            call(client, "leave_group", {"group_id": "kept", "member_id": kept["member_id"]})[
                "error"
            ]
            == 0
        )
        for i in range(300):
            once = call(client, "join_group", join_header(f"once{i}", ["t"]))
            assert (
                call(
                    client, "leave_group", {"group_id": f"once{i}", "member_id": once["member_id"]}
                )["error"]
                == 0
            )
        deadline = time.monotonic() + 10
        groups = None
        while time.monotonic() < deadline:
            groups = [g["group_id"] for g in call(client, "list_groups", {})["groups"]]
            if groups == ["kept"]:
                break
            time.sleep(0.1)
        assert groups == ["kept"]
        fetched = call(client, "offset_fetch", {"group_id": "kept", "partitions": [["t", 0]]})
        assert fetched["partitions"][0][2] == 7


def test_a_join_loop_into_one_group_stops_at_group_max_size(broker):
    """Each join rebalances over every member: 4,000 members made one join cost ~45 ms
    of the broker's only thread."""
    with (
        RawClient(broker.bootstrap, timeout=30) as evil,
        RawClient(broker.bootstrap, timeout=30) as good,
    ):
        for _ in range(1000):  # group.max.size default
            assert call(evil, "join_group", join_header("crowd", ["t"]))["error"] == 0
        refused = call(evil, "join_group", join_header("crowd", ["t"]))
        assert refused["error"] == 81, refused
        assert "group.max.size=1000" in refused["message"]
        assert slowest_answer_s(good) < 1.0
