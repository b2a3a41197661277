"""Worker operations for Redis Streams with redis-py.

- ``produce``: XADD, one command per round trip (``mode="single"``) or pipelined
  in batches of ``batch`` commands (``mode="pipeline"``, no MULTI);
- ``consume``: XREADGROUP ``COUNT 500`` then one XACK for the ids read;
- ``sync``: unpipelined XADD (each call waits for its reply);
- ``lat_*``: XADD per record / XREADGROUP ``BLOCK 100``;
- ``group_member``: one consumer of a 3-consumer group (XREADGROUP + XACK).

Each record is one stream entry with a single field ``v``.
"""

from __future__ import annotations

import os
import time

import redis
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
READ_COUNT = 500


def _client(spec: dict) -> redis.Redis:
    host, _, port = spec["bootstrap"].rpartition(":")
    client = redis.Redis(host=host, port=int(port))
    client.ping()
    return client


def produce(spec: dict) -> None:
    r = _client(spec)
    stream, n, value = spec["topic"], spec["n"], value_of(spec["size"])
    deadline = perf() + spec.get("max_seconds", 60)
    fields = {b"v": value}
    sent = 0
    t0 = perf()
    if spec.get("mode") == "pipeline":
        batch = spec.get("batch", 1000)
        pipe = r.pipeline(transaction=False)
        while sent < n and perf() < deadline:
            chunk = min(batch, n - sent)
            for _ in range(chunk):
                pipe.xadd(stream, fields)
            pipe.execute()
            sent += chunk
        settings = {"pipeline": batch}
    else:
        xadd = r.xadd
        while sent < n:
            xadd(stream, fields)
            sent += 1
            if sent % 256 == 0 and perf() > deadline:
                break
        settings = {"pipeline": 1}
    t1 = perf()
    result(records=sent, seconds=t1 - t0, settings=settings)


sync = produce  # an unpipelined XADD is a synchronous send


def _ensure_group(r: redis.Redis, stream: str, group: str, start: str) -> None:
    try:
        r.xgroup_create(stream, group, id=start, mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def consume(spec: dict) -> None:
    r = _client(spec)
    stream, n = spec["topic"], spec["n"]
    group = spec.get("group", "bench-reader")
    _ensure_group(r, stream, group, "0")
    deadline = perf() + spec.get("max_seconds", 60)
    got = 0
    t0 = perf()
    t_first, first = None, 0  # rate counts from the first batch: startup is not reading
    while got < n and perf() < deadline:
        reply = r.xreadgroup(group, "c0", {stream: ">"}, count=READ_COUNT, block=500)
        for _name, entries in reply:
            if entries:
                r.xack(stream, group, *[entry_id for entry_id, _ in entries])
                got += len(entries)
        if t_first is None and got:
            t_first, first = perf(), got
    t1 = perf()
    result(
        records=got,
        seconds=t1 - t0,
        timed=[got - first, t1 - (t_first or t1)],
        settings={"count": READ_COUNT, "xack": "per read"},
    )


def lat_consume(spec: dict) -> None:
    r = _client(spec)
    stream, group = spec["topic"], spec.get("group", "bench-latency")
    _ensure_group(r, stream, group, "$")
    emit({"ev": "ready"})
    n, skip = spec["n"], spec.get("skip", 0)
    deadline = perf() + spec["max_seconds"]
    latencies = []
    got = 0
    while got < n and perf() < deadline:
        reply = r.xreadgroup(group, "c0", {stream: ">"}, count=READ_COUNT, block=100)
        now = monotonic_ns()
        for _name, entries in reply:
            for _entry_id, fields in entries:
                seq, sent_ns = read_stamp(fields[b"v"])
                if seq >= skip:
                    latencies.append(now - sent_ns)
            if entries:
                r.xack(stream, group, *[entry_id for entry_id, _ in entries])
                got += len(entries)
    result(records=got, **latency_summary(latencies))


def lat_produce(spec: dict) -> None:
    r = _client(spec)
    stream, n = spec["topic"], spec["n"]
    pad = padding(spec["size"])
    pacer = Pacer(spec["rate"], n)
    seq = 0
    while seq < n:
        for _ in range(pacer.due()):
            r.xadd(stream, {b"v": stamped(seq, pad)})
            seq += 1
        pacer.sent = seq
    result(
        records=seq,
        seconds=(monotonic_ns() - pacer.start_ns) / 1e9,
        max_behind_ms=pacer.max_behind_ns / 1e6,
    )


def group_member(spec: dict) -> None:
    """Competing consumers: no partitions, so 'assigned' is never reported."""
    r = _client(spec)
    stream, group = spec["topic"], spec["group"]
    _ensure_group(r, stream, group, "0" if spec.get("reset", "earliest") == "earliest" else "$")
    name = spec.get("client_id", "bench-member")
    emit({"ev": "started", "t": monotonic_ns()})
    until = perf() + spec["until_s"]
    stop_file = spec.get("stop_file")
    next_report = perf() + 0.5
    count = 0
    first_ns = last_ns = None
    while perf() < until:
        reply = r.xreadgroup(group, name, {stream: ">"}, count=READ_COUNT, block=200)
        now = monotonic_ns()
        got = 0
        for _name, entries in reply:
            if entries:
                r.xack(stream, group, *[entry_id for entry_id, _ in entries])
                got += len(entries)
        if got:
            if first_ns is None:
                emit({"ev": "first", "p": 0, "t": now, "offset": 0})
            count += got
            first_ns = first_ns or now
            last_ns = now
        if perf() >= next_report:
            next_report += 0.5
            emit({"ev": "progress", "count": count, "partitions": {}})
            if stop_file and os.path.exists(stop_file):
                break
    result(records=count, first_ns=first_ns, last_ns=last_ns, partitions={})
