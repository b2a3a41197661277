"""Continuous load on a three-broker cluster, and the checks the failure tests share.

``LoadProducer`` writes numbered records to one partition from a thread with
confluent-kafka (it follows leaders through the Kafka listener) and keeps what was
acknowledged and what failed; ``LiveConsumer`` reads the same partition from a thread for
the whole scenario (a consumer that must carry on through the fault). ``replica_images``
and ``assert_replicas_identical`` compare the brokers' segment bytes below the high
watermark.
"""

from __future__ import annotations

import threading
import time

from labkit.protocol.batch_layout import read_header
from labkit.protocol.records import split_batches
from labkit.testing import RawClient
from tests.integration.cluster_helpers import partition_states


def create(broker, name: str, partitions: int = 1, **configs: str) -> None:
    """A topic with replication factor 3 (``min.insync.replicas=2`` unless given)."""
    configs = {"min.insync.replicas": "2", **configs}
    with RawClient(broker.zmq_bootstrap) as client:
        header, _ = client.request(
            "create_topics",
            {
                "topics": [
                    {
                        "name": name,
                        "num_partitions": partitions,
                        "replication_factor": 3,
                        "configs": configs,
                    }
                ]
            },
        )
    assert header["topics"][0]["error"] == 0, header


def state(zk, name: str, partition: int = 0) -> dict:
    return partition_states(zk, name).get(partition) or {}


def metadata_row(broker, name: str, partition: int = 0) -> dict:
    """The partition as the broker itself sees it (its last ZooKeeper snapshot)."""
    with RawClient(broker.zmq_bootstrap) as client:
        header, _ = client.request("metadata", {"topics": [name]})
    rows = header["topics"][0]["partitions"]
    return next(row for row in rows if row["partition"] == partition)


def leaders_isr(broker, name: str, partition: int = 0) -> list[int]:
    """The ISR as the broker itself sees it (its last ZooKeeper snapshot)."""
    return metadata_row(broker, name, partition)["isr"]


def high_watermark(broker, name: str, partition: int = 0, timeout: float = 10.0) -> int:
    """The leader's high watermark; retries NOT_LEADER_OR_FOLLOWER (6) while the broker
    has not yet applied the state ZooKeeper already holds."""
    deadline = time.monotonic() + timeout
    while True:
        with RawClient(broker.zmq_bootstrap) as client:
            header, _ = client.request("list_offsets", {"partitions": [[name, partition, -1]]})
        row = header["partitions"][0]
        if row[2] != 6 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert row[2] == 0, header
    return row[3]


def batches_below(broker, name: str, end: int, partition: int = 0) -> bytes:
    """The bytes of the whole batches below offset ``end`` in the broker's segments."""
    out = bytearray()
    for path in sorted((broker.data_dir / f"{name}-{partition}").glob("*.log")):
        data = path.read_bytes()
        for start, stop in split_batches(data):
            header = read_header(data, start)
            if header.base_offset + header.last_offset_delta >= end:
                return bytes(out)
            out += data[start:stop]
    return bytes(out)


def assert_replicas_identical(cluster, zk, name: str, partition: int = 0) -> int:
    """Every broker's log equals the leader's below the high watermark; the watermark."""
    leader = state(zk, name, partition)["leader"]
    hw = high_watermark(cluster[leader], name, partition)
    time.sleep(0.5)  # the followers' next fetch carries nothing new: the logs are still
    images = {i: batches_below(cluster[i], name, hw, partition) for i in cluster}
    assert images[leader], "the leader's log is empty"
    for i, image in images.items():
        assert image == images[leader], (
            f"broker {i}'s log differs from leader {leader}'s below the high watermark {hw}"
        )
    return hw


def consume_all(bootstrap: str, name: str, expected: int, partition: int = 0) -> list[bytes]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"check-{time.monotonic_ns()}",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.assign([TopicPartition(name, partition, 0)])
        values: list[bytes] = []
        deadline = time.monotonic() + 30
        while len(values) < expected and time.monotonic() < deadline:
            for message in consumer.consume(500, timeout=0.5):
                if message.error() is None:
                    values.append(message.value())
        return values
    finally:
        consumer.close()


class LoadProducer:
    """Numbered records to one partition from a thread, until ``stop()`` or ``limit``."""

    def __init__(
        self, bootstrap: str, name: str, partition: int = 0, limit: int = 100_000, **config
    ):
        from confluent_kafka import Producer

        self.name, self.partition, self.limit = name, partition, limit
        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
                "message.timeout.ms": 60000,
                # a paused or cut-off leader keeps its connections: give up on its answer
                # sooner (the idempotent producer then retries at the new leader)
                "request.timeout.ms": 5000,
                **config,
            }
        )
        self.acked: list[bytes] = []
        self.failed: list[str] = []
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"load-{name}", daemon=True)

    def start(self) -> LoadProducer:
        self._thread.start()
        return self

    def _delivered(self, err, message) -> None:
        if err is None:
            self.acked.append(message.value())
        else:
            self.failed.append(str(err))

    def _run(self) -> None:
        while not self._stop.is_set() and self.sent < self.limit:
            value = f"{self.name}-{self.sent}".encode()
            self.producer.produce(
                self.name, value, partition=self.partition, on_delivery=self._delivered
            )
            self.producer.poll(0)
            self.sent += 1
            time.sleep(0.002)
        self.producer.flush(60)

    def wait_acked(self, count: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked) < count:
            assert time.monotonic() < deadline, (
                f"{len(self.acked)} of {count} records acknowledged after {timeout:.0f} s "
                f"(failed: {self.failed[:3]})"
            )
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(90)
        assert not self._thread.is_alive(), "the producer did not flush in 90 s"


class LiveConsumer:
    """Reads one partition from offset 0 from a thread for the whole scenario."""

    def __init__(self, bootstrap: str, name: str, partition: int = 0):
        self.bootstrap, self.name, self.partition = bootstrap, name, partition
        self.values: list[bytes] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"read-{name}", daemon=True)

    def start(self) -> LiveConsumer:
        self._thread.start()
        return self

    def _run(self) -> None:
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"live-{time.monotonic_ns()}",
                "enable.auto.commit": False,
                "topic.metadata.refresh.interval.ms": 1000,
            }
        )
        try:
            consumer.assign([TopicPartition(self.name, self.partition, 0)])
            while not self._stop.is_set():
                for message in consumer.consume(500, timeout=0.2):
                    if message.error() is None:
                        self.values.append(message.value())
                    else:
                        self.errors.append(str(message.error()))
        finally:
            consumer.close()

    def wait_for(self, wanted: list[bytes], timeout: float = 30.0) -> None:
        """Until every value of ``wanted`` was read. Raises AssertionError with what is not."""
        deadline = time.monotonic() + timeout
        while set(wanted) - set(self.values):
            if time.monotonic() > deadline:
                missing = set(wanted) - set(self.values)
                raise AssertionError(
                    f"the live consumer has not read {len(missing)} acknowledged records "
                    f"after {timeout:.0f} s, e.g. {sorted(missing)[:3]}"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
