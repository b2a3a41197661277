"""Small measurements behind benchmarks/NOTES.md (not part of make bench).

    labkit broker --port 19400 --data-dir /tmp/probe &        # for the first four
    .venv/bin/python benchmarks/probes.py send-cost 127.0.0.1:19400
    .venv/bin/python benchmarks/probes.py send-floor 127.0.0.1:19400
    .venv/bin/python benchmarks/probes.py poll-cost 127.0.0.1:19400   # after send-cost
    .venv/bin/python benchmarks/probes.py rtt 127.0.0.1:19400
    .venv/bin/python benchmarks/probes.py floors                       # no broker needed

To compare a prototype, run the same probe with ``PYTHONPATH=/tmp/copy`` (a copy of
the repository's ``labkit/`` with the change) from a directory other than the
repository root, alternating with the unchanged code. CPU figures are per thread
(``thread_time``), which other load on the machine disturbs little.
"""

from __future__ import annotations

import multiprocessing
import socket
import sys
import threading
import time

import zmq

ROUNDS = 3


def send_cost(bootstrap: str, n: int = 1_000_000) -> None:
    """send() CPU per record (user thread), I/O thread CPU per record, and the wall rate."""
    from labkit import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1)
    producer.partitions_for("cost")
    io = next(t for t in threading.enumerate() if t.name.startswith("labkit-io"))
    io_clock = time.pthread_getcpuclockid(io.ident)
    value, send = b"x" * 100, producer.send
    for _ in range(ROUNDS):
        cpu0, wall0, io0 = time.thread_time(), time.perf_counter(), time.clock_gettime(io_clock)
        for _ in range(n):
            send("cost", value)
        cpu1 = time.thread_time()
        producer.flush()
        wall1, io1 = time.perf_counter(), time.clock_gettime(io_clock)
        print(
            f"send() {(cpu1 - cpu0) / n * 1e9:.0f} ns/record, I/O thread "
            f"{(io1 - io0) / n * 1e9:.0f} ns/record, {n / (wall1 - wall0):,.0f} records/s "
            "with flush"
        )
    producer.close()


def send_floor(bootstrap: str, n: int = 200_000) -> None:
    """send() CPU with the I/O thread idle (huge batch, long linger): send() alone."""
    from labkit import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks=1,
        batch_size=64 << 20,
        linger_ms=60000,
        buffer_memory=1 << 30,
        max_request_size=64 << 20,
    )
    producer.partitions_for("floor")
    value, send = b"x" * 100, producer.send
    results = []
    for _ in range(ROUNDS + 2):
        cpu0 = time.thread_time()
        for _ in range(n):
            send("floor", value)
        results.append((time.thread_time() - cpu0) / n * 1e9)
        batch = producer._acc.buffers[0].open  # drop them unsent: only send() is measured
        batch.records.clear()
        batch.nbytes = 0
        if hasattr(batch, "ts"):
            batch.ts.clear()

    def empty(topic, value=None, key=None, headers=None, partition=None, timestamp_ms=None):
        return None

    cpu0 = time.thread_time()
    for _ in range(n):
        empty("floor", value)
    print(
        f"send() {min(results):.0f} ns/record with the I/O thread idle; an empty function "
        f"with send()'s signature: {(time.thread_time() - cpu0) / n * 1e9:.0f} ns"
    )
    producer.close(timeout=0)


def poll_cost(bootstrap: str, n: int = 1_000_000) -> None:
    """poll() CPU per record and wall rate, reading topic 'cost' from the beginning."""
    from labkit import KafkaConsumer, TopicPartition

    for _ in range(ROUNDS):
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
        tp = TopicPartition("cost", 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        got = sum(len(r) for r in consumer.poll(timeout_ms=1000).values())
        start, cpu0, wall0 = got, time.thread_time(), time.perf_counter()
        while got < n:
            got += sum(len(r) for r in consumer.poll(timeout_ms=1000).values())
        read = got - start
        print(
            f"poll() {(time.thread_time() - cpu0) / read * 1e9:.0f} ns/record, "
            f"{read / (time.perf_counter() - wall0):,.0f} records/s"
        )
        consumer.close()


def rtt(bootstrap: str, n: int = 3000) -> None:
    """Round trips: raw requests (no client library) against send().get()."""
    from labkit import KafkaProducer
    from labkit.protocol.records import encode_batch
    from labkit.testing.broker import RawClient

    batch = encode_batch([int(time.time() * 1000)], None, [b"x" * 100])
    header = {"acks": 1, "timeout_ms": 1000, "targets": [["rtt", 0]]}
    with RawClient(bootstrap) as raw:
        raw.request("produce", header, [batch])
        start = time.perf_counter()
        for _ in range(n):
            raw.request("produce", header, [batch])
        produce_us = (time.perf_counter() - start) / n * 1e6
        start = time.perf_counter()
        for _ in range(n):
            raw.request("api_versions", {})
        versions_us = (time.perf_counter() - start) / n * 1e6
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1)
    producer.send("rtt", b"x" * 100).get()
    start = time.perf_counter()
    for _ in range(n):
        producer.send("rtt", b"x" * 100).get()
    sync_us = (time.perf_counter() - start) / n * 1e6
    producer.close()
    print(
        f"raw produce {produce_us:.0f} us, raw api_versions {versions_us:.0f} us, "
        f"send().get() {sync_us:.0f} us"
    )


def _zmq_echo(address: str) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.bind(address)
    while True:
        frames = sock.recv_multipart()
        if frames[-1] == b"stop":
            break
        sock.send_multipart(frames)
    sock.close()
    ctx.term()


def _tcp_echo(port: int) -> None:
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(1)
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            data = conn.recv(65536)
            if not data or data == b"stop":
                break
            conn.sendall(data)
        conn.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _zmq_rtt(address: str, n: int = 5000) -> float:
    server = multiprocessing.Process(target=_zmq_echo, args=(address,))
    server.start()
    ctx = zmq.Context()
    dealer = ctx.socket(zmq.DEALER)
    dealer.connect(address)
    dealer.send_multipart([b"hello"])
    dealer.recv_multipart()
    start = time.perf_counter()
    for _ in range(n):
        dealer.send_multipart([b"LK1", b"1", b"x" * 100])
        dealer.recv_multipart()
    took = (time.perf_counter() - start) / n * 1e6
    dealer.send_multipart([b"stop"])
    server.join()
    dealer.close()
    ctx.term()
    return took


def _tcp_rtt(n: int = 5000) -> float:
    port = _free_port()
    server = multiprocessing.Process(target=_tcp_echo, args=(port,))
    server.start()
    time.sleep(0.3)
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        start = time.perf_counter()
        for _ in range(n):
            conn.sendall(b"x" * 100)
            conn.recv(65536)
        took = (time.perf_counter() - start) / n * 1e6
        conn.sendall(b"stop")
    server.join()
    return took


def _condition_pingpong(n: int = 5000) -> float:
    cond = threading.Condition()
    turn = [0]

    def other() -> None:
        for _ in range(n):
            with cond:
                while turn[0] != 1:
                    cond.wait(1.0)
                turn[0] = 0
                cond.notify_all()

    thread = threading.Thread(target=other)
    thread.start()
    start = time.perf_counter()
    for _ in range(n):
        with cond:
            turn[0] = 1
            cond.notify_all()
            while turn[0] != 0:
                cond.wait(1.0)
    thread.join()
    return (time.perf_counter() - start) / n * 1e6


def floors() -> None:
    """Round-trip floors between two processes: zmq tcp/ipc, a plain TCP socket; and a
    Condition ping-pong between two threads."""
    tcp = _zmq_rtt(f"tcp://127.0.0.1:{_free_port()}")
    ipc = _zmq_rtt(f"ipc:///tmp/labkit-probe-{_free_port()}.ipc")
    print(
        f"zmq DEALER/ROUTER echo: tcp {tcp:.0f} us, ipc {ipc:.0f} us; plain TCP socket "
        f"{_tcp_rtt():.0f} us; Condition ping-pong {_condition_pingpong():.0f} us"
    )


COMMANDS = {
    "send-cost": send_cost,
    "send-floor": send_floor,
    "poll-cost": poll_cost,
    "rtt": rtt,
    "floors": floors,
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(__doc__)
    COMMANDS[sys.argv[1]](*sys.argv[2:])
