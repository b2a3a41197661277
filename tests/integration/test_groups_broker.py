"""Consumer groups against the real broker process: GroupMember over real sockets."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest

from labkit.client.group import GroupMember
from labkit.client.structs import TopicPartition
from labkit.testing import RawClient

# A member loop: heartbeats and polls; prints its fetchable partitions when they change,
# and the time (time.monotonic(): one clock for every process) before each request.
RUNNER = """
import json, sys, time
from labkit.client.group import GroupMember
from labkit.testing import RawClient
bootstrap, group, topic, session_ms = sys.argv[1:5]
m = GroupMember(group, client_id="proc", session_timeout_ms=int(session_ms))
m.subscribe([topic])
c = RawClient(bootstrap)
last = None
while True:
    req = m.next_request()
    if req is not None:
        print(json.dumps({"sending": time.monotonic()}), flush=True)
        try:
            m.on_response(req.token, c.request(req.api, req.header, timeout=2.0)[0])
        except TimeoutError as exc:
            m.on_failure(req.token, exc)
    m.poll()
    now = sorted(m.fetchable())
    if now != last:
        print(json.dumps({"fetchable": now}), flush=True)
        last = now
    time.sleep(min(0.02, m.next_wakeup()))
"""


class ThreadMember:
    """A GroupMember driven by its own thread and socket, as a consumer would."""

    def __init__(self, bootstrap, group, topic, **kw):
        self.m = GroupMember(group, client_id="thread", **kw)
        self.m.subscribe([topic])
        self._bootstrap = bootstrap
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        with RawClient(self._bootstrap) as client:
            while not self._stop.is_set():
                req = self.m.next_request()
                if req is not None:
                    try:
                        self.m.on_response(
                            req.token, client.request(req.api, req.header, timeout=2.0)[0]
                        )
                    except TimeoutError as exc:
                        self.m.on_failure(req.token, exc)
                self.m.poll()
                time.sleep(min(0.02, self.m.next_wakeup()))
            leave = self.m.close()
            if leave:
                client.request("leave_group", leave)

    def stop(self):
        self._stop.set()
        self._thread.join(10)


def create_topic(bootstrap, name, partitions):
    with RawClient(bootstrap) as c:
        header, _ = c.request(
            "create_topics",
            {"topics": [{"name": name, "num_partitions": partitions, "replication_factor": 1}]},
        )
    assert header["topics"][0]["error"] == 0, header


def wait_for(condition, timeout=15.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def everything(topic, n):
    return {TopicPartition(topic, p) for p in range(n)}


def test_three_members_split_six_partitions_and_take_over_on_leave(shared_broker, unique_topic):
    create_topic(shared_broker.bootstrap, unique_topic, 6)
    members = [ThreadMember(shared_broker.bootstrap, "split", unique_topic) for _ in range(3)]
    try:
        overlaps = []

        def split_evenly():
            sets = [m.m.fetchable() for m in members]
            if sum(len(s) for s in sets) != len(set().union(*sets)):
                overlaps.append(sets)
            return [len(s) for s in sets] == [2, 2, 2] and set().union(*sets) == everything(
                unique_topic, 6
            )

        wait_for(split_evenly, what="an even split")
        members.pop().stop()  # a clean close: leave_group
        wait_for(
            lambda: split_evenly() or [len(m.m.fetchable()) for m in members] == [3, 3],
            what="the take-over",
        )
        assert not overlaps
    finally:
        for m in members:
            m.stop()


def test_a_killed_member_is_replaced_within_its_session_timeout(shared_broker, unique_topic):
    create_topic(shared_broker.bootstrap, unique_topic, 6)
    proc = subprocess.Popen(
        [sys.executable, "-c", RUNNER, shared_broker.bootstrap, "kill", unique_topic, "1500"],
        stdout=subprocess.PIPE,
        text=True,
    )
    members = []
    try:
        first = next(line for line in map(json.loads, proc.stdout) if "fetchable" in line)
        assert len(first["fetchable"]) in (0, 6)  # joined alone: everything, or soon
        members = [
            ThreadMember(shared_broker.bootstrap, "kill", unique_topic, session_timeout_ms=1500)
            for _ in range(2)
        ]
        wait_for(lambda: [len(m.m.fetchable()) for m in members] == [2, 2], what="even split")
        proc.kill()
        proc.wait()
        killed_at = time.monotonic()
        # the broker heard from the killed member last no sooner than it last sent
        last_sent = max(line.get("sending", 0) for line in map(json.loads, proc.stdout))
        wait_for(
            lambda: set().union(*(m.m.fetchable() for m in members)) == everything(unique_topic, 6),
            timeout=1.5 + 8,
            what="the take-over",
        )
        taken_over = time.monotonic()
        # not a speed test: it happens after the session timeout, not before, not never
        assert taken_over - last_sent >= 1.5, "taken over before the session timed out"
        assert taken_over - killed_at < 1.5 + 8
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        for m in members:
            m.stop()


def test_new_partitions_are_assigned(shared_broker, unique_topic):
    create_topic(shared_broker.bootstrap, unique_topic, 2)
    a = ThreadMember(shared_broker.bootstrap, "grow", unique_topic)
    try:
        wait_for(lambda: a.m.fetchable() == everything(unique_topic, 2), what="two partitions")
        with RawClient(shared_broker.bootstrap) as c:
            assert c.request("create_partitions", {"topics": {unique_topic: 4}})[0]["error"] == 0
        wait_for(lambda: a.m.fetchable() == everything(unique_topic, 4), what="four partitions")
    finally:
        a.stop()


def test_committed_offsets_survive_kill_9_of_the_broker(broker):
    create_topic(broker.bootstrap, "ledger", 2)
    with RawClient(broker.bootstrap) as c:
        join = c.request("join_group", {"group_id": "durable", "topics": ["ledger"]})[0]
        commit = {
            "group_id": "durable",
            "member_id": join["member_id"],
            "generation": join["generation"],
            "offsets": [["ledger", 0, 17, "checkpoint-17"], ["ledger", 1, 3, ""]],
        }
        assert c.request("offset_commit", commit)[0] == {"error": 0}
    broker.kill()
    broker.start()
    with RawClient(broker.bootstrap) as c:
        fetched = c.request("offset_fetch", {"group_id": "durable", "partitions": None})[0]
        assert [row[:4] for row in fetched["partitions"]] == [
            ["ledger", 0, 17, "checkpoint-17"],
            ["ledger", 1, 3, ""],
        ]
        # the member did not survive the restart: its commits are fenced now
        stale = c.request("offset_commit", commit)[0]
        assert stale["error"] == 25


@pytest.mark.parametrize("api", ["join_group", "heartbeat", "offset_commit", "describe_groups"])
def test_malformed_group_requests_get_an_error_not_a_crash(shared_broker, api):
    with RawClient(shared_broker.bootstrap) as c:
        header, _ = c.request(api, {"group_id": 5, "topics": "x", "group_ids": {}})
        assert header["error"] != 0
        assert header["message"]
        assert c.request("api_versions", {})[0]["error"] == 0
