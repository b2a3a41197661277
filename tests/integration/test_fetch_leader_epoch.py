"""KIP-320 over real sockets, in cluster mode: a fetch row's fifth field,
current_leader_epoch, is checked against the broker's leader epoch of the partition
(ZooKeeper's state, what its Metadata advertises) before anything is read: older gets
FENCED_LEADER_EPOCH (74), newer UNKNOWN_LEADER_EPOCH (75), its own epoch or -1 the
records. A real ZooKeeper, a real broker process; a raw DEALER (labkit.testing.RawClient)
and a Kafka client's Fetch v12 over a raw socket to the Kafka listener."""

from __future__ import annotations

import datetime
import json
import socket
import time

import pytest
from kio.index import load_request_schema
from kio.schema.errors import ErrorCode

from labkit.errors import FencedLeaderEpochError, UnknownLeaderEpochError
from labkit.protocol.records import encode_batch, split_batches
from labkit.testing import RawClient
from tests.integration.cluster_helpers import start_cluster, stop_cluster, wait_for, zk_client
from tests.raw_connections import KafkaConnection, nested_schema

TOPIC = "epoch-checked"


def advertised_epoch(broker) -> int:
    with RawClient(broker.zmq_bootstrap) as client:
        header, _ = client.request("metadata", {"topics": [TOPIC]})
    partitions = header["topics"][0].get("partitions") or [{}]
    return partitions[0].get("leader_epoch", -1)


@pytest.fixture(scope="module")
def broker_at_epoch_3(zookeeper):
    """One broker in cluster mode leading the partition at leader epoch 3: its state znode
    is rewritten as a controller re-electing the same leader would."""
    brokers = start_cluster(zookeeper, ids=(1,))
    broker = brokers[1]
    try:
        with RawClient(broker.zmq_bootstrap, timeout=20) as client:
            topic = {"name": TOPIC, "num_partitions": 1, "replication_factor": 1}
            header, _ = client.request("create_topics", {"topics": [topic]})
            assert header["topics"][0]["error"] == 0, header
            wait_for("a leader", lambda: advertised_epoch(broker) == 0)
            data = encode_batch([int(time.time() * 1000)], None, [b"a"])
            header, _ = client.request("produce", {"acks": 1, "targets": [[TOPIC, 0]]}, [data])
            assert header["results"][0][1] == 0, header
        path = f"/brokers/topics/{TOPIC}/partitions/0/state"
        with zk_client(zookeeper) as zk:
            raw, stat = zk.get(path)
            state = json.loads(raw)
            zk.set(path, json.dumps({**state, "leader_epoch": 3}).encode(), version=stat.version)
        wait_for("leader epoch 3", lambda: advertised_epoch(broker) == 3)
        yield broker
    finally:
        stop_cluster(brokers)


@pytest.mark.parametrize("replica_id", [-1, 7])  # a consumer, a follower
def test_a_fetch_with_a_stale_or_future_epoch_is_refused(broker_at_epoch_3, replica_id):
    with RawClient(broker_at_epoch_3.bootstrap) as client:

        def fetch(epoch):
            header, payloads = client.request(
                "fetch",
                {
                    "max_wait_ms": 0,
                    "replica_id": replica_id,
                    "partitions": [[TOPIC, 0, 0, 1 << 20, epoch]],
                },
            )
            assert header["error"] == 0, header
            return header["partitions"][0], payloads[0]

        for epoch, code in [(2, FencedLeaderEpochError.errno), (4, UnknownLeaderEpochError.errno)]:
            row, payload = fetch(epoch)
            assert row[2] == code, row
            assert payload == b""
        for epoch in (3, -1):
            row, payload = fetch(epoch)
            assert row[2] == 0, row
            assert len(split_batches(payload)) == 1


def kafka_fetch(conn: KafkaConnection, epoch: int):
    """A Fetch v12 of partition 0 from offset 0 with ``current_leader_epoch``."""
    partition = nested_schema(1, 12, "FetchPartition")(
        partition=0,
        current_leader_epoch=epoch,
        fetch_offset=0,
        last_fetched_epoch=-1,
        log_start_offset=-1,
        partition_max_bytes=1 << 20,
    )
    request = load_request_schema(1, 12)(
        cluster_id=None,
        replica_id=-1,
        max_wait=datetime.timedelta(milliseconds=0),
        min_bytes=1,
        max_bytes=1 << 20,
        isolation_level=0,
        session_id=0,
        session_epoch=-1,
        topics=(nested_schema(1, 12, "FetchTopic")(topic=TOPIC, partitions=(partition,)),),
        forgotten_topics_data=(),
        rack_id="",
    )
    response = conn.receive(1, 12, conn.send(1, 12, request))
    return response.responses[0].partitions[0]


def test_a_kafka_clients_fetch_epoch_is_checked_through_the_kafka_listener(broker_at_epoch_3):
    with socket.create_connection(("127.0.0.1", broker_at_epoch_3.port), timeout=10) as sock:
        conn = KafkaConnection(sock)
        assert kafka_fetch(conn, 2).error_code == ErrorCode.fenced_leader_epoch
        assert kafka_fetch(conn, 4).error_code == ErrorCode.unknown_leader_epoch
        row = kafka_fetch(conn, 3)
        assert row.error_code == ErrorCode.none
        assert row.records
