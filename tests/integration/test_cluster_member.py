"""The kazoo layer (labkit/cluster/member.py) on a real ZooKeeper, without broker
processes: a chroot is created, a stale controller's write is fenced by the controller
epoch, a taken broker id is refused."""

from __future__ import annotations

import itertools

import pytest

from labkit.cluster import znodes
from labkit.cluster.member import ClusterMember, ClusterSettings
from labkit.cluster.znodes import BrokerInfo, PartitionState
from labkit.errors import KafkaConfigurationError
from tests.integration.cluster_helpers import read_json, wait_for, zk_client

_chroots = itertools.count()


@pytest.fixture
def chroot(zookeeper):
    """A fresh chroot per test: its own cluster in the module's ZooKeeper."""
    return f"/member-test-{next(_chroots)}"


def _member(zookeeper, chroot, broker_id=1, session_ms=4000):
    settings = ClusterSettings(broker_id, zookeeper.connect + chroot, session_ms)
    return ClusterMember(settings, BrokerInfo(broker_id, "127.0.0.1", 9000 + broker_id))


def test_a_stale_controller_epoch_fences_the_write_and_the_member_elects_again(zookeeper, chroot):
    member = _member(zookeeper, chroot).start()
    try:
        assert member.is_controller
        assert member.controller_epoch == 1
        member.create_topic("t", 1, 1, {})
        state_path = chroot + znodes.state_path("t", 0)
        with zk_client(zookeeper) as zk:
            wait_for("the partition state", lambda: zk.exists(state_path))
            assert read_json(zk, state_path)["leader"] == 1
            # a newer controller moved the epoch on, and says broker 7 leads with ISR [7, 1]
            zk.set(chroot + znodes.CONTROLLER_EPOCH, b"41")
            zk.set(state_path, znodes.encode_state(PartitionState(7, 5, (7, 1), 41)))
            # broker 7 is not alive: this member decides "1 leads", but its write carries
            # the old epoch's version check and fails; it resigns, is elected again with
            # epoch 42, and then writes the same decision fenced by the new epoch
            state = wait_for(
                "the re-elected controller's write",
                lambda: (s := read_json(zk, state_path))["controller_epoch"] == 42 and s,
            )
            assert state["leader"] == 1
            assert state["leader_epoch"] == 6
            assert state["isr"] == [1]
            assert int(zk.get(chroot + znodes.CONTROLLER_EPOCH)[0]) == 42
            assert member.controller_epoch == 42
    finally:
        member.stop()


def test_a_taken_broker_id_is_refused_after_one_session_timeout(zookeeper, chroot):
    first = _member(zookeeper, chroot).start()
    try:
        second = _member(zookeeper, chroot, session_ms=1000)
        with pytest.raises(KafkaConfigurationError, match=r"broker\.id 1 is already registered"):
            second.start()
    finally:
        first.stop()
    # a clean stop closes the session: the id is free at once, and so is /controller
    again = _member(zookeeper, chroot).start()
    try:
        assert again.is_controller
        assert again.controller_epoch == 2
    finally:
        again.stop()
