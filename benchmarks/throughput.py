"""labkit's own throughput: a broker process, a producer process, a consumer process.

    .venv/bin/python benchmarks/throughput.py [--records 1000000] [--size 100] [--acks 1]

The broker (``labkit broker`` on a free port, data in a temporary directory) runs
in its own process. A producer process sends ``--records`` values of ``--size``
bytes through ``KafkaProducer.send()`` and ``flush()``; then a consumer process
reads them all back with ``KafkaConsumer.poll()``. Each prints records/s and
MB/s (MB = 10^6 bytes of values). The side-by-side comparison with other
systems is ``benchmarks/run.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import proc_status_kb
from peers import LabkitPeer
from plan import spec_for
from procs import run


def line(what: str, res: dict, size: int) -> str:
    if "error" in res:
        return f"{what:<9} FAILED: {res['error']}"
    records, seconds = res["records"], res["seconds"]
    timed, timed_s = res.get("timed") or (records, seconds)
    rate = timed / timed_s if timed_s > 0 else 0.0
    return (
        f"{what:<9} {records:>10,} records in {seconds:6.2f} s: {rate:>11,.0f} records/s "
        f"{rate * size / 1e6:8.1f} MB/s"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--size", type=int, default=100, help="value size in bytes")
    parser.add_argument("--acks", default="1", choices=["0", "1", "all"])
    args = parser.parse_args(argv)
    acks = args.acks if args.acks == "all" else int(args.acks)
    print(
        f"labkit throughput: {args.records:,} records of {args.size} B, acks={args.acks}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
        "broker, producer and consumer in separate processes"
    )
    with LabkitPeer() as peer:
        topic = "throughput"
        peer.create_topic(topic)
        fields = {"topic": topic, "size": args.size, "max_seconds": 300}
        produced = run(
            spec_for("labkit", "produce", peer.bootstrap, n=args.records, acks=acks, **fields),
            timeout=400,
        )
        print(line("producer", produced, args.size), flush=True)
        if "error" in produced:
            return 1
        consumed = run(
            spec_for("labkit", "consume", peer.bootstrap, n=produced["records"], **fields),
            timeout=400,
        )
        print(line("consumer", consumed, args.size))
        settings = {**produced.get("settings", {}), **consumed.get("settings", {})}
        print("settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
        kb = proc_status_kb(peer.proc_pid, "VmHWM")
        print(f"broker peak RSS: {kb / 1024:.1f} MB" if kb else "broker peak RSS: unknown")
        return 1 if "error" in consumed else 0


if __name__ == "__main__":
    sys.exit(main())
