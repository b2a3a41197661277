"""nb.dashboard() on a real cluster (one ZooKeeper, three broker processes): the brokers,
each partition's leader, replicas and ISR; a broker that stops stays listed as not alive
and its partitions show as under-replicated."""

from __future__ import annotations

import pytest

from labkit import (
    KafkaAdminClient,
    KafkaConsumer,
    KafkaProducer,
    NewTopic,
    OffsetAndMetadata,
    TopicPartition,
)
from labkit.nb.dashboard_widget import Dashboard
from tests.integration.cluster_helpers import running_cluster, wait_for

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def cluster(zookeeper):
    with running_cluster(zookeeper) as brokers:
        yield brokers


def _refreshed(dash: Dashboard, check):
    def once():
        view = dash.refresh()
        return view if view.error is None and check(view) else None

    return once


def write_and_commit(bootstrap: str, topic: str) -> None:
    """4, 5, 6 records in partitions 0, 1, 2; group 'dash-lag' commits 1, 2, 3 there."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for partition in range(3):
            for i in range(4 + partition):
                producer.send(topic, f"r{i}".encode(), partition=partition)
        producer.flush(60)
    finally:
        producer.close()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id="dash-lag")
    try:
        consumer.commit(
            {TopicPartition(topic, p): OffsetAndMetadata(p + 1, "", -1) for p in range(3)}
        )
    finally:
        consumer.close()


def test_dashboard_shows_brokers_leaders_isr_and_a_stopped_broker(cluster, unique_topic):
    admin = KafkaAdminClient(bootstrap_servers=cluster[1].bootstrap)
    try:
        admin.create_topics([NewTopic(unique_topic, 3, 3)])
    finally:
        admin.close()
    dash = Dashboard(cluster[1].bootstrap, display=False, start=False, topics=[unique_topic])
    try:
        view = wait_for(
            "three partitions with three in-sync replicas",
            _refreshed(
                dash,
                lambda v: (
                    [t.name for t in v.topics] == [unique_topic]
                    and len(v.topics[0].partitions) == 3
                    and all(p.state and len(p.state.isr) == 3 for p in v.topics[0].partitions)
                ),
            ),
            timeout=30,
            interval=0.3,
        )
        ports = {i: b.port for i, b in cluster.items()}
        assert [(b.node_id, b.address, b.alive) for b in view.brokers] == [
            (i, f"127.0.0.1:{ports[i]}", True) for i in (1, 2, 3)
        ]
        assert sum(b.controller for b in view.brokers) == 1
        for p in view.topics[0].partitions:
            assert sorted(p.state.replicas) == [1, 2, 3]
            assert p.state.leader in (1, 2, 3)
        assert sorted(p.state.leader for p in view.topics[0].partitions) == [1, 2, 3]
        assert view.under_replicated == []
        # broker 1 (asked) leads one partition; the others' offsets come from their leaders
        assert [(p.start, p.end) for p in view.topics[0].partitions] == [(0, 0)] * 3
        write_and_commit(cluster[2].bootstrap, unique_topic)
        view = wait_for(
            "the records' log ends and the group's lag",
            _refreshed(dash, lambda v: [p.end for p in v.topics[0].partitions] == [4, 5, 6]),
            timeout=30,
            interval=0.3,
        )
        (group,) = [g for g in view.groups if g.group == "dash-lag"]
        assert [(r.partition, r.committed, r.end, r.lag) for r in group.lags] == [
            (0, 1, 4, 3),
            (1, 2, 5, 3),
            (2, 3, 6, 3),
        ]
        assert "under-replicated partitions: 0" in dash.text()

        cluster[3].close()  # a clean stop: it leaves ZooKeeper and the ISRs at once
        view = wait_for(
            "broker 3 not alive and its partitions under-replicated",
            _refreshed(dash, lambda v: len(v.under_replicated) == 3),
            timeout=60,
            interval=0.5,
        )
        assert [(b.node_id, b.alive) for b in view.brokers] == [(1, True), (2, True), (3, False)]
        assert view.brokers[2].address == f"127.0.0.1:{ports[3]}"  # remembered
        for p in view.topics[0].partitions:
            assert 3 not in p.state.isr
            assert p.state.leader in (1, 2)
        html = dash.html()
        assert "under-replicated partitions: 3" in html
        assert "✘ no" in html
    finally:
        dash.stop()
