"""Offset commits vs. everyone else: commits/s and a bystander's latency (issue 19 item 2).

Runs a real broker (the labkit on PYTHONPATH), then for each scenario a prober process
sends api_versions every 10 ms and records its latency while committers run:

- ``saturate``: 8 clients keep 8 offset commits each in flight (every one a new offset)
  for ``--seconds``: how many commits/s the broker makes durable;
- ``class``: 160 groups commit once every 5 s each (kafka-python's auto-commit
  interval), spread evenly: 32 commits/s, what 160 auto-committing consumers send.

    PYTHONPATH=$PWD python benchmarks/commit_load.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import tempfile
import threading
import time

from labkit.testing import BrokerProcess, RawClient


def probe(bootstrap: str, seconds: float, out) -> None:
    latencies = []
    with RawClient(bootstrap, timeout=60) as client:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            start = time.monotonic()
            client.request("api_versions", {})
            latencies.append(time.monotonic() - start)
            time.sleep(0.01)
    out.put(latencies)


def commit_header(group: str, partition: int, offset: int) -> dict:
    return {
        "group_id": group,
        "member_id": "",
        "generation": -1,
        "offsets": [["load", partition, offset, ""]],
    }


def saturate(bootstrap: str, seconds: float, stop_at: float, counts: list, index: int) -> None:
    with RawClient(bootstrap, timeout=30) as client:
        offset = 0
        inflight = set()
        while time.monotonic() < stop_at or inflight:
            while time.monotonic() < stop_at and len(inflight) < 8:
                offset += 1
                inflight.add(
                    client.send("offset_commit", commit_header(f"sat-{index}", index % 3, offset))
                )
            got = client.receive(1.0)
            if got is not None and got[0] in inflight:
                inflight.discard(got[0])
                counts[index] += got[1]["error"] == 0


def classroom(bootstrap: str, stop_at: float, counts: list, index: int) -> None:
    groups = [f"class-{index}-{g}" for g in range(20)]  # 8 threads x 20 = 160 groups
    with RawClient(bootstrap, timeout=30) as client:
        offset = 0
        while time.monotonic() < stop_at:
            for group in groups:  # each group every 5 s
                offset += 1
                header, _ = client.request("offset_commit", commit_header(group, 0, offset))
                counts[index] += header["error"] == 0
                time.sleep(5.0 / len(groups))


def run(bootstrap: str, scenario: str, seconds: float) -> None:
    out = multiprocessing.Queue()
    prober = multiprocessing.Process(target=probe, args=(bootstrap, seconds, out))
    prober.start()
    time.sleep(0.5)
    counts = [0] * 8
    stop_at = time.monotonic() + seconds - 1.0
    started = time.monotonic()
    target = saturate if scenario == "saturate" else classroom
    args = (
        (lambda i: (bootstrap, seconds, stop_at, counts, i))
        if scenario == "saturate"
        else (lambda i: (bootstrap, stop_at, counts, i))
    )
    threads = [threading.Thread(target=target, args=args(i)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - started
    latencies = sorted(out.get(timeout=120))
    prober.join()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    print(
        f"{scenario:9s} commits/s {sum(counts) / took:8.0f}   bystander api_versions "
        f"p50 {p50:6.1f} ms  p99 {p99:7.1f} ms  max {latencies[-1] * 1000:7.1f} ms "
        f"({len(latencies)} probes)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data, BrokerProcess(data_dir=data) as broker:
        with RawClient(broker.bootstrap) as client:
            client.request(
                "create_topics",
                {"topics": [{"name": "load", "num_partitions": 3, "replication_factor": 1}]},
            )
        for scenario in ("saturate", "class"):
            run(broker.bootstrap, scenario, args.seconds)


if __name__ == "__main__":
    main()
