"""Jepsen-style failures of a three-broker cluster under continuous load, on loopback:
one real ZooKeeper and three real labkit brokers shared by the module (a fresh topic per
scenario), replication factor 3, min.insync.replicas=2, acks=all from an idempotent
confluent-kafka producer (tests/integration/cluster_load.py) and a consumer reading the
whole time. Faults: kill -9 of the controller (not the partition's leader, and the
leader); a follower cut off from the leader's replication port, and from ZooKeeper too
(iptables in a cgroup of its own: labkit/testing/netcut.py); ZooKeeper killed and
started again, and paused. For each: no acknowledged record lost, the live consumer
reads them all, the replicas are byte-identical below the high watermark afterwards, and
the time to a new leader (or controller) is printed. Last, the loss that acks=1 with
``unclean.leader.election.enable=true`` permits, as a test that expects it, and the same
scenario with unclean election off: the partition stays offline instead, and loses
nothing once its last ISR member is back.
"""

from __future__ import annotations

import os
import time

import pytest

from labkit.testing import netcut
from labkit.testing.netcut import NetworkCut
from labkit.testing.zookeeper import zookeeper_for_tests
from tests.integration.cluster_helpers import (
    SESSION_TIMEOUT_MS,
    controller_id,
    partition_states,
    running_cluster,
    wait_for,
    zk_client,
)
from tests.integration.cluster_load import (
    LiveConsumer,
    LoadProducer,
    assert_replicas_identical,
    consume_all,
    create,
    high_watermark,
    metadata_row,
    state,
)

pytestmark = pytest.mark.slow  # one cluster for the module; each scenario takes seconds

LAG_MS = 1500  # replica.lag.time.max.ms (Kafka's default: 30000)
SESSION_S = SESSION_TIMEOUT_MS / 1000
FAILOVER_BOUND_S = SESSION_S + 15  # generous: the goal is the session timeout + 1 s
ALL = [1, 2, 3]


@pytest.fixture(scope="module")
def zookeeper_server():
    """A ZooKeeper of this module's own: its scenarios kill and pause it."""
    with zookeeper_for_tests() as server:
        yield server


@pytest.fixture(scope="module")
def cuts():
    """Broker id -> the network cut of the cgroup it runs in (healed between scenarios);
    empty where this machine cannot cut (no root, iptables or cgroup2)."""
    made = {} if netcut.unavailable() else {i: NetworkCut(f"broker{i}") for i in ALL}
    try:
        yield made
    finally:
        for cut in made.values():
            cut.close()


def _need_cuts(cuts) -> None:
    """Skip a scenario that cuts the network where this machine cannot (fail under CI)."""
    if not cuts:
        why = netcut.unavailable() or "no network cut"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)


@pytest.fixture(scope="module")
def cluster(zookeeper_server, cuts):
    extra = {"replica.lag.time.max.ms": str(LAG_MS)}
    cgroups = {i: cut.path for i, cut in cuts.items()}
    try:
        with running_cluster(zookeeper_server, extra=extra, cgroups=cgroups) as brokers:
            yield brokers
    finally:
        for cut in cuts.values():
            cut.close()


@pytest.fixture
def running():
    """The scenario's producers and consumers: stopped even when it fails."""
    started: list = []
    yield started
    for worker in started:
        try:
            worker.stop()
        except AssertionError:
            pass


@pytest.fixture
def zk(zookeeper_server, cluster, cuts):
    """A ZooKeeper client, with all three brokers up and registered (a scenario before
    may have killed one) and no cut."""
    for cut in cuts.values():
        cut.heal()
    if zookeeper_server.proc is None or zookeeper_server.proc.poll() is not None:
        zookeeper_server.start()
    zookeeper_server.resume()
    for broker in cluster.values():
        if broker.proc is None or broker.proc.poll() is not None:
            broker.start()
    with zk_client(zookeeper_server) as client:
        wait_for(
            "three registered brokers",
            lambda: sorted(client.get_children("/brokers/ids")) == ["1", "2", "3"],
            timeout=SESSION_S + 15,
        )
        wait_for("a controller", lambda: controller_id(client) in ALL)
        yield client


def _fresh_topic(cluster, zk, name: str, partitions: int = 1, **configs: str) -> dict:
    create(cluster[1], name, partitions, **configs)
    wait_for(
        f"{name}'s partitions with a full ISR",
        lambda: (
            len(states := partition_states(zk, name)) == partitions
            and all(sorted(s["isr"]) == ALL for s in states.values())
        ),
    )
    return partition_states(zk, name)


def _time_until(what: str, check, timeout: float = FAILOVER_BOUND_S) -> float:
    started = time.monotonic()
    wait_for(what, check, timeout=timeout, interval=0.02)
    return time.monotonic() - started


def _finish(cluster, zk, name: str, partition: int, load, reader) -> None:
    """Stop the load; nothing acknowledged lost, the consumer read it all, logs equal."""
    load.stop()
    reader.wait_for(load.acked)
    reader.stop()
    assert not load.failed, load.failed[:3]
    leader = state(zk, name, partition)["leader"]
    values = consume_all(cluster[leader].bootstrap, name, len(load.acked), partition)
    missing = set(load.acked) - set(values)
    assert not missing, f"{len(missing)} acknowledged records lost, e.g. {sorted(missing)[:3]}"
    wait_for(
        "a full ISR again",
        lambda: sorted(state(zk, name, partition).get("isr", [])) == ALL,
        timeout=30,
    )
    hw = assert_replicas_identical(cluster, zk, name, partition)
    assert hw >= len(load.acked)


def _bootstrap(cluster, *but: int) -> str:
    return ",".join(b.bootstrap for i, b in cluster.items() if i not in but)


@pytest.mark.parametrize("role", ["not the leader", "the leader"])
def test_kill_the_controller_under_load(cluster, zk, running, role):
    name = "ctl-" + role.replace(" ", "-")
    states = _fresh_topic(cluster, zk, name, partitions=3)  # a leader on each broker
    controller = controller_id(zk)
    epoch = int(zk.get("/controller_epoch")[0])
    partition = next(
        p
        for p, s in sorted(states.items())
        if (s["leader"] == controller) == (role == "the leader")
    )
    leader = states[partition]["leader"]
    load = LoadProducer(_bootstrap(cluster, controller), name, partition).start()
    reader = LiveConsumer(_bootstrap(cluster, controller), name, partition).start()
    running += [load, reader]
    load.wait_acked(300)
    at_kill = len(load.acked)
    killed = time.monotonic()
    cluster[controller].kill()
    to_controller = _time_until(
        "a new controller", lambda: controller_id(zk) not in (None, controller)
    )
    if role == "the leader":
        wait_for(
            "a new leader",
            lambda: state(zk, name, partition).get("leader") not in (None, -1, leader),
            timeout=FAILOVER_BOUND_S,
            interval=0.02,
        )
    to_leader = time.monotonic() - killed
    print(
        f"\nkill -9 of controller {controller} ({role} of {name}-{partition}): new controller "
        f"{controller_id(zk)} in {to_controller:.2f} s, partition led by "
        f"{state(zk, name, partition)['leader']} after {to_leader:.2f} s "
        f"(zookeeper.session.timeout.ms={SESSION_TIMEOUT_MS})"
    )
    assert int(zk.get("/controller_epoch")[0]) == epoch + 1
    if role == "not the leader":
        assert state(zk, name, partition)["leader"] == leader  # nothing to elect
    load.wait_acked(at_kill + 1000)
    cluster[controller].start()
    _finish(cluster, zk, name, partition, load, reader)


@pytest.mark.parametrize("reach", ["from the leader", "from the leader and ZooKeeper"])
def test_a_cut_off_follower_leaves_the_isr_and_rejoins(
    zookeeper_server, cluster, cuts, zk, running, reach
):
    _need_cuts(cuts)
    name = "cut-" + ("zk" if "ZooKeeper" in reach else "leader")
    before = _fresh_topic(cluster, zk, name)[0]
    leader = before["leader"]
    follower = next(i for i in ALL if i != leader)
    load = LoadProducer(_bootstrap(cluster, follower), name).start()
    reader = LiveConsumer(_bootstrap(cluster, follower), name).start()
    running += [load, reader]
    load.wait_acked(300)
    ports = [cluster[leader].zmq_port]
    if "ZooKeeper" in reach:
        ports.append(zookeeper_server.port)
    cut = cuts[follower]
    cut.cut(*ports)
    out = _time_until(
        "the follower out of the ISR",
        lambda: follower not in state(zk, name).get("isr", [follower]),
    )
    shrunk = state(zk, name)
    assert shrunk["leader"] == leader, shrunk
    assert sorted(shrunk["isr"]) == sorted(set(ALL) - {follower}), shrunk
    at_shrink = len(load.acked)
    load.wait_acked(at_shrink + 500)  # acks=all with two in the ISR
    if "ZooKeeper" in reach:
        wait_for(
            "the follower's session to expire",
            lambda: zk.exists(f"/brokers/ids/{follower}") is None,
            timeout=FAILOVER_BOUND_S,
        )
    cut.heal()
    healed = time.monotonic()

    def back_in_isr() -> bool:
        if follower not in state(zk, name).get("isr", []):
            return False
        # the ISR was read first: a broker in it must be registered (Kafka's leader adds
        # only live brokers), so its registration must be there now
        assert zk.exists(f"/brokers/ids/{follower}"), (
            f"broker {follower} is back in the ISR {state(zk, name)} but not registered"
        )
        return True

    wait_for("the follower back in the ISR", back_in_isr, timeout=30)
    back = time.monotonic() - healed
    print(
        f"\nfollower {follower} cut off {reach}: out of the ISR in {out:.2f} s "
        f"(replica.lag.time.max.ms={LAG_MS}), {len(load.acked) - at_shrink} records "
        f"acknowledged with ISR {shrunk['isr']}, back in the ISR {back:.2f} s after the cut "
        f"healed; leader {state(zk, name)['leader']}"
    )
    assert state(zk, name)["leader"] == leader
    _finish(cluster, zk, name, 0, load, reader)


@pytest.mark.parametrize(
    "fault",
    [
        "kill, start at once",
        "kill, start after the session timeout",
        "pause 2 s",
        "pause past the session timeout",
    ],
)
def test_zookeeper_restarts_under_load(zookeeper_server, cluster, zk, running, fault):
    name = "zk-" + fault.replace(",", "").replace(" ", "-")
    before = _fresh_topic(cluster, zk, name)[0]
    controller = controller_id(zk)
    sessions = {i: zk.exists(f"/brokers/ids/{i}").ephemeralOwner for i in ALL}
    load = LoadProducer(_bootstrap(cluster), name).start()
    reader = LiveConsumer(_bootstrap(cluster), name).start()
    running += [load, reader]
    load.wait_acked(300)
    at_fault = len(load.acked)
    if fault.startswith("kill"):
        zookeeper_server.kill()
        time.sleep(SESSION_S + 1 if "after" in fault else 0.5)
        load.wait_acked(at_fault + 200)  # the data plane does not need ZooKeeper
        zookeeper_server.start()
    else:
        zookeeper_server.pause()
        time.sleep(2 if "2 s" in fault else SESSION_S + 1)
        zookeeper_server.resume()
    with zk_client(zookeeper_server) as fresh:
        wait_for(
            "three registered brokers",
            lambda: sorted(fresh.get_children("/brokers/ids")) == ["1", "2", "3"],
            timeout=FAILOVER_BOUND_S,
        )
        now = {i: fresh.exists(f"/brokers/ids/{i}").ephemeralOwner for i in ALL}
        survived = [i for i in ALL if now[i] == sessions[i]]
        after = state(fresh, name)
        print(
            f"\nZooKeeper {fault}: sessions of brokers {survived} survived, the others "
            f"registered again; controller {controller} -> {controller_id(fresh)}; "
            f"{name}'s leader {before['leader']} -> {after['leader']}, isr {after['isr']}"
        )
        if survived == ALL:  # no broker lost its session: nothing to elect
            assert after["leader"] == before["leader"], after
        assert controller_id(fresh) in ALL

        def consistent() -> bool:
            """ZooKeeper names a live leader and every broker serves the same one."""
            leader = state(fresh, name).get("leader")
            return leader in ALL and all(
                metadata_row(b, name)["leader"] == leader for b in cluster.values()
            )

        wait_for("one leader, the same everywhere", consistent, timeout=FAILOVER_BOUND_S)
        # the controller still acts: a new topic gets its states
        _fresh_topic(cluster, fresh, name + "-after")
        load.wait_acked(len(load.acked) + 500)
        _finish(cluster, fresh, name, 0, load, reader)


@pytest.mark.parametrize("unclean", ["true", "false"])
def test_acks_1_and_unclean_election(cluster, cuts, zk, running, unclean):
    """The followers are cut off from the leader: the ISR shrinks to the leader alone, which
    acknowledges acks=1 records no one else holds; then it dies. With unclean election a
    stale follower leads and those acknowledged records are gone (expected: that is what
    acks=1 with unclean.leader.election.enable=true permits); without, the partition stays
    offline until its last ISR member is back, and nothing is lost."""
    from confluent_kafka import Producer

    _need_cuts(cuts)
    name = f"unclean-{unclean}"
    config = {"min.insync.replicas": "1", "unclean.leader.election.enable": unclean}
    leader = _fresh_topic(cluster, zk, name, **config)[0]["leader"]
    followers = [i for i in ALL if i != leader]
    safe = LoadProducer(cluster[leader].bootstrap, name, limit=200).start()
    running.append(safe)
    safe.wait_acked(200)
    safe.stop()
    # both ways: the followers' fetches, and the leader's answers to fetches already parked
    cuts[leader].cut(cluster[leader].zmq_port, replies=True)
    for i in followers:
        cuts[i].cut(cluster[leader].zmq_port)
    try:
        acked: list[bytes] = []
        risky = Producer(
            {"bootstrap.servers": cluster[leader].bootstrap, "acks": "1", "linger.ms": 0}
        )

        def write(count: int) -> None:
            for _ in range(count):
                risky.produce(
                    name,
                    f"acks=1 {len(acked)}".encode(),
                    on_delivery=lambda err, m: err is None and acked.append(m.value()),
                )
                risky.flush(10)

        # the followers fall behind only while there is something to fetch (as Kafka)
        deadline = time.monotonic() + 20
        while state(zk, name).get("isr") != [leader] and time.monotonic() < deadline:
            write(10)
            time.sleep(0.1)
        assert state(zk, name).get("isr") == [leader], state(zk, name)
        write(100)  # acknowledged by the leader alone
        killed = time.monotonic()
        cluster[leader].kill()
    finally:
        for i in followers:
            cuts[i].heal()
    # the leader's answers stay cut until it restarts: the killed process's kernel still
    # holds the answers it wrote and would deliver them once healed (a dead machine would not)
    everything = safe.acked + acked
    if unclean == "true":
        wait_for(
            "an unclean election",
            lambda: state(zk, name).get("leader") in followers,
            timeout=FAILOVER_BOUND_S,
            interval=0.02,
        )
        elected = time.monotonic() - killed
        new = state(zk, name)
        assert new["isr"] == [new["leader"]], new
        hw = high_watermark(cluster[new["leader"]], name)  # what is left to read
        values = consume_all(cluster[new["leader"]].bootstrap, name, hw)
        lost = set(everything) - set(values)
        print(
            f"\nacks=1, unclean election: leader {leader} killed, stale follower "
            f"{new['leader']} elected in {elapsed_s(elected)}; {len(lost)} of "
            f"{len(everything)} acknowledged records lost"
        )
        assert lost == set(acked), "the acks=1 records, and only those, are lost"
    else:
        wait_for("the partition offline", lambda: state(zk, name).get("leader") == -1)
        offline = state(zk, name)
        assert offline["isr"] == [leader], offline  # the one replica holding everything
        time.sleep(2)  # bounded look: nobody is elected meanwhile
        assert state(zk, name)["leader"] == -1
        restarted = time.monotonic()
        cuts[leader].heal()
        cluster[leader].start()
        _time_until("the old leader back", lambda: state(zk, name)["leader"] == leader)
        back = time.monotonic() - restarted
        values = consume_all(cluster[leader].bootstrap, name, len(everything))
        lost = set(everything) - set(values)
        print(
            f"\nacks=1, no unclean election: offline while leader {leader} was down; led "
            f"again {elapsed_s(back)} after it restarted; {len(lost)} records lost"
        )
        assert not lost
    # whoever leads, the others (the old leader too, once back) truncate to it (KIP-101)
    cuts[leader].heal()
    for broker in cluster.values():
        if broker.proc is None or broker.proc.poll() is not None:
            broker.start()
    wait_for("a full ISR again", lambda: sorted(state(zk, name).get("isr", [])) == ALL, 30)
    assert_replicas_identical(cluster, zk, name)


def elapsed_s(seconds: float) -> str:
    return f"{seconds:.2f} s"
