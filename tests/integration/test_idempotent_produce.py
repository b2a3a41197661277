"""Idempotent producers on the real broker over labkit's wire: a batch sent twice is
stored once, also after kill -9 and a restart; gaps and old epochs are refused."""

from __future__ import annotations

import time

from labkit.errors import (
    CoordinatorLoadInProgressError,
    InvalidProducerEpochError,
    OutOfOrderSequenceNumberError,
    UnsupportedVersionError,
)
from labkit.protocol.records import decode_batch, encode_batch, split_batches
from labkit.testing import BrokerProcess, RawClient


def new_producer_id(client) -> int:
    deadline = time.monotonic() + 10
    while True:
        header, _ = client.request("init_producer_id", {"transactional_id": None})
        if header["error"] != CoordinatorLoadInProgressError.errno or time.monotonic() > deadline:
            break
        time.sleep(0.05)  # the first block of ids is being reserved
    assert header["error"] == 0, header
    assert header["producer_epoch"] == 0
    return header["producer_id"]


def batch(*values: bytes) -> bytes:
    now = int(time.time() * 1000)
    return encode_batch([now] * len(values), None, list(values))


def produce(client, topic, payload, producer, acks=-1):
    header, _ = client.request(
        "produce",
        {"acks": acks, "timeout_ms": 5000, "targets": [[topic, 0]], "producers": [producer]},
        [payload],
    )
    assert header["error"] == 0, header
    return header["results"][0]


def stored_values(client, topic) -> list[bytes]:
    header, payloads = client.request(
        "fetch",
        {"max_wait_ms": 0, "min_bytes": 1, "partitions": [[topic, 0, 0, 1 << 20]]},
    )
    assert header["partitions"][0][2] == 0, header
    values = []
    for start, _end in split_batches(payloads[0]):
        values += decode_batch(payloads[0], start).values
    return values


def test_the_same_frames_sent_twice_are_stored_once(broker):
    with RawClient(broker.bootstrap) as client:
        pid = new_producer_id(client)
        first = batch(b"a", b"b", b"c")
        header = {
            "acks": -1,
            "timeout_ms": 5000,
            "targets": [["dup", 0]],
            "producers": [[pid, 0, 0]],
        }
        one, _ = client.request("produce", header, [first])
        two, _ = client.request("produce", header, [first])  # the same request again
        assert one["results"][0][:2] == [0, 0]
        assert two["results"][0][:2] == [0, 0]  # the original's base offset, no error
        assert produce(client, "dup", batch(b"d"), [pid, 0, 3])[:2] == [3, 0]
        assert stored_values(client, "dup") == [b"a", b"b", b"c", b"d"]


def test_gaps_old_epochs_and_transactions_get_kafkas_errors(broker):
    with RawClient(broker.bootstrap) as client:
        pid = new_producer_id(client)
        assert new_producer_id(client) != pid
        produce(client, "seq", batch(b"a"), [pid, 1, 0])
        gap = produce(client, "seq", batch(b"x"), [pid, 1, 5])
        assert gap[1] == OutOfOrderSequenceNumberError.errno
        assert "expected is 1" in gap[3]
        fenced = produce(client, "seq", batch(b"x"), [pid, 0, 1])
        assert fenced[1] == InvalidProducerEpochError.errno
        # a producer without the fields is not checked at all (old clients)
        plain, _ = client.request(
            "produce", {"acks": 1, "targets": [["seq", 0]]}, [batch(b"plain")]
        )
        assert plain["results"][0][1] == 0
        assert stored_values(client, "seq") == [b"a", b"plain"]
        header, _ = client.request("init_producer_id", {"transactional_id": "tx-1"})
        assert header["error"] == UnsupportedVersionError.errno
        assert "no transactions" in header["message"]
        bad, _ = client.request(
            "produce",
            {"acks": 1, "targets": [["seq", 0]], "producers": [[pid, -1, 0]]},
            [batch(b"x")],
        )
        assert bad["error"] == 42  # INVALID_REQUEST, naming the row's rules
        assert "producer_epoch" in bad["message"]


def test_a_retry_after_kill_9_and_restart_is_not_appended_twice(tmp_path):
    broker = BrokerProcess(data_dir=tmp_path / "data").start()
    try:
        with RawClient(broker.bootstrap) as client:
            pid = new_producer_id(client)
            produce(client, "crash", batch(b"a", b"b"), [pid, 0, 0])
            produce(client, "crash", batch(b"c"), [pid, 0, 2], acks=1)  # acked, not fsynced
        broker.kill()
        broker._fixed_port = True
        broker.start()
        with RawClient(broker.bootstrap) as client:
            # the producer never saw the answers (say): it retries both batches
            assert produce(client, "crash", batch(b"a", b"b"), [pid, 0, 0])[:2] == [0, 0]
            assert produce(client, "crash", batch(b"c"), [pid, 0, 2])[:2] == [2, 0]
            assert produce(client, "crash", batch(b"d"), [pid, 0, 3])[:2] == [3, 0]
            assert stored_values(client, "crash") == [b"a", b"b", b"c", b"d"]
            # ids handed out before the crash are never handed out again
            assert new_producer_id(client) > pid
    finally:
        broker.close()


def test_producer_state_outlives_delete_records_and_expires(tmp_path):
    config = {
        "producer.id.expiration.ms": 1500,
        "producer.id.expiration.check.interval.ms": 100,
    }
    with (
        BrokerProcess(data_dir=tmp_path / "data", config=config) as broker,
        RawClient(broker.bootstrap) as client,
    ):
        pid = new_producer_id(client)
        produce(client, "gone", batch(b"a"), [pid, 0, 0])
        header, _ = client.request("delete_records", {"partitions": [["gone", 0, 1]]})
        assert header["partitions"][0][2] == 0, header
        # the records are deleted, the producer's state is not: a retry is still known
        assert produce(client, "gone", batch(b"a"), [pid, 0, 0])[:2] == [0, 0]
        assert produce(client, "gone", batch(b"x"), [pid, 0, 7])[1] == 45
        time.sleep(2.0)
        produce(client, "gone", batch(b"other"), None)  # a produce runs the expiry check
        # expired: unknown again, so any sequence is accepted (Kafka 3.x/4.x, KIP-360)
        assert produce(client, "gone", batch(b"y"), [pid, 0, 7])[:2] == [2, 0]


def test_labkit_producer_with_idempotence_and_retries_survives_broker_restarts(tmp_path):
    """labkit's own producer, enable_idempotence=True with retries, while the broker is
    killed (-9) and stopped cleanly under load: every record is stored exactly once."""
    from labkit import KafkaAdminClient, KafkaProducer, NewTopic
    from tests.integration.client_helpers import read_all

    total = 6000
    broker = BrokerProcess(data_dir=tmp_path / "data").start()
    try:
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        admin.create_topics([NewTopic("exactly-once", 3, 1)])
        admin.close()
        producer = KafkaProducer(
            bootstrap_servers=broker.bootstrap,
            enable_idempotence=True,
            request_timeout_ms=4000,
            retry_backoff_ms=50,
            linger_ms=2,
            batch_size=2048,
        )
        assert producer.config["retries"] == float("inf")
        futures = []
        try:
            for i in range(total):
                futures.append(producer.send("exactly-once", str(i).encode(), key=b"%d" % (i % 7)))
                if i in (total // 3, 2 * total // 3):
                    (broker.kill if i == total // 3 else broker.stop)()
                    broker._fixed_port = True
                    broker.start()
                if i % 500 == 0:
                    time.sleep(0.02)  # spread the sends over the restarts
            producer.flush(timeout=60)
            offsets = [f.get(timeout=1) for f in futures]
        finally:
            producer.close(timeout=10)
        assert len({(m.partition, m.offset) for m in offsets}) == total
        values = [r.value for r in read_all(broker.bootstrap, "exactly-once", total + 1, 5)]
        assert len(values) == total  # none twice
        assert sorted(int(v) for v in values) == list(range(total))  # none lost
    finally:
        broker.close()
