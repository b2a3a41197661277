"""Cluster mode: nobody but the group coordinators writes ``__consumer_offsets`` (as Kafka:
INVALID_TOPIC_EXCEPTION, 17), a client cannot auto-create it with the wrong settings nor
delete it (every group's offsets), and a malformed find_coordinator is refused. One real
broker on a real ZooKeeper."""

from __future__ import annotations

import pytest

from labkit.cluster.offsets_topic import OFFSETS_TOPIC
from labkit.protocol.records import encode_batch
from labkit.testing import RawClient
from tests.integration.cluster_helpers import (
    read_json,
    start_cluster,
    stop_cluster,
    wait_for,
    zk_client,
)

INVALID_TOPIC, INVALID_REQUEST = 17, 42


@pytest.fixture
def broker(zookeeper):
    brokers = start_cluster(zookeeper, ids=(1,))
    try:
        yield brokers[1]
    finally:
        stop_cluster(brokers)


def produce_to_offsets_topic(client) -> list:
    batch = encode_batch([0], [b"\x00\x01forged"], [b"\x00\x03forged"])
    header, _ = client.request("produce", {"acks": 1, "targets": [[OFFSETS_TOPIC, 0]]}, [batch])
    return header["results"][0]


def test_only_coordinators_write_the_offsets_topic(zookeeper, broker):
    with RawClient(broker.zmq_bootstrap) as client, zk_client(zookeeper) as zk:
        _base, error, _start, message = produce_to_offsets_topic(client)
        assert error == INVALID_TOPIC
        assert "internal topic" in message
        header, _ = client.request("metadata", {"topics": [OFFSETS_TOPIC]})
        assert not zk.exists(f"/brokers/topics/{OFFSETS_TOPIC}")  # not auto-created

        for bad in ({}, {"key": 5}, {"key": ""}):
            header, _ = client.request("find_coordinator", bad)
            assert header["error"] == INVALID_REQUEST, (bad, header)

        found = wait_for(
            "the coordinator of group g",
            lambda: (h := client.request("find_coordinator", {"key": "g"})[0])["error"] == 0 and h,
        )
        assert found["node_id"] == 1
        assert read_json(zk, f"/config/topics/{OFFSETS_TOPIC}")["config"] == {
            "cleanup.policy": "compact"
        }
        assert len(read_json(zk, f"/brokers/topics/{OFFSETS_TOPIC}")["partitions"]["0"]) == 1
        _base, error, _start, message = produce_to_offsets_topic(client)
        assert error == INVALID_TOPIC

        header, _ = client.request("delete_topics", {"topics": [OFFSETS_TOPIC]})
        assert header["topics"][0]["error"] == INVALID_TOPIC, header
        assert "not allowed to be marked for deletion" in header["topics"][0]["message"]
        assert not zk.exists(f"/admin/delete_topics/{OFFSETS_TOPIC}")
