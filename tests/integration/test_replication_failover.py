"""Replication for real: a real ZooKeeper, three labkit broker processes, Kafka clients
through the Kafka listener (they follow leaders). Replication factor 3,
min.insync.replicas=2, acks=all:

- the leader is killed with SIGKILL (or stopped with SIGSTOP past the ZooKeeper session
  timeout, then let go on) while a producer writes: every acknowledged record is read
  back from the new leader, and the replicas' logs are byte-identical up to the
  high watermark (also the old leader's, once it came back and truncated, KIP-101); the
  time to a new leader is printed;
- a follower stopped with SIGSTOP past replica.lag.time.max.ms leaves the ISR and comes
  back once SIGCONT lets it catch up;
- with one ISR member left, acks=all is refused with NOT_ENOUGH_REPLICAS (19) while
  acks=1 is still accepted.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from labkit.protocol.records import encode_batch
from labkit.testing import RawClient
from tests.integration.cluster_helpers import (
    SESSION_TIMEOUT_MS,
    running_cluster,
    wait_for,
    zk_client,
)
from tests.integration.cluster_load import (
    LoadProducer,
    batches_below,
    consume_all,
    create,
    high_watermark,
    leaders_isr,
    state,
)

pytestmark = pytest.mark.slow  # each kill waits out a 4 s ZooKeeper session

LAG_MS = 1500  # replica.lag.time.max.ms for these tests (Kafka's default: 30000)
FAILOVER_BOUND_S = SESSION_TIMEOUT_MS / 1000 + 15  # generous: the goal is the timeout + 1 s


@pytest.fixture
def cluster(zookeeper):
    with running_cluster(zookeeper, extra={"replica.lag.time.max.ms": str(LAG_MS)}) as brokers:
        yield brokers


@pytest.mark.parametrize("fault", ["kill -9", "SIGSTOP past the session timeout"])
def test_losing_the_leader_under_acks_all_loses_no_acknowledged_record(zookeeper, cluster, fault):
    name = "acked-kill" if fault == "kill -9" else "acked-paused"
    create(cluster[1], name)
    with zk_client(zookeeper) as zk:
        wait_for(
            "the partition's state", lambda: sorted(state(zk, name).get("isr", [])) == [1, 2, 3]
        )
        leader = state(zk, name)["leader"]
        bootstrap = ",".join(b.bootstrap for i, b in cluster.items() if i != leader)
        load = LoadProducer(bootstrap, name, limit=3000).start()
        load.wait_acked(300)
        killed_at = time.monotonic()
        if fault == "kill -9":
            cluster[leader].kill()
        else:
            os.kill(cluster[leader].pid, signal.SIGSTOP)
        new = wait_for(
            "a new leader",
            lambda: state(zk, name).get("leader") not in (None, -1, leader),
            timeout=FAILOVER_BOUND_S,
            interval=0.02,
        )
        elapsed = time.monotonic() - killed_at
        print(
            f"\n{fault} of leader {leader} -> new leader "
            f"{state(zk, name)['leader']} in {elapsed:.2f} s "
            f"(zookeeper.session.timeout.ms={SESSION_TIMEOUT_MS})"
        )
        assert new
        if fault != "kill -9":  # back after it was replaced: a stale leader, now fenced
            os.kill(cluster[leader].pid, signal.SIGCONT)
        load.wait_acked(1500)
        load.stop()
        assert not load.failed, load.failed[:3]
        acked = load.acked

        new_leader = state(zk, name)["leader"]
        survivors = [i for i in cluster if i != leader]
        values = consume_all(cluster[new_leader].bootstrap, name, len(acked))
        missing = set(acked) - set(values)
        assert not missing, f"{len(missing)} acknowledged records lost, e.g. {sorted(missing)[:3]}"

        # the old leader comes back, truncates to the new leader's epoch and catches up
        if fault == "kill -9":
            cluster[leader].start()
        wait_for(
            "the old leader back in the ISR",
            lambda: sorted(state(zk, name).get("isr", [])) == [1, 2, 3],
            timeout=30,
        )
        hw = high_watermark(cluster[new_leader], name)
        assert hw >= len(acked)
        time.sleep(0.5)  # the followers' next fetch carries nothing new: the logs are still
        images = {i: batches_below(cluster[i], name, hw) for i in cluster}
        assert images[new_leader], "the new leader's log is empty"
        for i in [*survivors, leader]:
            assert images[i] == images[new_leader], (
                f"broker {i}'s log differs from the leader's below the high watermark {hw}"
            )


def test_a_stopped_follower_leaves_the_isr_and_comes_back(zookeeper, cluster):
    name = "lagging"
    create(cluster[1], name)
    with zk_client(zookeeper) as zk:
        wait_for(
            "the partition's state", lambda: sorted(state(zk, name).get("isr", [])) == [1, 2, 3]
        )
        leader, epoch = state(zk, name)["leader"], state(zk, name)["leader_epoch"]
        follower = next(i for i in cluster if i != leader)
        os.kill(cluster[follower].pid, signal.SIGSTOP)
        try:
            from confluent_kafka import Producer

            producer = Producer({"bootstrap.servers": cluster[leader].bootstrap, "acks": "1"})
            deadline = time.monotonic() + 20
            while follower in state(zk, name)["isr"] and time.monotonic() < deadline:
                producer.produce(name, b"while it sleeps")
                producer.flush(5)
                time.sleep(0.1)
            assert follower not in state(zk, name)["isr"], state(zk, name)
            shrunk = state(zk, name)
            # the leader's own write (the controller's would bump the leader epoch)
            assert (shrunk["leader"], shrunk["leader_epoch"]) == (leader, epoch), shrunk
        finally:
            os.kill(cluster[follower].pid, signal.SIGCONT)
        wait_for(
            "the follower back in the ISR",
            lambda: follower in state(zk, name).get("isr", []),
            timeout=30,
        )
        assert state(zk, name)["leader"] == leader
        producer.flush(5)


def test_acks_all_refused_when_one_isr_member_is_left(zookeeper, cluster):
    from confluent_kafka import KafkaError, Producer

    name = "refused"
    create(cluster[1], name)
    with zk_client(zookeeper) as zk:
        wait_for(
            "the partition's state", lambda: sorted(state(zk, name).get("isr", [])) == [1, 2, 3]
        )
        leader = state(zk, name)["leader"]
        for i in cluster:
            if i != leader:
                cluster[i].kill()
        wait_for("an ISR of the leader alone", lambda: state(zk, name).get("isr") == [leader])
        wait_for("the leader to see it", lambda: leaders_isr(cluster[leader], name) == [leader])

        with RawClient(cluster[leader].zmq_bootstrap) as client:
            batch = encode_batch([int(time.time() * 1000)], None, [b"x"])
            header, _ = client.request("produce", {"acks": -1, "targets": [[name, 0]]}, [batch])
            assert header["results"][0][1] == 19, header  # NOT_ENOUGH_REPLICAS
            assert "min.insync.replicas=2" in header["results"][0][3]
            header, _ = client.request("produce", {"acks": 1, "targets": [[name, 0]]}, [batch])
            assert header["results"][0][1] == 0, header

        errors = []
        producer = Producer(
            {
                "bootstrap.servers": cluster[leader].bootstrap,
                "acks": "all",
                "message.timeout.ms": 3000,
                "retries": 0,
            }
        )
        producer.produce(name, b"refused", on_delivery=lambda err, _m: errors.append(err))
        producer.flush(10)
        assert errors
        assert errors[0] is not None
        assert errors[0].code() == KafkaError.NOT_ENOUGH_REPLICAS, errors[0]
