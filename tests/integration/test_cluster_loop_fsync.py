"""Issue 19 item 2 in cluster mode (issue 16): the loop thread never fsyncs there either.

A real ZooKeeper, brokers 2 and 3 as processes, broker 1 as a BrokerServer in this
process (its loop on a thread of its own, real sockets) with ``os.fsync``/``os.fdatasync``
wrapped to record which thread calls them, as tests/integration/test_broker_group_commit.py
does for single-broker mode. The workload makes broker 1 create a topic's logs from
ZooKeeper's view (another broker was asked to create it), a leader (its new leader epoch
is saved), a follower that fetches and appends (the fetched epochs are saved), a leader
answering acks=all, and, once the leader of a partition it follows is killed, that
partition's new leader or a follower of it at a new epoch.
"""

from __future__ import annotations

import os
import threading
import time

import pytest

from labkit.broker.config import BrokerConfig
from labkit.broker.server import BrokerServer
from labkit.protocol.records import encode_batch
from labkit.testing import RawClient
from labkit.testing.broker import free_port
from tests.integration.cluster_helpers import (
    SESSION_TIMEOUT_MS,
    partition_states,
    start_cluster,
    stop_cluster,
    wait_for,
    zk_client,
)

pytestmark = pytest.mark.slow  # a kill waits out a 4 s ZooKeeper session

LOOP = "labkit-loop-under-test"
TOPIC = "loopsafe"
PARTITIONS = 3


def batch(value: bytes) -> bytes:
    return encode_batch([int(time.time() * 1000)], None, [value])  # retention keeps it


def produce_acks_all(bootstrap: str, partition: int, value: bytes) -> None:
    def accepted():
        with RawClient(bootstrap, timeout=20) as client:
            header, _ = client.request(
                "produce", {"acks": -1, "targets": [[TOPIC, partition]]}, [batch(value)]
            )
        return header["results"][0][1] == 0

    wait_for(f"acks=all produce to {TOPIC}-{partition}", accepted, timeout=30, interval=0.2)


def fully_replicated(zk) -> dict[int, dict] | None:
    states = partition_states(zk, TOPIC)
    if len(states) == PARTITIONS and all(len(s["isr"]) == 3 for s in states.values()):
        return states
    return None


def test_the_loop_thread_never_fsyncs_in_cluster_mode(zookeeper, tmp_path, monkeypatch):
    callers: list[str] = []
    recording = threading.Event()

    def spy(real):
        def wrapper(fd):
            if recording.is_set():
                callers.append(threading.current_thread().name)
            return real(fd)

        return wrapper

    monkeypatch.setattr(os, "fsync", spy(os.fsync))
    monkeypatch.setattr(os, "fdatasync", spy(os.fdatasync))
    others = start_cluster(zookeeper, ids=(2, 3))
    config = BrokerConfig.build(
        host="127.0.0.1",
        port=free_port(),
        data_dir=tmp_path / "broker-1",
        overrides={
            "zmq.port": str(free_port()),
            "broker.id": "1",
            "zookeeper.connect": zookeeper.connect,
            "zookeeper.session.timeout.ms": str(SESSION_TIMEOUT_MS),
        },
    )
    server = BrokerServer(config)
    server.start()  # opening the data directory may fsync: before serving, on purpose
    loop = threading.Thread(target=server.serve_forever, name=LOOP, daemon=True)
    recording.set()
    loop.start()
    me = f"127.0.0.1:{config.zmq_port}"
    endpoints = {1: me, **{i: b.zmq_bootstrap for i, b in others.items()}}
    try:
        with zk_client(zookeeper) as zk:
            wait_for("three brokers", lambda: len(zk.get_children("/brokers/ids")) == 3)
            # created through broker 2: broker 1 creates its local logs from ZooKeeper's view
            with RawClient(endpoints[2], timeout=20) as client:
                topic = {
                    "name": TOPIC,
                    "num_partitions": PARTITIONS,
                    "replication_factor": 3,
                    "configs": {"min.insync.replicas": "2"},
                }
                header, _ = client.request("create_topics", {"topics": [topic]})
            assert header["topics"][0]["error"] == 0, header
            states = wait_for("every partition fully replicated", lambda: fully_replicated(zk))
            leaders = {p: s["leader"] for p, s in states.items()}
            assert 1 in leaders.values(), leaders  # broker 1 leads one, follows the others
            for partition, leader in leaders.items():
                produce_acks_all(endpoints[leader], partition, b"before")
            victim = next(leader for leader in leaders.values() if leader != 1)
            moved = [p for p, leader in leaders.items() if leader == victim]
            others[victim].kill()
            states = wait_for(
                f"new leaders after broker {victim} died",
                lambda: all(
                    partition_states(zk, TOPIC)[p]["leader"] not in (victim, -1) for p in moved
                ),
            )
            states = partition_states(zk, TOPIC)
            for partition in moved:
                produce_acks_all(endpoints[states[partition]["leader"]], partition, b"after")
    finally:
        recording.clear()  # shutdown flushes on the loop thread: nobody waits by then
        server.request_stop()
        loop.join(30)
        stop_cluster(others)
    assert any(name.startswith("labkit-replica-fetcher") for name in callers), set(callers)
    assert "labkit-flusher" in callers, set(callers)
    assert LOOP not in callers, f"{callers.count(LOOP)} fsync calls on the loop thread"
