"""What a quiet client costs (issue 19, item 1): CPU of a consumer that sits in a group,
subscribed, polling with a long timeout -- idle, or fed a trickle of records by a
producer, as a student's script in a class is.

    PYTHONPATH=$PWD python benchmarks/idle_client.py [--seconds 20] [--rate 0] [--bootstrap h:p]

(The client processes run ``python -c`` in the current directory, so a ``labkit/``
there comes first: to measure another checkout, run from outside any checkout.)

Starts a broker (unless --bootstrap is given), a consumer process and, with ``--rate
N``, a producer process sending N keyed ~220-byte JSON records a second (acks=1,
linger_ms=0: one request per record, as at classroom rates). After the consumer has
its assignment, reads each process's CPU time (psutil) over ``--seconds`` and prints
% of one core, thread wake-ups a second (Linux), and with a rate the client CPU per
delivered record (producer + consumer).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

CONSUMER = r"""
import sys, time
from labkit import KafkaConsumer
consumer = KafkaConsumer(sys.argv[2], bootstrap_servers=sys.argv[1], group_id=sys.argv[3],
                         auto_offset_reset="latest")
deadline = time.monotonic() + 30
while not consumer.assignment() and time.monotonic() < deadline:
    consumer.poll(timeout_ms=100)
print("assigned", sorted(tp.partition for tp in consumer.assignment()), flush=True)
seen = 0
while True:
    for records in consumer.poll(timeout_ms=60_000).values():
        seen += len(records)
        print(seen, flush=True)
"""

PRODUCER = r"""
import json, sys, time
from labkit import KafkaProducer
producer = KafkaProducer(bootstrap_servers=sys.argv[1], acks=1,
                         value_serializer=lambda v: json.dumps(v).encode())
rate = float(sys.argv[3])
n = 0
start = time.monotonic()
while True:
    n += 1
    producer.send(sys.argv[2], {"user": f"user-{n % 50}", "amount": n % 997, "currency": "PLN",
                                "merchant": "shop-%d" % (n % 13), "ts": time.time(),
                                "note": "x" * 80}, key=f"user-{n % 50}".encode())
    time.sleep(max(0.0, start + n / rate - time.monotonic()))
"""


def wakeups(pid: int) -> int:
    """Voluntary context switches of all the process's threads (Linux /proc): each is
    a thread going to sleep, i.e. one wake-up. (psutil counts the main thread only.)"""
    total = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        for line in status.read_text().splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                total += int(line.split()[1])
    return total


def cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def measure(bootstrap: str, seconds: float, rate: float) -> dict:
    from labkit import KafkaAdminClient, NewTopic

    topic = f"idle-{int(time.time() * 1000)}"
    with KafkaAdminClient(bootstrap_servers=bootstrap) as admin:
        admin.create_topics([NewTopic(topic, 3, 1)])
    consumer = subprocess.Popen(
        [sys.executable, "-c", CONSUMER, bootstrap, topic, topic + "-g"],
        stdout=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    children = {"consumer": consumer}
    try:
        line = consumer.stdout.readline().strip()
        if not line.startswith("assigned"):
            raise RuntimeError(f"the consumer did not get an assignment: {line!r}")
        counter = _Counter(consumer)
        if rate > 0:
            children["producer"] = subprocess.Popen(
                [sys.executable, "-c", PRODUCER, bootstrap, topic, str(rate)]
            )
        time.sleep(3.0)  # let start-up work settle
        procs = {name: psutil.Process(child.pid) for name, child in children.items()}
        before = {name: (cpu(p), wakeups(p.pid)) for name, p in procs.items()}
        seen0, t0 = counter.value, time.monotonic()
        time.sleep(seconds)
        after = {name: (cpu(p), wakeups(p.pid)) for name, p in procs.items()}
        seen1, t1 = counter.value, time.monotonic()
    finally:
        for child in children.values():
            child.kill()
            child.wait()
    wall = t1 - t0
    out: dict = {"seconds": round(wall, 1), "rate": rate}
    for name in procs:
        used = after[name][0] - before[name][0]
        out[name] = {
            "cpu_percent_of_core": round(100 * used / wall, 3),
            "wakeups_per_s": round((after[name][1] - before[name][1]) / wall, 1),
        }
    if rate > 0:
        delivered = seen1 - seen0
        total = sum(after[n][0] - before[n][0] for n in procs)
        out["delivered"] = delivered
        out["client_cpu_ms_per_record"] = round(1000 * total / max(1, delivered), 3)
    return out


class _Counter:
    """Follows the consumer's running count of records (it prints one line per poll)."""

    def __init__(self, consumer: subprocess.Popen):
        self.value = 0
        threading.Thread(target=self._follow, args=(consumer.stdout,), daemon=True).start()

    def _follow(self, stream) -> None:
        for line in stream:
            if line.strip().isdigit():
                self.value = int(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=0.0, help="records a second (0: idle)")
    parser.add_argument("--bootstrap")
    args = parser.parse_args()
    if args.bootstrap:
        print(json.dumps(measure(args.bootstrap, args.seconds, args.rate)))
        return
    from labkit.testing import BrokerProcess

    with BrokerProcess() as broker:
        print(json.dumps(measure(broker.bootstrap, args.seconds, args.rate)))


if __name__ == "__main__":
    main()
