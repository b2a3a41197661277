"""Replication factor 3 on one machine, side by side (issue 16, item 7; NOTES.md section 17).

Four systems, one after the other in one run, each fresh:

- ``labkit-1``: one labkit broker, topic RF 1;
- ``labkit-3``: three labkit brokers and one ZooKeeper, topic RF 3, min.insync.replicas 2;
- ``kafka-1``: Apache Kafka 4.1.1, one KRaft node (broker + controller), topic RF 1;
- ``kafka-3``: Apache Kafka 4.1.1, one KRaft controller and three brokers
  (``labkit.testing.apache_kafka.ApacheKafkaCluster``), topic RF 3, min.insync.replicas 2.

On each: one partition, 100-byte values, confluent-kafka (librdkafka) through the Kafka
protocol with acks=all (it sends to the partition's leader; labkit's own client does not
follow leaders yet). Two passes:

- throughput: ``produce()`` as fast as the local queue takes it for ``--seconds``,
  librdkafka's defaults otherwise (linger.ms 5, batch.size 1,000,000), then ``flush()``;
  records/s = acknowledged records / (first send .. flush returned);
- latency: ``--rate`` records/s paced, linger.ms 0, one request in flight (what queues
  meanwhile goes in the next request), each record's delivery callback gives
  send -> acknowledged; p50/p99 over all but the first ``--warmup`` records.

Also reported: each server process's peak RSS (VmHWM) and CPU seconds used during the
throughput pass (the leader's and the followers' apart), the load average before and after,
and per system the ratio RF 3 / RF 1 of records/s (the goal: labkit >= 0.5).

    LABKIT_APACHE_KAFKA_LIBS=... PYTHONPATH=$PWD .venv/bin/python benchmarks/replication.py \
        [--seconds 10] [--rate 200] [--only labkit-1,labkit-3] [--note "..."]

writes ``replication.json`` and RESULTS.md's "Replication factor 3" section (kept when
run.py, attacks.py or classroom.py rewrite RESULTS.md; ``--render`` redoes it from JSON).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import sys
import time
from pathlib import Path

import confluent_kafka
import report
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

HERE = Path(__file__).resolve().parent

TOPIC = "rf-bench"
SIZE = 100
SYSTEMS = ("labkit-1", "labkit-3", "kafka-1", "kafka-3")
BROKER_START_S = 60.0  # labkit.testing's 10 s is short on a shared, loaded machine


def status_kb(pid: int, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its threads so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def labkit_single():
    from labkit.testing import BrokerProcess

    with BrokerProcess(start_timeout_s=BROKER_START_S) as broker:
        yield broker.bootstrap, {1: broker.pid}, {}


@contextlib.contextmanager
def labkit_cluster():
    from labkit.testing import BrokerProcess
    from labkit.testing.zookeeper import ZooKeeperServer

    with ZooKeeperServer() as zk, contextlib.ExitStack() as stack:
        brokers = {}
        for broker_id in (1, 2, 3):
            config = {"broker.id": str(broker_id), "zookeeper.connect": zk.connect}
            broker = BrokerProcess(config=config, start_timeout_s=BROKER_START_S)
            brokers[broker_id] = stack.enter_context(broker)
        bootstrap = ",".join(b.bootstrap for b in brokers.values())
        yield bootstrap, {i: b.pid for i, b in brokers.items()}, {"zookeeper": zk.pid}


@contextlib.contextmanager
def kafka_single():
    from labkit.testing.apache_kafka import ApacheKafka

    with ApacheKafka(heap="512m") as kafka:
        yield kafka.bootstrap, {1: kafka.proc.pid}, {}


@contextlib.contextmanager
def kafka_cluster():
    from labkit.testing.apache_kafka import ApacheKafkaCluster

    with ApacheKafkaCluster() as kafka:
        pids = {i: p.pid for i, p in kafka.procs.items()}
        controller = pids.pop(kafka.CONTROLLER_ID)
        yield kafka.bootstrap, pids, {"controller": controller}


STARTERS = {
    "labkit-1": (labkit_single, 1),
    "labkit-3": (labkit_cluster, 3),
    "kafka-1": (kafka_single, 1),
    "kafka-3": (kafka_cluster, 3),
}


def create_topic(bootstrap: str, rf: int) -> int:
    """Create the topic (retrying while brokers are still joining) and wait until all
    ``rf`` replicas are in sync; the leader's broker id."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    config = {"min.insync.replicas": "2"} if rf == 3 else {}
    deadline = time.monotonic() + 90
    while True:
        future = admin.create_topics([NewTopic(TOPIC, 1, rf, config=config)])[TOPIC]
        try:
            future.result(30)
            break
        except KafkaException as exc:
            retry = exc.args[0].name() in ("INVALID_REPLICATION_FACTOR", "BROKER_NOT_AVAILABLE")
            if not retry or time.monotonic() > deadline:
                raise
            time.sleep(1)
    while True:
        partition = admin.list_topics(TOPIC, timeout=10).topics[TOPIC].partitions.get(0)
        if partition is not None and partition.leader >= 0 and len(partition.isrs) == rf:
            return partition.leader
        if time.monotonic() > deadline:
            raise RuntimeError(f"ISR never reached {rf}: {partition}")
        time.sleep(0.2)


def throughput(bootstrap: str, seconds: float, acks: str = "all") -> dict:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": acks})
    producer.list_topics(TOPIC, timeout=10)
    value = b"v" * SIZE
    done = {"ok": 0, "err": 0}

    def delivered(err, _msg):
        done["err" if err else "ok"] += 1

    for _ in range(2000):  # warm-up (JIT, connections, first segment): not counted
        producer.produce(TOPIC, value, on_delivery=delivered)
    producer.flush(60)
    done.update(ok=0, err=0)
    sent = 0
    cpu0 = time.process_time()  # this process: the Python loop and librdkafka's threads
    t0 = time.perf_counter()
    stop = t0 + seconds
    while time.perf_counter() < stop:
        for _ in range(1000):
            try:
                producer.produce(TOPIC, value, on_delivery=delivered)
                sent += 1
            except BufferError:  # local queue full: serve delivery reports, retry later
                producer.poll(0.01)
                break
        producer.poll(0)
    left = producer.flush(120)
    elapsed = time.perf_counter() - t0
    return {
        "client_cpu_s": round(time.process_time() - cpu0, 2),
        "records_per_s": round(done["ok"] / elapsed),
        "acked": done["ok"],
        "errors": done["err"],
        "unacked": left,
        "seconds": round(elapsed, 2),
    }


def latency(bootstrap: str, rate: int, count: int, warmup: int) -> dict:
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "linger.ms": 0,
            # one request at a time: what queues meanwhile goes in the next one. With
            # librdkafka's default (10**6 in flight) every record is a request of its own,
            # and a broker that answers one request per connection at a time (Kafka mutes
            # the connection meanwhile) falls behind for good once a round trip exceeds
            # 1/rate: the "latency" is then queueing time (NOTES.md section 17)
            "max.in.flight.requests.per.connection": 1,
        }
    )
    producer.list_topics(TOPIC, timeout=10)
    value = b"l" * SIZE
    samples: list[float] = []
    errors = [0]

    def delivered(err, _msg, sent_at, seq):
        if err:
            errors[0] += 1
        elif seq >= warmup:
            samples.append(time.perf_counter() - sent_at)

    start = time.perf_counter()
    for seq in range(count):
        due = start + seq / rate
        while (wait := due - time.perf_counter()) > 0:
            producer.poll(wait)  # serves callbacks as they come, so the times are fresh
        producer.produce(
            TOPIC,
            value,
            on_delivery=functools.partial(delivered, sent_at=time.perf_counter(), seq=seq),
        )
        producer.poll(0)
    producer.flush(60)
    samples.sort()

    def pct(q):
        return round(samples[min(len(samples) - 1, int(q * len(samples)))] * 1000, 2)

    return {
        "rate": rate,
        "measured": len(samples),
        "errors": errors[0],
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": pct(1.0),
    }


def measure(system: str, args) -> dict:
    starter, rf = STARTERS[system]
    row = {"system": system, "rf": rf, "load_before": os.getloadavg()}
    t0 = time.monotonic()
    with starter() as (bootstrap, brokers, others):
        row["start_s"] = round(time.monotonic() - t0, 1)
        leader = create_topic(bootstrap, rf)
        row["leader"] = leader
        cpu0 = {i: cpu_seconds(p) for i, p in brokers.items()}
        row["throughput"] = throughput(bootstrap, args.seconds)
        cpu1 = {i: cpu_seconds(p) for i, p in brokers.items()}
        row["cpu_s"] = {
            ("leader" if i == leader or len(brokers) == 1 else f"follower-{i}"): round(
                cpu1[i] - cpu0[i], 2
            )
            for i in brokers
        }
        row["latency"] = latency(bootstrap, args.rate, args.rate * args.latency_seconds, args.rate)
        rss = {f"broker-{i}": status_kb(p, "VmHWM") for i, p in brokers.items()}
        rss.update({name: status_kb(p, "VmHWM") for name, p in others.items()})
        row["peak_rss_mb"] = {k: round(v / 1024) for k, v in rss.items() if v}
        row["load_after"] = os.getloadavg()
    return row


def _without_note(argv: list[str]) -> list[str]:
    """The command line as RESULTS.md shows it: the note is printed apart."""
    out, skip = [], False
    for arg in argv:
        if skip or arg.startswith("--note="):
            skip = False
        elif arg == "--note":
            skip = True
        else:
            out.append(arg)
    return out


def write_results(data: dict, out: Path) -> None:
    """replication.json, and RESULTS.md's section when RESULTS.md is made here (run.py's
    results.json present), keeping the other scripts' sections."""
    (out / "replication.json").write_text(json.dumps(data, indent=1))
    results = out / "results.json"
    if results.exists():
        main_data = json.loads(results.read_text())
        (out / "RESULTS.md").write_text(
            report.render(
                main_data["rows"], main_data["meta"], **report.side_sections(out, replication=data)
            )
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="throughput pass length")
    parser.add_argument("--rate", type=int, default=200, help="latency pass, records/s")
    parser.add_argument("--latency-seconds", type=int, default=6)
    parser.add_argument(
        "--only",
        default="labkit-3,labkit-1,kafka-3,kafka-1,labkit-1,labkit-3",
        help="systems in run order, comma-separated (repeat them to alternate)",
    )
    parser.add_argument("--out", default=str(HERE), help="directory for replication.json")
    parser.add_argument("--no-results", action="store_true", help="print only")
    parser.add_argument("--note", default="", help="a note for RESULTS.md (machine, commit)")
    parser.add_argument(
        "--render", metavar="JSON", help="re-render RESULTS.md from a replication.json"
    )
    args = parser.parse_args()
    if args.render:
        data = json.loads(Path(args.render).read_text())
        if args.note:
            data["meta"]["note"] = args.note
        write_results(data, Path(args.out))
        print("\n".join(report.replication_section(data)))
        return 0
    meta = {
        "command": " ".join(["python benchmarks/replication.py", *_without_note(sys.argv[1:])]),
        "time": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "seconds": args.seconds,
        "confluent_kafka": confluent_kafka.__version__,
        "note": args.note,
        "conditions": {
            "record_bytes": SIZE,
            "partitions": 1,
            "acks": "all",
            "throughput_producer": "confluent-kafka defaults (linger.ms 5, batch.size 1000000)",
            "latency_producer": (
                f"linger.ms 0, max.in.flight 1, {args.rate} records/s for {args.latency_seconds} s "
                "paced, "
                "the first second dropped"
            ),
            "machine": f"{os.cpu_count()} CPUs, {platform.platform()}",
        },
    }
    print(json.dumps({"meta": meta}), flush=True)
    started = time.monotonic()
    rows = []
    for system in args.only.split(","):
        row = measure(system, args)
        print(json.dumps(row), flush=True)
        rows.append(row)
    meta["elapsed_s"] = time.monotonic() - started
    data = {"meta": meta, "rows": rows}
    if not args.no_results:
        write_results(data, Path(args.out))
    print("\n".join(report.replication_section(data)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
