"""One broker with its Kafka port, one confluent-kafka producer saturating the listener:
records/s, the broker's CPU per record by thread, records per Produce request, and
(``--ping``) labkit's own produce round trips over ZeroMQ from another process before
and during that load (benchmarks/NOTES.md, section 11).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/kafka_listener_load.py --ping
    PYTHONPATH=$PWD .venv/bin/python benchmarks/kafka_listener_load.py --batch-size 16384
    PYTHONPATH=$PWD .venv/bin/python benchmarks/kafka_listener_load.py --consume

A/B: run it from each tree in turn (the working directory *and* ``PYTHONPATH``: the
broker subprocess runs ``python -m labkit.broker``, which puts the working directory
first on its path), in the same minute. CPU is read from /proc per thread, so it is the
work done, whatever share of the machine the threads got; records/s is that share's
result. ``--consume`` then reads them back with confluent-kafka and reports the same.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time

import confluent_kafka

from labkit import KafkaAdminClient, KafkaProducer, NewTopic
from labkit.testing import BrokerProcess
from labkit.testing.broker import free_port

TOPIC = "load"
PING_PAUSE_S = 0.002


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of each thread of ``pid``, keyed by name:tid."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
        except OSError:
            continue
        out[f"{name}:{tid}"] = (int(fields[11]) + int(fields[12])) / tick
    return out


def pinger(bootstrap: str, loaded, stop, results) -> None:
    """labkit produce round trips (acks=1, one record, linger 0) until ``stop``; the
    ones before ``loaded`` is set are the idle sample."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=0)
    idle: list[float] | None = None
    samples: list[float] = []
    while not stop.is_set():
        if idle is None and loaded.is_set():
            idle, samples = samples, []
        start = time.perf_counter()
        producer.send(TOPIC, b"p").get(timeout=10)
        samples.append(time.perf_counter() - start)
        time.sleep(PING_PAUSE_S)
    producer.close()
    results.put((idle or [], samples))


def percentile_ms(samples: list[float], q: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def consume_and_report(pid: int, port: int, count: int) -> None:
    """Read ``count`` records from offset 0 with confluent-kafka (assign, no group
    traffic): records/s and the broker's CPU per record by thread."""
    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": f"127.0.0.1:{port}", "group.id": "load", "enable.auto.commit": False}
    )
    consumer.assign([confluent_kafka.TopicPartition(TOPIC, 0, 0)])
    cpu_before = thread_cpu(pid)
    got, start = 0, None
    while got < count:
        messages = consumer.consume(10_000, 5.0)
        if not messages:
            break
        if start is None:
            cpu_before, start = thread_cpu(pid), time.perf_counter()  # from the first answer
        got += len(messages)
    seconds = time.perf_counter() - (start or time.perf_counter())
    cpu = {k: v - cpu_before.get(k, 0.0) for k, v in thread_cpu(pid).items()}
    consumer.close()
    busy = {k: round(v, 2) for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]) if v > 0.01}
    total = sum(cpu.values())
    print(
        f"consume {got:,} records, {got / max(seconds, 1e-9):,.0f} records/s; broker CPU "
        f"{total:.2f} s = {total / max(got, 1) * 1e6:.2f} us/record (by thread {busy}); "
        f"load average {os.getloadavg()[0]:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--acks", default="1")
    parser.add_argument("--batch-size", type=int, help="librdkafka batch.size (default 1 MB)")
    parser.add_argument("--ping", action="store_true", help="labkit round trips alongside")
    parser.add_argument(
        "--consume", action="store_true", help="then read them all back with confluent-kafka"
    )
    args = parser.parse_args()

    port = free_port()
    broker = BrokerProcess(config={"kafka.port": str(port)}).start()
    try:
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        admin.create_topics([NewTopic(TOPIC, 1, 1)])
        admin.close()
        stats: dict = {}
        config = {
            "bootstrap.servers": f"127.0.0.1:{port}",
            "acks": args.acks,
            "statistics.interval.ms": 500,
            "stats_cb": lambda text: stats.update(last=json.loads(text)),
        }
        if args.batch_size:
            config["batch.size"] = args.batch_size
        producer = confluent_kafka.Producer(config)
        value = b"x" * 100
        for _ in range(1000):  # warm-up: connections, metadata
            producer.produce(TOPIC, value)
        producer.flush()
        if args.ping:
            spawn = multiprocessing.get_context("spawn")
            loaded, stop, results = spawn.Event(), spawn.Event(), spawn.Queue()
            ping = spawn.Process(target=pinger, args=(broker.bootstrap, loaded, stop, results))
            ping.start()
            time.sleep(3.0)  # the idle sample
            loaded.set()
        load_before = os.getloadavg()[0]
        cpu_before, client_before = thread_cpu(broker.pid), os.times()
        start = time.perf_counter()
        for _ in range(args.records):
            while True:
                try:
                    producer.produce(TOPIC, value)
                    break
                except BufferError:
                    producer.poll(0.001)
        producer.flush()
        seconds = time.perf_counter() - start
        cpu_after, client_after = thread_cpu(broker.pid), os.times()
        producer.poll(0.6)  # one more statistics callback
        if args.ping:
            stop.set()
            idle, during = results.get(timeout=30)
            ping.join()
        cpu = {k: v - cpu_before.get(k, 0.0) for k, v in cpu_after.items()}
        busy = {k: round(v, 2) for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]) if v > 0.01}
        total = sum(cpu.values())
        client = sum(client_after[:2]) - sum(client_before[:2])
        print(
            f"acks={args.acks} {args.records / seconds:,.0f} records/s in {seconds:.2f} s; "
            f"broker CPU {total:.2f} s = {total / args.records * 1e6:.2f} us/record "
            f"(by thread {busy}); this client's CPU {client:.2f} s; load average "
            f"{load_before:.1f} -> {os.getloadavg()[0]:.1f}"
        )
        for name, broker_stats in stats.get("last", {}).get("brokers", {}).items():
            produces = broker_stats.get("req", {}).get("Produce")
            if produces:
                print(
                    f"  {name}: {produces} Produce requests, ~{args.records / produces:,.0f} records each"
                )
        if args.consume:
            consume_and_report(broker.pid, port, args.records + 1000)
        if args.ping:
            print(
                f"  labkit round trips: idle p50 {percentile_ms(idle, 0.5):.2f} ms, "
                f"p99 {percentile_ms(idle, 0.99):.2f} ms (n={len(idle)}); under the load "
                f"p50 {percentile_ms(during, 0.5):.2f} ms, p99 {percentile_ms(during, 0.99):.2f} "
                f"ms (n={len(during)})"
            )
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
