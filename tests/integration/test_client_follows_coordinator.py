"""labkit's own KafkaConsumer (ZeroMQ) follows its group's coordinator: a real ZooKeeper,
three real labkit brokers (setup: test_client_leaders.py, helpers: cluster_helpers.py).

The consumer bootstraps from a broker that is NOT the group's coordinator (the leader of
its ``__consumer_offsets`` partition), joins, commits and reads its committed offsets
back; then the coordinator's broker is killed with SIGKILL, and the consumer, kept
running, rejoins at the new coordinator, goes on from its committed offset (no record
skipped; what it read but could not commit before the rejoin is read again from the
commit, at least once, as with Kafka) and commits there.
"""

from __future__ import annotations

import itertools
import time

import pytest

from labkit.client import KafkaConsumer, KafkaProducer, TopicPartition
from labkit.errors import CommitFailedError
from tests.integration.cluster_helpers import wait_for, zk_client
from tests.integration.test_client_leaders import cluster, create  # noqa: F401 (fixture)
from tests.integration.test_offsets_failover import find_coordinator, offsets_state

pytestmark = pytest.mark.slow  # the kill waits out a 4 s ZooKeeper session

TOPIC = "coordinator-followed"
GROUP = "follows-its-coordinator"
RECORDS = 30


def read(consumer, count: int, timeout: float = 60) -> list:
    got: list = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500, max_records=count - len(got)).values():
            got.extend(records)
    return got


def test_consumer_follows_its_coordinator_through_a_kill_9(zookeeper, cluster):  # noqa: F811
    create(cluster[1], TOPIC)
    with zk_client(zookeeper) as zk:
        answer = wait_for(
            "a coordinator for the group",
            lambda: (a := find_coordinator(cluster[1], GROUP)).get("error") == 0 and a,
            timeout=30,
        )
        coordinator = answer["node_id"]
        bootstrap_id = next(i for i in cluster if i != coordinator)
        bootstrap = cluster[bootstrap_id].bootstrap
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        for i in range(RECORDS):
            producer.send(TOPIC, value=b"%d" % i, partition=0)
        producer.flush(timeout=30)
        producer.close()

        consumer = KafkaConsumer(
            TOPIC,
            bootstrap_servers=bootstrap,
            group_id=GROUP,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            session_timeout_ms=6000,
            request_timeout_ms=5000,
        )
        try:
            tp = TopicPartition(TOPIC, 0)
            first = read(consumer, 10)
            assert [r.offset for r in first] == list(range(10))
            consumer.commit()  # the bootstrap broker would answer NOT_COORDINATOR (16)
            assert consumer.committed(tp) == 10

            cluster[coordinator].kill()
            killed_at = time.monotonic()
            wait_for(
                "a new coordinator",
                lambda: offsets_state(zk, GROUP).get("leader") not in (None, -1, coordinator),
                timeout=30,
            )
            new = offsets_state(zk, GROUP)["leader"]
            # as an at-least-once application does: commit after each batch; a commit
            # refused because the group moved (membership is not replicated) is followed
            # by a rejoin at the new coordinator and a restart from the committed offset
            batches: list[list[int]] = []
            deadline = time.monotonic() + 90
            while consumer.committed(tp) != RECORDS and time.monotonic() < deadline:
                batch = [r.offset for rs in consumer.poll(timeout_ms=500).values() for r in rs]
                if not batch:
                    continue
                batches.append(batch)
                try:
                    consumer.commit()
                except CommitFailedError:
                    batches.append(["refused"])
            assert consumer.committed(tp) == RECORDS, batches
            read_after = [o for batch in batches for o in batch if o != "refused"]
            assert set(read_after) == set(range(10, RECORDS)), "none skipped"
            assert min(read_after) == 10, "from its committed offset on"
            for before, after in itertools.pairwise(batches):
                if before == ["refused"]:
                    assert after[0] == 10, f"after the rejoin, from the commit: {batches}"
            moved = time.monotonic() - killed_at
            print(
                f"\nkill -9 of coordinator {coordinator} -> consumer committed at {new} "
                f"{moved:.2f} s later"
            )
            assert find_coordinator(cluster[bootstrap_id], GROUP)["node_id"] == new
        finally:
            consumer.close()
