"""The measurements: each function runs worker processes against a started peer
and returns table rows (dicts, see report.py for the keys).

A row's ``status`` is ``ok``, ``failed: <why>`` (the peer ran but the case did
not work: shown, never hidden), ``missing: <why>`` (the peer could not start) or
``n/a: <why>`` (the case does not apply to that peer).
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import time
from pathlib import Path

from plan import Plan, spec_for, system_label
from procs import Worker, run, run_pair

_ids = itertools.count(1)
GROUP_READ_S = 150  # the longest a 3-member group may take to read everything


def topic_name(prefix: str) -> str:
    return f"bench-{prefix}-{next(_ids)}"


def _status(res: dict) -> str:
    return f"failed: {res['error']}" if "error" in res else "ok"


def throughput_row(table: str, system: str, size: int, acks, res: dict, **extra) -> dict:
    records = res.get("records", 0)
    seconds = res.get("seconds") or 0.0
    rps = records / seconds if seconds > 0 and records else 0.0
    timed_records, timed_seconds = res.get("timed") or (0, 0.0)
    if timed_records > 0 and timed_seconds > 0:  # consumers: from the first batch on
        rps = timed_records / timed_seconds
    status = _status(res)
    expected = extra.pop("expected", None)
    if status == "ok" and expected and records < expected:
        status = f"ok (read {records:,} of {expected:,} in time)"
    return {
        "table": table,
        "system": system,
        "size": size,
        "acks": str(acks),
        "records": records,
        "seconds": seconds,
        "rps": rps,
        "mbps": rps * size / 1e6,
        "status": status,
        "settings": res.get("settings", {}),
        **extra,
    }


def missing_rows(peer: str, reason: str) -> list[dict]:
    return [{"table": "missing", "system": peer, "status": f"missing: {reason}"}]


# -- producer + consumer ----------------------------------------------------------


def produce_consume(
    peer,
    client: str,
    plan: Plan,
    size: int,
    acks,
    consume: bool,
    variant: str = "",
    count_key: str | None = None,
    extra_spec: dict | None = None,
) -> list[dict]:
    """Produce ``count`` records into a fresh topic; optionally read them all back."""
    topic = topic_name(f"{client}-{size}")
    peer.create_topic(topic)
    n = plan.count(count_key or client, size)
    common = {"topic": topic, "size": size, "max_seconds": plan.max_seconds, **(extra_spec or {})}
    res = run(
        spec_for(client, "produce", peer.bootstrap, n=n, acks=acks, **common),
        timeout=plan.max_seconds + 90,
    )
    label = system_label(client, peer.name, variant)
    rows = [throughput_row("producer", label, size, acks, res)]
    if consume and "error" not in res and res.get("records"):
        produced = res["records"]
        cres = run(
            spec_for(client, "consume", peer.bootstrap, n=produced, **common),
            timeout=plan.max_seconds + 90,
        )
        rows.append(
            throughput_row(
                "consumer",
                system_label(client, peer.name, variant),
                size,
                acks,
                cres,
                expected=produced,
            )
        )
        if client == "labkit" and plan.iterator_row:
            ires = run(
                spec_for(client, "consume", peer.bootstrap, n=produced, mode="iter", **common),
                timeout=plan.max_seconds + 90,
            )
            rows.append(
                throughput_row("consumer", "labkit (iterator)", size, acks, ires, expected=produced)
            )
    peer.delete_topic(topic)
    return rows


def sync_sends(
    peer, client: str, plan: Plan, acks, variant: str = "", extra_spec: dict | None = None
) -> dict:
    topic = topic_name(f"sync-{client}")
    peer.create_topic(topic)
    res = run(
        spec_for(
            client,
            "sync",
            peer.bootstrap,
            topic=topic,
            n=plan.sync_records,
            size=100,
            acks=acks,
            max_seconds=plan.max_seconds,
            **(extra_spec or {}),
        ),
        timeout=plan.max_seconds + 60,
    )
    peer.delete_topic(topic)
    row = throughput_row("sync", system_label(client, peer.name, variant), 100, acks, res)
    row["mean_us"] = 1e6 / row["rps"] if row["rps"] else None
    return row


# -- pyzmq: the transport limit ------------------------------------------------------


def zmq_throughput(peer, plan: Plan, size: int, mode: str) -> list[dict]:
    n = plan.count(f"zmq-{mode}", size)
    address = peer.address()
    common = {
        "address": address,
        "size": size,
        "n": n,
        "mode": mode,
        "batch": 1000,
        "max_seconds": plan.max_seconds + 10,
    }
    consumed, produced = run_pair(
        spec_for("zmq", "pull", "", **common),
        spec_for("zmq", "push", "", **common),
        timeout=plan.max_seconds + 60,
    )
    if "error" not in consumed and "error" in produced:
        consumed = {"error": produced["error"]}
    variant = "single" if mode == "single" else "batched ×1000"
    label = system_label("zmq", "", variant)
    row = throughput_row(
        "producer", label, size, "—", consumed, note="timed at the receiver (no broker)"
    )
    return [row, {**row, "table": "consumer"}]


# -- end-to-end latency ---------------------------------------------------------------


def latency(
    peer, client: str, plan: Plan, rate: int, variant: str = "", consumer_config: dict | None = None
) -> dict:
    n = int(rate * plan.latency_seconds)
    skip = rate // 2  # the first half second warms up connections and caches
    system = system_label(client, peer.name, variant)
    if client == "zmq":
        where = {"address": peer.address()}
        bootstrap = ""
    else:
        topic = topic_name(f"lat-{client}")
        peer.create_topic(topic)
        where = {"topic": topic}
        bootstrap = peer.bootstrap
    common = {
        **where,
        "size": 100,
        "n": n,
        "skip": skip,
        "acks": 1,
        "max_seconds": plan.latency_seconds + 20,
        "consumer_config": consumer_config,
    }
    consumed, produced = run_pair(
        spec_for(client, "lat_consume", bootstrap, **common),
        spec_for(client, "lat_produce", bootstrap, rate=rate, **common),
        timeout=plan.latency_seconds + 60,
    )
    if client != "zmq":
        peer.delete_topic(where["topic"])
    if "error" not in consumed and "error" in produced:
        consumed = {"error": "producer: " + produced["error"]}
    row = {
        "table": "latency",
        "system": system,
        "rate": rate,
        "size": 100,
        "records": consumed.get("records", 0),
        "sent": produced.get("records", 0),
        "status": _status(consumed),
        "max_behind_ms": produced.get("max_behind_ms"),
    }
    for key in ("p50_ms", "p99_ms", "p999_ms", "max_ms", "count"):
        row[key] = consumed.get(key)
    if row["status"] == "ok" and row["records"] < n:
        row["status"] = f"ok (received {row['records']:,} of {n:,})"
    return row


# -- consumer groups ------------------------------------------------------------------


def _members(peer, client: str, plan: Plan, topic: str, group: str, **fields) -> list[Worker]:
    return [
        Worker(
            spec_for(
                client,
                "group_member",
                peer.bootstrap,
                topic=topic,
                group=group,
                client_id=f"member-{i}",
                session_timeout_ms=plan.session_timeout_ms,
                heartbeat_interval_ms=plan.heartbeat_interval_ms,
                **fields,
            ),
            name=f"member-{i}",
        )
        for i in range(3)
    ]


def group_read(peer, client: str, plan: Plan, producer_client: str) -> dict:
    """3 members of one group read ``group_records`` records that are already there."""
    topic = topic_name(f"group-{client}")
    peer.create_topic(topic, plan.group_partitions)
    n = plan.group_records
    fill_spec = {"mode": "pipeline"} if producer_client == "redis" else {}
    fill = run(
        spec_for(
            producer_client,
            "produce",
            peer.bootstrap,
            topic=topic,
            n=n,
            size=100,
            acks=1,
            max_seconds=120,
            **fill_spec,
        ),
        timeout=240,
    )
    system = system_label(client, peer.name)
    row = {
        "table": "group",
        "system": system,
        "size": 100,
        "members": 3,
        "partitions": plan.group_partitions if client != "redis" else "—",
        "produced": fill.get("records", 0),
        "status": _status(fill),
    }
    if "error" in fill:
        row["status"] = "failed: filling the topic: " + fill["error"]
        peer.delete_topic(topic)
        return row
    stop_file = Path(tempfile.mkdtemp(prefix="bench-group-")) / "stop"
    members = _members(
        peer,
        client,
        plan,
        topic,
        f"g-{topic}",
        reset="earliest",
        until_s=GROUP_READ_S + 30,
        stop_file=str(stop_file),
    )
    _wait_until_read(members, row["produced"], GROUP_READ_S)
    stop_file.touch()
    results = [m.wait(60) for m in members]
    shutil.rmtree(stop_file.parent, ignore_errors=True)
    peer.delete_topic(topic)
    errors = [r["error"] for r in results if "error" in r]
    total = sum(r.get("records", 0) for r in results)
    firsts = [r["first_ns"] for r in results if r.get("first_ns")]
    lasts = [r["last_ns"] for r in results if r.get("last_ns")]
    seconds = (max(lasts) - min(firsts)) / 1e9 if firsts and lasts else 0.0
    unique = _unique(results)
    row.update(
        records=total,
        seconds=seconds,
        rps=total / seconds if seconds else 0.0,
        per_member=[r.get("records", 0) for r in results],
        duplicates=(total - unique) if unique is not None else None,
    )
    if errors:
        row["status"] = "failed: " + errors[0]
    elif row["duplicates"] and row["duplicates"] > row["produced"] // 2:
        row["status"] = (
            f"failed: members read the same records ({row['duplicates']:,} "
            "read twice or more): the group did not split the partitions"
        )
    elif unique is not None and unique < row["produced"]:
        row["status"] = f"failed: read {unique:,} distinct of {row['produced']:,}"
    elif total < row["produced"]:
        row["status"] = f"failed: read {total:,} of {row['produced']:,}"
    return row


def _wait_until_read(members: list[Worker], produced: int, timeout: float) -> None:
    """Until the members' progress reports cover ``produced`` records (or ``timeout``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.25)
        if all(m.proc.poll() is not None for m in members):
            return
        latest = []
        for member in members:
            reports = [e for e in member.snapshot() if e.get("ev") == "progress"]
            if reports:
                latest.append(reports[-1])
        unique = _unique(latest)
        if unique is None:  # no offsets (redis): add up the counts
            unique = sum(r["count"] for r in latest)
        if unique >= produced:
            return


def _unique(results: list[dict]) -> int | None:
    """Distinct records read, from the highest offset seen per partition (None: no offsets)."""
    highest: dict[str, int] = {}
    for res in results:
        for p, stats in (res.get("partitions") or {}).items():
            hi = stats[1] if isinstance(stats, list) else stats  # result or progress line
            highest[p] = max(highest.get(p, -1), hi)
    if not highest:
        return None
    return sum(hi + 1 for hi in highest.values())
