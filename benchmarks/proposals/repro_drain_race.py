"""Reproduce the producer's lost-batch hang (benchmarks/NOTES.md, finding 1).

    labkit broker --port 19400 --data-dir /tmp/race &
    for i in 1 2 3; do python benchmarks/proposals/repro_drain_race.py 127.0.0.1:19400 12 & done

Three producers, each sending 1,000,000 records then flush(), 12 times. Without
1-drain-race.patch one of them usually logs ``RuntimeError: deque mutated during
iteration`` from ``RecordAccumulator.drain`` within a minute; the batches that
drain() had already sealed are never sent, ``incomplete`` stays above 0 and flush()
waits forever (here: 30 s, then a HANG line with the accumulator's counters).
"""

import logging
import sys
import threading
import time

from labkit import KafkaProducer


def watchdog(producer, rep: int, done: threading.Event) -> None:
    if done.wait(15):
        return
    acc, sender, transport = producer._acc, producer._sender, producer._transport
    print("HANG rep", rep, "incomplete", acc.incomplete, "pending", acc.pending_records(),
          "sender in_flight", sender._in_flight, "transport inflight", len(transport._inflight),
          "outbox", len(transport._outbox), flush=True)


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    producer = KafkaProducer(bootstrap_servers=sys.argv[1], acks=1)
    producer.partitions_for("race")
    value = b"x" * 100
    send = producer.send
    for rep in range(int(sys.argv[2])):
        for _ in range(1_000_000):
            send("race", value)
        started = time.monotonic()
        done = threading.Event()
        threading.Thread(target=watchdog, args=(producer, rep, done), daemon=True).start()
        producer.flush(30)
        done.set()
        print("rep", rep, "flush", round(time.monotonic() - started, 3), flush=True)


if __name__ == "__main__":
    main()
