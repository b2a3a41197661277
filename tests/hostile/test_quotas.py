"""Issue 11 #13: client quotas against a real broker process.

A client flat out over its ``producer_byte_rate``/``consumer_byte_rate`` is slowed to
about that rate (generous bounds: 0.5x-2x over ~3 s), loses nothing and keeps its
order; another client meanwhile is not slowed; ``labkit configs --alter`` changes a
quota at runtime and quotas survive a restart.

The broker runs with ``quota.window.num=2`` (Kafka's default is 11): under Kafka's
algorithm a new client may first send ~(num - 1) windows' worth of its quota at once,
which with the default would dominate a 3 s measurement.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from labkit import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from labkit.cli.main import main as labkit_main
from labkit.testing import BrokerProcess

QUOTA = 100_000  # bytes per second
RECORD = 1000  # bytes per value
RUN_S = 3.0


@pytest.fixture
def quota_broker(tmp_path):
    with BrokerProcess(data_dir=tmp_path / "data", config={"quota.window.num": "2"}) as proc:
        yield proc


def _configs(broker: BrokerProcess, *argv: str) -> None:
    assert labkit_main(["configs", "--bootstrap-server", broker.bootstrap, *argv]) == 0


def _blast(producer: KafkaProducer, topic: str, seconds: float, first: int = 0):
    """Send numbered records as fast as the producer takes them (at most 300 waiting);
    return (futures, records acknowledged within ``seconds``)."""
    acked = []
    futures = []
    start = time.monotonic()
    seq = first
    while time.monotonic() - start < seconds:
        if len(futures) - len(acked) >= 300:
            time.sleep(0.001)
            continue
        value = seq.to_bytes(8, "big") + b"x" * (RECORD - 8)
        futures.append(producer.send(topic, value).add_callback(acked.append))
        seq += 1
    return futures, len(acked)


def _values_in_order(bootstrap: str, topic: str) -> list[int]:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        client_id="checker",
    )
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    end = consumer.end_offsets([tp])[tp]
    seen: list[int] = []
    deadline = time.monotonic() + 60
    while len(seen) < end and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            seen.extend(int.from_bytes(r.value[:8], "big") for r in records)
    consumer.close()
    return seen


def test_a_producer_over_its_quota_gets_about_the_quota_in_order_and_others_do_not(quota_broker):
    _configs(
        quota_broker,
        "--alter",
        "--add-config",
        f"producer_byte_rate={QUOTA}",
        "--entity-type",
        "clients",
        "--entity-name",
        "greedy",
    )
    greedy = KafkaProducer(
        bootstrap_servers=quota_broker.bootstrap,
        client_id="greedy",
        linger_ms=5,
        max_request_size=32768,
    )
    polite = KafkaProducer(
        bootstrap_servers=quota_broker.bootstrap,
        client_id="polite",
        linger_ms=5,
        max_request_size=32768,
    )
    polite_result = []
    thread = threading.Thread(
        target=lambda: polite_result.extend(_blast(polite, "polite-topic", RUN_S))
    )
    thread.start()
    futures, acked = _blast(greedy, "greedy-topic", RUN_S)
    thread.join()
    rate = acked * RECORD / RUN_S
    assert 0.5 * QUOTA <= rate <= 2 * QUOTA, f"greedy got {rate:.0f} B/s"
    polite_rate = polite_result[1] * RECORD / RUN_S
    assert polite_rate > 3 * QUOTA, f"the unthrottled client got only {polite_rate:.0f} B/s"

    # a runtime change through the CLI takes effect: four times the quota
    greedy.flush(timeout=60)
    _configs(
        quota_broker,
        "--alter",
        "--add-config",
        f"producer_byte_rate={4 * QUOTA}",
        "--client",
        "greedy",
    )
    more, acked_after = _blast(greedy, "greedy-topic", RUN_S, first=len(futures))
    rate_after = acked_after * RECORD / RUN_S
    assert 0.5 * 4 * QUOTA <= rate_after <= 2 * 4 * QUOTA, f"then {rate_after:.0f} B/s"

    greedy.flush(timeout=120)
    every = futures + more
    assert all(f.succeeded() for f in every)  # nothing failed, nothing lost
    assert _values_in_order(quota_broker.bootstrap, "greedy-topic") == list(range(len(every)))
    greedy.close()
    polite.close()


def test_a_consumer_over_its_quota_gets_about_the_quota_and_others_do_not(quota_broker):
    producer = KafkaProducer(bootstrap_servers=quota_broker.bootstrap, linger_ms=5)
    total = 3000  # 3 MB: more than both phases below can read
    for seq in range(total):
        producer.send("data", seq.to_bytes(8, "big") + b"x" * (RECORD - 8))
    producer.flush(timeout=60)
    producer.close()
    _configs(
        quota_broker,
        "--alter",
        "--add-config",
        f"consumer_byte_rate={QUOTA}",
        "--entity-type",
        "clients",
        "--entity-name",
        "slow-reader",
    )

    def reader(client_id: str) -> KafkaConsumer:
        consumer = KafkaConsumer(
            bootstrap_servers=quota_broker.bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            client_id=client_id,
        )
        consumer.assign([TopicPartition("data", 0)])
        return consumer

    def read(consumer: KafkaConsumer, seconds: float, got: list[int]) -> int:
        before = len(got)
        start = time.monotonic()
        while time.monotonic() - start < seconds and len(got) < total:
            for records in consumer.poll(timeout_ms=100).values():
                got.extend(int.from_bytes(r.value[:8], "big") for r in records)
        return len(got) - before

    fast: list[int] = []
    fast_reader = reader("fast-reader")
    thread = threading.Thread(target=lambda: read(fast_reader, 30, fast))
    thread.start()
    slow_reader = reader("slow-reader")
    slow: list[int] = []
    rate = read(slow_reader, RUN_S, slow) * RECORD / RUN_S
    thread.join()
    fast_reader.close()
    assert 0.5 * QUOTA <= rate <= 2 * QUOTA, f"slow-reader got {rate:.0f} B/s"
    assert fast == list(range(total))  # the other reader got everything meanwhile

    # a runtime change through the CLI takes effect: four times the quota
    _configs(
        quota_broker,
        "--alter",
        "--add-config",
        f"consumer_byte_rate={4 * QUOTA}",
        "--client",
        "slow-reader",
    )
    rate_after = read(slow_reader, RUN_S, slow) * RECORD / RUN_S
    slow_reader.close()
    assert 0.5 * 4 * QUOTA <= rate_after <= 2 * 4 * QUOTA, f"then {rate_after:.0f} B/s"
    assert slow == list(range(len(slow)))  # in order, nothing skipped


def test_quotas_survive_a_restart_and_show_in_describe(quota_broker):
    _configs(
        quota_broker,
        "--alter",
        "--add-config",
        "producer_byte_rate=1048576",
        "--entity-type",
        "clients",
        "--entity-name",
        "X",
    )
    _configs(
        quota_broker,
        "--alter",
        "--add-config",
        "consumer_byte_rate=2048",
        "--entity-type",
        "clients",
        "--entity-default",
    )
    quota_broker.restart()
    admin = KafkaAdminClient(bootstrap_servers=quota_broker.bootstrap)
    try:
        assert admin.describe_client_quotas() == [
            {"entity": {"client-id": None}, "values": {"consumer_byte_rate": 2048.0}},
            {"entity": {"client-id": "X"}, "values": {"producer_byte_rate": 1048576.0}},
        ]
        admin.alter_client_quotas(
            [{"entity": {"client-id": "X"}, "ops": {"producer_byte_rate": None}}]
        )
        assert [e["entity"]["client-id"] for e in admin.describe_client_quotas()] == [None]
    finally:
        admin.close()


GARBAGE = [
    ("alter_client_quotas", {}),
    ("alter_client_quotas", {"entries": "x"}),
    ("alter_client_quotas", {"entries": [1, None, [], {"entity": 5}]}),
    ("alter_client_quotas", {"entries": [{"entity": {"client-id": "\ud800"}, "ops": []}]}),
    ("alter_client_quotas", {"entries": [{"entity": {"client-id": "a"}, "ops": {"k": 1}}]}),
    (
        "alter_client_quotas",
        {
            "entries": [
                {
                    "entity": {"client-id": "a"},
                    "ops": [{"key": "producer_byte_rate", "value": 10**400}],
                }
            ]
        },
    ),
    ("alter_client_quotas", {"entries": [{"entity": {"client-id": "a", "user": "b"}, "ops": []}]}),
    ("describe_client_quotas", {"components": "all"}),
    ("describe_client_quotas", {"components": [{"entity_type": "ip"}]}),
    ("describe_client_quotas", {"components": [{"entity_type": "client-id", "match_type": 0}]}),
    ("describe_client_throttles", {"anything": [1, 2]}),
    ("produce", {"client_id": {"not": "text"}, "acks": 1, "targets": []}),
    ("fetch", {"client_id": "\ud800" * 1000, "max_wait_ms": 0, "partitions": []}),
]


def test_malformed_quota_requests_get_clear_errors_and_the_broker_carries_on(quota_broker):
    from labkit.testing import RawClient

    _configs(
        quota_broker,
        "--alter",
        "--add-config",
        "consumer_byte_rate=1000",
        "--entity-type",
        "clients",
        "--entity-default",
    )
    with RawClient(quota_broker.bootstrap) as raw:
        for api, header in GARBAGE:
            rid = raw.new_id()  # JSON with \u escapes: lone surrogates reach the broker
            raw.send_raw([b"LK1", rid, api.encode(), json.dumps(header).encode()])
            reply, _payloads = raw.wait_for(rid)
            assert reply["error"] != -1, (api, header, reply)
            for entry in reply.get("entries", []):
                assert entry.get("error", 0) in (0, 42), (api, header, entry)
        assert raw.request("api_versions", {})[0]["error"] == 0


def test_the_client_holds_produce_and_fetch_while_throttled_and_sends_the_rest(quota_broker):
    from labkit.client.transport import Transport
    from labkit.protocol.records import encode_batch

    _configs(quota_broker, "--alter", "--add-config", "producer_byte_rate=1000", "--client", "tiny")
    transport = Transport(quota_broker.bootstrap, client_id="tiny")
    try:
        batch = encode_batch([0], None, [b"x" * 20_000])
        header = {"acks": 1, "timeout_ms": 30000, "targets": [["held", 0]]}
        first = transport.request("produce", header, [batch]).get(10)
        assert first.header["results"][0][1] == 0  # appended: throttling drops nothing
        assert first.header["throttle_time_ms"] > 1000  # 20 kB at 1 kB/s
        second = transport.request("produce", header, [batch])
        meta = transport.request("metadata", {"topics": ["held"]}).get(10)  # not held back
        assert meta.header["topics"][0]["error"] == 0
        assert not second.is_done
        assert [p.api for p in transport._outbox] == ["produce"]  # never sent meanwhile
    finally:
        transport.close()


def test_the_broker_mutes_a_client_that_ignores_throttle_time(quota_broker):
    from labkit.protocol.records import encode_batch
    from labkit.testing import RawClient

    _configs(
        quota_broker, "--alter", "--add-config", "producer_byte_rate=10000", "--client", "rude"
    )
    batch = encode_batch([0], None, [b"x" * 20_000])
    header = {"client_id": "rude", "acks": 1, "timeout_ms": 30000, "targets": [["muted", 0]]}
    with RawClient(quota_broker.bootstrap, timeout=20) as raw:
        first, _ = raw.request("produce", header, [batch])
        assert first["throttle_time_ms"] > 0
        second = raw.send("produce", header, [batch])  # at once, ignoring the throttle time
        offsets, _ = raw.request(
            "list_offsets", {"client_id": "rude", "partitions": [["muted", 0, -1]]}
        )
        assert offsets["partitions"][0][3] == 1  # the second produce waits, unhandled
        reply, _ = raw.wait_for(second)
        assert reply["results"][0][:2] == [1, 0]  # then it is appended, in order
