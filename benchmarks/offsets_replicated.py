"""Offset commit latency: one broker's offsets file vs. cluster mode's replicated
``__consumer_offsets`` (issue 16, docs/replication.md "Committed group offsets").

One client commits one new offset at a time (a simple commit: member "", generation -1)
over labkit's ZeroMQ wire to the group's coordinator and waits for each answer. Single
broker: the answer follows the offsets file's fsync. Cluster (three brokers, one
ZooKeeper, replication factor 3): the answer follows the log's fsync and the high
watermark (both followers fetched the record). The two setups alternate, ``--pairs``
times, so both see the same machine load.

    PYTHONPATH=$PWD python benchmarks/offsets_replicated.py [--commits 300] [--pairs 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from labkit.testing import BrokerProcess, RawClient

TOPIC, GROUP = "bench-commits", "bench-group"


def commits(bootstrap: str, count: int) -> list[float]:
    with RawClient(bootstrap, timeout=60) as client:
        latencies = []
        for offset in range(1, count + 1):
            start = time.monotonic()
            header, _ = client.request(
                "offset_commit",
                {
                    "group_id": GROUP,
                    "member_id": "",
                    "generation": -1,
                    "offsets": [[TOPIC, 0, offset, ""]],
                },
            )
            latencies.append(time.monotonic() - start)
            assert header["error"] == 0, header
        return latencies


def create(bootstrap: str, factor: int) -> None:
    with RawClient(bootstrap, timeout=60) as client:
        header, _ = client.request(
            "create_topics",
            {"topics": [{"name": TOPIC, "num_partitions": 1, "replication_factor": factor}]},
        )
        assert header["topics"][0]["error"] == 0, header


def single(count: int) -> list[float]:
    broker = BrokerProcess().start()
    try:
        create(broker.zmq_bootstrap, 1)
        return commits(broker.zmq_bootstrap, count)
    finally:
        broker.close()


def cluster(count: int) -> list[float]:
    from labkit.testing.zookeeper import ZooKeeperServer

    zk = ZooKeeperServer().start()
    brokers = []
    try:
        for broker_id in (1, 2, 3):
            config = {"broker.id": str(broker_id), "zookeeper.connect": zk.connect}
            brokers.append(BrokerProcess(config=config).start())
        create(brokers[0].zmq_bootstrap, 3)
        with RawClient(brokers[0].zmq_bootstrap, timeout=60) as client:
            deadline = time.monotonic() + 60
            while True:  # the first ask creates __consumer_offsets; then its leaders load
                found, _ = client.request("find_coordinator", {"key": GROUP})
                if found["error"] == 0:
                    break
                assert time.monotonic() < deadline, found
                time.sleep(0.2)
        coordinator = next(b for b in brokers if b.port == found["port"])
        deadline = time.monotonic() + 60
        while True:  # the coordinator may still be loading (COORDINATOR_LOAD_IN_PROGRESS)
            with RawClient(coordinator.zmq_bootstrap, timeout=60) as client:
                header, _ = client.request("offset_fetch", {"group_id": GROUP})
            if header["error"] == 0:
                break
            assert time.monotonic() < deadline, header
            time.sleep(0.2)
        commits(coordinator.zmq_bootstrap, 20)  # the followers' fetchers are running
        return commits(coordinator.zmq_bootstrap, count)
    finally:
        for broker in brokers:
            broker.close()
        zk.close()


def summary(name: str, latencies: list[float]) -> str:
    ms = sorted(x * 1000 for x in latencies)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return (
        f"{name:8s} median {statistics.median(ms):6.2f} ms  p99 {p99:6.2f} ms  "
        f"{len(ms) / (sum(ms) / 1000):6.0f} commits/s (one at a time)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=300)
    parser.add_argument("--pairs", type=int, default=2)
    args = parser.parse_args()
    for pair in range(args.pairs):
        for name, run in (("single", single), ("cluster", cluster)):
            latencies = run(args.commits)
            load = os.getloadavg()[0]
            print(f"pair {pair + 1}: {summary(name, latencies)}  load average {load:.1f}")


if __name__ == "__main__":
    main()
