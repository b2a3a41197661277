"""Turn benchmark rows into RESULTS.md (markdown tables) and a PNG chart.

Pure functions over the rows the cases return (see cases.py): nothing here
measures anything, so the formatting is unit-tested
(tests/unit/test_bench_report.py). Ratios are always *labkit ÷ peer* for the
same case in the same run: for throughput above 1 means labkit is faster, for
latency below 1 means labkit is faster.
"""

from __future__ import annotations

import json
import math

LABKIT = "labkit"


def fmt_num(value, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def fmt_ms(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.3f}" if value < 10 else f"{value:,.1f}"


def ratio(labkit_value, peer_value) -> str:
    """``labkit ÷ peer`` as ``1.23×``; ``—`` when either side is missing or zero."""
    if not labkit_value or not peer_value:
        return "—"
    if any(isinstance(v, float) and math.isnan(v) for v in (labkit_value, peer_value)):
        return "—"
    r = labkit_value / peer_value
    return f"{r:.2f}×" if r < 100 else f"{r:,.0f}×"


def _ok(row: dict) -> bool:
    return str(row.get("status", "")).startswith("ok")


def _status(row: dict) -> str:
    status = str(row.get("status", ""))
    return "ok" if status == "ok" else status.replace("|", "/").replace("\n", " ")[:300]


def _table(header: list[str], lines: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in line) + " |" for line in lines]
    return out


def _order(row: dict) -> tuple:
    return (0 if row.get("system") == LABKIT else 1, row.get("system", ""))


def _labkit(rows: list[dict], **match) -> dict | None:
    for row in rows:
        if (
            row.get("system") == LABKIT
            and _ok(row)
            and all(str(row.get(k)) == str(v) for k, v in match.items())
        ):
            return row
    return None


def _acks_key(acks: str) -> str:
    return "1" if acks == "—" else acks  # the transport limit is compared with acks=1


def producer_table(rows: list[dict]) -> list[str]:
    mine = sorted(
        (r for r in rows if r.get("table") == "producer"),
        key=lambda r: (r["size"], _acks_key(r["acks"]), *_order(r)),
    )
    lines = []
    for r in mine:
        ref = _labkit(rows, table="producer", size=r["size"], acks=_acks_key(r["acks"]))
        lines.append(
            [
                r["system"],
                f"{r['size']} B",
                r["acks"],
                fmt_num(r.get("records")),
                fmt_num(r.get("rps")),
                fmt_num(r.get("mbps"), 1),
                ratio(ref and ref["rps"], r.get("rps")) if _ok(r) else "—",
                _status(r),
            ]
        )
    return _table(
        ["system", "value", "acks", "records", "records/s", "MB/s", "labkit ÷ this", "status"],
        lines,
    )


def consumer_table(rows: list[dict]) -> list[str]:
    mine = sorted(
        (r for r in rows if r.get("table") == "consumer"), key=lambda r: (r["size"], *_order(r))
    )
    lines = []
    for r in mine:
        ref = _labkit(rows, table="consumer", size=r["size"])
        lines.append(
            [
                r["system"],
                f"{r['size']} B",
                fmt_num(r.get("records")),
                fmt_num(r.get("rps")),
                fmt_num(r.get("mbps"), 1),
                ratio(ref and ref["rps"], r.get("rps")) if _ok(r) else "—",
                _status(r),
            ]
        )
    return _table(
        ["system", "value", "records", "records/s", "MB/s", "labkit ÷ this", "status"], lines
    )


def sync_table(rows: list[dict]) -> list[str]:
    mine = sorted(
        (r for r in rows if r.get("table") == "sync"), key=lambda r: (r["acks"], *_order(r))
    )
    lines = []
    for r in mine:
        ref = _labkit(rows, table="sync", acks=r["acks"])
        lines.append(
            [
                r["system"],
                r["acks"],
                fmt_num(r.get("records")),
                fmt_num(r.get("rps")),
                fmt_num(r.get("mean_us")),
                ratio(ref and ref["rps"], r.get("rps")) if _ok(r) else "—",
                _status(r),
            ]
        )
    return _table(
        ["system", "acks", "records", "records/s", "µs per send", "labkit ÷ this", "status"], lines
    )


def latency_table(rows: list[dict]) -> list[str]:
    mine = sorted(
        (r for r in rows if r.get("table") == "latency"), key=lambda r: (r["rate"], *_order(r))
    )
    lines = []
    for r in mine:
        ref = _labkit(rows, table="latency", rate=r["rate"])
        lines.append(
            [
                r["system"],
                fmt_num(r["rate"]),
                fmt_num(r.get("count")),
                fmt_ms(r.get("p50_ms")),
                fmt_ms(r.get("p99_ms")),
                fmt_ms(r.get("p999_ms")),
                fmt_ms(r.get("max_ms")),
                ratio(ref and ref.get("p99_ms"), r.get("p99_ms")) if _ok(r) else "—",
                _status(r),
            ]
        )
    return _table(
        [
            "system",
            "records/s",
            "samples",
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms",
            "labkit p99 ÷ this p99",
            "status",
        ],
        lines,
    )


def group_table(rows: list[dict]) -> list[str]:
    mine = sorted((r for r in rows if r.get("table") == "group"), key=_order)
    lines = []
    ref = _labkit(rows, table="group")
    for r in mine:
        dup = r.get("duplicates")
        read = fmt_num(r.get("records")) + (f" ({fmt_num(dup)} again)" if dup else "")
        lines.append(
            [
                r["system"],
                f"3 × {r.get('partitions', '—')}",
                fmt_num(r.get("produced")),
                read,
                fmt_num(r.get("rps")),
                "/".join(fmt_num(x) for x in r.get("per_member") or []),
                ratio(ref and ref["rps"], r.get("rps")) if _ok(r) else "—",
                _status(r),
            ]
        )
    return _table(
        [
            "system",
            "members × partitions",
            "records",
            "read",
            "records/s",
            "per member",
            "labkit ÷ this",
            "status",
        ],
        lines,
    )


def failover_table(rows: list[dict]) -> list[str]:
    mine = sorted((r for r in rows if r.get("table") == "failover"), key=_order)
    lines = [
        [
            r["system"],
            fmt_num(r.get("session_timeout_ms")),
            fmt_num(r.get("detect_s"), 2),
            fmt_num(r.get("resume_s"), 2),
            _status(r),
        ]
        for r in mine
    ]
    return _table(
        ["system", "session timeout ms", "kill → reassigned s", "kill → reading again s", "status"],
        lines,
    )


def _startup(row: dict) -> str:
    """Seconds from starting the server to its port answering; Apache Kafka's includes
    formatting its storage (``kafka-storage format``, a JVM of its own), shown apart."""
    total = row.get("startup_s")
    if total is None:
        return "—"
    if row.get("format_s") is not None:
        return f"{total:.1f} (format {row['format_s']:.1f} + broker {total - row['format_s']:.1f})"
    return f"{total:.1f}"


def memory_table(rows: list[dict]) -> list[str]:
    mine = sorted((r for r in rows if r.get("table") == "memory"), key=_order)
    ref = _labkit(rows, table="memory")
    lines = [
        [
            r["system"],
            fmt_num(r.get("peak_rss_mb"), 1),
            ratio(ref and ref.get("peak_rss_mb"), r.get("peak_rss_mb")) if _ok(r) else "—",
            _startup(r),
            r.get("storage", ""),
            _status(r),
        ]
        for r in mine
    ]
    return _table(
        [
            "server",
            "peak RSS (VmHWM) MB",
            "labkit ÷ this",
            "start-up s (start to port answering)",
            "storage / fsync",
            "status",
        ],
        lines,
    )


def missing_table(rows: list[dict]) -> list[str]:
    mine = [r for r in rows if r.get("table") == "missing"]
    return (
        _table(["peer", "why"], [[r["system"], _status(r)] for r in mine])
        if mine
        else ["Every peer started."]
    )


def _find(rows, table, system, **match):
    for r in rows:
        if (
            r.get("table") == table
            and r.get("system") == system
            and _ok(r)
            and all(str(r.get(k)) == str(v) for k, v in match.items())
        ):
            return r
    return None


def targets(rows: list[dict]) -> list[list[str]]:
    """Issue 8's targets (and issue 2's floors) against this run's numbers."""
    out = []

    def add(what: str, value, ok) -> None:
        verdict = "—" if ok is None else ("met" if ok else "not met")
        out.append([what, value, verdict])

    prod = _find(rows, "producer", LABKIT, size=100, acks="1")
    cons = _find(rows, "consumer", LABKIT, size=100)
    ck_prod = _find(rows, "producer", "confluent-kafka → tansu", size=100, acks="1")
    ck_cons = _find(rows, "consumer", "confluent-kafka → tansu", size=100)
    lat = _find(rows, "latency", LABKIT, rate=1000)
    sync = _find(rows, "sync", LABKIT, acks="1")
    durable = _find(rows, "producer", LABKIT, size=100, acks="all")
    p, c = prod and prod["rps"], cons and cons["rps"]
    add("producer send() ≥ 200,000 records/s (issue 2 floor)", fmt_num(p), p and p >= 200_000)
    add("consumer poll() ≥ 300,000 records/s (issue 2 floor)", fmt_num(c), c and c >= 300_000)
    add("producer send() ≥ 1,000,000 records/s, acks=1", fmt_num(p), p and p >= 1_000_000)
    if ck_prod:
        add(
            "producer ≥ confluent-kafka → tansu",
            f"{fmt_num(p)} vs {fmt_num(ck_prod['rps'])}",
            p and p >= ck_prod["rps"],
        )
    add("consumer poll() ≥ 1,000,000 records/s", fmt_num(c), c and c >= 1_000_000)
    if ck_cons:
        add(
            "consumer ≥ 2 × confluent-kafka ← tansu",
            f"{fmt_num(c)} vs 2 × {fmt_num(ck_cons['rps'])}",
            c and c >= 2 * ck_cons["rps"],
        )
    if lat:
        add(
            "latency at 1,000 records/s: p50 ≤ 1 ms",
            fmt_ms(lat["p50_ms"]) + " ms",
            lat["p50_ms"] <= 1,
        )
        add(
            "latency at 1,000 records/s: p99 ≤ 3 ms",
            fmt_ms(lat["p99_ms"]) + " ms",
            lat["p99_ms"] <= 3,
        )
    s = sync and sync["rps"]
    add("sync sends ≥ 10,000 records/s", fmt_num(s), s and s >= 10_000)
    if durable and p:
        share = durable["rps"] / p
        add("acks='all' ≥ 50% of acks=1", f"{share:.0%}", share >= 0.5)
    # Apache Kafka, the top anchor (issue 13): reported next to labkit's own client
    ak_prod = _find(rows, "producer", "confluent-kafka → apache-kafka", size=100, acks="1")
    ak_cons = _find(rows, "consumer", "confluent-kafka → apache-kafka", size=100)
    if ak_prod:
        add(
            "labkit producer vs confluent-kafka → Apache Kafka (reported)",
            f"{fmt_num(p)} vs {fmt_num(ak_prod['rps'])}",
            None,
        )
    if ak_cons:
        add(
            "labkit consumer vs confluent-kafka ← Apache Kafka (reported)",
            f"{fmt_num(c)} vs {fmt_num(ak_cons['rps'])}",
            None,
        )
    # issue 13: Kafka clients through labkit's Kafka listener against Apache Kafka
    for client, goal in (("confluent-kafka", 0.5), ("kafka-python", 1.0)):
        for table, what in (("producer", "produce, acks=1"), ("consumer", "consume")):
            match = {"size": 100, "acks": "1"}
            mine = _find(rows, table, f"{client} → labkit-kafka-listener", **match)
            theirs = _find(rows, table, f"{client} → apache-kafka", **match)
            if mine and theirs and theirs["rps"]:
                share = mine["rps"] / theirs["rps"]
                add(
                    f"{client} → Kafka listener ≥ {goal:.0%} of {client} → Apache Kafka, {what}",
                    f"{fmt_num(mine['rps'])} vs {fmt_num(theirs['rps'])} ({share:.0%})",
                    share >= goal,
                )
    return [[w, v, k if k != "not met" else "**not met**"] for w, v, k in out]


def conditions_lines(meta: dict) -> list[str]:
    m = meta.get("machine", {})
    lines = [
        f"- Run: `{meta.get('command', '')}` ({meta.get('plan', '')} plan), {m.get('time', '')}, "
        f"{meta.get('elapsed_s', 0):.0f} s.",
        f"- Machine: {m.get('cpus')} CPUs ({m.get('cpu_model', '')}), {m.get('platform', '')}, "
        f"Python {m.get('python')}. Load average before/after: {m.get('load_avg')} / "
        f"{meta.get('load_after')}.",
    ]
    if meta.get("under_load"):
        lines.append(
            f"- **Taken under load**: {meta['under_load']} These numbers are for "
            "comparison within the run; re-run on a quiet machine for absolute figures."
        )
    versions = ", ".join(f"{k} {v}" for k, v in (m.get("versions") or {}).items())
    lines.append(f"- Libraries: {versions}.")
    for name, version in (meta.get("peer_versions") or {}).items():
        lines.append(f"- {name}: {version}")
    lines += [f"- {line}" for line in meta.get("conditions", [])]
    return lines


def attacks_table(rows: list[dict]) -> list[str]:
    lines = []
    for r in rows:
        after = r.get("after_p99_ms")
        trouble = []
        if not r.get("broker_alive", True):
            trouble.append("broker died")
        if r.get("timeouts"):
            trouble.append(f"{r['timeouts']} timeouts")
        if r.get("errors"):
            trouble.append(f"{r['errors']} error replies")
        lines.append(
            [
                f"{r['attack']} ({r['item']})",
                str(r.get("attacker", "")).replace("|", "/"),
                fmt_num(r.get("count")),
                fmt_ms(r.get("p50_ms")),
                fmt_ms(r.get("p99_ms")),
                fmt_ms(r.get("max_ms")),
                fmt_ms(after),
                fmt_num(r.get("long_poll_ms")),
                ", ".join(trouble) or "none",
                fmt_num(r.get("peak_rss_mb")),
                "ok" if r.get("ok") else "**over**",
            ]
        )
    return _table(
        [
            "attack (issue 11 item)",
            "what the attacker did and saw",
            "probe requests",
            "p50 ms",
            "p99 ms",
            "max ms",
            "p99 ms after",
            "500 ms long poll took",
            "probe trouble",
            "broker peak RSS MB",
            "goal",
        ],
        lines,
    )


def attacks_section(data: dict) -> list[str]:
    """The "Hostile clients" section of RESULTS.md from attacks.json (benchmarks/attacks.py)."""
    meta = data.get("meta", {})
    m = meta.get("machine", {})
    goal = meta.get("goal", {})
    out = [
        "## Hostile clients",
        "",
        f"Generated by `{meta.get('command', 'python benchmarks/attacks.py')}` "
        f"({m.get('time', '')}; {m.get('cpus')} CPUs, load average before/after "
        f"{m.get('load_avg')} / {meta.get('load_after')}). Each attack of issue 11 runs for "
        f"{meta.get('seconds', 0):.0f} s against a fresh broker on loopback, next to a "
        "well-behaved probe process (produce acks=1 + fetch of that record every 10 ms, "
        "list_groups every tenth turn). Latencies are the probe's, per request, during the "
        f"attack and in the {meta.get('after_s', 0):.0f} s after it; RSS is the broker's peak "
        '(psutil, every 20 ms). "500 ms long poll took": another client\'s fetch with '
        "max_wait_ms 500 on an idle partition, right after the attack (it must wait, not "
        f"busy-poll). Goal: p99 < {goal.get('p99_ms', 100):.0f} ms and RSS < "
        f"{goal.get('rss_mb', 300):.0f} MB during every attack, no timeouts, no error "
        "replies, long polls that wait.",
        "",
    ]
    if meta.get("note"):
        out += [f"Note: {meta['note']}", ""]
    return out + attacks_table(data.get("rows", [])) + [""]


def _errors_text(errors: dict) -> str:
    if not errors:
        return "0"
    return f"{sum(errors.values()):,}: " + ", ".join(
        f"{n:,} {kind}" for kind, n in sorted(errors.items(), key=lambda kv: -kv[1])
    ).replace("|", "/")


def _pct(value) -> str:
    return "—" if value is None else f"{value:.1f} %" if value < 10 else f"{value:,.0f} %"


def classroom_table(rows: list[dict], cpus: int | None = None) -> list[str]:
    lines = []
    for r in rows:
        packing = f" ({r['per_process']} per process)" if r.get("per_process", 1) != 1 else ""
        records = f"{r.get('lost', 0):,} / {r.get('duplicates', 0):,}"
        if r.get("unread"):
            records += f" ({r['unread']:,} unread: fell behind)"
        lines.append(
            [
                f"{r['students']}{packing}",
                f"{fmt_ms(r.get('e2e_p50_ms'))} / {fmt_ms(r.get('e2e_p99_ms'))}",
                f"{fmt_ms(r.get('probe_p50_ms'))} / {fmt_ms(r.get('probe_p99_ms'))}",
                _pct(r.get("broker_cpu_pct")),
                _pct(r.get("clients_cpu_pct")),
                fmt_num(r.get("cpu_per_record_ms"), 3),
                _pct(r.get("idle_consumer_cpu_pct")),
                fmt_ms(r.get("first_assignment_p95_ms")),
                fmt_num(r.get("rebalances")),
                _errors_text(r.get("errors") or {}),
                records,
                fmt_num(r.get("broker_peak_rss_mb")),
            ]
        )
    of = f" (of {cpus * 100} %)" if cpus else ""
    return _table(
        [
            "students",
            "e2e p50 / p99 ms",
            "probe p50 / p99 ms",
            "broker CPU",
            f"clients' CPU{of}",
            "client CPU ms / delivered record",
            "idle consumer CPU",
            "first assignment p95 ms",
            "rebalances",
            "errors",
            "lost / duplicated",
            "broker peak RSS MB",
        ],
        lines,
    )


def classroom_section(data: dict) -> list[str]:
    """The "Classroom" section of RESULTS.md from classroom.json (benchmarks/classroom.py)."""
    meta = data.get("meta", {})
    m = meta.get("machine", {})
    out = [
        "## Classroom",
        "",
        f"Generated by `{meta.get('command', 'python benchmarks/classroom.py')}` "
        f"({m.get('time', '')}; {m.get('cpus')} CPUs, load average before/after "
        f"{m.get('load_avg')} / {meta.get('load_after')}; {meta.get('elapsed_s', 0):.0f} s). "
        "Issue 19's class on one machine, broker and clients on loopback: each student "
        "runs a producer (one ~220-byte JSON transaction per second, keyed by user), two "
        "consumers in groups of their own reading the shared 3-partition `transactions` "
        "topic from earliest, one create_topics + list_topics and one `labkit "
        "console-consumer --max-messages 5`; all start within 10 s. Student 0 (the probe) "
        "runs alone in a process at normal priority; the others run 1 (or 2) per process "
        f"at nice {meta.get('nice', 0)}. Measured over {meta.get('window_s', 0):.0f} s after a "
        f"{meta.get('ramp_s', 0):.0f} s ramp: e2e is receive time − send time (one wall "
        "clock) of every record a consumer received in the window, except its from-earliest "
        "backlog (records sent before its first assignment); CPU is psutil's "
        "user+system over the window (clients: every student process and its children, "
        "the idle consumer apart); per delivered record = clients' CPU ÷ records the "
        "consumers received in the window; idle consumer: a consumer alone in a group on a "
        "topic nobody writes to. Lost: acknowledged records a group read past but never "
        "saw; unread: records after where a group had got to when it stopped "
        f"({meta.get('drain_s', 0):.0f} s after the producers). Errors by kind: client "
        "WARNING lines, exceptions, console-consumers that timed out, members the broker "
        "expired. Goals (issue 19): 80 students p99 < 100 ms and 0 errors; 160 (2 per "
        "process) p99 < 1 s, 0 errors, no member expired; ≤ 0.1 ms client CPU per record; "
        "an idle consumer < 0.5 % of a core."
        + (f" labkit's modules: {m['bytecode']}." if m.get("bytecode") else ""),
        "",
    ]
    if meta.get("note"):
        out += [f"Note: {meta['note']}", ""]
    return out + classroom_table(data.get("rows", []), m.get("cpus")) + [""]


def replication_ratios(rows: list[dict]) -> dict[str, float]:
    """Per system family ("labkit", "kafka"): mean records/s of its RF 3 runs ÷ mean of
    its RF 1 runs (runs alternate, so each mean spans the same minutes)."""
    means: dict[tuple[str, int], list[float]] = {}
    for r in rows:
        family = r["system"].rsplit("-", 1)[0]
        means.setdefault((family, r["rf"]), []).append(r["throughput"]["records_per_s"])
    out = {}
    for (family, rf), values in means.items():
        single = means.get((family, 1))
        if rf == 3 and single:
            out[family] = (sum(values) / len(values)) / (sum(single) / len(single))
    return out


def replication_table(rows: list[dict]) -> list[str]:
    lines = []
    for r in rows:
        cpu = r.get("cpu_s", {})
        followers = [v for k, v in cpu.items() if k.startswith("follower")]
        rss = r.get("peak_rss_mb", {})
        lines.append(
            [
                r["system"],
                str(r["rf"]),
                fmt_num(r["throughput"]["records_per_s"]),
                fmt_ms(r["latency"]["p50_ms"]),
                fmt_ms(r["latency"]["p99_ms"]),
                fmt_num(r["throughput"].get("client_cpu_s"), 2)
                + f" / {cpu.get('leader', 0):.2f}"
                + (f" / {', '.join(f'{v:.2f}' for v in followers)}" if followers else ""),
                f"{sum(rss.values()):,} ({', '.join(f'{k} {v}' for k, v in rss.items())})",
                f"{r['load_before'][0]:.1f} → {r['load_after'][0]:.1f}",
            ]
        )
    return _table(
        [
            "system (run order)",
            "RF",
            "records/s acks=all",
            "p50 ms",
            "p99 ms",
            "CPU s in the throughput pass: client / leader / followers",
            "peak RSS MB: all servers (each)",
            "load avg 1 min",
        ],
        lines,
    )


def replication_section(data: dict) -> list[str]:
    """The "Replication factor 3" section of RESULTS.md from replication.json
    (benchmarks/replication.py)."""
    meta = data.get("meta", {})
    c = meta.get("conditions", {})
    out = [
        "## Replication factor 3 on one machine (issue 16)",
        "",
        f"Generated by `{meta.get('command', 'python benchmarks/replication.py')}` "
        f"({meta.get('time', '')}; {c.get('machine', '')}; {meta.get('elapsed_s', 0):.0f} s). "
        "One partition, "
        f"{c.get('record_bytes', 100)}-byte values, acks=all, confluent-kafka "
        f"{meta.get('confluent_kafka', '')} through the Kafka protocol to the partition's "
        "leader. RF 3 topics have min.insync.replicas 2. labkit-3: three labkit brokers and "
        "one ZooKeeper; kafka-1: Apache Kafka 4.1.1, one KRaft node; kafka-3: one KRaft "
        "controller and three brokers (every Kafka broker's JVM heap 512 MB, the controller's "
        "256 MB). Throughput: "
        f"{c.get('throughput_producer', '')}, {meta.get('seconds', 10):.0f} s of sending "
        f"then flush(). Latency: {c.get('latency_producer', '')}, per-record delivery "
        "callbacks (send → acknowledged). Goal (issue 16): labkit RF 3 ≥ 50 % of labkit "
        "RF 1 records/s. How to read it and the caveats: benchmarks/NOTES.md, section 17.",
        "",
    ]
    if meta.get("note"):
        out += [f"Note: {meta['note']}", ""]
    rows = data.get("rows", [])
    out += [*replication_table(rows), ""]
    for family, value in sorted(replication_ratios(rows).items()):
        goal = " (goal ≥ 0.50: met)" if value >= 0.5 else " (goal ≥ 0.50: **not met**)"
        out.append(
            f"- {family}: RF 3 / RF 1 records/s = {value:.2f}"
            + (goal if family == "labkit" else "")
        )
    return [*out, ""]


SIDE_SECTIONS = {  # RESULTS.md's sections from other scripts: their file -> render()'s keyword
    "attacks.json": "attacks",
    "classroom.json": "classroom",
    "replication.json": "replication",
}


def side_sections(out, **given: dict) -> dict:
    """The other scripts' sections to keep when one of them rewrites RESULTS.md: each
    ``SIDE_SECTIONS`` file found in ``out`` (a Path), overridden by ``given``."""
    found = {}
    for name, key in SIDE_SECTIONS.items():
        path = out / name
        if path.exists():
            found[key] = json.loads(path.read_text())
    return {**found, **given}


def render(
    rows: list[dict],
    meta: dict,
    attacks: dict | None = None,
    classroom: dict | None = None,
    replication: dict | None = None,
) -> str:
    out = [
        "# labkit benchmarks",
        "",
        "Generated by `benchmarks/run.py`; do not edit by hand (re-run it). How to read and "
        "re-run: `docs/benchmarks.md`. Profiles and what was tried: `benchmarks/NOTES.md`.",
        "",
        "## Conditions",
        "",
        *conditions_lines(meta),
        "",
        "## Targets (issue 8)",
        "",
        *_table(["target", "measured", "verdict"], targets(rows)),
        "",
        "Where each target's floor is, and the changes proposed with their measured "
        "gains: `benchmarks/NOTES.md`.",
        "",
        "## Producer throughput",
        "",
        "`send()` in a loop, then `flush()`; timed from the first send to the end of flush, "
        "in its own process. redis-py: XADD; pyzmq: PUSH/PULL timed at the receiver.",
        "",
        *producer_table(rows),
        "",
        "## Consumer throughput",
        "",
        "Reading every record just produced, from offset 0, in a fresh process "
        "(poll(): kafka-python's `max_poll_records` 500; confluent-kafka "
        "`consume(500)`; redis-py XREADGROUP COUNT 500 + XACK). The loop counts records; "
        "the rate is timed from the first batch received to the last record (connecting, "
        "the offset lookup and the first fetch are left out).",
        "",
        *consumer_table(rows),
        "",
        "## Sync sends",
        "",
        "One record at a time, each waiting for its acknowledgement (`send().get()`, "
        "confluent-kafka `produce(); flush()`, unpipelined XADD); 100-byte values.",
        "",
        *sync_table(rows),
        "",
        "## End-to-end latency",
        "",
        "A producer process sends stamped 100-byte records at a fixed rate; a consumer "
        "process (already waiting at the end of the topic) subtracts the send time "
        "(CLOCK_MONOTONIC, shared by both processes) when each poll returns. The first half "
        "second is not counted.",
        "",
        *latency_table(rows),
        "",
    ]
    if any(r.get("table") == "group" for r in rows):
        out += [
            "## Consumer group: 3 members",
            "",
            "Three member processes of one group start together on a topic that already "
            "holds the records; records/s is the total read from the first record any "
            "member got to the last one.",
            "",
            *group_table(rows),
            "",
        ]
    if any(r.get("table") == "failover" for r in rows):
        out += [
            "### A member dies",
            "",
            "Three members read while a producer writes 2,000 records/s round robin over "
            "6 partitions; once each reads its own partitions, one member gets SIGKILL.",
            "",
            *failover_table(rows),
            "",
        ]
    out += [
        "## Broker memory",
        "",
        "Peak resident set (VmHWM from /proc/<pid>/status) of the server process over its "
        "whole session in this run (every case above).",
        "",
        *memory_table(rows),
        "",
        "## Peers that could not run",
        "",
        *missing_table(rows),
        "",
    ]
    if attacks:
        out += attacks_section(attacks)
    if classroom:
        out += classroom_section(classroom)
    if replication:
        out += replication_section(replication)
    return "\n".join(out)


def chart(rows: list[dict], path: str) -> None:
    """A 2×2 PNG: producer, consumer, sync (records/s, log scale) and latency at 1,000/s."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    def pick(table: str, **match) -> list[tuple[str, float]]:
        found = [
            r
            for r in rows
            if r.get("table") == table
            and _ok(r)
            and all(
                str(r.get(k)) in [str(v) for v in (vals if isinstance(vals, list) else [vals])]
                for k, vals in match.items()
            )
        ]
        return [(r["system"], r.get("rps") or 0.0) for r in sorted(found, key=_order)]

    panels = [
        ("Producer, 100 B, acks=1 (records/s)", pick("producer", size=100, acks=["1", "—"])),
        ("Consumer, 100 B (records/s)", pick("consumer", size=100)),
        ("Sync sends, acks=1 (records/s)", pick("sync", acks="1")),
    ]
    fig, axes = plt.subplots(2, 2, figsize=(13, 8))
    for ax, (title, data) in zip(axes.flat, panels, strict=False):
        if data:
            names, values = zip(*data, strict=True)
            colors = ["tab:orange" if n.startswith(LABKIT) else "tab:blue" for n in names]
            ax.barh(range(len(values)), values, color=colors)
            ax.set_yticks(range(len(values)), names, fontsize=8)
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.invert_yaxis()
            for i, v in enumerate(values):
                ax.text(v, i, f" {v:,.0f}", va="center", fontsize=7)
            ax.set_xlim(right=max(values) * 6)
        ax.set_title(title, fontsize=10)
    ax = axes.flat[3]
    lat = sorted(
        (r for r in rows if r.get("table") == "latency" and _ok(r) and r.get("rate") == 1000),
        key=_order,
    )
    if lat:
        names = [r["system"] for r in lat]
        y = range(len(lat))
        ax.barh([i - 0.2 for i in y], [r["p50_ms"] for r in lat], height=0.4, label="p50")
        ax.barh([i + 0.2 for i in y], [r["p99_ms"] for r in lat], height=0.4, label="p99")
        ax.set_yticks(list(y), names, fontsize=8)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.invert_yaxis()
        for i, r in enumerate(lat):
            ax.text(r["p50_ms"], i - 0.2, f" {r['p50_ms']:.2f}", va="center", fontsize=7)
            ax.text(r["p99_ms"], i + 0.2, f" {r['p99_ms']:.2f}", va="center", fontsize=7)
        ax.set_xlim(right=max(r["p99_ms"] for r in lat) * 6)
        ax.legend(fontsize=8)
    ax.set_title("End-to-end latency at 1,000 records/s (ms)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
