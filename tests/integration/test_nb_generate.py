"""Generated events reach the real broker: nb.EventStream from a notebook-like loop, and
`labkit generate` as a student runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

from client_helpers import read_all

from labkit import KafkaAdminClient, KafkaProducer, NewTopic, nb


def read_json(bootstrap, topic, expected):
    return read_all(
        bootstrap,
        topic,
        expected,
        timeout_s=3.0,
        value_deserializer=lambda b: json.loads(b.decode("utf-8")),
    )


def test_event_stream_sends_keyed_transactions_and_leaves_no_threads(shared_broker, unique_topic):
    admin = KafkaAdminClient(bootstrap_servers=shared_broker.bootstrap)
    admin.create_topics([NewTopic(unique_topic, num_partitions=3, replication_factor=1)])
    admin.close()
    baseline = {t.ident for t in threading.enumerate()}
    events = list(nb.transactions(seed=42, count=60))
    stream = nb.EventStream(
        shared_broker.bootstrap, unique_topic, iter(events), rate=None, key="user_id"
    )
    for _ in range(3):  # start/stop repeatedly, as a notebook would
        stream.start()
        stream.stop()
    stream.start()
    assert stream.join(timeout=30)
    assert stream.sent == 60
    assert stream.error is None
    records = read_json(shared_broker.bootstrap, unique_topic, 60)
    assert sorted(r.value["tx_id"] for r in records) == [e["tx_id"] for e in events]
    partitions = {}
    for r in records:
        assert r.key == r.value["user_id"].encode()
        partitions.setdefault(r.key, set()).add(r.partition)
    assert all(len(p) == 1 for p in partitions.values())
    for _ in range(100):
        leftover = [t for t in threading.enumerate() if t.ident not in baseline and t.is_alive()]
        if not leftover:
            break
        threading.Event().wait(0.05)
    assert not leftover, f"threads left running: {[t.name for t in leftover]}"


def test_event_stream_with_the_notebooks_producer(shared_broker, unique_topic):
    producer = KafkaProducer(
        bootstrap_servers=shared_broker.bootstrap, value_serializer=nb.json_serializer
    )
    try:
        with nb.EventStream(producer, unique_topic, nb.sensors(seed=1, count=25), rate=500.0) as s:
            assert s.join(timeout=30)
    finally:
        producer.close()
    readings = [r.value for r in read_json(shared_broker.bootstrap, unique_topic, 25)]
    assert readings == list(nb.sensors(seed=1, count=25))


def test_labkit_generate_sends_count_events_and_reports_progress(shared_broker, unique_topic):
    env = {k: v for k, v in os.environ.items() if k != "LABKIT_BOOTSTRAP"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "labkit",
            "generate",
            "transactions",
            "--topic",
            unique_topic,
            "--rate",
            "0",
            "--count",
            "30",
            "--seed",
            "7",
            "--suspicious",
            "0.2",
            "--key",
            "user_id",
            "--bootstrap-server",
            shared_broker.bootstrap,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert f"done: sent 30 transactions to {unique_topic}" in result.stderr
    values = sorted(
        (r.value for r in read_json(shared_broker.bootstrap, unique_topic, 30)),
        key=lambda v: v["tx_id"],
    )
    assert values == list(nb.transactions(seed=7, suspicious_share=0.2, count=30))
