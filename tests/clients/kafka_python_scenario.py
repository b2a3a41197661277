"""The client-matrix scenario for kafka-python (2.0.x and 3.0.x), run as a script:

    python kafka_python_scenario.py BOOTSTRAP TOPIC_PREFIX

prints one JSON transcript on stdout: what the client saw, with nothing that differs
between two correct brokers (no ids, no times). tests/integration/test_kafka_clients.py
runs it against Apache Kafka and against labkit's Kafka listener and compares.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time

import kafka
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from labkit.client.kafka_python_fixes import keep_unfinished_joins_wanted

TIMEOUT_MS = 20_000
# record timestamps: the test passes one base to both brokers' runs (recent, so that no
# broker's time retention deletes the records mid-scenario; 2023's would be)
BASE_MS = int(sys.argv[3]) if len(sys.argv) > 3 else int(time.time() * 1000) - 60_000
FUTURE_MS = 3_600_000  # offsets_for_times past every record: none found


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
            timestamp_ms=BASE_MS + i * 1000,
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


class Member(threading.Thread):
    """One group member polling in its own thread; ``ask`` runs a command between polls."""

    def __init__(self, bootstrap: str, topic: str, group: str):
        super().__init__(daemon=True)
        self.consumer = KafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=500,
        )
        # kafka-python 3.0.12 can leave a member that joined before it knew its topic's
        # partitions owning nothing (on Apache Kafka too); labkit's mend, no wire change
        keep_unfinished_joins_wanted(self.consumer)
        self.values: set = set()
        self.assigned: list[int] = []
        self.commands: queue.Queue = queue.Queue()
        self.start()

    def ask(self, command: str):
        answer: queue.Queue = queue.Queue()
        self.commands.put((command, answer))
        result = answer.get(timeout=TIMEOUT_MS / 1000)
        if isinstance(result, Exception):
            raise result
        return result

    def run(self) -> None:
        while True:
            try:
                command, answer = self.commands.get_nowait()
            except queue.Empty:
                command = None
            if command is not None:
                try:
                    answer.put(self._do(command))
                except Exception as exc:  # noqa: BLE001 - handed to the asking thread
                    answer.put(exc)
                if command == "close":
                    return
            for rows in self.consumer.poll(timeout_ms=200).values():
                self.values.update(r.value for r in rows)
            self.assigned = sorted(tp.partition for tp in self.consumer.assignment())

    def _do(self, command: str):
        if command == "commit":
            return self.consumer.commit()
        if command == "committed":
            return sorted(
                [tp.partition, self.consumer.committed(tp)] for tp in self.consumer.assignment()
            )
        if command == "close":
            return self.consumer.close()
        raise ValueError(command)


def seen(members: list) -> int:
    return len(set().union(*(m.values for m in members)))


def wait_for(condition, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not condition():
        time.sleep(0.1)


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
    # Kafka answers CreateTopics before its metadata lists them: look until it does (5 s)
    deadline = time.monotonic() + 5
    while True:
        listed = sorted(t for t in admin.list_topics() if t.startswith(prefix))
        if len(listed) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    transcript["topics_listed"] = listed
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
    found = consumer.offsets_for_times({tps[0]: BASE_MS + 2000, tps[1]: BASE_MS + FUTURE_MS})
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
    # each member polls in a thread of its own, as two programs would: kafka-python 2.0's
    # poll() blocks in a rebalance until the group's join completes, so one thread
    # polling both members in turn would wait for itself
    members = [Member(bootstrap, group_topic, group) for _ in range(2)]
    wait_for(lambda: all(len(m.assigned) == 2 for m in members) and seen(members) == 40)
    transcript["two_members_assignment"] = sorted(len(m.assigned) for m in members)
    transcript["two_members_seen"] = seen(members)
    for m in members:
        m.ask("commit")
    members[1].ask("close")
    wait_for(lambda: len(members[0].assigned) == 4)
    transcript["after_leave_assignment"] = sorted(members[0].assigned)
    transcript["committed"] = members[0].ask("committed")
    members[0].ask("close")
    transcript["groups_listed"] = [g for g in listed_groups(admin) if g == group]
    transcript["group_offsets"] = sorted(
        [tp.partition, om.offset] for tp, om in group_offsets(admin, group).items()
    )
    admin.delete_topics([topic, group_topic])
    admin.close()
    return transcript


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
