"""What a quick (``make bench``) and a full (``make bench-full``) run measure.

Record counts are upper bounds: every producer also stops after ``max_seconds``
(the slow clients would otherwise take minutes), and the table shows the count
actually sent. Counts are per client because their speeds differ by 50x.
"""

from __future__ import annotations

from dataclasses import dataclass, field

KIB = 1024


@dataclass
class Plan:
    name: str
    sizes: list[int]
    acks: list
    counts: dict[str, int]  # records per producer run at 100 bytes, by client key
    max_seconds: float
    sync_records: int
    sync_acks: list
    rates: list[int]
    latency_seconds: float
    latency_clients: dict[str, list[str]]  # peer -> clients measured for latency
    tansu_clients: list[str]
    group_records: int  # 0: no group case
    failover: bool
    session_timeout_ms: int = 10000
    heartbeat_interval_ms: int = 3000
    group_partitions: int = 6
    iterator_row: bool = False
    big_divisor: int = 4  # 1 KiB runs send counts // big_divisor
    extra: dict = field(default_factory=dict)

    def count(self, client: str, size: int) -> int:
        n = self.counts[client]
        return n if size < KIB else max(1000, n // self.big_divisor)


QUICK = Plan(
    name="quick",
    sizes=[100],
    acks=[1],
    counts={
        "labkit": 300_000,
        "confluent": 300_000,
        "kafka-python": 100_000,
        "redis-pipeline": 200_000,
        "redis-single": 20_000,
        "zmq-single": 300_000,
        "zmq-batched": 1_000_000,
    },
    max_seconds=8,
    sync_records=3_000,
    sync_acks=[1],
    rates=[1_000],
    latency_seconds=3,
    latency_clients={
        "labkit": ["labkit"],
        "apache-kafka": ["confluent"],
        "tansu": ["confluent"],
        "redis": ["redis"],
        "pyzmq": ["zmq"],
    },
    tansu_clients=["confluent", "kafka-python"],
    group_records=0,
    failover=False,
)

FULL = Plan(
    name="full",
    sizes=[100, KIB],
    acks=[0, 1, "all"],
    counts={
        "labkit": 1_000_000,
        "confluent": 1_000_000,
        "kafka-python": 300_000,
        "redis-pipeline": 1_000_000,
        "redis-single": 50_000,
        "zmq-single": 1_000_000,
        "zmq-batched": 3_000_000,
    },
    max_seconds=20,
    sync_records=20_000,
    sync_acks=[1, "all"],
    rates=[1_000, 10_000],
    latency_seconds=10,
    latency_clients={
        "labkit": ["labkit"],
        "apache-kafka": ["confluent", "kafka-python"],
        "tansu": ["confluent", "kafka-python"],
        "redis": ["redis"],
        "pyzmq": ["zmq"],
    },
    tansu_clients=["confluent", "kafka-python"],
    group_records=1_000_000,
    failover=True,
    iterator_row=True,
)

PLANS = {"quick": QUICK, "full": FULL}

# client key -> (driver module key, library for drv_kafka, label in the tables)
CLIENTS = {
    "labkit": ("kafka", "labkit", "labkit"),
    "kafka-python": ("kafka", "kafka", "kafka-python"),
    "confluent": ("confluent", None, "confluent-kafka"),
    "redis": ("redis", None, "redis-py"),
    "zmq": ("zmq", None, "pyzmq"),
}


def system_label(client: str, peer: str, variant: str = "") -> str:
    """The row label: ``client → server (variant)``; labkit's own pair is just 'labkit'."""
    if client == "labkit":
        base = "labkit"
    elif client == "zmq":
        base = "pyzmq PUSH/PULL"
    else:
        base = f"{CLIENTS[client][2]} → {peer}"
    return f"{base} ({variant})" if variant else base


def spec_for(client: str, op: str, bootstrap: str, **fields) -> dict:
    driver, lib, _label = CLIENTS[client]
    spec = {"driver": driver, "op": op, "bootstrap": bootstrap, **fields}
    if lib:
        spec["lib"] = lib
    return spec
