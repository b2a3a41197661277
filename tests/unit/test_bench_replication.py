"""benchmarks/replication.py's section of RESULTS.md: RF 3 / RF 1 ratios over alternated
runs, the table, and every script keeping the other scripts' sections when it rewrites
RESULTS.md. Nothing here measures speed."""

import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import report  # noqa: E402


def _row(system, rf, rps, leader_cpu=1.0):
    cpu = {"leader": leader_cpu}
    if rf == 3:
        cpu |= {"follower-1": 0.25, "follower-2": 0.5}
    return {
        "system": system,
        "rf": rf,
        "throughput": {"records_per_s": rps, "client_cpu_s": 4.5},
        "latency": {"p50_ms": 2.5, "p99_ms": 31.0},
        "cpu_s": cpu,
        "peak_rss_mb": {"broker-1": 50, "zookeeper": 70} if rf == 3 else {"broker-1": 60},
        "load_before": [7.0, 6.0, 5.0],
        "load_after": [8.0, 6.0, 5.0],
    }


ROWS = [
    _row("labkit-3", 3, 30_000),
    _row("labkit-1", 1, 50_000),
    _row("kafka-3", 3, 20_000),
    _row("kafka-1", 1, 100_000),
    _row("labkit-1", 1, 70_000),
    _row("labkit-3", 3, 20_000),
]


def test_ratios_are_means_of_the_alternated_runs_per_system():
    ratios = report.replication_ratios(ROWS)
    assert ratios == {"labkit": 25_000 / 60_000, "kafka": 0.2}


def test_the_section_shows_every_run_and_the_goal_verdict():
    data = {"meta": {"command": "python benchmarks/replication.py --rate 200", "note": "load 9"}}
    text = "\n".join(report.replication_section({**data, "rows": ROWS}))
    assert text.startswith("## Replication factor 3 on one machine (issue 16)")
    assert "`python benchmarks/replication.py --rate 200`" in text
    assert "Note: load 9" in text
    assert (
        "| labkit-3 | 3 | 30,000 | 2.500 | 31.0 | 4.50 / 1.00 / 0.25, 0.50 | 120 (broker-1 50, "
        in text
    )
    assert "| kafka-1 | 1 | 100,000 |" in text
    assert "- labkit: RF 3 / RF 1 records/s = 0.42 (goal ≥ 0.50: **not met**)" in text
    assert "- kafka: RF 3 / RF 1 records/s = 0.20" in text
    met = [_row("labkit-1", 1, 10_000), _row("labkit-3", 3, 6_000)]
    assert "= 0.60 (goal ≥ 0.50: met)" in "\n".join(report.replication_section({"rows": met}))


def test_rewriting_results_keeps_every_other_scripts_section(tmp_path):
    for name, rows in (("attacks.json", []), ("classroom.json", []), ("replication.json", ROWS)):
        (tmp_path / name).write_text(json.dumps({"meta": {}, "rows": rows}))
    fresh = {"meta": {"note": "fresh attacks"}, "rows": []}
    kept = report.side_sections(tmp_path, attacks=fresh)
    assert sorted(kept) == ["attacks", "classroom", "replication"]
    assert kept["attacks"] is fresh
    text = report.render([], {"machine": {}}, **kept)
    order = ["## Hostile clients", "## Classroom", "## Replication factor 3"]
    assert [text.index(h) for h in order] == sorted(text.index(h) for h in order)
    assert "## Replication factor 3" not in report.render([], {"machine": {}})
