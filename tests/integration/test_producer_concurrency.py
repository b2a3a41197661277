"""KafkaProducer under concurrent senders against the real broker: the I/O thread
drains while application threads append (benchmarks/NOTES.md, finding 1), and a
failure inside the sender fails the records it had taken instead of losing them."""

from __future__ import annotations

import sys
import threading

import pytest

from labkit import KafkaAdminClient, KafkaConsumer, KafkaError, KafkaProducer, NewTopic


def count_records(bootstrap, topic, expected, timeout_s=20.0):
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=int(timeout_s * 1000),
    )
    seen = 0
    try:
        while seen < expected:
            batch = consumer.poll(timeout_ms=timeout_s * 1000, max_records=10000)
            if not batch:
                break
            seen += sum(map(len, batch.values()))
    finally:
        consumer.close()
    return seen


@pytest.fixture
def fast_thread_switches():
    """Switch threads every microsecond, so an unsafe interleaving shows up in a short test."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


def test_concurrent_senders_while_the_sender_drains(
    shared_broker, unique_topic, fast_thread_switches
):
    threads_n, per_thread = 4, 5000
    with KafkaAdminClient(bootstrap_servers=shared_broker.bootstrap) as admin:
        admin.create_topics([NewTopic(unique_topic, 2, 1)])
    # tiny batches and requests: the ready queues are long and drain() stops early,
    # so it scans queues that send() is appending to
    producer = KafkaProducer(
        bootstrap_servers=shared_broker.bootstrap,
        batch_size=300,
        max_request_size=1500,
        linger_ms=1,
    )
    futures: list = []
    lock = threading.Lock()

    def worker(n):
        mine = [producer.send(unique_topic, b"%d-%d" % (n, i)) for i in range(per_thread)]
        with lock:
            futures.extend(mine)

    try:
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(threads_n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        producer.flush(timeout=20)  # KafkaTimeoutError if a batch got lost
        assert all(f.is_done for f in futures)
        assert all(f.succeeded() for f in futures)
    finally:
        producer.close(timeout=5)
    sent = threads_n * per_thread
    assert len(futures) == sent
    assert count_records(shared_broker.bootstrap, unique_topic, sent) == sent


def test_an_error_inside_the_sender_fails_its_records_and_flush_returns(
    shared_broker, unique_topic
):
    producer = KafkaProducer(bootstrap_servers=shared_broker.bootstrap, batch_size=200)
    try:
        producer.partitions_for(unique_topic)
        errors = []

        def broken_seal_hook(buf):  # stands in for any bug on the I/O thread's path
            raise RuntimeError("injected fault")

        producer._on_seal = broken_seal_hook
        futures = [producer.send(unique_topic, b"%03d" % i) for i in range(50)]
        futures[0].add_errback(errors.append)
        producer.flush(timeout=10)  # before the fix: the sealed batches were lost, it hung
        assert all(f.failed() for f in futures)
        error = futures[-1].exception
        assert isinstance(error, KafkaError)
        assert unique_topic in str(error)
        assert isinstance(error.__cause__, RuntimeError)
        with pytest.raises(KafkaError, match="were not written"):
            futures[1].get(timeout=1)
        assert errors
        assert errors[0] is futures[0].exception
        del producer._on_seal  # the fault is gone: the producer works again
        assert producer.send(unique_topic, b"after").get(timeout=10).offset == 0
    finally:
        producer.close(timeout=5)
