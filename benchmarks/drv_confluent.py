"""Worker operations for confluent-kafka (librdkafka) against a Kafka-protocol broker.

The loops mirror drv_kafka.py: ``produce()`` with ``poll(0)`` every 1,000 records
and ``flush()`` at the end, ``consume(num_messages=500)`` (kafka-python's
``max_poll_records`` default) for reading, ``produce(); flush()`` per record for
sync sends. librdkafka's defaults are kept (``linger.ms`` 5) except in the
latency runs, which set ``linger.ms=0`` as anyone measuring latency would.
"""

from __future__ import annotations

import time

import confluent_kafka as ck
from common import (
    Pacer,
    emit,
    latency_summary,
    monotonic_ns,
    padding,
    read_stamp,
    result,
    stamped,
    value_of,
)
from drv_kafka import _member_loop

perf = time.perf_counter
POLL_BATCH = 500


def _acks(acks) -> str:
    return "all" if acks in ("all", -1) else str(acks)


def _producer(spec: dict, **extra) -> ck.Producer:
    conf = {"bootstrap.servers": spec["bootstrap"], "acks": _acks(spec.get("acks", 1))}
    conf.update(spec.get("producer_config") or {})
    conf.update(extra)
    producer = ck.Producer(conf)
    producer.list_topics(spec["topic"], timeout=10)  # metadata before the clock starts
    return producer


SETTINGS = {
    "linger.ms": "5 (default)",
    "batch.num.messages": "10000 (default)",
    "batch.size": "1000000 (default)",
}


def produce(spec: dict) -> None:
    producer = _producer(spec)
    topic, n, value = spec["topic"], spec["n"], value_of(spec["size"])
    deadline = perf() + spec.get("max_seconds", 60)
    send, poll = producer.produce, producer.poll
    sent = 0
    t0 = perf()
    while sent < n:
        chunk = min(1000, n - sent)
        for _ in range(chunk):
            while True:
                try:
                    send(topic, value)
                    break
                except BufferError:  # local queue full: serve delivery reports, retry
                    poll(0.05)
        sent += chunk
        poll(0)
        if perf() > deadline:
            break
    t_sent = perf()
    left = producer.flush(60)
    t1 = perf()
    result(
        records=sent - left,
        seconds=t1 - t0,
        send_seconds=t_sent - t0,
        settings={"acks": _acks(spec.get("acks", 1)), **SETTINGS},
    )


def sync(spec: dict) -> None:
    producer = _producer(spec, **{"linger.ms": 0})
    topic, n, value = spec["topic"], spec["n"], value_of(spec["size"])
    deadline = perf() + spec.get("max_seconds", 30)
    sent = 0
    t0 = perf()
    while sent < n:
        producer.produce(topic, value)
        producer.flush(30)
        sent += 1
        if sent % 256 == 0 and perf() > deadline:
            break
    t1 = perf()
    result(records=sent, seconds=t1 - t0, settings={"linger.ms": 0, "acks": _acks(spec["acks"])})


def _consumer(spec: dict, **extra) -> ck.Consumer:
    conf = {
        "bootstrap.servers": spec["bootstrap"],
        "group.id": spec.get("group", "bench-reader"),
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    }
    conf.update(spec.get("consumer_config") or {})
    conf.update(extra)
    return ck.Consumer(conf)


def consume(spec: dict) -> None:
    consumer = _consumer(spec)
    consumer.assign([ck.TopicPartition(spec["topic"], 0, ck.OFFSET_BEGINNING)])
    n = spec["n"]
    deadline = perf() + spec.get("max_seconds", 60)
    got = errors = 0
    take = consumer.consume
    t0 = perf()
    t_first, first = None, 0  # rate counts from the first batch: startup is not reading
    while got < n and perf() < deadline:
        for message in take(POLL_BATCH, 0.5):
            if message.error() is None:
                got += 1
            else:
                errors += 1
        if t_first is None and got:
            t_first, first = perf(), got
    t1 = perf()
    result(
        records=got,
        seconds=t1 - t0,
        errors=errors,
        timed=[got - first, t1 - (t_first or t1)],
        settings={"num_messages": POLL_BATCH, "fetch.wait.max.ms": "500 (default)"},
    )
    consumer.close()


def lat_consume(spec: dict) -> None:
    consumer = _consumer(spec)
    tp = ck.TopicPartition(spec["topic"], 0, ck.OFFSET_END)
    consumer.assign([tp])
    consumer.consume(1, 0.5)  # let it resolve OFFSET_END before the producer starts
    emit({"ev": "ready"})
    n, skip = spec["n"], spec.get("skip", 0)
    deadline = perf() + spec["max_seconds"]
    latencies = []
    got = 0
    while got < n and perf() < deadline:
        messages = consumer.consume(POLL_BATCH, 0.1)
        now = monotonic_ns()
        for message in messages:
            if message.error() is not None:
                continue
            seq, sent_ns = read_stamp(message.value())
            if seq >= skip:
                latencies.append(now - sent_ns)
            got += 1
    result(records=got, **latency_summary(latencies))
    consumer.close()


def lat_produce(spec: dict) -> None:
    producer = _producer(spec, **{"linger.ms": 0})
    topic, n = spec["topic"], spec["n"]
    parts = spec.get("partitions")
    pad = padding(spec["size"])
    pacer = Pacer(spec["rate"], n)
    seq = 0
    while seq < n:
        for _ in range(pacer.due()):
            if parts:
                producer.produce(topic, stamped(seq, pad), partition=seq % parts)
            else:
                producer.produce(topic, stamped(seq, pad))
            seq += 1
        pacer.sent = seq
        producer.poll(0)
    producer.flush(30)
    result(
        records=seq,
        seconds=(monotonic_ns() - pacer.start_ns) / 1e9,
        max_behind_ms=pacer.max_behind_ns / 1e6,
    )


def group_member(spec: dict) -> None:
    consumer = _consumer(
        spec,
        **{
            "group.id": spec["group"],
            "enable.auto.commit": True,
            "auto.offset.reset": spec.get("reset", "earliest"),
            "session.timeout.ms": spec["session_timeout_ms"],
            "heartbeat.interval.ms": spec["heartbeat_interval_ms"],
            "client.id": spec.get("client_id", "bench-member"),
        },
    )
    consumer.subscribe([spec["topic"]])
    emit({"ev": "started", "t": monotonic_ns()})

    def poll(timeout_ms: int) -> dict:
        out: dict = {}
        for message in consumer.consume(POLL_BATCH, timeout_ms / 1000.0):
            if message.error() is None:
                out.setdefault(message.partition(), []).append(message)
        return out

    _member_loop(
        poll,
        lambda: {tp.partition for tp in consumer.assignment()},
        lambda records: (records[0].offset(), records[-1].offset()),
        spec,
    )
    consumer.close()
