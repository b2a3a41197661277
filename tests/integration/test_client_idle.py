"""Idle clients cost almost nothing (issue 19, item 1): the I/O thread sleeps until its
next deadline instead of waking on a fixed tick."""

from __future__ import annotations

import threading
import time

from labkit.client.transport import Transport


def test_an_idle_transport_sleeps_until_its_next_deadline(shared_broker):
    transport = Transport(shared_broker.bootstrap, name="idle-test")
    turns = []
    due = threading.Event()

    def driver(now: float) -> float | None:
        turns.append(now)
        if len(turns) == 1:
            return 1.5  # the only deadline: one turn 1.5 s from now
        due.set()
        return None

    try:
        transport.add_driver(driver)
        assert due.wait(10), "the driver's deadline was not honoured"
        time.sleep(1.0)  # nothing due, nothing in flight: no turn at all
        assert len(turns) == 2, f"{len(turns)} loop turns; an idle client must not tick"
        assert turns[1] - turns[0] >= 1.4
        assert transport.call("api_versions", {}).header["error"] == 0  # still awake to work
    finally:
        transport.close()


def _topic(bootstrap, topic):
    from labkit import KafkaAdminClient, NewTopic

    with KafkaAdminClient(bootstrap_servers=bootstrap) as admin:
        admin.create_topics([NewTopic(topic, 3, 1)])


def test_a_record_sent_while_the_user_is_busy_is_in_hand_at_the_next_poll(
    shared_broker, unique_topic
):
    """Prefetch (issue 19): the I/O thread keeps a fetch in flight after every answer,
    also while the user's code runs between polls (on main the next fetch went out
    only inside poll(), so poll(0) after a busy spell found nothing)."""
    from labkit import KafkaConsumer, KafkaProducer

    _topic(shared_broker.bootstrap, unique_topic)
    consumer = KafkaConsumer(
        unique_topic,
        bootstrap_servers=shared_broker.bootstrap,
        group_id=unique_topic,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
    )
    try:
        deadline = time.monotonic() + 30
        while not consumer.assignment() and time.monotonic() < deadline:
            consumer.poll(timeout_ms=100)
        assert consumer.assignment(), "no assignment within 30 s"
        consumer.poll(timeout_ms=300)  # positions known, first fetches answered
        time.sleep(0.5)  # the user is busy longer than a long poll (100 ms)
        with KafkaProducer(bootstrap_servers=shared_broker.bootstrap) as producer:
            producer.send(unique_topic, b"while-busy").get(timeout=10)
        # still busy (no poll): wait, generously, for the record to arrive
        deadline = time.monotonic() + 10
        while not consumer._fetcher.has_buffered() and time.monotonic() < deadline:
            time.sleep(0.02)
        got = [r.value for rs in consumer.poll(timeout_ms=0).values() for r in rs]
        assert got == [b"while-busy"], "the record was not fetched while the user was busy"
    finally:
        consumer.close()


def test_an_idle_consumer_poll_is_not_woken_by_each_empty_long_poll(shared_broker, unique_topic):
    """An idle consumer waiting in poll() sleeps through its fetches' empty answers
    (the I/O thread sends the next long poll itself): counted, not timed."""
    from labkit import KafkaConsumer

    _topic(shared_broker.bootstrap, unique_topic)
    consumer = KafkaConsumer(
        unique_topic,
        bootstrap_servers=shared_broker.bootstrap,
        group_id=unique_topic,
        auto_offset_reset="latest",
        fetch_max_wait_ms=100,
    )
    try:
        deadline = time.monotonic() + 30
        while not consumer.assignment() and time.monotonic() < deadline:
            consumer.poll(timeout_ms=100)
        assert consumer.assignment(), "no assignment within 30 s"
        consumer.poll(timeout_ms=300)
        wakes = []
        wait = consumer._fetcher.wait
        consumer._fetcher.wait = lambda timeout: wakes.append(wait(timeout)) or wakes[-1]
        turns = consumer._transport.turns
        assert consumer.poll(timeout_ms=1500) == {}
        long_polls = consumer._transport.turns - turns  # ~15: one per 100 ms long poll
        assert long_polls >= 3, "the fetches must keep going (long polls of 100 ms)"
        assert wakes.count(True) <= 1, (
            f"poll() woke {wakes.count(True)} times for {long_polls} empty answers"
        )
    finally:
        consumer.close()
