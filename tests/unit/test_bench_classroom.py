"""benchmarks/classroom.py's pure parts: percentiles, loss/duplicate accounting, the report.

Nothing here starts a broker (tests/integration/test_classroom_smoke.py does); these
check that a run's numbers are computed and shown correctly.
"""

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import classroom  # noqa: E402
import report  # noqa: E402


def _rows_of(markdown_lines):
    return [[c.strip() for c in line.strip("|").split("|")] for line in markdown_lines[2:]]


# -- percentiles --------------------------------------------------------------------------


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))  # 1..100
    assert classroom.percentile(values, 50) == 50
    assert classroom.percentile(values, 95) == 95
    assert classroom.percentile(values, 99) == 99
    assert classroom.percentile(values, 100) == 100
    assert classroom.percentile([7.0], 95) == 7.0
    assert classroom.percentile([3, 1, 2], 50) == 2  # unsorted input
    assert classroom.percentile([], 95) is None


@pytest.mark.parametrize("ms", [0.05, 0.9, 1.0, 14.0, 62.0, 296.0, 3380.0, 73_000.0])
def test_a_latency_lands_in_a_bucket_at_most_2_percent_above_it(ms):
    edge = classroom.bucket_ms(classroom.bucket_of(ms))
    assert ms <= edge <= ms * classroom.HIST_STEP * 1.0001


def test_histogram_percentile_matches_the_exact_one_within_a_bucket():
    latencies = [1.0] * 50 + [10.0] * 45 + [100.0] * 4 + [1000.0]
    hist = {}
    for ms in latencies:
        hist[classroom.bucket_of(ms)] = hist.get(classroom.bucket_of(ms), 0) + 1
    for pct in (50, 95, 99, 100):
        exact = classroom.percentile(latencies, pct)
        got = classroom.hist_percentile(hist, pct)
        assert exact <= got <= exact * classroom.HIST_STEP * 1.0001, pct
    assert classroom.hist_percentile(hist, 50) < 2  # the 50th of 100 is still 1 ms
    assert 9 < classroom.hist_percentile(hist, 51) < 11
    assert classroom.hist_percentile({}, 50) is None


def test_histograms_from_json_with_string_buckets_merge():
    merged = classroom.merge_hists([{"5": 2, "7": 1}, {5: 1}, {}])
    assert merged == {5: 3, 7: 1}
    assert classroom.hist_percentile({"5": 3, "7": 1}, 100) == classroom.bucket_ms(7)


# -- ranges and loss/duplicate accounting --------------------------------------------------


def test_ranges_cover_exactly_the_numbers():
    assert classroom.to_ranges([5, 1, 2, 3, 7, 7, 8]) == [[1, 3], [5, 5], [7, 8]]
    assert classroom.to_ranges([]) == []
    ranges = classroom.to_ranges([1, 2, 3, 5, 7, 8])
    assert [n for n in range(10) if classroom.in_ranges(ranges, n)] == [1, 2, 3, 5, 7, 8]
    assert not classroom.in_ranges([], 0)


def _acked(student, count, partition=0, first_offset=0):
    return {student: [[seq, partition, first_offset + seq] for seq in range(count)]}


def test_a_group_that_saw_everything_lost_nothing():
    acked = _acked("s000", 10)
    groups = {"s001-a": {"seen": {"s000": [[0, 9]]}, "max_offset": {"0": 9}, "duplicates": 0}}
    assert classroom.account(acked, groups) == {
        "lost": 0,
        "duplicates": 0,
        "unread": 0,
        "lost_examples": [],
    }


def test_an_id_missing_below_the_groups_position_is_lost():
    acked = _acked("s000", 10)
    groups = {
        "s001-a": {"seen": {"s000": [[0, 3], [5, 9]]}, "max_offset": {"0": 9}, "duplicates": 0}
    }
    tally = classroom.account(acked, groups)
    assert tally["lost"] == 1
    assert tally["unread"] == 0
    assert tally["lost_examples"] == ["s000-4 in s001-a"]


def test_records_past_where_a_group_stopped_are_unread_not_lost():
    acked = _acked("s000", 10)
    groups = {"slow": {"seen": {"s000": [[0, 5]]}, "max_offset": {"0": 5}, "duplicates": 0}}
    tally = classroom.account(acked, groups)
    assert (tally["lost"], tally["unread"]) == (0, 4)


def test_each_group_must_see_each_id_and_duplicates_add_up():
    acked = {**_acked("s000", 4, partition=0), **_acked("s001", 4, partition=1)}
    everything = {"s000": [[0, 3]], "s001": [[0, 3]]}
    groups = {
        "g1": {"seen": everything, "max_offset": {"0": 3, "1": 3}, "duplicates": 2},
        # g2 never saw s001's records although it read partition 1 to the end: 4 lost
        "g2": {"seen": {"s000": [[0, 3]]}, "max_offset": {"0": 3, "1": 3}, "duplicates": 1},
        # g3 never got partition 1 at all: its records are unread there
        "g3": {"seen": {"s000": [[0, 3]]}, "max_offset": {"0": 3}, "duplicates": 0},
    }
    tally = classroom.account(acked, groups)
    assert (tally["lost"], tally["duplicates"], tally["unread"]) == (4, 3, 4)


# -- errors, packing, start times -----------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        (
            "group 'g': the coordinator no longer knows this consumer (expired); its partitions "
            "are lost. Rejoining.",
            "member expired (client told)",
        ),
        (
            "group 'g': no answer from the coordinator for 10000 ms (session_timeout_ms); ...",
            "session timed out (client side)",
        ),
        (
            "Consumer poll timeout has expired: poll() was not called ...",
            "max.poll.interval exceeded",
        ),
        ("group 'g': auto-commit of 3 offset(s) failed: boom", "offset commit failed"),
        ("metadata refresh failed (will retry): x", "metadata refresh failed"),
    ],
)
def test_client_warnings_are_counted_by_kind(line, kind):
    assert classroom.classify(line) == kind


def test_resuming_from_own_commits_is_not_an_error_but_unknown_warnings_are():
    assert (
        classroom.classify(
            "group 'g': starting t-0 at 5 from the offsets this group committed earlier; ..."
        )
        is None
    )
    assert classroom.classify("something odd").startswith("other warning: something odd")


def test_the_probe_is_alone_and_the_rest_are_packed():
    assert classroom.pack(1, 1) == [[0]]
    assert classroom.pack(4, 1) == [[0], [1], [2], [3]]
    assert classroom.pack(6, 2) == [[0], [1, 2], [3, 4], [5]]
    assert sorted(i for p in classroom.pack(160, 2) for i in p) == list(range(160))
    assert len(classroom.pack(160, 2)) == 81


def test_students_start_within_ten_seconds():
    starts = classroom.start_times(160, 1000.0)
    assert len(starts) == 160
    assert starts["0"] == 1000.0
    assert max(starts.values()) - 1000.0 < classroom.START_SPREAD_S


def test_sizes_must_be_positive_numbers():
    assert classroom.parse_sizes("20,40, 80") == [20, 40, 80]
    for bad in ("", "x", "0,5"):
        with pytest.raises(Exception, match="--sizes"):
            classroom.parse_sizes(bad)


# -- a row, and the report -------------------------------------------------------------------


def _process(students, hist, groups, acked, errors=None, probe=False):
    return {
        "students": students,
        "probe": probe,
        "hist": hist,
        "groups": groups,
        "acked": acked,
        "errors": errors or {},
    }


def test_summarize_merges_processes_and_computes_cpu_per_record():
    one_ms, ten_ms = classroom.bucket_of(1.0), classroom.bucket_of(10.0)
    everything = {"s000": [[0, 9]], "s001": [[0, 9]]}
    group = {
        "seen": everything,
        "max_offset": {"0": 19},
        "duplicates": 0,
        "first_assignment_ms": 100.0,
        "assignments": 1,
        "received_in_window": 500,
    }
    rebalanced = {**group, "first_assignment_ms": 300.0, "assignments": 3, "duplicates": 2}
    acked0 = {"s000": [[s, 0, s] for s in range(10)]}
    acked1 = {"s001": [[s, 0, 10 + s] for s in range(10)]}
    results = [
        _process(["s000"], {one_ms: 99}, {"s000-a": group, "s000-b": group}, acked0, probe=True),
        _process(
            ["s001"],
            {ten_ms: 1},
            {"s001-a": rebalanced, "s001-b": group},
            acked1,
            errors={"console-consumer timeouts": 1},
        ),
        {"error": "did not report in time (killed)"},
    ]
    row = classroom.summarize(
        2,
        1,
        10.0,
        results,
        {"broker": 1.2, "clients": 4.0, "idle": 0.01},
        broker_expired=2,
        broker_peak_rss_mb=40.0,
    )
    assert row["e2e_p50_ms"] == pytest.approx(classroom.bucket_ms(one_ms))
    assert row["e2e_p99_ms"] == pytest.approx(classroom.bucket_ms(one_ms))
    assert row["probe_p99_ms"] == pytest.approx(classroom.bucket_ms(one_ms))
    assert row["broker_cpu_pct"] == pytest.approx(12.0)
    assert row["clients_cpu_pct"] == pytest.approx(40.0)
    assert row["idle_consumer_cpu_pct"] == pytest.approx(0.1)
    assert row["delivered"] == 2000
    assert row["produced"] == 20
    assert row["cpu_per_record_ms"] == pytest.approx(2.0)  # 4 s / 2000 records
    assert row["first_assignment_p95_ms"] == 300.0
    assert row["rebalances"] == 2
    assert row["errors"] == {
        "console-consumer timeouts": 1,
        "members expired (no heartbeat)": 2,
        "student process failed": 1,
    }
    assert (row["lost"], row["duplicates"], row["unread"]) == (0, 2, 0)


def test_a_consumer_never_assigned_is_an_error_and_no_records_means_no_rate():
    group = {
        "seen": {},
        "max_offset": {},
        "duplicates": 0,
        "first_assignment_ms": None,
        "assignments": 0,
        "received_in_window": 0,
    }
    row = classroom.summarize(
        1,
        1,
        10.0,
        [_process(["s000"], {}, {"s000-a": group}, {})],
        {"broker": 0.1, "clients": 0.2, "idle": None},
    )
    assert row["errors"] == {"consumer never assigned": 1}
    assert row["cpu_per_record_ms"] is None
    assert row["e2e_p50_ms"] is None
    assert row["idle_consumer_cpu_pct"] is None


ROW = {
    "students": 160,
    "per_process": 2,
    "e2e_p50_ms": 73_000.0,
    "e2e_p99_ms": 80_000.0,
    "probe_p50_ms": 12.0,
    "probe_p99_ms": 90.0,
    "broker_cpu_pct": 12.0,
    "clients_cpu_pct": 140.0,
    "cpu_per_record_ms": 0.512,
    "idle_consumer_cpu_pct": 0.3,
    "first_assignment_p95_ms": 4600.0,
    "rebalances": 9,
    "errors": {
        "members expired (no heartbeat)": 7,
        "console-consumer timeouts": 86,
        "NoBrokersAvailable": 1,
    },
    "lost": 0,
    "duplicates": 612,
    "unread": 5000,
    "broker_peak_rss_mb": 88.0,
}


def test_the_table_has_every_column_and_shows_errors_by_kind():
    lines = report.classroom_table(
        [
            ROW,
            {**ROW, "students": 20, "per_process": 1, "errors": {}, "unread": 0, "duplicates": 0},
        ],
        2,
    )
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == [
        "students",
        "e2e p50 / p99 ms",
        "probe p50 / p99 ms",
        "broker CPU",
        "clients' CPU (of 200 %)",
        "client CPU ms / delivered record",
        "idle consumer CPU",
        "first assignment p95 ms",
        "rebalances",
        "errors",
        "lost / duplicated",
        "broker peak RSS MB",
    ]
    big, small = _rows_of(lines)
    assert big[0] == "160 (2 per process)"
    assert big[1] == "73,000.0 / 80,000.0"
    assert big[3:8] == ["12 %", "140 %", "0.512", "0.3 %", "4,600.0"]
    assert big[9] == (
        "94: 86 console-consumer timeouts, 7 members expired (no heartbeat), 1 NoBrokersAvailable"
    )
    assert big[10] == "0 / 612 (5,000 unread: fell behind)"
    assert big[11] == "88"
    assert small[0] == "20"
    assert small[9] == "0"
    assert small[10] == "0 / 0"


def test_the_section_names_its_command_conditions_and_note():
    data = {
        "meta": {
            "command": "python benchmarks/classroom.py --sizes 20,40",
            "machine": {"cpus": 2, "load_avg": [7.5, 8.0, 8.1], "time": "t"},
            "load_after": [9.0, 8.0, 8.0],
            "window_s": 60,
            "ramp_s": 15,
            "drain_s": 5,
            "nice": 0,
            "note": "machine shared: load 7-10",
        },
        "rows": [ROW],
    }
    text = "\n".join(report.classroom_section(data))
    assert text.startswith("## Classroom")
    assert "`python benchmarks/classroom.py --sizes 20,40`" in text
    assert "[7.5, 8.0, 8.1] / [9.0, 8.0, 8.0]" in text
    assert "Note: machine shared: load 7-10" in text
    assert "| 160 (2 per process) |" in text


def test_render_keeps_the_classroom_section_after_the_others():
    data = {"meta": {"machine": {"cpus": 2}}, "rows": [ROW]}
    text = report.render([], {"machine": {}}, attacks={"meta": {}, "rows": []}, classroom=data)
    assert text.index("## Hostile clients") < text.index("## Classroom")
    assert "## Classroom" not in report.render([], {"machine": {}})


def test_a_process_reports_what_its_consumers_saw_as_ranges():
    proc = classroom.StudentProcess({"students": [], "starts": {}})
    proc.groups["s000-a"] = {
        "_seqs": {"s000": {0, 1, 2, 4}, "s001": {7}},
        "max_offset": {0: 4},
        "duplicates": 1,
    }
    proc.error("console-consumer timeouts")
    got = proc.report(hung=[])
    assert got["groups"]["s000-a"]["seen"] == {"s000": [[0, 2], [4, 4]], "s001": [[7, 7]]}
    assert "_seqs" not in got["groups"]["s000-a"]
    assert got["errors"] == {"console-consumer timeouts": 1}


def test_the_brokers_expiry_log_line_is_counted():
    # labkit/broker/groups.py: log.info("group %s: member %s %s", group, member, why)
    log = (
        "2026-12-06 INFO labkit.broker.groups: group s001-a: member s001-a-consumer-1f2e "
        "expired: no heartbeat within session_timeout_ms (10000 ms)\n"
        "2026-12-06 INFO labkit.broker.groups: group s001-a: generation 2 (member "
        "s001-a-consumer-1f2e expired: no heartbeat within session_timeout_ms (10000 ms)), "
        "range assignment over 0 member(s)\n"
        "INFO labkit.broker.groups: group g: member m-2 left the group\n"
    )
    assert len(classroom.EXPIRED_LINE.findall(log)) == 1


def test_client_warnings_logged_from_any_thread_are_counted_without_deadlock():
    import logging
    import threading
    from collections import Counter

    errors, lock = Counter(), threading.Lock()
    logger = logging.getLogger("test_bench_classroom.client")
    handler = classroom.ErrorLog(errors, lock)
    logger.addHandler(handler)
    try:

        def warn():
            logger.warning("group 'g': the coordinator no longer knows this consumer (x)")
            logger.info("group 'g': joined")  # below WARNING: not an error

        worker = threading.Thread(target=warn, daemon=True)
        worker.start()
        worker.join(5)
        assert not worker.is_alive(), "logging a warning deadlocked"
    finally:
        logger.removeHandler(handler)
    assert errors == {"member expired (client told)": 1}


def test_consumer_configs_parse_as_integers_and_bad_ones_say_the_form():
    assert classroom.parse_configs("fetch_min_bytes=1024, fetch_max_wait_ms=50") == {
        "fetch_min_bytes": 1024,
        "fetch_max_wait_ms": 50,
    }
    assert classroom.parse_configs("") == {}
    with pytest.raises(classroom.argparse.ArgumentTypeError, match="key=integer"):
        classroom.parse_configs("fetch_min_bytes")
