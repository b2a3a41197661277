"""The client-matrix scenario for confluent-kafka (librdkafka), run as a script:

    python confluent_scenario.py BOOTSTRAP TOPIC_PREFIX

prints one JSON transcript on stdout (see kafka_python_scenario.py).
"""

from __future__ import annotations

import json
import sys
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

TIMEOUT_S = 20.0
# record timestamps: the test passes one base to both brokers' runs (recent, so that no
# broker's time retention deletes the records mid-scenario; 2023's would be)
BASE_MS = int(sys.argv[3]) if len(sys.argv) > 3 else int(time.time() * 1000) - 60_000
FUTURE_MS = 3_600_000  # offsets_for_times past every record: none found


def produce(bootstrap: str, topic: str, acks: str, compression: str = "none", **extra) -> list:
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": acks,
            "compression.type": compression,
            "linger.ms": 5,
            **extra,
        }
    )
    sent: list = []

    def delivered(err, msg):
        sent.append([msg.partition(), msg.offset()] if err is None else str(err))

    for i in range(6):
        producer.produce(
            topic,
            key=b"user-%d" % (i % 3),
            value=json.dumps({"n": i, "acks": acks}).encode(),
            headers=[("source", b"matrix"), ("n", str(i).encode())],
            partition=i % 2,
            timestamp=BASE_MS + i * 1000,
            on_delivery=delivered,
        )
    assert producer.flush(TIMEOUT_S) == 0, "records left unsent"
    return sorted(sent) if acks != "0" else len(sent)


def consume(consumer: Consumer, want: int) -> list:
    got = []
    deadline = time.monotonic() + TIMEOUT_S
    while len(got) < want and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            got.append(["error", str(msg.error().code())])
            continue
        got.append(
            [
                msg.partition(),
                msg.offset(),
                msg.timestamp()[1],
                msg.key().decode(),
                json.loads(msg.value()),
                [[h, v.decode()] for h, v in msg.headers() or []],
            ]
        )
    return sorted(got, key=lambda r: (r[0], r[1]))


def group_member(bootstrap: str, topic: str, group: str, strategy: str) -> Consumer:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "partition.assignment.strategy": strategy,
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 500,
        }
    )
    consumer.subscribe([topic])
    return consumer


def two_members(bootstrap: str, topic: str, group: str, strategy: str) -> dict:
    members = [group_member(bootstrap, topic, group, strategy) for _ in range(2)]
    seen: set = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (
        all(len(m.assignment()) == 2 for m in members) and len(seen) == 40
    ):
        for m in members:
            msg = m.poll(0.2)
            if msg is not None and not msg.error():
                seen.add(msg.value())
    out = {"assignment": sorted(len(m.assignment()) for m in members), "seen": len(seen)}
    for m in members:
        m.commit(asynchronous=False)
    members[1].close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(members[0].assignment()) != 4:
        members[0].poll(0.2)
    out["after_leave"] = sorted(tp.partition for tp in members[0].assignment())
    committed = members[0].committed(members[0].assignment(), timeout=TIMEOUT_S)
    out["committed"] = sorted([tp.partition, tp.offset] for tp in committed)
    members[0].close()
    return out


def main(bootstrap: str, prefix: str) -> dict:
    transcript: dict = {"client": "confluent-kafka"}
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic, group_topic = prefix + "-records", prefix + "-group"
    futures = admin.create_topics(
        [
            NewTopic(topic, 2, 1, config={"retention.ms": "3600000"}),
            NewTopic(group_topic, 4, 1),
        ]
    )
    for future in futures.values():
        future.result(TIMEOUT_S)
    listed = admin.list_topics(timeout=TIMEOUT_S).topics
    transcript["topics_listed"] = sorted(
        [name, len(meta.partitions)] for name, meta in listed.items() if name.startswith(prefix)
    )
    [configs] = admin.describe_configs([ConfigResource("topic", topic)]).values()
    transcript["retention.ms"] = configs.result(TIMEOUT_S)["retention.ms"].value

    transcript["produced"] = {
        "acks=1": produce(bootstrap, topic, "1"),
        "acks=all+gzip": produce(bootstrap, topic, "all", "gzip"),
        "acks=0": produce(bootstrap, topic, "0"),
        "idempotent": produce(bootstrap, topic, "all", **{"enable.idempotence": True}),
    }
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": prefix + "-assign",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in (0, 1)])
    transcript["from_beginning"] = consume(consumer, 24)
    transcript["watermarks"] = [
        list(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=TIMEOUT_S))
        for p in (0, 1)
    ]
    found = consumer.offsets_for_times(
        [TopicPartition(topic, 0, BASE_MS + 2000), TopicPartition(topic, 1, BASE_MS + FUTURE_MS)],
        timeout=TIMEOUT_S,
    )
    transcript["offsets_for_times"] = sorted([tp.partition, tp.offset] for tp in found)
    consumer.seek(TopicPartition(topic, 1, 4))
    transcript["after_seek"] = [r[:2] for r in consume(consumer, 8)]
    consumer.close()

    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(40):
        producer.produce(group_topic, value=b"g%d" % i, partition=i % 4)
    producer.flush(TIMEOUT_S)
    for strategy in ("range", "cooperative-sticky"):
        transcript["group-" + strategy] = two_members(
            bootstrap, group_topic, f"{prefix}-{strategy}", strategy
        )
    for future in admin.delete_topics([topic, group_topic]).values():
        future.result(TIMEOUT_S)
    return transcript


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
