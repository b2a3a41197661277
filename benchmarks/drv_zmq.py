"""The transport limit: raw pyzmq PUSH/PULL between two processes, no broker, no storage.

``pull`` binds and counts records; ``push`` connects and sends them, either one
record per message (``mode="single"``) or ``batch`` records joined into one
message (``mode="batched"``, the receiver slices them apart again). Throughput
is timed on the receiving side, from the first message to the last, so it
counts records that crossed the socket. ``lat_*`` send one stamped record per
message.
"""

from __future__ import annotations

import time

import zmq
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


def _socket(kind: int) -> tuple[zmq.Context, zmq.Socket]:
    ctx = zmq.Context()
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 5000)
    return ctx, sock


def pull(spec: dict) -> None:
    ctx, sock = _socket(zmq.PULL)
    sock.bind(spec["address"])
    emit({"ev": "ready"})
    n, size = spec["n"], spec["size"]
    batched = spec.get("mode") == "batched"
    deadline = perf() + spec.get("max_seconds", 60)
    got = 0
    t0 = None
    recv = sock.recv
    while got < n:
        if not sock.poll(1000):
            if perf() > deadline:
                break
            continue
        message = recv(copy=not batched)
        if t0 is None:
            t0 = perf()
        if batched:
            view = message.buffer
            records = [view[i : i + size] for i in range(0, len(view), size)]
            got += len(records)
        else:
            got += 1
    t1 = perf()
    result(
        records=got,
        seconds=(t1 - t0) if t0 else 0.0,
        settings={"mode": spec.get("mode", "single"), "batch": spec.get("batch", 1)},
    )
    sock.close()
    ctx.term()


def push(spec: dict) -> None:
    ctx, sock = _socket(zmq.PUSH)
    sock.connect(spec["address"])
    n, value = spec["n"], value_of(spec["size"])
    send = sock.send
    if spec.get("mode") == "batched":
        batch = spec.get("batch", 1000)
        sent = 0
        while sent < n:
            chunk = min(batch, n - sent)
            send(b"".join([value] * chunk), copy=False)
            sent += chunk
    else:
        for _ in range(n):
            send(value)
    sock.close()
    ctx.term()
    result(records=n)


def lat_consume(spec: dict) -> None:
    ctx, sock = _socket(zmq.PULL)
    sock.bind(spec["address"])
    emit({"ev": "ready"})
    n, skip = spec["n"], spec.get("skip", 0)
    deadline = perf() + spec["max_seconds"]
    latencies = []
    got = 0
    while got < n and perf() < deadline:
        if not sock.poll(100):
            continue
        message = sock.recv()
        now = monotonic_ns()
        seq, sent_ns = read_stamp(message)
        if seq >= skip:
            latencies.append(now - sent_ns)
        got += 1
    result(records=got, **latency_summary(latencies))
    sock.close(linger=0)
    ctx.term()


def lat_produce(spec: dict) -> None:
    ctx, sock = _socket(zmq.PUSH)
    sock.connect(spec["address"])
    n = spec["n"]
    pad = padding(spec["size"])
    pacer = Pacer(spec["rate"], n)
    seq = 0
    while seq < n:
        for _ in range(pacer.due()):
            sock.send(stamped(seq, pad))
            seq += 1
        pacer.sent = seq
    result(
        records=seq,
        seconds=(monotonic_ns() - pacer.start_ns) / 1e9,
        max_behind_ms=pacer.max_behind_ns / 1e6,
    )
    sock.close()
    ctx.term()
