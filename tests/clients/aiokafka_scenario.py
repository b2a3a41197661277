"""The client-matrix scenario for aiokafka, run as a script:

    python aiokafka_scenario.py BOOTSTRAP TOPIC_PREFIX

prints one JSON transcript on stdout (see kafka_python_scenario.py).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

TIMEOUT_S = 20.0
# record timestamps: the test passes one base to both brokers' runs (recent, so that no
# broker's time retention deletes the records mid-scenario; 2023's would be)
BASE_MS = int(sys.argv[3]) if len(sys.argv) > 3 else int(time.time() * 1000) - 60_000
FUTURE_MS = 3_600_000  # offsets_for_times past every record: none found


async def produce(bootstrap: str, topic: str, acks, compression=None, **extra) -> list:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks=acks, compression_type=compression, **extra
    )
    await producer.start()
    sent = []
    try:
        for i in range(6):
            meta = await producer.send_and_wait(
                topic,
                key=b"user-%d" % (i % 3),
                value=json.dumps({"n": i, "acks": str(acks)}).encode(),
                headers=[("source", b"matrix"), ("n", str(i).encode())],
                partition=i % 2,
                timestamp_ms=BASE_MS + i * 1000,
            )
            if acks != 0:
                sent.append([meta.partition, meta.offset])
    finally:
        await producer.stop()
    return sorted(sent)


async def drain(consumer, want: int) -> list:
    got = []
    deadline = time.monotonic() + TIMEOUT_S
    while len(got) < want and time.monotonic() < deadline:
        batch = await consumer.getmany(timeout_ms=500)
        for tp, rows in batch.items():
            got += [
                [
                    tp.partition,
                    r.offset,
                    r.timestamp,
                    r.key.decode(),
                    json.loads(r.value),
                    [[h, v.decode()] for h, v in r.headers],
                ]
                for r in rows
            ]
    return sorted(got, key=lambda r: (r[0], r[1]))


async def two_members(bootstrap: str, topic: str, group: str) -> dict:
    members = [
        AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=500,
        )
        for _ in range(2)
    ]
    for m in members:
        await m.start()
    seen: set = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (
        all(len(m.assignment()) == 2 for m in members) and len(seen) == 40
    ):
        for m in members:
            for rows in (await m.getmany(timeout_ms=200)).values():
                seen.update(r.value for r in rows)
    out = {"assignment": sorted(len(m.assignment()) for m in members), "seen": len(seen)}
    for m in members:
        await m.commit()
    await members[1].stop()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(members[0].assignment()) != 4:
        await members[0].getmany(timeout_ms=200)
    out["after_leave"] = sorted(tp.partition for tp in members[0].assignment())
    committed = []
    for tp in sorted(members[0].assignment()):
        committed.append([tp.partition, await members[0].committed(tp)])
    out["committed"] = committed
    await members[0].stop()
    return out


async def main(bootstrap: str, prefix: str) -> dict:
    transcript: dict = {"client": "aiokafka"}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    topic, group_topic = prefix + "-records", prefix + "-group"
    await admin.create_topics([NewTopic(topic, 2, 1), NewTopic(group_topic, 4, 1)])
    # Kafka answers CreateTopics before its metadata lists them: look until it does (5 s)
    deadline = time.monotonic() + 5
    while True:
        listed = sorted(t for t in await admin.list_topics() if t.startswith(prefix))
        if len(listed) == 2 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    transcript["topics_listed"] = listed
    transcript["produced"] = {
        "acks=1": await produce(bootstrap, topic, 1),
        "acks=all+gzip": await produce(bootstrap, topic, "all", "gzip"),
        "idempotent": await produce(bootstrap, topic, "all", enable_idempotence=True),
    }
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
    consumer.assign(tps)
    await consumer.seek_to_beginning()
    transcript["from_beginning"] = await drain(consumer, 18)
    transcript["end_offsets"] = sorted(
        [tp.partition, o] for tp, o in (await consumer.end_offsets(tps)).items()
    )
    found = await consumer.offsets_for_times({tps[0]: BASE_MS + 2000, tps[1]: BASE_MS + FUTURE_MS})
    transcript["offsets_for_times"] = sorted(
        [tp.partition, None if ot is None else ot.offset] for tp, ot in found.items()
    )
    consumer.seek(tps[1], 4)
    transcript["after_seek"] = [r[:2] for r in await drain(consumer, 5)]
    await consumer.stop()

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    for i in range(40):
        await producer.send(group_topic, value=b"g%d" % i, partition=i % 4)
    await producer.stop()
    transcript["group"] = await two_members(bootstrap, group_topic, prefix + "-g")
    await admin.delete_topics([topic, group_topic])
    await admin.close()
    return transcript


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2]))))
