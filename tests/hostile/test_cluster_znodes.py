"""Junk in ZooKeeper and ZooKeeper itself going away, against cluster mode's kazoo layer
(labkit/cluster/member.py) on a real ZooKeeper: a student's ``zkCli.sh set`` of garbage
into a broker's, a topic's or a partition's znode is logged and skipped, the rest of the
cluster keeps being read and controlled; a ZooKeeper killed with -9 and restarted on its
data keeps the sessions, registrations and controller."""

from __future__ import annotations

import itertools

import pytest

from labkit.cluster import znodes
from labkit.cluster.member import ClusterMember, ClusterSettings
from labkit.cluster.znodes import BrokerInfo
from tests.integration.cluster_helpers import read_json, wait_for, zk_client

_chroots = itertools.count()


@pytest.fixture
def member(zookeeper):
    chroot = f"/hostile-{next(_chroots)}"
    settings = ClusterSettings(1, zookeeper.connect + chroot, 6000)
    running = ClusterMember(settings, BrokerInfo(1, "127.0.0.1", 9001)).start()
    running.chroot = chroot
    try:
        yield running
    finally:
        running.stop()


@pytest.mark.parametrize(
    ("path", "junk"),
    [
        ("/brokers/ids/99", b"\xff\xfe not json"),
        ("/brokers/ids/98", b'{"host": 5, "port": "x"}'),
        ("/brokers/topics/junk", b'{"partitions": {"zero": [1]}}'),
        ("/brokers/topics/junk2", b"[1, 2, 3]"),
        ("/config/topics/good", b"{{{"),
        ("/controller_epoch", b"many"),
    ],
)
def test_junk_znodes_are_skipped_and_the_cluster_still_works(zookeeper, member, path, junk):
    with zk_client(zookeeper) as zk:
        if zk.exists(member.chroot + path):
            zk.set(member.chroot + path, junk)
        else:
            zk.create(member.chroot + path, junk, makepath=True)
        member.create_topic("good", 2, 1, {})
        state_path = member.chroot + znodes.state_path("good", 1)
        wait_for("the good topic's states", lambda: zk.exists(state_path))
        assert read_json(zk, state_path)["leader"] == 1
        snapshot = wait_for(
            "a snapshot with the good topic", lambda: "good" in member.snapshot.topics and member
        ).snapshot
        assert 1 in snapshot.brokers
        assert "junk" not in snapshot.topics
        assert "junk2" not in snapshot.topics


def test_a_junk_partition_state_is_skipped(zookeeper, member):
    member.create_topic("t", 2, 1, {})
    with zk_client(zookeeper) as zk:
        bad = member.chroot + znodes.state_path("t", 0)
        wait_for("the states", lambda: zk.exists(member.chroot + znodes.state_path("t", 1)))
        zk.set(bad, b'{"leader": "me"}')
        wait_for(
            "a snapshot without the junk state",
            lambda: "t" in member.snapshot.topics and 0 not in member.snapshot.topics["t"].states,
        )
        assert member.snapshot.topics["t"].state(1).leader == 1


def test_zookeeper_killed_and_restarted_keeps_sessions(zookeeper, member):
    member.create_topic("before", 1, 1, {})
    zookeeper.kill()
    zookeeper.start()  # same port and data; sessions get a fresh timeout
    with zk_client(zookeeper) as zk:
        wait_for("the registration", lambda: zk.exists(member.chroot + "/brokers/ids/1"))
        assert read_json(zk, member.chroot + "/controller")["brokerid"] == 1
    assert member.is_controller
    member.create_topic("after", 1, 1, {})
    wait_for("the new topic's leader", lambda: member.snapshot.topics.get("after", None))
    with zk_client(zookeeper) as zk:
        wait_for(
            "the new topic's state",
            lambda: zk.exists(member.chroot + znodes.state_path("after", 0)),
        )
