"""Issue 11, item 1: a producer shared by threads keeps each thread's records in
send() order per partition, as Kafka promises, against the real broker."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from labkit import KafkaAdminClient, KafkaProducer, NewTopic


@pytest.fixture
def fast_thread_switches():
    """Switch threads every microsecond, so an unsafe interleaving shows up in a short test."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


def out_of_order(offsets: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """(record index, its offset, the previous record's offset) wherever a record of one
    partition got an offset lower than an earlier record of that partition."""
    last: dict[int, int] = {}
    bad = []
    for index, (partition, offset) in enumerate(offsets):
        if partition in last and offset <= last[partition]:
            bad.append((index, offset, last[partition]))
        last[partition] = offset
    return bad


def test_threads_sharing_a_producer_keep_their_per_key_order(
    shared_broker, unique_topic, fast_thread_switches
):
    threads_n, per_thread = 8, 20000
    with KafkaAdminClient(bootstrap_servers=shared_broker.bootstrap) as admin:
        admin.create_topics([NewTopic(unique_topic, 3, 1)])
    # as in issue 11: batches fill (and move to the ready queue) while drain() runs;
    # tests/unit/test_client_accumulator.py replays that interleaving deterministically
    producer = KafkaProducer(bootstrap_servers=shared_broker.bootstrap, acks=1, linger_ms=1)
    results: dict[int, list] = {}

    def worker(n: int) -> None:
        key = b"thread-%d" % n
        results[n] = [
            producer.send(unique_topic, b"%d-%d" % (n, i), key=key) for i in range(per_thread)
        ]

    try:
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(threads_n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        producer.flush(60)
    finally:
        producer.close(10)
    problems = {}
    for n, futures in results.items():
        metadata = [f.get(0) for f in futures]
        bad = out_of_order([(m.partition, m.offset) for m in metadata])
        if bad:
            problems[n] = bad[:3]
    assert len(results) == threads_n
    assert not problems, (
        f"records acknowledged out of send() order (thread: [(index, offset, "
        f"previous offset)]): {problems}"
    )


def test_retried_batches_keep_their_place_across_a_broker_restart(broker, unique_topic):
    """Batches in flight when the broker goes away fail (connection lost) and are
    retried; batches sent later must not land before them."""
    with KafkaAdminClient(bootstrap_servers=broker.bootstrap) as admin:
        admin.create_topics([NewTopic(unique_topic, 1, 1)])
    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap,
        acks=1,
        linger_ms=1,
        retries=50,
        retry_backoff_ms=100,
        batch_size=512,
    )
    futures = []
    stop = threading.Event()

    def sender() -> None:
        i = 0
        while not stop.is_set():
            futures.append(producer.send(unique_topic, b"%06d" % i, key=b"k"))
            i += 1
            if i % 50 == 0:
                time.sleep(0.001)

    thread = threading.Thread(target=sender)
    thread.start()
    try:
        time.sleep(0.5)
        broker.restart()
        time.sleep(1.5)
    finally:
        stop.set()
        thread.join(30)
        producer.flush(60)
        producer.close(10)
    metadata = [f.get(0) for f in futures]
    bad = out_of_order([(m.partition, m.offset) for m in metadata])
    assert not bad, f"{len(bad)} records acknowledged before an earlier one, e.g. {bad[:3]}"
