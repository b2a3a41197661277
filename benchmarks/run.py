"""labkit against its peers, side by side, in one run on this machine.

    .venv/bin/python benchmarks/run.py --quick     # make bench: a subset, ~1-2 minutes
    .venv/bin/python benchmarks/run.py --full      # make bench-full: everything
    .venv/bin/python benchmarks/run.py --quick --peers labkit,pyzmq

Each peer (labkit's broker, Apache Kafka, tansu, redis-server; pyzmq needs none) is started,
measured by worker processes (worker.py) and stopped before the next one, so
only one server runs at a time. The rows go to results.json, RESULTS.md and
results.png (in --out, default: this directory); RESULTS.md is regenerated from
results.json by ``--report-only``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import cases  # noqa: E402
import failover  # noqa: E402
import report  # noqa: E402
from common import machine_conditions  # noqa: E402
from peers import (  # noqa: E402
    ApacheKafkaPeer,
    LabkitKafkaPeer,
    LabkitPeer,
    PeerMissing,
    RedisPeer,
    TansuPeer,
    ZmqPeer,
)
from plan import PLANS, Plan  # noqa: E402

PEERS = ["labkit", "labkit-kafka-listener", "apache-kafka", "tansu", "redis", "pyzmq"]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Rows(list):
    """The rows of a run; ``add`` records a case, or a failed row if it raised."""

    def add(self, table: str, system: str, fn, *args, **kwargs) -> None:
        try:
            got = fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the harness keeps going; the table shows what broke
            log(f"{system}: {table} case raised {type(exc).__name__}: {exc}")
            got = {
                "table": table,
                "system": system,
                "size": 100,
                "acks": "1",
                "rate": 0,
                "status": f"failed: the harness raised {type(exc).__name__}: {exc}",
            }
        self.extend(got if isinstance(got, list) else [got])


def labkit_cases(peer, plan: Plan, rows: Rows) -> None:
    for size in plan.sizes:
        for acks in plan.acks:
            log(f"labkit: produce {size} B acks={acks}")
            rows.add(
                "producer",
                "labkit",
                cases.produce_consume,
                peer,
                "labkit",
                plan,
                size,
                acks,
                consume=acks == 1,
            )
    for acks in plan.sync_acks:
        rows.add("sync", "labkit", cases.sync_sends, peer, "labkit", plan, acks)
    for rate in plan.rates:
        log(f"labkit: latency at {rate}/s")
        rows.add("latency", "labkit", cases.latency, peer, "labkit", plan, rate)
    if not plan.group_records:
        return
    missing = labkit_groups_missing()
    if missing:
        rows.append({"table": "group", "system": "labkit", "status": missing})
        if plan.failover:
            rows.append({"table": "failover", "system": "labkit", "status": missing})
        return
    log("labkit: 3-member group")
    rows.add("group", "labkit", cases.group_read, peer, "labkit", plan, "labkit")
    if plan.failover:
        log("labkit: member failover")
        rows.add("failover", "labkit", failover.failover, peer, "labkit", plan, "labkit")


def labkit_groups_missing() -> str:
    """Why labkit's KafkaConsumer cannot join a group yet ('' when it can)."""
    from labkit.client import consumer

    if getattr(consumer, "ConsumerCoordinator", None) is None:
        return (
            "missing: labkit's KafkaConsumer has no group coordinator yet "
            "(ConsumerCoordinator in labkit/client/consumer_coordinator.py); group_id would be ignored"
        )
    return ""


def tansu_cases(peer, plan: Plan, rows: Rows) -> None:
    """The Kafka-protocol peers (tansu, Apache Kafka) with confluent-kafka and kafka-python."""
    for client in plan.tansu_clients:
        for size in plan.sizes:
            for acks in plan.acks:
                log(f"{peer.name}/{client}: produce {size} B acks={acks}")
                rows.add(
                    "producer",
                    client,
                    cases.produce_consume,
                    peer,
                    client,
                    plan,
                    size,
                    acks,
                    consume=acks == 1,
                )
        for acks in plan.sync_acks:
            rows.add("sync", client, cases.sync_sends, peer, client, plan, acks)
    for client in plan.latency_clients.get(peer.name, []):
        for rate in plan.rates:
            log(f"{peer.name}/{client}: latency at {rate}/s")
            rows.add("latency", client, cases.latency, peer, client, plan, rate)
    if (
        peer.name == "tansu"
        and plan.name == "full"
        and "confluent" in plan.latency_clients.get("tansu", [])
    ):
        # tansu answers long-poll fetches late: show that a shorter wait does not fix it
        rows.add(
            "latency",
            "confluent",
            cases.latency,
            peer,
            "confluent",
            plan,
            1000,
            variant="fetch.wait.max.ms=10",
            consumer_config={"fetch.wait.max.ms": 10},
        )
    for client in plan.tansu_clients if plan.group_records else []:
        log(f"{peer.name}/{client}: 3-member group")
        rows.add("group", client, cases.group_read, peer, client, plan, "confluent")
        if plan.failover:
            rows.add("failover", client, failover.failover, peer, client, plan, "confluent")


def labkit_kafka_cases(peer, plan: Plan, rows: Rows) -> None:
    """Kafka clients through labkit's Kafka listener: produce and consume, as for the
    other Kafka-protocol peers."""
    for client in plan.tansu_clients:
        extra = {"producer_config": peer.producer_config.get(client) or {}}
        for size in plan.sizes:
            for acks in plan.acks:
                log(f"{peer.name}/{client}: produce {size} B acks={acks}")
                rows.add(
                    "producer",
                    client,
                    cases.produce_consume,
                    peer,
                    client,
                    plan,
                    size,
                    acks,
                    consume=acks == 1,
                    extra_spec=extra,
                )


def redis_cases(peer, plan: Plan, rows: Rows) -> None:
    for size in plan.sizes:
        for acks in plan.acks:
            if acks == 0:
                continue  # redis-py always reads replies: no fire-and-forget to compare
            peer.durable(acks == "all")
            log(f"redis: XADD {size} B {'appendfsync always' if acks == 'all' else ''}")
            rows.add(
                "producer",
                "redis",
                cases.produce_consume,
                peer,
                "redis",
                plan,
                size,
                acks,
                consume=acks == 1,
                variant="pipelined ×1000",
                count_key="redis-pipeline",
                extra_spec={"mode": "pipeline", "batch": 1000},
            )
            rows.add(
                "producer",
                "redis",
                cases.produce_consume,
                peer,
                "redis",
                plan,
                size,
                acks,
                consume=False,
                variant="unpipelined",
                count_key="redis-single",
                extra_spec={"mode": "single"},
            )
    peer.durable(False)
    for acks in plan.sync_acks:
        peer.durable(acks == "all")
        rows.add(
            "sync",
            "redis",
            cases.sync_sends,
            peer,
            "redis",
            plan,
            acks,
            variant="XADD",
            extra_spec={"mode": "single"},
        )
    peer.durable(False)
    for rate in plan.rates:
        log(f"redis: latency at {rate}/s")
        rows.add("latency", "redis", cases.latency, peer, "redis", plan, rate)
    if plan.group_records:
        log("redis: 3 consumers in one group")
        rows.add("group", "redis", cases.group_read, peer, "redis", plan, "redis")
        if plan.failover:
            rows.append(
                failover.not_applicable(
                    peer,
                    "redis",
                    "no partitions to reassign: the others keep reading new "
                    "entries at once; the dead consumer's pending entries wait for XAUTOCLAIM",
                )
            )


def zmq_cases(peer, plan: Plan, rows: Rows) -> None:
    for size in plan.sizes:
        for mode in ("single", "batched"):
            log(f"pyzmq: {mode} {size} B")
            rows.add("producer", "pyzmq", cases.zmq_throughput, peer, plan, size, mode)
    for rate in plan.rates:
        rows.add("latency", "pyzmq", cases.latency, peer, "zmq", plan, rate)


SESSIONS = {
    "labkit": (LabkitPeer, labkit_cases),
    "labkit-kafka-listener": (LabkitKafkaPeer, labkit_kafka_cases),
    "apache-kafka": (ApacheKafkaPeer, tansu_cases),
    "tansu": (TansuPeer, tansu_cases),
    "redis": (RedisPeer, redis_cases),
    "pyzmq": (ZmqPeer, zmq_cases),
}


def warm_up(peer, plan: Plan) -> None:
    """One unmeasured confluent-kafka produce and consume on a Kafka-protocol peer, so
    that Apache Kafka's first measured case does not pay its JVM's warm-up (its acks=all
    run, right after the acks=1 one, was 1.4-3.4x faster without this: NOTES 11.1)."""
    if "confluent" not in plan.tansu_clients:
        return
    log(f"{peer.name}: warm-up (not measured)")
    cases.produce_consume(
        peer,
        "confluent",
        replace(plan, max_seconds=min(plan.max_seconds, 3.0)),
        100,
        1,
        consume=True,
    )


def run_session(name: str, plan: Plan, rows: Rows, meta: dict) -> None:
    make, measure = SESSIONS[name]
    peer = make()
    started = time.monotonic()
    try:
        peer.start()
    except PeerMissing as exc:
        log(f"{name}: missing ({exc})")
        rows += cases.missing_rows(name, str(exc))
        peer.stop()
        return
    startup_s = time.monotonic() - started  # process start to answering its clients
    meta["peer_versions"][name] = getattr(peer, "version", "")
    try:
        if name in ("apache-kafka", "labkit-kafka-listener"):
            warm_up(peer, plan)
        measure(peer, plan, rows)
        if name != "pyzmq":
            kb = peer.peak_rss_kb()
            rows.append(
                {
                    "table": "memory",
                    "system": name,
                    "storage": peer.storage,
                    "peak_rss_mb": kb / 1024 if kb else None,
                    "startup_s": startup_s,
                    "format_s": getattr(getattr(peer, "kafka", None), "format_seconds", None),
                    "status": "ok" if kb else "failed: could not read VmHWM",
                }
            )
    finally:
        peer.stop()


def write_outputs(rows: list, meta: dict, out: Path) -> None:
    (out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    # attacks.py's, classroom.py's and replication.py's sections are kept
    (out / "RESULTS.md").write_text(report.render(rows, meta, **report.side_sections(out)))
    try:
        report.chart(rows, str(out / "results.png"))
    except ImportError as exc:
        log(f"no chart: {exc} (pip install matplotlib)")


def conditions(plan: Plan) -> list[str]:
    return [
        f"Value sizes: {', '.join(f'{s} B' for s in plan.sizes)}; no keys, no headers, no "
        "compression; one partition per topic (6 for the group cases).",
        "Clients run with their default batching unless stated: labkit and kafka-python "
        "batch_size 16384, linger_ms 0, 5 requests in flight; confluent-kafka linger.ms 5 "
        "(0 in latency and sync runs), batch.num.messages 10000; redis-py pipelines of 1,000; "
        "pyzmq batches of 1,000 records per message.",
        "acks: 0/1/'all' as in Kafka. Fsync policy: labkit acks=1 and 0 never fsync (data in "
        "the page cache), acks='all' fsyncs before answering (one fsync per round for every "
        "waiting batch); tansu keeps everything in memory; redis has persistence off except "
        "the acks='all' rows (AOF, appendfsync always).",
        f"Record counts are capped by time: a producer stops after {plan.max_seconds:.0f} s; "
        "the table shows what was sent. Each producer, consumer and group member is its own "
        "process; the server is another; only one server runs at a time.",
        f"Group cases: session_timeout_ms {plan.session_timeout_ms}, heartbeat_interval_ms "
        f"{plan.heartbeat_interval_ms}, auto-commit on, range assignment (each client's "
        "default).",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="the make bench subset (default)")
    mode.add_argument("--full", action="store_true", help="every case (make bench-full)")
    parser.add_argument(
        "--peers", default=",".join(PEERS), help=f"comma-separated subset of {','.join(PEERS)}"
    )
    parser.add_argument("--out", default=str(HERE), help="directory for RESULTS.md etc.")
    parser.add_argument(
        "--acks", help="comma-separated acks to measure instead of the plan's, e.g. 1,all"
    )
    parser.add_argument("--note", default="", help="a line added to the conditions")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite RESULTS.md and the chart from results.json",
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        data = json.loads((out / "results.json").read_text())
        write_outputs(data["rows"], data["meta"], out)
        return 0
    plan = PLANS["full" if args.full else "quick"]
    if args.acks:
        plan = replace(plan, acks=[a if a == "all" else int(a) for a in args.acks.split(",")])
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    unknown = sorted(set(peers) - set(PEERS))
    if unknown:
        parser.error(f"unknown peers {unknown}; choose from {PEERS}")
    machine = machine_conditions()
    meta = {
        "plan": plan.name,
        "machine": machine,
        "peer_versions": {},
        "command": "python benchmarks/run.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "conditions": conditions(plan) + ([args.note] if args.note else []),
    }
    if machine["load_avg"][0] > 0.5 * (machine["cpus"] or 1):
        meta["under_load"] = (
            f"the 1-minute load average was {machine['load_avg'][0]} on "
            f"{machine['cpus']} CPUs when the run started (other work "
            "was running)."
        )
    rows = Rows()
    started = time.monotonic()
    for name in peers:
        log(f"== {name}")
        run_session(name, plan, rows, meta)
        meta["elapsed_s"] = time.monotonic() - started
        meta["load_after"] = [round(x, 2) for x in os.getloadavg()]
        write_outputs(rows, meta, out)  # partial results survive an interrupted run
    log(f"done in {meta['elapsed_s']:.0f} s: {out / 'RESULTS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
