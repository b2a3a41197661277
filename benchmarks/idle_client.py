"""What an idle client costs: CPU of a consumer that sits in a group, subscribed,
polling with a long timeout while nothing is produced (issue 19, item 1).

    PYTHONPATH=. python benchmarks/idle_client.py [--seconds 20] [--bootstrap host:port]

Starts a broker (unless --bootstrap is given) and a child process that runs the
consumer; after it has its assignment, reads the child's CPU time (psutil) over
``--seconds`` and prints % of one core and the wake-ups of all its threads (Linux).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import psutil

CHILD = r"""
import sys, time
from labkit import KafkaConsumer
consumer = KafkaConsumer(sys.argv[2], bootstrap_servers=sys.argv[1], group_id=sys.argv[3],
                         auto_offset_reset="earliest")
deadline = time.monotonic() + 30
while not consumer.assignment() and time.monotonic() < deadline:
    consumer.poll(timeout_ms=100)
print("assigned", sorted(tp.partition for tp in consumer.assignment()), flush=True)
while True:
    consumer.poll(timeout_ms=60_000)
"""


def measure(bootstrap: str, seconds: float) -> dict:
    from labkit import KafkaAdminClient, NewTopic

    topic = f"idle-{int(time.time() * 1000)}"
    with KafkaAdminClient(bootstrap_servers=bootstrap) as admin:
        admin.create_topics([NewTopic(topic, 3, 1)])
    child = subprocess.Popen([sys.executable, "-c", CHILD, bootstrap, topic, topic + "-g"],
                             stdout=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline().strip()
        if not line.startswith("assigned"):
            raise RuntimeError(f"the consumer did not get an assignment: {line!r}")
        time.sleep(2.0)  # let start-up work settle
        proc = psutil.Process(child.pid)
        cpu0, ctx0, t0 = proc.cpu_times(), wakeups(child.pid), time.monotonic()
        time.sleep(seconds)
        cpu1, ctx1, t1 = proc.cpu_times(), wakeups(child.pid), time.monotonic()
    finally:
        child.kill()
        child.wait()
    used = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    wall = t1 - t0
    return {"seconds": round(wall, 1), "cpu_percent_of_core": round(100 * used / wall, 3),
            "cpu_ms_per_s": round(1000 * used / wall, 2),
            "wakeups_per_s": round((ctx1 - ctx0) / wall, 1)}


def wakeups(pid: int) -> int:
    """Voluntary context switches of all the process's threads (Linux /proc): each is
    a thread going to sleep, i.e. one wake-up. (psutil counts the main thread only.)"""
    total = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        for line in status.read_text().splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                total += int(line.split()[1])
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--bootstrap")
    args = parser.parse_args()
    if args.bootstrap:
        print(json.dumps(measure(args.bootstrap, args.seconds)))
        return
    from labkit.testing import BrokerProcess

    with BrokerProcess() as broker:
        print(json.dumps(measure(broker.bootstrap, args.seconds)))


if __name__ == "__main__":
    main()
