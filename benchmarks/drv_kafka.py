"""Worker operations for clients with kafka-python's API: labkit itself and kafka-python.

``spec["lib"]`` names the module (``"labkit"`` or ``"kafka"``); everything else
is the same code, so both clients run exactly the same loop. Each operation
ends with one ``result`` line (see common.py).
"""

from __future__ import annotations

import importlib
import os
import time

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

perf = time.perf_counter
PROGRESS_S = 0.5


def _lib(spec: dict):
    return importlib.import_module(spec["lib"])


def _producer(spec: dict, **extra):
    lib = _lib(spec)
    configs = {"bootstrap_servers": spec["bootstrap"], "acks": spec.get("acks", 1)}
    configs.update(spec.get("producer_config") or {})
    configs.update(extra)
    producer = lib.KafkaProducer(**configs)
    producer.partitions_for(spec["topic"])  # metadata (and topic) before the clock starts
    return producer


def _producer_settings(producer) -> dict:
    c = producer.config
    return {
        k: c.get(k)
        for k in (
            "acks",
            "batch_size",
            "linger_ms",
            "max_in_flight_requests_per_connection",
            "max_request_size",
        )
        if k in c
    }


def produce(spec: dict) -> None:
    """Send ``n`` records of ``size`` bytes through send(), then flush(); time both."""
    producer = _producer(spec)
    topic, n, value = spec["topic"], spec["n"], value_of(spec["size"])
    deadline = perf() + spec.get("max_seconds", 60)
    send = producer.send
    sent = 0
    t0 = perf()
    while sent < n:
        chunk = min(10000, n - sent)
        for _ in range(chunk):
            send(topic, value)
        sent += chunk
        if perf() > deadline:
            break
    t_sent = perf()
    producer.flush()
    t1 = perf()
    result(
        records=sent,
        seconds=t1 - t0,
        send_seconds=t_sent - t0,
        settings=_producer_settings(producer),
    )
    producer.close()


def sync(spec: dict) -> None:
    """``send(...).get()`` per record: one round trip per record."""
    producer = _producer(spec)
    topic, n, value = spec["topic"], spec["n"], value_of(spec["size"])
    deadline = perf() + spec.get("max_seconds", 30)
    sent = 0
    t0 = perf()
    while sent < n:
        producer.send(topic, value).get(timeout=30)
        sent += 1
        if sent % 256 == 0 and perf() > deadline:
            break
    t1 = perf()
    result(records=sent, seconds=t1 - t0, settings=_producer_settings(producer))
    producer.close()


def _consumer(spec: dict, *topics, **extra):
    lib = _lib(spec)
    configs = {
        "bootstrap_servers": spec["bootstrap"],
        "group_id": None,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
    }
    configs.update(spec.get("consumer_config") or {})
    configs.update(extra)
    return lib, lib.KafkaConsumer(*topics, **configs)


def consume(spec: dict) -> None:
    """Read ``n`` records of partition 0 from the beginning with poll() (or iteration)."""
    iterate = spec.get("mode") == "iter"
    lib, consumer = _consumer(spec, **({"consumer_timeout_ms": 5000} if iterate else {}))
    tp = lib.TopicPartition(spec["topic"], 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    consumer.position(tp)
    n = spec["n"]
    deadline = perf() + spec.get("max_seconds", 60)
    got = 0
    t0 = perf()
    t_first, first = None, 0  # rate counts from the first batch: startup is not reading
    if iterate:
        for _record in consumer:
            got += 1
            if t_first is None:
                t_first, first = perf(), 1
            if got >= n:
                break
    else:
        poll = consumer.poll
        while got < n and perf() < deadline:
            for records in poll(timeout_ms=500).values():
                got += len(records)
            if t_first is None and got:
                t_first, first = perf(), got
    t1 = perf()
    result(
        records=got,
        seconds=t1 - t0,
        timed=[got - first, t1 - (t_first or t1)],
        settings={
            "max_poll_records": consumer.config.get("max_poll_records"),
            "fetch_max_wait_ms": consumer.config.get("fetch_max_wait_ms"),
        },
    )
    consumer.close()


def lat_consume(spec: dict) -> None:
    """Wait for stamped records at the end of the topic; latency = receive - send time."""
    lib, consumer = _consumer(spec, auto_offset_reset="latest")
    tp = lib.TopicPartition(spec["topic"], 0)
    consumer.assign([tp])
    consumer.seek_to_end(tp)
    consumer.position(tp)
    consumer.poll(timeout_ms=0)
    emit({"ev": "ready"})
    n, skip = spec["n"], spec.get("skip", 0)
    deadline = perf() + spec["max_seconds"]
    latencies = []
    got = 0
    while got < n and perf() < deadline:
        batch = consumer.poll(timeout_ms=100)
        now = monotonic_ns()
        for records in batch.values():
            for record in records:
                seq, sent_ns = read_stamp(record.value)
                if seq >= skip:
                    latencies.append(now - sent_ns)
            got += len(records)
    result(records=got, **latency_summary(latencies))
    consumer.close()


def lat_produce(spec: dict) -> None:
    """Send ``n`` stamped records at ``rate`` records/s (partition = seq % partitions)."""
    producer = _producer(spec)
    topic, n = spec["topic"], spec["n"]
    parts = spec.get("partitions")
    pad = padding(spec["size"])
    pacer = Pacer(spec["rate"], n)
    send = producer.send
    seq = 0
    while seq < n:
        for _ in range(pacer.due()):
            send(topic, stamped(seq, pad), partition=(seq % parts) if parts else None)
            seq += 1
        pacer.sent = seq
    producer.flush()
    result(
        records=seq,
        seconds=(monotonic_ns() - pacer.start_ns) / 1e9,
        max_behind_ms=pacer.max_behind_ns / 1e6,
    )
    producer.close()


def group_member(spec: dict) -> None:
    """One member of a consumer group; reports assignments and first records per partition.

    Stops after ``idle_s`` without records (once it got some) or at ``until_s``.
    """
    lib = _lib(spec)
    consumer = lib.KafkaConsumer(
        spec["topic"],
        bootstrap_servers=spec["bootstrap"],
        group_id=spec["group"],
        auto_offset_reset=spec.get("reset", "earliest"),
        enable_auto_commit=True,
        session_timeout_ms=spec["session_timeout_ms"],
        heartbeat_interval_ms=spec["heartbeat_interval_ms"],
        client_id=spec.get("client_id", "bench-member"),
    )
    emit({"ev": "started", "t": monotonic_ns()})
    _member_loop(
        consumer.poll,
        lambda: {tp.partition for tp in consumer.assignment()},
        lambda records: (records[0].offset, records[-1].offset),
        spec,
    )
    consumer.close()


def _member_loop(poll, assignment, offsets, spec: dict) -> None:
    """The part of group_member shared with the confluent driver.

    Every 0.5 s it reports ``progress`` (highest offset read per partition) and stops
    once ``stop_file`` exists (the orchestrator creates it when the group has read
    everything) or at ``until_s``.
    """
    until = perf() + spec["until_s"]
    stop_file = spec.get("stop_file")
    next_report = perf() + PROGRESS_S
    assigned: set = set()
    seen: set = set()
    count = 0
    first_ns = last_ns = None
    per_partition: dict = {}
    while perf() < until:
        batch = poll(timeout_ms=200)
        now = monotonic_ns()
        current = assignment()
        if current != assigned:
            emit({"ev": "assigned", "partitions": sorted(current), "t": now})
            seen = set()  # report the first record of every partition again
            assigned = current
        for tp, records in batch.items():
            p = tp.partition if hasattr(tp, "partition") else tp
            lo, hi = offsets(records)
            if p not in seen:
                seen.add(p)
                emit({"ev": "first", "p": p, "t": now, "offset": lo})
            stats = per_partition.setdefault(p, [0, hi])
            stats[0] += len(records)
            stats[1] = max(stats[1], hi)
            count += len(records)
        if batch:
            first_ns = first_ns or now
            last_ns = now
        if perf() >= next_report:
            next_report += PROGRESS_S
            emit(
                {
                    "ev": "progress",
                    "count": count,
                    "partitions": {str(p): s[1] for p, s in per_partition.items()},
                }
            )
            if stop_file and os.path.exists(stop_file):
                break
    result(
        records=count,
        first_ns=first_ns,
        last_ns=last_ns,
        partitions={str(p): s for p, s in per_partition.items()},
    )
