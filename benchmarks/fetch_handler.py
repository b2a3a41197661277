"""The broker's fetch handler in process, without sockets: what a consumer fetch costs the
loop thread (benchmarks/NOTES.md, section 13). Used to A/B the replication change
(consumer reads bounded by the high watermark) against the commit before it:

    PYTHONPATH=<checkout> .venv/bin/python benchmarks/fetch_handler.py [replica]

One partition of 2,000 batches x 20 records x 100 B; each round runs REPEAT fetches of
up to 64 KiB from offsets spread over the log. Prints the median CPU time
(``thread_time``) per fetch over ROUNDS rounds, in microseconds. ``replica`` fetches
with ``replica_id=1`` (only where the checkout has it).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from labkit.broker.config import BrokerConfig
from labkit.broker.handlers import Handlers
from labkit.broker.topics import TopicRegistry
from labkit.protocol.records import encode_batch
from labkit.testing import FakeClock

BATCHES, RECORDS, VALUE = 2000, 20, b"x" * 100
ROUNDS, REPEAT = 15, 2000


def main() -> None:
    replica = sys.argv[1:] == ["replica"]
    with tempfile.TemporaryDirectory() as tmp:
        clock = FakeClock()
        config = BrokerConfig.build(port=9092, data_dir=Path(tmp), overrides={})
        registry = TopicRegistry(config.data_dir, config.log_defaults, clock, 1).open()
        handlers = Handlers(registry, config, clock)
        handlers.handle("create_topics", {"topics": [{"name": "t", "num_partitions": 1}]}, [])
        data = encode_batch([clock.time_ms()] * RECORDS, None, [VALUE] * RECORDS)
        for _ in range(BATCHES):
            handlers.handle("produce", {"acks": 1, "targets": [["t", 0]]}, [data])
        end = BATCHES * RECORDS
        extra = {"replica_id": 1} if replica else {}
        headers = [
            {"max_wait_ms": 0, "partitions": [["t", 0, (i * 7919) % end, 65536]], **extra}
            for i in range(REPEAT)
        ]
        samples = []
        for _ in range(ROUNDS):
            start = time.thread_time()
            for header in headers:
                reply = handlers.handle("fetch", header, [])
            samples.append((time.thread_time() - start) / REPEAT * 1e6)
            assert reply.header["error"] == 0, reply.header
        registry.close()
    print(f"{'replica' if replica else 'consumer'} fetch: {statistics.median(samples):.1f} us")


if __name__ == "__main__":
    main()
