"""The client-matrix scenario for kafka-python (2.0.x and 3.0.x), run as a script:

    python kafka_python_scenario.py BOOTSTRAP TOPIC_PREFIX

prints one JSON transcript on stdout: what the client saw, with nothing that differs
between two correct brokers (no ids, no times). tests/integration/test_kafka_clients.py
runs it against Apache Kafka and against labkit's Kafka listener and compares.
"""

from __future__ import annotations

import json
import sys
import time

import kafka
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

TIMEOUT_MS = 20_000


def produce(bootstrap: str, topic: str, acks, compression=None, **extra) -> list:
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks=acks, compression_type=compression, **extra
    )
    sent = []
    for i in range(6):
        future = producer.send(
            topic,
            key=b"user-%d" % (i % 3),
            value=json.dumps({"n": i, "acks": str(acks)}).encode(),
            headers=[("source", b"matrix"), ("n", str(i).encode())],
            partition=i % 2,
            timestamp_ms=1_700_000_000_000 + i * 1000,
        )
        if acks != 0:
            meta = future.get(timeout=TIMEOUT_MS / 1000)
            sent.append([meta.partition, meta.offset])
    producer.flush()
    producer.close()
    return sent


def records(batch) -> list:
    out = []
    for tp, rows in sorted(batch.items()):
        for r in rows:
            out.append(
                [
                    tp.partition,
                    r.offset,
                    r.timestamp,
                    r.key.decode(),
                    json.loads(r.value),
                    list(map(list, r.headers)),
                ]
            )
    return out


def drain(consumer, want: int) -> list:
    got = []
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while len(got) < want and time.monotonic() < deadline:
        got += records(consumer.poll(timeout_ms=500))
    return sorted(got, key=lambda r: (r[0], r[1]))


def decode_headers(rows: list) -> list:
    return [
        [p, o, ts, k, v, [[h, b.decode() if isinstance(b, bytes) else b] for h, b in hs]]
        for p, o, ts, k, v, hs in rows
    ]


def listed_groups(admin) -> list:
    if hasattr(admin, "list_groups"):  # 3.x
        return sorted(g["group_id"] if isinstance(g, dict) else g[0] for g in admin.list_groups())
    return sorted(g[0] for g in admin.list_consumer_groups())  # 2.0.x


def group_offsets(admin, group: str) -> dict:
    if hasattr(admin, "list_group_offsets"):  # 3.x
        return admin.list_group_offsets({group: None})[group]
    return admin.list_consumer_group_offsets(group)


def main(bootstrap: str, prefix: str) -> dict:
    transcript: dict = {"client": "kafka-python", "kafka_python_version": kafka.__version__}
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    topic, group_topic = prefix + "-records", prefix + "-group"
    admin.create_topics([NewTopic(topic, 2, 1), NewTopic(group_topic, 4, 1)])
    transcript["topics_listed"] = sorted(t for t in admin.list_topics() if t.startswith(prefix))
    idempotence = {"enable_idempotence": False} if kafka.__version__ >= "2.1" else {}
    transcript["produced"] = {
        "acks=1": produce(bootstrap, topic, 1, **idempotence),
        "acks=all+gzip": produce(bootstrap, topic, "all", "gzip", **idempotence),
        "acks=0": produce(bootstrap, topic, 0, **idempotence),
    }
    if kafka.__version__ >= "2.1":  # 3.x: idempotence on by default, as the Java producer
        admin.create_topics([NewTopic(prefix + "-idempotent", 2, 1)])
        transcript["idempotent"] = produce(bootstrap, prefix + "-idempotent", "all")
        admin.delete_topics([prefix + "-idempotent"])

    tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    consumer.assign(tps)
    consumer.seek_to_beginning()
    total = 18
    transcript["from_beginning"] = decode_headers(drain(consumer, total))
    transcript["end_offsets"] = sorted(
        [tp.partition, o] for tp, o in consumer.end_offsets(tps).items()
    )
    transcript["beginning_offsets"] = sorted(
        [tp.partition, o] for tp, o in consumer.beginning_offsets(tps).items()
    )
    found = consumer.offsets_for_times({tps[0]: 1_700_000_002_000, tps[1]: 1_800_000_000_000})
    transcript["offsets_for_times"] = sorted(
        [tp.partition, None if ot is None else ot.offset] for tp, ot in found.items()
    )
    consumer.seek(tps[1], 4)
    transcript["after_seek"] = [r[:2] for r in drain(consumer, total // 2 - 4)]
    consumer.seek_to_end()
    transcript["positions_at_end"] = sorted([tp.partition, consumer.position(tp)] for tp in tps)
    consumer.close()

    # a group of two members shares four partitions; one leaves, the other takes all
    producer = KafkaProducer(bootstrap_servers=bootstrap, **idempotence)
    for i in range(40):
        producer.send(group_topic, value=b"g%d" % i, partition=i % 4)
    producer.flush()
    producer.close()
    group = prefix + "-g"
    members = [
        KafkaConsumer(
            group_topic,
            bootstrap_servers=bootstrap,
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=500,
        )
        for _ in range(2)
    ]
    seen: set = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (
        all(len(m.assignment()) == 2 for m in members) and len(seen) == 40
    ):
        for m in members:
            for rows in m.poll(timeout_ms=200).values():
                seen.update(r.value for r in rows)
    transcript["two_members_assignment"] = sorted(len(m.assignment()) for m in members)
    transcript["two_members_seen"] = len(seen)
    for m in members:
        m.commit()
    members[1].close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(members[0].assignment()) != 4:
        members[0].poll(timeout_ms=200)
    transcript["after_leave_assignment"] = sorted(tp.partition for tp in members[0].assignment())
    committed = {tp.partition: members[0].committed(tp) for tp in members[0].assignment()}
    transcript["committed"] = sorted(committed.items())
    members[0].close()
    transcript["groups_listed"] = [g for g in listed_groups(admin) if g == group]
    transcript["group_offsets"] = sorted(
        [tp.partition, om.offset] for tp, om in group_offsets(admin, group).items()
    )
    admin.delete_topics([topic, group_topic])
    admin.close()
    return transcript


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
