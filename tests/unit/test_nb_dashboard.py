"""nb.dashboard's collector and refresh thread over the client API's shapes.

``FakeAdmin``/``FakeConsumer`` answer with what kafka-python's KafkaAdminClient and
KafkaConsumer return; the demo-notebook integration test runs the same code
against the real broker and client.
"""

from __future__ import annotations

import threading
import time
from collections import namedtuple

import pytest

from labkit.errors import NoBrokersAvailable, UnsupportedVersionError
from labkit.nb.dashboard_widget import Dashboard, collect
from labkit.nb.live import stop_all
from labkit.testing import FakeClock

TopicPartition = namedtuple("TopicPartition", "topic partition")
OffsetAndMetadata = namedtuple("OffsetAndMetadata", "offset metadata")


class FakeBroker:
    def __init__(self):
        self.topics = {"tx": [0, 10, 20], "logs": [5], "__consumer_offsets": [0]}  # ends
        self.starts = {}
        self.groups = {"fraud": {TopicPartition("tx", 0): OffsetAndMetadata(4, "")}}
        self.groups_supported = True
        self.up = True
        self.opened = 0
        self.closed = 0


class FakeAdmin:
    def __init__(self, broker):
        self.b = broker

    def _check(self):
        if not self.b.up:
            raise NoBrokersAvailable("no broker at localhost:9092")

    def list_topics(self):
        self._check()
        return list(self.b.topics)

    def describe_topics(self, topics=None):
        self._check()
        return [
            {
                "error_code": 0,
                "topic": t,
                "is_internal": t.startswith("__"),
                "partitions": [
                    {
                        "error_code": 0,
                        "partition": p,
                        "leader": 0,
                        "replicas": [0],
                        "isr": [0],
                        "offline_replicas": [],
                    }
                    for p in range(len(self.b.topics[t]))
                ],
            }
            for t in topics
        ]

    def list_consumer_groups(self):
        if not self.b.groups_supported:
            raise UnsupportedVersionError("consumer groups are not supported by this broker yet")
        return [(g, "consumer") for g in self.b.groups]

    def list_consumer_group_offsets(self, group_id):
        return dict(self.b.groups[group_id])

    def close(self):
        self.b.closed += 1


class FakeConsumer:
    def __init__(self, broker):
        self.b = broker

    def partitions_for_topic(self, topic):
        return set(range(len(self.b.topics[topic])))

    def beginning_offsets(self, partitions):
        return {tp: self.b.starts.get((tp.topic, tp.partition), 0) for tp in partitions}

    def end_offsets(self, partitions):
        if not self.b.up:
            raise NoBrokersAvailable()
        return {tp: self.b.topics[tp.topic][tp.partition] for tp in partitions}

    def close(self):
        self.b.closed += 1


def factory(broker):
    def make(servers):
        if not broker.up:
            raise NoBrokersAvailable("no broker at " + ",".join(servers))
        broker.opened += 1
        return FakeAdmin(broker), FakeConsumer(broker)

    return make


def test_collect_reads_offsets_and_committed_offsets_and_hides_internal_topics():
    b = FakeBroker()
    b.starts[("tx", 1)] = 3
    s = collect(FakeAdmin(b), FakeConsumer(b), at=1.0)
    assert s.offsets == {
        ("logs", 0): (0, 5),
        ("tx", 0): (0, 0),
        ("tx", 1): (3, 10),
        ("tx", 2): (0, 20),
    }
    assert s.groups == {"fraud": {("tx", 0): 4}}
    assert s.error is None
    everything = collect(FakeAdmin(b), FakeConsumer(b), at=1.0, include_internal=True)
    assert ("__consumer_offsets", 0) in everything.offsets
    only = collect(FakeAdmin(b), FakeConsumer(b), at=1.0, topics=["logs"])
    assert list(only.offsets) == [("logs", 0)]


def test_collect_reports_a_group_or_topic_api_error_instead_of_hiding_it():
    # the broker always has groups: an error from it is news, not a missing feature
    b = FakeBroker()
    b.groups_supported = False
    with pytest.raises(UnsupportedVersionError):
        collect(FakeAdmin(b), FakeConsumer(b), at=1.0)

    class BrokenAdmin(FakeAdmin):
        def describe_topics(self, topics=None):
            raise NotImplementedError("a bug, not an old broker")

    with pytest.raises(NotImplementedError):
        collect(BrokenAdmin(FakeBroker()), FakeConsumer(FakeBroker()), at=1.0)


def test_uncommitted_group_partition_reads_as_no_commit():
    b = FakeBroker()
    b.groups = {"g": {TopicPartition("tx", 1): OffsetAndMetadata(-1, "")}}
    s = collect(FakeAdmin(b), FakeConsumer(b), at=0.0)
    assert s.groups == {"g": {("tx", 1): None}}


def test_refresh_computes_rates_from_the_clock_and_shows_them():
    b = FakeBroker()
    clock = FakeClock()
    d = Dashboard(refresh_s=1, start=False, display=False, client_factory=factory(b), clock=clock)
    d.refresh()
    b.topics["tx"] = [0, 40, 20]
    clock.advance(2)
    v = d.refresh()
    assert v.topic("tx").rate == 15.0
    assert v.group("fraud").lags[0].lag == 0
    assert "15.0" in d.html()
    assert "fraud" in d.html()
    assert "tx" in d.text()
    assert b.opened == 1  # the clients are kept between rounds
    d.stop()
    assert b.closed == 2


def test_broker_down_shows_the_fix_and_reconnects_when_it_is_back():
    b = FakeBroker()
    b.up = False
    d = Dashboard(start=False, display=False, client_factory=factory(b), clock=FakeClock())
    v = d.refresh()
    assert "labkit broker" in v.error
    assert "doctor" in v.error
    assert "cannot reach the broker" in d.html()
    b.up = True
    v = d.refresh()
    assert v.error is None
    assert v.topic("tx").records == 30
    b.up = False  # goes away mid-session: clients are closed and reopened later
    assert d.refresh().error is not None
    assert b.closed == 2
    b.up = True
    assert d.refresh().error is None
    assert b.opened == 2
    d.stop()


def test_the_thread_refreshes_until_stopped_and_leaves_nothing_behind():
    b = FakeBroker()
    d = Dashboard(refresh_s=0.02, display=False, client_factory=factory(b))
    deadline = time.monotonic() + 5
    while d.rounds < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert d.rounds >= 3
    assert d.running
    d.stop()
    assert not d.running
    assert not [t for t in threading.enumerate() if t.name == "labkit-dashboard"]
    assert b.closed == 2
    with pytest.raises(Exception, match="cannot restart"):
        d.start()


def test_stop_button_and_stop_all():
    ipywidgets = pytest.importorskip("ipywidgets")
    b = FakeBroker()
    d = Dashboard(refresh_s=0.05, display=False, client_factory=factory(b))
    body, button = d.widget.children
    assert isinstance(button, ipywidgets.Button)
    button.click()
    assert not d.running
    assert button.disabled
    assert "stopped" in body.value
    d2 = Dashboard(refresh_s=0.05, display=False, client_factory=factory(b))
    assert stop_all() >= 1
    assert not d2.running


def test_bad_refresh_is_rejected():
    with pytest.raises(Exception, match="refresh_s"):
        Dashboard(refresh_s=0, start=False, display=False)
