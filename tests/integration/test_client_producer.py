"""KafkaProducer against the real broker process: the course's snippet, partitioning,
errors a student hits, acks, headers, callbacks, and flushing at interpreter exit."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from client_helpers import read_all

from labkit import (
    IllegalStateError,
    InvalidTopicError,
    KafkaAdminClient,
    KafkaProducer,
    MessageSizeTooLargeError,
    NewTopic,
    RecordMetadata,
    TopicPartition,
    UnknownTopicOrPartitionError,
)
from labkit.client.partitioner import murmur2
from labkit.testing import BrokerProcess

SEED_SNIPPET = """\
import json
from labkit import KafkaProducer
producer = KafkaProducer(bootstrap_servers=['127.0.0.1:9092'])
producer.send('rta', b'testowy tekst ')
pr = KafkaProducer(bootstrap_servers=['localhost:9092'],
                   value_serializer=lambda x: json.dumps(x).encode('utf-8'))
pr.send('rta', {"id": 1, "imie": "adam", "nazwisko": "nowak"})
pr.flush()
"""


def create_topic(bootstrap, topic, partitions):
    with KafkaAdminClient(bootstrap_servers=bootstrap) as admin:
        admin.create_topics([NewTopic(topic, partitions, 1)])


def port_free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def run_script(code, env_extra=None, timeout=60):
    env = {k: v for k, v in os.environ.items() if k != "LABKIT_BOOTSTRAP"}
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env
    )


def test_seed_snippet_verbatim_then_read_back(tmp_path):
    """Issue 2's snippet, unchanged except the import, as a script; then read 'rta' back."""
    if port_free(9092):
        broker = BrokerProcess(data_dir=tmp_path / "data", port=9092)
        code = SEED_SNIPPET
    else:  # something holds 9092 here: same snippet, pointed at a free port
        broker = BrokerProcess(data_dir=tmp_path / "data")
        code = SEED_SNIPPET.replace(":9092", f":{broker.port}")
    with broker:
        result = run_script(code)
        assert result.returncode == 0, result.stderr
        records = read_all(broker.bootstrap, "rta", expected=2)
        values = sorted(r.value for r in records)
        assert values == sorted(
            [
                b"testowy tekst ",
                json.dumps({"id": 1, "imie": "adam", "nazwisko": "nowak"}).encode("utf-8"),
            ]
        )
        labkit_bin = Path(sys.executable).parent / "labkit"
        if labkit_bin.exists():
            shown = subprocess.run(
                [
                    str(labkit_bin),
                    "console-consumer",
                    "--topic",
                    "rta",
                    "--bootstrap-server",
                    broker.bootstrap,
                    "--from-beginning",
                    "--max-messages",
                    "2",
                    "--timeout-ms",
                    "10000",
                ],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert "testowy tekst" in shown.stdout
            assert '"imie": "adam"' in shown.stdout


def test_keyed_records_land_on_the_murmur2_partition(shared_broker, unique_topic):
    create_topic(shared_broker.bootstrap, unique_topic, 6)
    with KafkaProducer(
        bootstrap_servers=shared_broker.bootstrap, key_serializer=str.encode
    ) as producer:
        keys = [f"sensor-{i}" for i in range(30)]
        futures = [producer.send(unique_topic, b"v", key=k) for k in keys]
        metas = [f.get(timeout=10) for f in futures]
    for key, meta in zip(keys, metas, strict=True):
        assert meta.partition == (murmur2(key.encode()) & 0x7FFFFFFF) % 6
    assert len({m.partition for m in metas}) > 1
    records = read_all(shared_broker.bootstrap, unique_topic, expected=30)
    for record in records:
        assert record.partition == (murmur2(record.key) & 0x7FFFFFFF) % 6


def test_unkeyed_records_are_spread_batch_by_batch(shared_broker, unique_topic):
    create_topic(shared_broker.bootstrap, unique_topic, 4)
    with KafkaProducer(bootstrap_servers=shared_broker.bootstrap) as producer:
        partitions = set()
        for i in range(40):
            partitions.add(producer.send(unique_topic, b"%d" % i).get(timeout=10).partition)
    assert len(partitions) > 1


def test_metadata_offsets_sizes_and_order(shared_broker, unique_topic):
    with KafkaProducer(bootstrap_servers=shared_broker.bootstrap) as producer:
        futures = [
            producer.send(unique_topic, b"value-%d" % i, key=b"k", timestamp_ms=1_000 + i)
            for i in range(100)
        ]
        producer.flush(timeout=10)
        assert all(f.is_done and f.succeeded() for f in futures)
        metas = [f.get() for f in futures]
    assert isinstance(metas[0], RecordMetadata)
    assert [m.offset for m in metas] == list(range(100))
    assert metas[5].timestamp == 1_005
    assert (metas[5].serialized_key_size, metas[5].serialized_value_size) == (1, 7)
    assert metas[5].topic_partition == TopicPartition(unique_topic, 0)


def test_errors_a_student_hits(shared_broker, unique_topic):
    producer = KafkaProducer(bootstrap_servers=shared_broker.bootstrap, max_request_size=10_000)
    try:
        with pytest.raises(TypeError, match="value_serializer"):
            producer.send(unique_topic, {"id": 1})
        with pytest.raises(TypeError, match="key_serializer"):
            producer.send(unique_topic, b"v", key="text key")
        with pytest.raises(InvalidTopicError):
            producer.send("../etc", b"v")
        with pytest.raises(MessageSizeTooLargeError, match="max_request_size"):
            producer.send(unique_topic, b"x" * 20_000)
        producer.send(unique_topic, b"ok").get(timeout=10)
        with pytest.raises(UnknownTopicOrPartitionError, match="partition 5"):
            producer.send(unique_topic, b"v", partition=5)
        with pytest.raises(ValueError, match="Need at least one: key or value"):
            producer.send(unique_topic)
    finally:
        producer.close()
    with pytest.raises(IllegalStateError):
        producer.send(unique_topic, b"late")


@pytest.mark.parametrize("acks", [0, 1, "all"])
def test_acks(shared_broker, unique_topic, acks):
    with KafkaProducer(bootstrap_servers=shared_broker.bootstrap, acks=acks) as producer:
        metas = [producer.send(unique_topic, b"a%d" % i).get(timeout=10) for i in range(3)]
    if acks == 0:
        assert [m.offset for m in metas] == [-1, -1, -1]
    else:
        assert [m.offset for m in metas] == [0, 1, 2]
    assert len(read_all(shared_broker.bootstrap, unique_topic, expected=3)) == 3


def test_headers_and_timestamps_round_trip(shared_broker, unique_topic):
    stamp = int(time.time() * 1000) - 60_000  # within retention.ms: not deleted meanwhile
    with KafkaProducer(bootstrap_servers=shared_broker.bootstrap) as producer:
        producer.send(
            unique_topic,
            b"v",
            key=b"k",
            headers=[("trace", b"abc"), ("empty", None)],
            timestamp_ms=stamp,
        )
        producer.send(unique_topic, None, key=b"tombstone")
    first, second = read_all(shared_broker.bootstrap, unique_topic, expected=2)
    assert first.headers == [("trace", b"abc"), ("empty", None)]
    assert first.timestamp == stamp
    assert first.timestamp_type == 0
    assert second.value is None
    assert second.serialized_value_size == -1


def test_callbacks_run_with_record_metadata(shared_broker, unique_topic):
    done = threading.Event()
    seen = []

    def on_success(tag, meta):
        seen.append((tag, meta.offset))
        if len(seen) == 5:
            done.set()

    with KafkaProducer(bootstrap_servers=shared_broker.bootstrap, linger_ms=20) as producer:
        for i in range(5):
            producer.send(unique_topic, b"x").add_callback(on_success, i).add_errback(seen.append)
        assert done.wait(10)
    assert sorted(seen) == [(i, i) for i in range(5)]


def test_linger_and_small_batches_deliver_everything(shared_broker, unique_topic):
    with KafkaProducer(
        bootstrap_servers=shared_broker.bootstrap, linger_ms=5, batch_size=200
    ) as producer:
        futures = [producer.send(unique_topic, b"%05d" % i) for i in range(500)]
        producer.flush(timeout=20)
    assert [f.get().offset for f in futures] == list(range(500))
    values = [r.value for r in read_all(shared_broker.bootstrap, unique_topic, expected=500)]
    assert values == [b"%05d" % i for i in range(500)]


def test_buffered_records_are_flushed_when_the_script_exits(shared_broker, unique_topic):
    code = textwrap.dedent(f"""
        from labkit import KafkaProducer
        producer = KafkaProducer(bootstrap_servers={shared_broker.bootstrap!r}, linger_ms=2000)
        for i in range(1000):
            producer.send({unique_topic!r}, b'%d' % i)
        print('pending', producer.metrics()['producer-metrics']['records-buffered'])
    """)
    result = run_script(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[1] != "0"  # records were still buffered at exit
    records = read_all(shared_broker.bootstrap, unique_topic, expected=1000)
    assert sorted(int(r.value) for r in records) == list(range(1000))


def test_partitions_for_and_bootstrap_from_the_environment(
    shared_broker, unique_topic, monkeypatch
):
    monkeypatch.setenv("LABKIT_BOOTSTRAP", shared_broker.bootstrap)
    create_topic(shared_broker.bootstrap, unique_topic, 3)
    with KafkaProducer() as producer:
        assert producer.partitions_for(unique_topic) == {0, 1, 2}
        assert producer.bootstrap_connected()


def test_unknown_topic_without_auto_create_fails_fast(tmp_path):
    config = {"auto.create.topics.enable": "false"}
    with (
        BrokerProcess(data_dir=tmp_path / "data", config=config) as broker,
        KafkaProducer(bootstrap_servers=broker.bootstrap, max_block_ms=5000) as producer,
        pytest.raises(UnknownTopicOrPartitionError, match="labkit topics --create"),
    ):
        producer.send("missing", b"v")


def test_producer_keeps_working_across_a_broker_restart(broker, unique_topic):
    with KafkaProducer(bootstrap_servers=broker.bootstrap, retries=3) as producer:
        assert producer.send(unique_topic, b"before").get(timeout=10).offset == 0
        broker.restart()
        assert producer.send(unique_topic, b"after").get(timeout=20).offset == 1
    values = [r.value for r in read_all(broker.bootstrap, unique_topic, expected=2)]
    assert values == [b"before", b"after"]


def test_send_from_several_threads(shared_broker, unique_topic):
    results = {}

    with KafkaProducer(bootstrap_servers=shared_broker.bootstrap, batch_size=512) as producer:

        def worker(n):
            futures = [producer.send(unique_topic, b"%d-%d" % (n, i)) for i in range(2000)]
            results[n] = [f.get(timeout=20).offset for f in futures]

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    offsets = [o for n in range(4) for o in results[n]]
    assert sorted(offsets) == list(range(8000))
    assert all(results[n] == sorted(results[n]) for n in range(4))
    by_offset = {r.offset: r.value for r in read_all(shared_broker.bootstrap, unique_topic, 8000)}
    for n in range(4):
        assert [by_offset[o] for o in results[n]] == [b"%d-%d" % (n, i) for i in range(2000)]
