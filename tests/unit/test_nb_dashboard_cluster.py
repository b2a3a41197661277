"""nb.dashboard()'s cluster view without sockets: brokers (alive or not, the controller),
each partition's leader, replicas and ISR, the under-replicated partitions; and the
single broker's view unchanged."""

from __future__ import annotations

from collections import namedtuple

import pytest

from labkit.errors import NotLeaderForPartitionError
from labkit.nb._dashcluster import BrokerInfo, ReplicaState
from labkit.nb._dashmodel import DashboardModel, Snapshot, compute_view, render_html, render_text
from labkit.nb.dashboard_widget import collect

TP = namedtuple("TopicPartition", "topic partition")

THREE = [
    BrokerInfo(1, "localhost", 9092),
    BrokerInfo(2, "localhost", 9093),
    BrokerInfo(3, "h3", 9094),
]
FULL = {
    ("tx", 0): ReplicaState(1, (1, 2, 3), (1, 2, 3)),
    ("tx", 1): ReplicaState(2, (2, 3, 1), (2, 3, 1)),
    ("tx", 2): ReplicaState(3, (3, 1, 2), (3, 1, 2)),
}
OFFSETS = {("tx", 0): (0, 10), ("tx", 1): (0, 20), ("tx", 2): (5, 30)}


def snap(at=0.0, brokers=THREE, replicas=FULL, controller=2, offsets=OFFSETS):
    return Snapshot(
        at=at, offsets=offsets, brokers=brokers, controller_id=controller, replicas=replicas
    )


def test_the_single_broker_view_is_unchanged():
    single = {("tx", 0): ReplicaState(0, (0,), (0,))}
    plain = Snapshot(at=0.0, offsets={("tx", 0): (0, 10)})
    asked = Snapshot(
        at=0.0,
        offsets={("tx", 0): (0, 10)},
        brokers=[BrokerInfo(0, "localhost", 9092)],
        controller_id=0,
        replicas=single,
    )
    view = compute_view(None, asked)
    assert view.brokers is None
    assert view.topic("tx").partitions[0].state is None
    assert render_html(view) == render_html(compute_view(None, plain))
    assert render_text(view) == render_text(compute_view(None, plain))
    assert "ISR" not in render_text(view)


def test_a_cluster_shows_brokers_leaders_replicas_and_isr():
    view = compute_view(None, snap())
    assert [(b.node_id, b.address, b.alive, b.controller, b.leads) for b in view.brokers] == [
        (1, "localhost:9092", True, False, 1),
        (2, "localhost:9093", True, True, 1),
        (3, "h3:9094", True, False, 1),
    ]
    assert [p.state.leader for p in view.topic("tx").partitions] == [1, 2, 3]
    assert view.under_replicated == []
    text = render_text(view)
    assert "under-replicated partitions: 0" in text
    row = next(line for line in text.splitlines() if line.startswith("tx ") and " 20 " in line)
    assert row.split() == ["tx", "1", "0", "20", "20", "–", "2", "2,3,1", "2,3,1"]
    html = render_html(view)
    for needle in ("brokers", "host:port", "h3:9094", "★", "leader", "replicas", "ISR", "3,1,2"):
        assert needle in html, needle


def test_a_dead_broker_stays_listed_not_alive_and_its_partitions_are_under_replicated():
    model = DashboardModel()
    model.observe(snap(0.0))
    after = {
        ("tx", 0): ReplicaState(1, (1, 2, 3), (1, 2)),
        ("tx", 1): ReplicaState(2, (2, 3, 1), (2, 1)),
        ("tx", 2): ReplicaState(1, (3, 1, 2), (1, 2)),
    }
    view = model.observe(snap(1.0, brokers=THREE[:2], replicas=after))
    assert [(b.node_id, b.address, b.alive, b.leads) for b in view.brokers] == [
        (1, "localhost:9092", True, 2),
        (2, "localhost:9093", True, 1),
        (3, "h3:9094", False, 0),  # its last address
    ]
    assert [(t, p) for t, p, _s in view.under_replicated] == [("tx", 0), ("tx", 1), ("tx", 2)]
    text = render_text(view)
    assert "under-replicated partitions: 3: tx-0 (isr 1,2 of 1,2,3)" in text
    assert "NO" in text
    html = render_html(view)
    assert "✘ no" in html
    assert "under-replicated partitions: 3" in html
    assert "tx-2 (ISR 1,2 of 3,1,2)" in html


def test_a_leaderless_partition_and_a_never_seen_broker():
    replicas = {("tx", 0): ReplicaState(-1, (1, 4), (4,))}
    view = compute_view(None, snap(brokers=THREE[:1], replicas=replicas, offsets={}))
    assert [(b.node_id, b.address, b.alive) for b in view.brokers] == [
        (1, "localhost:9092", True),
        (4, "?", False),
    ]
    p = view.topic("tx").partitions[0]
    assert (p.start, p.end, p.state.offline) == (None, None, True)
    assert [(t, n) for t, n, _s in view.under_replicated] == [("tx", 0)]
    text = render_text(view)
    assert "none" in text
    assert "no leader" in text
    assert "no leader" in render_html(view)


def test_names_and_addresses_are_escaped():
    brokers = [BrokerInfo(1, "<b>x</b>", 1), BrokerInfo(2, "y", 2)]
    replicas = {("<i>t", 0): ReplicaState(1, (1, 2), (1,))}
    html = render_html(compute_view(None, snap(brokers=brokers, replicas=replicas, offsets={})))
    assert "<b>x</b>" not in html
    assert "&lt;b&gt;x" in html
    assert "<i>t" not in html


class ClusterAdmin:
    """describe_topics / describe_cluster as labkit's admin client answers them."""

    def __init__(self, brokers):
        self.brokers = brokers

    def list_topics(self):
        return ["tx"]

    def describe_topics(self, topics=None):
        rows = [
            {"partition": p, "leader": s.leader, "replicas": list(s.replicas), "isr": list(s.isr)}
            for (_t, p), s in FULL.items()
        ]
        return [{"topic": "tx", "error_code": 0, "partitions": rows}]

    def describe_cluster(self):
        rows = [{"node_id": b.node_id, "host": b.host, "port": b.port} for b in self.brokers]
        return {"brokers": rows, "controller_id": 2, "cluster_id": "c"}

    def list_consumer_groups(self):
        return []


class OneBrokerConsumer:
    """Partitions whose leader moved while asked (past the client's timeout) fail as a batch."""

    def __init__(self, leads):
        self.leads = leads

    def _check(self, tps):
        for tp in tps:
            if tp.partition not in self.leads:
                raise NotLeaderForPartitionError(f"list_offsets for {tp} failed")

    def beginning_offsets(self, tps):
        self._check(tps)
        return {tp: 0 for tp in tps}

    def end_offsets(self, tps):
        self._check(tps)
        return {tp: 10 * (tp.partition + 1) for tp in tps}


def test_collect_in_a_cluster_keeps_the_offsets_it_can_get_and_the_replicas():
    s = collect(ClusterAdmin(THREE), OneBrokerConsumer({1}), at=0.0)
    assert s.offsets == {("tx", 1): (0, 20)}
    assert s.replicas == FULL
    assert s.controller_id == 2
    assert [b.node_id for b in s.brokers] == [1, 2, 3]
    view = compute_view(None, s)
    assert [(p.partition, p.end) for p in view.topic("tx").partitions] == [
        (0, None),
        (1, 20),
        (2, None),
    ]


def test_collect_on_a_single_broker_still_reports_a_leader_error():
    single = ClusterAdmin([BrokerInfo(0, "localhost", 9092)])
    single.describe_topics = lambda topics=None: [
        {"topic": "tx", "partitions": [{"partition": 0, "leader": 0, "replicas": [0], "isr": [0]}]}
    ]
    with pytest.raises(NotLeaderForPartitionError):
        collect(single, OneBrokerConsumer(set()), at=0.0)


class AskedConsumer(OneBrokerConsumer):
    """Follows leaders (every partition answers) and notes what it was asked."""

    def __init__(self):
        super().__init__({0, 1, 2})
        self.asked = set()

    def _check(self, tps):
        self.asked.update(tp.partition for tp in tps)


def test_collect_in_a_cluster_does_not_ask_the_offsets_of_a_partition_without_a_leader():
    # the client would wait its whole request timeout for a leader that is not coming
    admin = ClusterAdmin(THREE)
    rows = [
        {"partition": 0, "leader": 1, "replicas": [1], "isr": [1]},
        {"partition": 1, "leader": -1, "replicas": [3], "isr": [3]},
    ]
    admin.describe_topics = lambda topics=None: [{"topic": "tx", "partitions": rows}]
    consumer = AskedConsumer()
    s = collect(admin, consumer, at=0.0)
    assert consumer.asked == {0}
    assert s.offsets == {("tx", 0): (0, 10)}
