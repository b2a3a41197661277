"""Producer ids in cluster mode, with a real ZooKeeper and three real brokers: every
broker answers InitProducerId (Kafka listener and labkit's ZeroMQ wire) with ids no other
broker hands out, from blocks claimed in ZooKeeper's ``/latest_producer_id_block`` as
Kafka's ZkProducerIdManager claims them."""

from __future__ import annotations

import socket
import time

import pytest
from kio.schema.errors import ErrorCode

from labkit.errors import CoordinatorLoadInProgressError
from labkit.testing.broker import RawClient
from tests.integration.cluster_helpers import read_json, start_cluster, stop_cluster, zk_client
from tests.integration.test_kafka_init_producer_id import init_producer_id


def kafka_producer_id(sock, correlation_id: int) -> int:
    deadline = time.monotonic() + 20
    while True:
        answer = init_producer_id(sock, 4, correlation_id)
        if answer.error_code != ErrorCode.coordinator_load_in_progress:
            break  # (14 only while the broker claims its block in ZooKeeper)
        assert time.monotonic() < deadline, "no block of producer ids after 20 s"
        time.sleep(0.05)
    assert answer.error_code == ErrorCode.none, answer
    assert answer.producer_epoch == 0
    return answer.producer_id


def zmq_producer_id(client) -> int:
    deadline = time.monotonic() + 20
    while True:
        header, _ = client.request("init_producer_id", {"transactional_id": None})
        if header["error"] != CoordinatorLoadInProgressError.errno:
            break
        assert time.monotonic() < deadline, "no block of producer ids after 20 s"
        time.sleep(0.05)
    assert header["error"] == 0, header
    return header["producer_id"]


@pytest.fixture(scope="module")
def cluster(zookeeper):
    brokers = start_cluster(zookeeper)
    try:
        yield brokers
    finally:
        stop_cluster(brokers)


def test_each_broker_hands_out_ids_no_other_broker_hands_out(zookeeper, cluster):
    ids_by_broker: dict[int, list[int]] = {}
    for broker_id, broker in cluster.items():
        with (
            socket.create_connection(("127.0.0.1", broker.port), timeout=10) as sock,
            RawClient(broker.bootstrap) as client,
        ):
            ids = [kafka_producer_id(sock, 1), kafka_producer_id(sock, 2)]
            ids.append(zmq_producer_id(client))
        ids_by_broker[broker_id] = ids
    every_id = [pid for ids in ids_by_broker.values() for pid in ids]
    assert len(set(every_id)) == len(every_id), ids_by_broker
    # each broker took its ids from its own block of 1000
    blocks = {broker_id: {pid // 1000 for pid in ids} for broker_id, ids in ids_by_broker.items()}
    assert all(len(b) == 1 for b in blocks.values()), ids_by_broker
    assert len(set().union(*blocks.values())) == 3, ids_by_broker

    with zk_client(zookeeper) as zk:
        node = read_json(zk, "/latest_producer_id_block")
        assert set(node) == {"version", "broker", "block_start", "block_end"}
        assert node["version"] == 1
        assert node["broker"] in cluster
        start, end = int(node["block_start"]), int(node["block_end"])
        assert end - start == 999  # Kafka's block size, the end included
        assert start >= 2000  # three blocks claimed at least, one after the other
        assert zk.get("/latest_producer_id_block")[1].version >= 3  # one versioned set each
