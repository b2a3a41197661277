"""The dashboard's pure model: snapshot diffing into records/s, lag, and its rendering."""

from __future__ import annotations

from labkit.nb._dashmodel import DashboardModel, Snapshot, compute_view, render_html, render_text


def snap(at, offsets, groups=None, **kw):
    return Snapshot(at=at, offsets=offsets, groups={} if groups is None else groups, **kw)


def test_first_snapshot_has_offsets_but_no_rates():
    v = compute_view(None, snap(0.0, {("tx", 0): (0, 10), ("tx", 1): (5, 7)}))
    t = v.topic("tx")
    assert [(p.partition, p.start, p.end, p.records, p.rate) for p in t.partitions] == [
        (0, 0, 10, 10, None),
        (1, 5, 7, 2, None),
    ]
    assert t.records == 12
    assert t.rate is None


def test_rate_is_end_offset_delta_over_time_per_partition_and_topic():
    a = snap(10.0, {("tx", 0): (0, 100), ("tx", 1): (0, 50), ("logs", 0): (0, 7)})
    b = snap(12.0, {("tx", 0): (0, 160), ("tx", 1): (0, 50), ("logs", 0): (0, 7)})
    v = compute_view(a, b)
    assert [p.rate for p in v.topic("tx").partitions] == [30.0, 0.0]
    assert v.topic("tx").rate == 30.0
    assert v.topic("logs").rate == 0.0
    assert [t.name for t in v.topics] == ["logs", "tx"]


def test_new_partition_and_recreated_topic_have_unknown_rate():
    a = snap(0.0, {("tx", 0): (0, 100)})
    b = snap(1.0, {("tx", 0): (0, 3), ("tx", 1): (0, 4)})  # deleted + recreated with 2 parts
    assert [p.rate for p in compute_view(a, b).topic("tx").partitions] == [None, None]


def test_log_start_moving_up_after_retention_shrinks_records_not_rate():
    a = snap(0.0, {("tx", 0): (0, 100)})
    b = snap(1.0, {("tx", 0): (80, 110)})
    p = compute_view(a, b).topic("tx").partitions[0]
    assert (p.records, p.rate) == (30, 10.0)


def test_lag_is_log_end_minus_committed_and_unknown_without_a_commit():
    offsets = {("tx", 0): (0, 100), ("tx", 1): (0, 40), ("tx", 2): (0, 5)}
    groups = {
        "fraud": {("tx", 0): 90, ("tx", 1): 40, ("tx", 2): None},
        "audit": {("tx", 0): -1, ("gone", 0): 3},
    }
    v = compute_view(None, snap(0.0, offsets, groups))
    fraud = v.group("fraud")
    assert [(r.partition, r.committed, r.end, r.lag) for r in fraud.lags] == [
        (0, 90, 100, 10),
        (1, 40, 40, 0),
        (2, None, 5, None),
    ]
    assert fraud.total_lag == 10
    audit = v.group("audit")
    assert [(r.topic, r.committed, r.lag) for r in audit.lags] == [
        ("gone", 3, None),
        ("tx", None, None),
    ]
    assert [g.group for g in v.groups] == ["audit", "fraud"]


def test_lag_never_negative_when_a_commit_is_ahead_of_a_truncated_log():
    v = compute_view(None, snap(0.0, {("t", 0): (0, 5)}, {"g": {("t", 0): 9}}))
    assert v.group("g").lags[0].lag == 0


def test_unsupported_groups_stay_none_with_a_note():
    v = compute_view(None, Snapshot(at=0.0, offsets={}, groups=None, groups_note="not supported"))
    assert v.groups is None
    assert v.groups_note == "not supported"
    assert "not supported" in render_text(v)
    assert "not supported" in render_html(v)


def test_model_rates_over_the_window_not_just_the_last_refresh():
    m = DashboardModel(rate_window_s=4.0)
    ends = {0.0: 0, 1.0: 10, 2.0: 10, 3.0: 10, 4.0: 10, 5.0: 50, 6.0: 50}
    rates = {}
    for at, end in ends.items():
        rates[at] = m.observe(snap(at, {("t", 0): (0, end)})).topic("t").rate
    assert rates[0.0] is None
    assert rates[1.0] == 10.0  # base: t=0
    assert rates[4.0] == 2.5  # 10 records over 4 s
    assert rates[5.0] == 10.0  # base t=1: 40 records over 4 s
    assert rates[6.0] == 10.0  # base t=2: 40 over 4 s


def test_an_error_snapshot_keeps_the_last_good_view_and_shows_the_error():
    m = DashboardModel()
    m.observe(snap(0.0, {("t", 0): (0, 3)}))
    v = m.observe(Snapshot(at=1.0, error="cannot reach the broker at localhost:9092"))
    assert v.error.startswith("cannot reach")
    assert v.topic("t").partitions[0].end == 3
    v = m.observe(snap(2.0, {("t", 0): (0, 5)}))
    assert v.error is None
    assert v.topic("t").rate == 1.0  # 2 records since the last good snapshot, 2 s ago


def test_html_escapes_names_and_shows_numbers():
    v = compute_view(
        None, snap(0.0, {("<b>x</b>", 0): (0, 1234567)}, {"g<1>": {("<b>x</b>", 0): 1234000}})
    )
    html = render_html(v, status="updated 12:00:00")
    assert "<b>x</b>" not in html.replace("<b>labkit broker</b>", "")
    assert "&lt;b&gt;x&lt;/b&gt;" in html
    assert "g&lt;1&gt;" in html
    assert "1 234 567" in html
    assert "567" in html
    assert "updated 12:00:00" in html


def test_html_for_an_empty_broker_and_an_error():
    html = render_html(compute_view(None, snap(0.0, {})))
    assert "no topics yet" in html
    assert "none yet" in html
    m = DashboardModel()
    html = render_html(m.observe(Snapshot(at=0.0, error="start the broker")))
    assert "✘ start the broker" in html


def test_text_rendering_lists_partitions_and_lag():
    v = compute_view(None, snap(0.0, {("tx", 0): (0, 12)}, {"g": {("tx", 0): 2}}))
    text = render_text(v)
    assert "tx" in text
    assert "12" in text
    assert any(line.split()[-1] == "10" for line in text.splitlines() if line.startswith("g "))
