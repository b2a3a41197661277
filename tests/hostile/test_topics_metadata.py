"""Issue 11 item 9: thousands of topics in one request must not make the broker deaf.

A hostile (or just enthusiastic) client creates 2,000 topics in one create_topics
request, or names 2,000 new topics in one auto-creating metadata request, while a
well-behaved client keeps asking api_versions. Before the fix every topic rewrote and
fsynced topics.json on the loop thread (O(n^2)) and opened its partition there too:
the well-behaved client got no answer for many seconds. Now the loop only records
the change; the flusher thread writes topics.json once per round and creates the
partitions, and the create_topics reply comes only once it is all durable.
"""

from __future__ import annotations

import json
import threading
import time

from labkit.protocol.records import encode_batch
from labkit.testing import RawClient

MANY = 2_000
DEAF_BOUND_S = 2.0  # generous: a healthy broker answers api_versions in milliseconds


class Prober(threading.Thread):
    """A well-behaved client: api_versions in a loop, recording each answer's latency."""

    def __init__(self, bootstrap: str):
        super().__init__(daemon=True)
        self.bootstrap = bootstrap
        self.latencies: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with RawClient(self.bootstrap, timeout=300) as client:
            while not self.stop.is_set():
                start = time.monotonic()
                try:
                    client.request("api_versions", {})
                except TimeoutError:
                    self.latencies.append(float("inf"))  # never answered: deaf
                    return
                self.latencies.append(time.monotonic() - start)
                time.sleep(0.01)


def while_probed(bootstrap: str, attack) -> tuple[object, list[float]]:
    prober = Prober(bootstrap)
    prober.start()
    while not prober.latencies:
        time.sleep(0.01)
    try:
        result = attack()
    finally:
        prober.stop.set()
        prober.join(30)
    return result, prober.latencies


def test_creating_2000_topics_in_one_request_leaves_others_answered(broker):
    names = [f"many-{i:04d}" for i in range(MANY)]

    def attack():
        with RawClient(broker.bootstrap, timeout=300) as hostile:
            start = time.monotonic()
            header, _ = hostile.request(
                "create_topics",
                {
                    "topics": [
                        {"name": n, "num_partitions": 1, "replication_factor": 1} for n in names
                    ]
                },
            )
            return header, time.monotonic() - start

    (header, took), latencies = while_probed(broker.bootstrap, attack)
    assert [t["error"] for t in header["topics"]] == [0] * MANY, header["topics"][:3]
    assert max(latencies) < DEAF_BOUND_S, (
        f"a well-behaved client waited {max(latencies):.2f} s while {MANY} topics were "
        f"created (took {took:.1f} s)"
    )
    # the reply promised durability: every topic is in topics.json and usable
    stored = json.loads((broker.data_dir / "topics.json").read_text())["topics"]
    assert set(names) <= set(stored)
    with RawClient(broker.bootstrap) as client:
        meta, _ = client.request("metadata", {"topics": [names[0], names[-1]]})
        assert [t["error"] for t in meta["topics"]] == [0, 0]


def test_auto_creating_2000_topics_by_metadata_leaves_others_answered(broker):
    names = [f"auto-{i:04d}" for i in range(MANY)]

    def attack():
        with RawClient(broker.bootstrap, timeout=300) as hostile:
            header, _ = hostile.request("metadata", {"topics": names, "allow_auto_create": True})
            return header

    header, latencies = while_probed(broker.bootstrap, attack)
    assert max(latencies) < DEAF_BOUND_S, f"a well-behaved client waited {max(latencies):.2f} s"
    # answered once the topics exist, as if they had always been there
    assert [t["error"] for t in header["topics"]] == [0] * MANY
    assert all(len(t["partitions"]) == 1 for t in header["topics"])
    stored = json.loads((broker.data_dir / "topics.json").read_text())["topics"]
    assert set(names) <= set(stored)


def test_a_produce_to_a_new_topic_waits_for_it_and_keeps_its_order(broker):
    # a raw produce to a topic that does not exist yet: auto-created, appended once it exists
    with RawClient(broker.bootstrap) as client:
        rids = [
            client.send(
                "produce",
                {"acks": 1, "targets": [["fresh", 0]]},
                [encode_batch([1_700_000_000_000], None, [b"%d" % i])],
            )
            for i in range(20)
        ]
        offsets = [client.wait_for(rid)[0]["results"][0][:2] for rid in rids]
    assert offsets == [[i, 0] for i in range(20)]
