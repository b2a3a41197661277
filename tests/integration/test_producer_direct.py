"""Synchronous sends against the real broker: with linger_ms=0, ``send().get()`` sends
the record's batch on the calling thread (Sender.try_direct) instead of handing it to
the I/O thread and back; records still arrive once, in order, mixed with async sends,
and a failure there goes back to the sender like any other."""

from __future__ import annotations

import sys
import threading
import time

import pytest
from client_helpers import read_all

from labkit import KafkaAdminClient, KafkaProducer, MessageSizeTooLargeError, NewTopic


def direct_sends(producer) -> list:
    """Wrap the producer's direct path; the list collects True for each batch it sent."""
    used: list = []
    original = producer._acc.direct

    def counting(batch, timeout):
        sent = original(batch, timeout)
        used.append(sent)
        return sent

    producer._acc.direct = counting
    return used


def test_sync_sends_go_out_from_get_in_order(shared_broker, unique_topic):
    with KafkaProducer(bootstrap_servers=shared_broker.bootstrap, linger_ms=0) as producer:
        used = direct_sends(producer)
        metas = [producer.send(unique_topic, b"%d" % i).get() for i in range(200)]
    assert [m.offset for m in metas] == list(range(200))
    assert used.count(True) > 150  # the I/O thread may still win a few races
    assert [r.value for r in read_all(shared_broker.bootstrap, unique_topic, 200)] == \
        [b"%d" % i for i in range(200)]


def test_async_and_sync_sends_mixed_keep_their_order(shared_broker, unique_topic):
    expected = []
    with KafkaProducer(bootstrap_servers=shared_broker.bootstrap, linger_ms=0) as producer:
        used = direct_sends(producer)
        futures = []
        for round_ in range(30):
            for i in range(round_ % 4):  # a few sends nobody waits for yet
                value = b"a%d-%d" % (round_, i)
                futures.append(producer.send(unique_topic, value))
                expected.append(value)
            value = b"s%d" % round_
            sync = producer.send(unique_topic, value)
            expected.append(value)
            sync.get()
            futures.append(sync)
        metas = [f.get(timeout=20) for f in futures]
    assert [m.offset for m in metas] == list(range(len(expected)))
    assert True in used
    assert [r.value for r in read_all(shared_broker.bootstrap, unique_topic, len(expected))] \
        == expected


def test_a_send_nobody_waits_for_still_goes_out_after_sync_sends(shared_broker, unique_topic):
    with KafkaProducer(bootstrap_servers=shared_broker.bootstrap, linger_ms=0) as producer:
        used = direct_sends(producer)
        for i in range(20):
            producer.send(unique_topic, b"sync%d" % i).get()
        assert used.count(True) > 10
        # send() now leaves records to get(); the I/O thread must still send this one
        lone = producer.send(unique_topic, b"lone")
        records = read_all(shared_broker.bootstrap, unique_topic, 21)
        assert records[-1].value == b"lone"
        deadline = time.monotonic() + 10
        while not lone.is_done and time.monotonic() < deadline:
            time.sleep(0.01)
        assert lone.succeeded() and lone.value.offset == 20


def test_get_with_a_short_timeout_waits_for_the_io_thread(shared_broker, unique_topic):
    with KafkaProducer(bootstrap_servers=shared_broker.bootstrap, linger_ms=0,
                       request_timeout_ms=30000) as producer:
        used = direct_sends(producer)
        metas = [producer.send(unique_topic, b"x").get(timeout=5) for _ in range(20)]
        assert producer._transport._direct is None  # never opened
    assert [m.offset for m in metas] == list(range(20))
    assert True not in used


def test_a_direct_send_the_broker_refuses_fails_through_the_sender(shared_broker, unique_topic):
    with KafkaAdminClient(bootstrap_servers=shared_broker.bootstrap) as admin:
        admin.create_topics([NewTopic(unique_topic, 1, 1,
                                      topic_configs={"max.message.bytes": "1000"})])
    with KafkaProducer(bootstrap_servers=shared_broker.bootstrap, linger_ms=0) as producer:
        used = direct_sends(producer)
        assert producer.send(unique_topic, b"ok").get().offset == 0
        with pytest.raises(MessageSizeTooLargeError, match="max.message.bytes"):
            producer.send(unique_topic, b"b" * 3000).get()
        assert producer.send(unique_topic, b"ok again").get().offset == 1
        assert used.count(True) >= 2
    assert [r.value for r in read_all(shared_broker.bootstrap, unique_topic, 2)] == \
        [b"ok", b"ok again"]


@pytest.fixture
def fast_thread_switches():
    """Switch threads every microsecond, so an unsafe interleaving shows up in a short test."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


def test_sync_senders_on_several_threads(shared_broker, unique_topic, fast_thread_switches):
    with KafkaAdminClient(bootstrap_servers=shared_broker.bootstrap) as admin:
        admin.create_topics([NewTopic(unique_topic, 2, 1)])
    offsets: dict[int, list] = {}
    with KafkaProducer(bootstrap_servers=shared_broker.bootstrap, linger_ms=0) as producer:
        def run(n: int) -> None:
            offsets[n] = [producer.send(unique_topic, b"t%d-%d" % (n, i), partition=n % 2)
                          .get(timeout=60).offset for i in range(100)]

        threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        producer.flush(timeout=20)
    for n in range(4):
        assert offsets[n] == sorted(offsets[n])  # each thread's records in its order
    for p in (0, 1):
        got = sorted(o for n in range(4) if n % 2 == p for o in offsets[n])
        assert got == list(range(200))
