"""The client transport against the real broker: many requests in flight, timeouts,
and what happens to requests in flight when the broker goes away."""

from __future__ import annotations

import pytest

from labkit import KafkaProducer
from labkit.client.transport import Transport, raise_for_error
from labkit.errors import KafkaConnectionError, KafkaTimeoutError, UnsupportedVersionError

# a fetch parked this long is answered by an event (a record arrives, the connection
# drops, the client's own timeout), never by its wait running out during a test
PARK_MS = 30_000  # the broker's fetch.max.wait.max.ms


def parked_fetch(topic, wait_ms=PARK_MS):
    """A fetch the broker parks for ``wait_ms`` (nothing to read at the log end)."""
    return {
        "max_wait_ms": wait_ms,
        "min_bytes": 1,
        "max_bytes": 1 << 20,
        "partitions": [[topic, 0, 0, 1 << 20]],
    }


def ensure_topic(transport, topic):
    transport.call("metadata", {"topics": [topic], "allow_auto_create": True})


def test_many_requests_in_flight_are_matched_to_their_answers(shared_broker, unique_topic):
    transport = Transport(shared_broker.bootstrap)
    try:
        ensure_topic(transport, unique_topic)
        slow = transport.request("fetch", parked_fetch(unique_topic))
        quick = [transport.request("metadata", {"topics": [unique_topic]}) for _ in range(20)]
        for future in quick:
            assert future.get(10).header["topics"][0]["name"] == unique_topic
        assert not slow.is_done  # still parked; the quick ones overtook it
        with KafkaProducer(bootstrap_servers=shared_broker.bootstrap, acks=1) as producer:
            producer.send(unique_topic, b"wakes the fetch").get(timeout=10)
        answer = slow.get(10)  # the record arrived: the parked fetch is answered
        assert answer.header["error"] == 0
        assert b"wakes the fetch" in bytes(answer.payloads[0])
        assert transport.broker_info["error"] == 0
    finally:
        transport.close()


def test_unanswered_request_times_out(shared_broker, unique_topic):
    transport = Transport(shared_broker.bootstrap)
    try:
        ensure_topic(transport, unique_topic)
        future = transport.request("fetch", parked_fetch(unique_topic), timeout_ms=300)
        with pytest.raises(KafkaTimeoutError, match="did not answer fetch"):
            future.get(5)
    finally:
        transport.close()


def test_top_level_errors_become_kafka_classes(shared_broker):
    with pytest.raises(UnsupportedVersionError):
        raise_for_error({"error": 35, "message": "nope"})
    transport = Transport(shared_broker.bootstrap)
    try:
        response = transport.request("no_such_api", {}).get(5)
        assert response.header["error"] != 0
    finally:
        transport.close()


def test_broker_restart_resends_idempotent_and_fails_the_others(broker, unique_topic):
    transport = Transport(broker.bootstrap)
    try:
        ensure_topic(transport, unique_topic)
        resent = transport.request(
            "fetch", parked_fetch(unique_topic), idempotent=True, timeout_ms=60_000
        )
        failed = transport.request(
            "fetch", parked_fetch(unique_topic), idempotent=False, timeout_ms=60_000
        )
        transport.call("metadata", {"topics": [unique_topic]})  # both fetches are parked now
        broker.kill()
        with pytest.raises(KafkaConnectionError, match="lost the connection"):
            failed.get(10)
        broker.start()
        with KafkaProducer(bootstrap_servers=broker.bootstrap, acks=1) as producer:
            producer.send(unique_topic, b"after the restart").get(timeout=20)
        answer = resent.get(20)  # sent again, parked again, woken by the record
        assert answer.header["error"] == 0
        assert b"after the restart" in bytes(answer.payloads[0])
        assert transport.call("metadata", {"topics": [unique_topic]}).header["error"] == 0
    finally:
        transport.close()


def test_closed_transport_fails_new_requests(shared_broker):
    transport = Transport(shared_broker.bootstrap)
    transport.close()
    with pytest.raises(KafkaConnectionError, match="closed"):
        transport.request("metadata", {"topics": []}).get(1)
