"""Failover in cluster mode, with a real ZooKeeper and three real brokers killed with
SIGKILL: the controller moves within the session timeout (+ 1 s is the goal; the time is
printed), a dead leader's partitions get a new leader from the ISR with leader_epoch + 1,
and a partition whose whole ISR is dead has no leader (-1) and is listed by
``labkit topics --describe --unavailable-partitions``."""

from __future__ import annotations

import time

import pytest

from labkit import KafkaAdminClient, NewTopic
from labkit.testing.apache_kafka import run_tool
from tests.integration.cluster_helpers import (
    SESSION_TIMEOUT_MS,
    controller_id,
    labkit_cli,
    partition_states,
    read_json,
    running_cluster,
    wait_for,
    zk_client,
)

pytestmark = pytest.mark.slow  # ~25 s: each kill waits out a 4 s ZooKeeper session

# generous: the goal is the session timeout + 1 s; a loaded CI machine may take longer
FAILOVER_BOUND_S = SESSION_TIMEOUT_MS / 1000 + 15


@pytest.fixture(scope="module")
def cluster(zookeeper):
    with running_cluster(zookeeper) as brokers:
        yield brokers


def _create(broker, name: str, partitions: int, factor: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        admin.create_topics([NewTopic(name, partitions, factor)])
    finally:
        admin.close()


def test_kill_the_controller_then_a_leader(zookeeper, cluster):
    with zk_client(zookeeper) as zk:
        _create(cluster[1], "replicated", 3, 3)
        _create(cluster[1], "single", 3, 1)  # one partition on each broker
        for name in ("replicated", "single"):
            wait_for(f"{name}'s states", lambda n=name: len(partition_states(zk, n)) == 3)
        before = partition_states(zk, "replicated")
        singles = {
            int(p): replicas[0]
            for p, replicas in read_json(zk, "/brokers/topics/single")["partitions"].items()
        }
        old_epoch = int(zk.get("/controller_epoch")[0])

        # 1. kill -9 the controller: another broker takes /controller
        dead = wait_for("a controller", lambda: controller_id(zk))
        killed_at = time.monotonic()
        cluster[dead].kill()
        new = wait_for(
            "a new controller",
            lambda: (c := controller_id(zk)) not in (None, dead) and c,
            timeout=FAILOVER_BOUND_S,
        )
        failover_s = time.monotonic() - killed_at
        print(
            f"controller failover: broker {dead} -> {new} in {failover_s:.2f} s "
            f"(session timeout {SESSION_TIMEOUT_MS} ms)"
        )
        assert int(zk.get("/controller_epoch")[0]) == old_epoch + 1

        # 2. its partitions of "replicated" get a new leader from the ISR, epoch + 1
        def moved():
            now = partition_states(zk, "replicated")
            return now if all(s["leader"] != dead for s in now.values()) else None

        after = wait_for("new leaders", moved, timeout=FAILOVER_BOUND_S)
        elected_s = time.monotonic() - killed_at
        print(f"leaders moved off broker {dead} {elected_s:.2f} s after the kill")
        for partition, old in before.items():
            state = after[partition]
            assert state["isr"] == [r for r in old["isr"] if r != dead]
            if old["leader"] == dead:
                assert state["leader"] == state["isr"][0]
                assert state["leader_epoch"] == old["leader_epoch"] + 1
            else:
                assert state["leader"] == old["leader"]  # dead follower: ISR shrinks only

        # 3. "single"'s partition on the dead broker: no ISR member alive -> no leader
        lost = next(p for p, broker in singles.items() if broker == dead)
        state = wait_for(
            "the offline partition",
            lambda: (s := partition_states(zk, "single")[lost])["leader"] == -1 and s,
        )
        assert state["isr"] == [dead]  # Kafka keeps the last ISR member
        for partition, broker in singles.items():
            if partition != lost:
                assert partition_states(zk, "single")[partition]["leader"] == broker

        # 4. kill -9 the leader of a partition that still has two replicas in its ISR
        partition, state = next(
            (p, s) for p, s in sorted(after.items()) if s["leader"] != new and len(s["isr"]) == 2
        )
        leader = state["leader"]
        killed_at = time.monotonic()
        cluster[leader].kill()

        def reelected():
            now = partition_states(zk, "replicated")[partition]
            return now if now["leader"] not in (leader,) else None

        latest = wait_for("a leader after the second kill", reelected, timeout=FAILOVER_BOUND_S)
        print(
            f"leader of replicated-{partition}: {leader} -> {latest['leader']} in "
            f"{time.monotonic() - killed_at:.2f} s"
        )
        assert latest["leader"] == new
        assert latest["isr"] == [new]
        assert latest["leader_epoch"] == state["leader_epoch"] + 1

    survivor = cluster[new]
    listed = labkit_cli(
        "topics",
        "--describe",
        "--unavailable-partitions",
        "--bootstrap-server",
        survivor.bootstrap,
    )
    assert listed.returncode == 0, listed.stderr
    print(listed.stdout)
    assert f"\tTopic: single\tPartition: {lost}\tLeader: none\tReplicas: {dead}\tIsr: {dead}" in (
        listed.stdout.splitlines()
    )
    assert "Topic: replicated\t" not in listed.stdout
    # Apache Kafka 4.1.1's kafka-topics.sh lists the same partitions (plus its ELR columns)
    kafka = run_tool(
        "kafka-topics.sh",
        "--describe",
        "--unavailable-partitions",
        "--bootstrap-server",
        survivor.bootstrap,
    )
    assert kafka.returncode == 0, kafka.stderr
    print(kafka.stdout)
    assert [
        line.replace("\tElr: \tLastKnownElr: ", "").rstrip("\t")
        for line in kafka.stdout.splitlines()
    ] == listed.stdout.splitlines()


def test_killed_brokers_come_back_and_lead_their_offline_partitions(zookeeper, cluster):
    """(after the test above) Restarted on the same data, each registers again; a
    partition that had no leader is led by its returning ISR member (leader_epoch + 1);
    a replica that left an ISR is not put back by the controller (the leader does that
    once it caught up: the data plane)."""
    dead = [broker_id for broker_id, broker in cluster.items() if broker.proc.poll() is not None]
    assert len(dead) == 2
    with zk_client(zookeeper) as zk:
        offline = {p: s for p, s in partition_states(zk, "single").items() if s["leader"] == -1}
        replicated = partition_states(zk, "replicated")
        for broker_id in dead:
            cluster[broker_id].start()
        wait_for(
            "the brokers to register again",
            lambda: sorted(zk.get_children("/brokers/ids")) == ["1", "2", "3"],
        )

        def led_again():
            now = partition_states(zk, "single")
            return now if all(now[p]["leader"] != -1 for p in offline) else None

        now = wait_for("the offline partitions to be led again", led_again)
        for partition, state in offline.items():
            assert now[partition]["leader"] == state["isr"][0]
            assert now[partition]["leader_epoch"] == state["leader_epoch"] + 1
        # nothing to elect there: the same leaders and epochs (the ISR may grow meanwhile:
        # the leader adds back a returned replica once it caught up, the data plane's job)
        assert _leaders(partition_states(zk, "replicated")) == _leaders(replicated)


def _leaders(states: dict[int, dict]) -> dict[int, tuple[int, int]]:
    return {p: (s["leader"], s["leader_epoch"]) for p, s in states.items()}


def test_a_paused_controller_is_fenced_and_rejoins(zookeeper, cluster):
    """SIGSTOP the controller past the session timeout: another broker takes over and
    bumps the controller epoch; resumed, the old one learns its session is gone,
    registers again as an ordinary broker and writes nothing with its stale epoch."""
    import os
    import signal

    with zk_client(zookeeper) as zk:
        paused = wait_for("a controller", lambda: controller_id(zk))
        epoch = int(zk.get("/controller_epoch")[0])
        os.kill(cluster[paused].pid, signal.SIGSTOP)
        try:
            new = wait_for(
                "a new controller",
                lambda: (c := controller_id(zk)) not in (None, paused) and c,
                timeout=FAILOVER_BOUND_S,
            )
            wait_for(
                "the paused broker's registration to expire",
                lambda: str(paused) not in zk.get_children("/brokers/ids"),
            )
            time.sleep(0.5)  # the new controller's round moves the leaders
            resumed_ms = time.time() * 1000
        finally:
            os.kill(cluster[paused].pid, signal.SIGCONT)
        wait_for(
            "the resumed broker to register again",
            lambda: str(paused) in zk.get_children("/brokers/ids"),
            timeout=FAILOVER_BOUND_S,
        )
        time.sleep(1.0)  # a round of the resumed broker, had it still believed it controls
        assert controller_id(zk) == new
        assert int(zk.get("/controller_epoch")[0]) == epoch + 1
        for name in ("replicated", "single"):
            for key in zk.get_children(f"/brokers/topics/{name}/partitions"):
                data, stat = zk.get(f"/brokers/topics/{name}/partitions/{key}/state")
                if stat.mtime >= resumed_ms:  # written since the resume: by the new epoch
                    assert (
                        read_json(zk, f"/brokers/topics/{name}/partitions/{key}/state")[
                            "controller_epoch"
                        ]
                        == epoch + 1
                    ), (name, key, data)
    log = cluster[paused].output()
    assert f"broker {paused} is the controller" in log
    assert f"registered as broker {paused}" in log.split(f"broker {paused} is the controller")[-1]
