"""Where a delivered record's client CPU goes (issue 19; benchmarks/NOTES.md §9).

    PYTHONPATH=$PWD python benchmarks/consumer_cpu.py [--consumers 2] [--rate 20] \\
        [--seconds 15] [--config '{"fetch_min_bytes": 1024, "fetch_max_wait_ms": 50}']

Starts a broker and a 3-partition topic, one consumer process with ``--consumers``
KafkaConsumers (each in a group of its own, one thread each, ``poll(timeout_ms=500)``
and ``json.loads`` as a student's loop; ``--config`` is passed to each) and a producer
process sending ``--rate`` keyed ~220-byte JSON records a second (acks=1). Once every
consumer has its assignment it measures ``--seconds``: the consumer process's CPU per
delivered record (records of all its consumers), voluntary context switches (thread
wake-ups) a second, and per thread (from ``/proc/<pid>/task``, Linux): wake-ups,
preemptions and CPU, with the client's threads named (``cons<i>``: the ``poll()``
thread, ``io<i>``: its I/O thread; ``ZMQbg``: libzmq's; CPU per thread is divided by
the records of all consumers). Compare A/B by alternating
runs in the same minutes (PYTHONPATH picks the checkout: run from a directory outside
every checkout, since the ``python -c`` children put the current directory first on
their path) and give the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

CONSUMERS = r"""
import json, sys, threading, time
from labkit import KafkaConsumer
boot, topic, n, secs, extra = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), json.loads(sys.argv[5])
counts, clients, names = [0] * n, [], {}
ready = threading.Barrier(n + 1)
def run(i):
    names[threading.get_native_id()] = f"cons{i}"
    c = KafkaConsumer(topic, bootstrap_servers=boot, group_id=f"g{i}-{topic}",
                      auto_offset_reset="latest", value_deserializer=json.loads, **extra)
    while not c.assignment():
        c.poll(timeout_ms=100)
    c.poll(timeout_ms=200)
    names[c._transport._thread.native_id] = f"io{i}"
    clients.append(c)
    ready.wait()
    end = time.time() + secs + 5
    while time.time() < end:
        for records in c.poll(timeout_ms=500).values():
            counts[i] += len(records)
    c.close()
for i in range(n):
    threading.Thread(target=run, args=(i,), daemon=True).start()
ready.wait()
print(json.dumps(names), flush=True)
input()
cpu0, seen0 = time.process_time(), sum(counts)
turns0 = sum(c._transport.turns for c in clients)
sent0 = sum(c._transport.wakeups_sent for c in clients)
print("go", flush=True)
input()
print(json.dumps({"cpu_s": time.process_time() - cpu0, "records": sum(counts) - seen0,
                  "io_turns": sum(c._transport.turns for c in clients) - turns0,
                  "wakeups_sent": sum(c._transport.wakeups_sent for c in clients) - sent0}),
      flush=True)
"""

PRODUCER = r"""
import json, sys, time
from labkit import KafkaProducer
p = KafkaProducer(bootstrap_servers=sys.argv[1], acks=1, value_serializer=lambda v: json.dumps(v).encode())
rate, n, start = float(sys.argv[3]), 0, time.monotonic()
while True:
    n += 1
    p.send(sys.argv[2], {"user": f"user-{n % 50}", "amount": n % 997, "currency": "PLN",
                         "merchant": "shop-%d" % (n % 13), "ts": time.time(), "note": "x" * 120},
           key=f"user-{n % 50}".encode())
    time.sleep(max(0.0, start + n / rate - time.monotonic()))
"""


def threads(pid: int, names: dict[str, str]) -> dict[str, tuple[int, int, float]]:
    """{thread name: (voluntary switches, involuntary switches, CPU ms)} (Linux /proc)."""
    out = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            status = (task / "status").read_text()
            schedstat = (task / "schedstat").read_text()
        except FileNotFoundError:
            continue  # a thread that ended meanwhile
        voluntary = int(status.split("voluntary_ctxt_switches:")[1].split()[0])
        involuntary = int(status.split("nonvoluntary_ctxt_switches:")[1].split()[0])
        cpu_ms = int(schedstat.split()[0]) / 1e6
        name = names.get(task.name) or (task / "comm").read_text().strip() + "/" + task.name
        out[name] = (voluntary, involuntary, cpu_ms)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--consumers", type=int, default=2)
    parser.add_argument("--rate", type=float, default=20.0, help="records a second")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--config", default="{}", help="JSON: configs of each consumer")
    args = parser.parse_args()
    from labkit import KafkaAdminClient, NewTopic
    from labkit.testing import BrokerProcess

    with BrokerProcess() as broker:
        topic = f"cpu-{int(time.time())}"
        with KafkaAdminClient(bootstrap_servers=broker.bootstrap) as admin:
            admin.create_topics([NewTopic(topic, 3, 1)])
        argv = [broker.bootstrap, topic, str(args.consumers), str(args.seconds), args.config]
        consumers = subprocess.Popen(
            [sys.executable, "-c", CONSUMERS, *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        producer = None
        try:
            names = {str(k): v for k, v in json.loads(consumers.stdout.readline()).items()}
            producer = subprocess.Popen(
                [sys.executable, "-c", PRODUCER, broker.bootstrap, topic, str(args.rate)]
            )
            time.sleep(2.0)  # let start-up work settle
            before, started = threads(consumers.pid, names), time.monotonic()
            consumers.stdin.write("\n")
            consumers.stdin.flush()
            consumers.stdout.readline()
            time.sleep(args.seconds)
            consumers.stdin.write("\n")
            consumers.stdin.flush()
            result = json.loads(consumers.stdout.readline())
            wall = time.monotonic() - started
            after = threads(consumers.pid, names)
        finally:
            for child in (producer, consumers):
                if child is not None:
                    child.kill()
                    child.wait()
    records = max(1, result["records"])
    print(
        json.dumps(
            {
                "records": result["records"],
                "ms_per_record": round(1000 * result["cpu_s"] / records, 3),
                "records_per_io_turn": round(result["records"] / max(1, result["io_turns"]), 2),
                # of the I/O threads' turns, those another thread woke (wakeup())
                "io_wakeups_sent_per_record": round(result["wakeups_sent"] / records, 2),
                "wakeups_per_record": round(
                    sum(after[k][0] - before[k][0] for k in after if k in before) / records, 2
                ),
                "load": [round(x, 2) for x in os.getloadavg()],
            }
        )
    )
    for name in sorted(after):
        if name in before:
            (v0, i0, c0), (v1, i1, c1) = before[name], after[name]
            print(
                f"  {name:22s} wake-ups/s {(v1 - v0) / wall:7.1f}  preempted/s "
                f"{(i1 - i0) / wall:6.1f}  CPU ms/record {(c1 - c0) / records:7.3f}"
            )


if __name__ == "__main__":
    main()
