"""The benchmark harness's pure parts: ratios, tables, targets, percentiles, pacing.

Nothing here measures speed; it checks that the numbers a run produces are put
into RESULTS.md correctly.
"""

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import cases  # noqa: E402
import common  # noqa: E402
import report  # noqa: E402


def _prod(system, rps, acks="1", size=100, status="ok"):
    return {
        "table": "producer",
        "system": system,
        "size": size,
        "acks": acks,
        "records": 1000,
        "rps": rps,
        "mbps": rps * size / 1e6,
        "status": status,
    }


def _rows_of(markdown_lines):
    return [[c.strip() for c in line.strip("|").split("|")] for line in markdown_lines[2:]]


def test_ratio_is_labkit_over_peer():
    assert report.ratio(200.0, 100.0) == "2.00×"
    assert report.ratio(50.0, 100.0) == "0.50×"
    assert report.ratio(100_000.0, 10.0) == "10,000×"
    assert report.ratio(None, 100.0) == "—"
    assert report.ratio(100.0, 0) == "—"
    assert report.ratio(float("nan"), 1.0) == "—"


def test_producer_table_compares_same_size_and_acks_labkit_first():
    rows = [
        _prod("tansu", 400_000),
        _prod("labkit", 800_000),
        _prod("labkit", 100_000, acks="all"),
        _prod("tansu", 50_000, acks="all"),
        _prod("pyzmq PUSH/PULL (single)", 1_600_000, acks="—"),
    ]
    table = _rows_of(report.producer_table(rows))
    systems = [(r[0], r[2]) for r in table]
    assert systems == [
        ("labkit", "1"),
        ("pyzmq PUSH/PULL (single)", "—"),
        ("tansu", "1"),
        ("labkit", "all"),
        ("tansu", "all"),
    ]
    by = {(r[0], r[2]): r for r in table}
    assert by[("tansu", "1")][6] == "2.00×"
    assert by[("tansu", "all")][6] == "2.00×"
    assert by[("pyzmq PUSH/PULL (single)", "—")][6] == "0.50×"  # compared with acks=1
    assert by[("labkit", "1")][4] == "800,000"


def test_failed_rows_show_their_reason_and_no_ratio():
    rows = [_prod("labkit", 800_000), _prod("tansu", 0, status="failed: timed out | x")]
    table = _rows_of(report.producer_table(rows))
    assert table[1][6] == "—"
    assert table[1][7].startswith("failed: timed out / x")


def test_latency_ratio_uses_p99():
    rows = [
        {
            "table": "latency",
            "system": "labkit",
            "rate": 1000,
            "p50_ms": 0.5,
            "p99_ms": 1.0,
            "p999_ms": 2.0,
            "max_ms": 3.0,
            "count": 10,
            "status": "ok",
        },
        {
            "table": "latency",
            "system": "redis",
            "rate": 1000,
            "p50_ms": 0.1,
            "p99_ms": 4.0,
            "p999_ms": 5.0,
            "max_ms": 6.0,
            "count": 10,
            "status": "ok",
        },
    ]
    table = _rows_of(report.latency_table(rows))
    assert table[1][0] == "redis"
    assert table[1][7] == "0.25×"


def test_targets_verdicts():
    rows = [
        _prod("labkit", 1_200_000),
        _prod("confluent-kafka → tansu", 1_500_000),
        _prod("labkit", 700_000, acks="all"),
        {"table": "consumer", "system": "labkit", "size": 100, "rps": 900_000, "status": "ok"},
        {"table": "sync", "system": "labkit", "acks": "1", "rps": 12_000, "status": "ok"},
    ]
    verdicts = {what: verdict for what, _value, verdict in report.targets(rows)}
    assert verdicts["producer send() ≥ 1,000,000 records/s, acks=1"] == "met"
    assert verdicts["producer ≥ confluent-kafka → tansu"] == "**not met**"
    assert verdicts["consumer poll() ≥ 1,000,000 records/s"] == "**not met**"
    assert verdicts["sync sends ≥ 10,000 records/s"] == "met"
    assert verdicts["acks='all' ≥ 50% of acks=1"] == "met"


def test_render_has_every_section_and_the_missing_peer():
    rows = [
        _prod("labkit", 800_000),
        {"table": "missing", "system": "tansu", "status": "missing: no binary"},
        {
            "table": "memory",
            "system": "labkit",
            "peak_rss_mb": 30.0,
            "storage": "disk",
            "status": "ok",
        },
    ]
    meta = {
        "plan": "quick",
        "machine": {"cpus": 2, "load_avg": [1.0, 1.0, 1.0]},
        "under_load": "busy.",
        "conditions": ["acks=1"],
    }
    text = report.render(rows, meta)
    for heading in (
        "## Conditions",
        "## Targets",
        "## Producer throughput",
        "## Consumer throughput",
        "## Sync sends",
        "## End-to-end latency",
        "## Broker memory",
        "## Peers that could not run",
    ):
        assert heading in text
    assert "| tansu | missing: no binary |" in text
    assert "**Taken under load**" in text


def test_throughput_row_prefers_the_timed_part_and_flags_short_reads():
    row = cases.throughput_row(
        "consumer",
        "labkit",
        100,
        1,
        {"records": 900, "seconds": 2.0, "timed": [800, 1.0]},
        expected=1000,
    )
    assert row["rps"] == 800.0
    assert row["mbps"] == pytest.approx(0.08)
    assert row["status"] == "ok (read 900 of 1,000 in time)"
    failed = cases.throughput_row("producer", "x", 100, 1, {"error": "boom"})
    assert failed["status"] == "failed: boom"
    assert failed["rps"] == 0.0


def test_group_unique_counts_from_highest_offsets():
    results = [
        {"partitions": {"0": [10, 9], "1": [5, 4]}},
        {"partitions": {"0": [3, 9], "2": [7, 6]}},
    ]
    assert cases._unique(results) == 10 + 5 + 7
    assert cases._unique([{"partitions": {}}]) is None
    progress = [{"partitions": {"0": 9, "1": 4}}, {"partitions": {"0": 3, "2": 6}}]
    assert cases._unique(progress) == 10 + 5 + 7


def test_percentiles_and_stamps():
    values = list(range(1, 1001))
    assert common.percentile(values, 50) == 500
    assert common.percentile(values, 99) == 990
    assert common.percentile(values, 99.9) == 999
    summary = common.latency_summary([2_000_000, 1_000_000])
    assert summary["p50_ms"] == 1.0
    assert summary["max_ms"] == 2.0
    value = common.stamped(7, common.padding(100))
    assert len(value) == 100
    assert common.read_stamp(value)[0] == 7


def test_pacer_never_releases_more_than_the_total():
    pacer = common.Pacer(rate=1e9, total=5)  # everything is due at once
    assert pacer.due() == 5


def _attack(name, p99, rss, ok, **more):
    return {
        "attack": name,
        "item": "5",
        "attacker": "sent a|b",
        "count": 900,
        "p50_ms": 0.5,
        "p99_ms": p99,
        "max_ms": p99 * 2,
        "after_p99_ms": None,
        "long_poll_ms": 501,
        "timeouts": 0,
        "errors": 0,
        "broker_alive": True,
        "peak_rss_mb": rss,
        "ok": ok,
        **more,
    }


def test_hostile_clients_section_shows_each_attack_and_its_verdict():
    data = {
        "meta": {"seconds": 5, "after_s": 2, "goal": {"p99_ms": 100, "rss_mb": 300}},
        "rows": [
            _attack("baseline", 8.0, 24, True),
            _attack("flood", 355.5, 984, False, timeouts=2, broker_alive=False),
        ],
    }
    section = report.attacks_section(data)
    assert section[0] == "## Hostile clients"
    table = [line for line in section if line.startswith("|")]
    rows = _rows_of(table)
    assert rows[0][0] == "baseline (5)"
    assert rows[0][1] == "sent a/b"
    assert rows[0][-1] == "ok"
    assert rows[1][4] == "355.5"
    assert rows[1][-2] == "984"
    assert rows[1][-1] == "**over**"
    assert rows[1][-3] == "broker died, 2 timeouts"
    assert "## Hostile clients" in report.render([], {}, attacks=data)
    assert "## Hostile clients" not in report.render([], {})


def test_the_memory_table_shows_start_up_with_apache_kafkas_format_apart():
    rows = [
        {"table": "memory", "system": "labkit", "peak_rss_mb": 40.0, "startup_s": 0.84},
        {
            "table": "memory",
            "system": "apache-kafka",
            "peak_rss_mb": 400.0,
            "startup_s": 9.5,
            "format_s": 3.25,
        },
        {"table": "memory", "system": "redis", "peak_rss_mb": 4.0},
    ]
    text = "\n".join(report.memory_table(rows))
    assert "start-up s" in text
    assert "| 0.8 |" in text
    assert "9.5 (format 3.2 + broker 6.2)" in text
    assert "| redis | 4.0 | — | — |" in text  # no start-up measured: a dash


def test_issue_13_targets_compare_the_kafka_listener_with_apache_kafka():
    def row(table, system, rps):
        return {
            "table": table,
            "system": system,
            "size": 100,
            "acks": "1",
            "rps": rps,
            "status": "ok",
        }

    rows = [
        row("producer", "confluent-kafka → labkit-kafka-listener", 60_000),
        row("producer", "confluent-kafka → apache-kafka", 100_000),
        row("consumer", "confluent-kafka → labkit-kafka-listener", 40_000),
        row("consumer", "confluent-kafka → apache-kafka", 100_000),
        row("producer", "kafka-python → labkit-kafka-listener", 12_000),
        row("producer", "kafka-python → apache-kafka", 10_000),
    ]
    verdicts = {what: (value, verdict) for what, value, verdict in report.targets(rows)}
    name = "confluent-kafka → Kafka listener ≥ 50% of confluent-kafka → Apache Kafka"
    assert verdicts[f"{name}, produce, acks=1"] == ("60,000 vs 100,000 (60%)", "met")
    assert verdicts[f"{name}, consume"] == ("40,000 vs 100,000 (40%)", "**not met**")
    name = "kafka-python → Kafka listener ≥ 100% of kafka-python → Apache Kafka"
    assert verdicts[f"{name}, produce, acks=1"][1] == "met"
    assert f"{name}, consume" not in verdicts  # no rows, no verdict
