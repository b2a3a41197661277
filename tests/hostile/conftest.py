"""Shared by the hostile-client suite: a well-behaved client that proves the broker
still serves the class while someone abuses it.

``well_behaved`` (function scope, next to the root ``broker`` fixture) is a labkit
``KafkaProducer`` and an assigned ``KafkaConsumer`` on a topic of their own; its
``round_trip()`` sends one record, reads it back and raises AssertionError (with the
broker's log) if that does not happen within a few seconds or the process died.
"""

from __future__ import annotations

import itertools
import time

import pytest

from labkit import KafkaConsumer, KafkaProducer, TopicPartition

ROUND_TRIP_S = 10.0  # generous: "does not hang", not a speed test (2 shared CPUs)


class WellBehavedClient:
    """One producer and one consumer that do nothing unusual."""

    def __init__(self, broker, topic: str = "well-behaved"):
        self.broker = broker
        self.topic = topic
        self._seq = itertools.count()
        self.producer = KafkaProducer(
            bootstrap_servers=broker.bootstrap,
            acks=1,
            linger_ms=0,
            request_timeout_ms=int(ROUND_TRIP_S * 1000),
        )
        self.producer.send(topic, b"hello").get(timeout=ROUND_TRIP_S)
        self.consumer = KafkaConsumer(
            bootstrap_servers=broker.bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            fetch_max_wait_ms=100,
        )
        self.consumer.assign([TopicPartition(topic, 0)])

    def assert_alive(self) -> None:
        code = self.broker.proc.poll()
        assert code is None, (
            f"the broker died (exit code {code}); its log:\n{self.broker.output()[-4000:]}"
        )

    def round_trip(self) -> None:
        """Produce one record and consume it; AssertionError if either does not happen."""
        self.assert_alive()
        value = b"ping-%d" % next(self._seq)
        try:
            self.producer.send(self.topic, value, partition=0).get(timeout=ROUND_TRIP_S)
        except Exception as exc:  # any failure here is the finding
            raise AssertionError(
                f"a well-behaved producer got no answer: {exc!r}; broker log "
                f"tail:\n{self.broker.output()[-4000:]}"
            ) from exc
        deadline = time.monotonic() + ROUND_TRIP_S
        while time.monotonic() < deadline:
            for records in self.consumer.poll(timeout_ms=200).values():
                if any(r.value == value for r in records):
                    return
        raise AssertionError(
            f"a well-behaved consumer did not read {value!r} back within "
            f"{ROUND_TRIP_S:.0f} s; broker log tail:\n"
            f"{self.broker.output()[-4000:]}"
        )

    def close(self) -> None:
        self.producer.close(timeout=1)
        self.consumer.close()


@pytest.fixture
def well_behaved(broker):
    client = WellBehavedClient(broker)
    try:
        yield client
    finally:
        client.close()
