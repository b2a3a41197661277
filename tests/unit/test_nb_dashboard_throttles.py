"""nb.dashboard shows clients a quota is throttling (pure model + collector over fakes)."""

from __future__ import annotations

import pytest

from labkit.errors import IncompatibleBrokerVersion, UnsupportedVersionError
from labkit.nb._dashmodel import DashboardModel, Snapshot, ThrottleRow, render_html, render_text
from labkit.nb.dashboard_widget import collect

WIRE_ROWS = [
    {
        "client_id": "<script>",
        "quota_type": "consumer_byte_rate",
        "byte_rate": 2500.0,
        "quota": 1000.0,
        "throttle_time_ms": 150,
        "throttled_ago_ms": 900,
    },
    {
        "client_id": "greedy",
        "quota_type": "producer_byte_rate",
        "byte_rate": 151234.5,
        "quota": 100000.0,
        "throttle_time_ms": 5123,
        "throttled_ago_ms": 40,
    },
]


def test_throttled_clients_pass_through_the_model_most_recent_first():
    snap = Snapshot(at=1.0, throttles=[ThrottleRow.from_wire(r) for r in WIRE_ROWS])
    view = DashboardModel().observe(snap)
    assert [(r.client_id, r.kind, r.throttle_time_ms) for r in view.throttles] == [
        ("greedy", "produce", 5123),
        ("<script>", "fetch", 150),
    ]
    # an error round keeps the last good rows, as it keeps the tables
    model = DashboardModel()
    model.observe(snap)
    assert model.observe(Snapshot(at=2.0, error="down")).throttles == view.throttles


def test_the_throttle_table_shows_only_while_someone_is_throttled():
    view = DashboardModel().observe(
        Snapshot(at=1.0, throttles=[ThrottleRow.from_wire(r) for r in WIRE_ROWS])
    )
    html = render_html(view)
    assert "throttled clients" in html
    assert "greedy" in html
    assert "5 123" in html
    assert "&lt;script&gt;" in html
    assert "<script>" not in html
    text = render_text(view)
    assert "THROTTLED CLIENT" in text
    assert "greedy" in text
    assert "151 234" in text
    quiet = DashboardModel().observe(Snapshot(at=1.0))
    assert "throttled" not in render_html(quiet)
    assert "THROTTLED" not in render_text(quiet)


class _Admin:
    def __init__(self, rows=None, error=None):
        self.rows, self.error = rows, error

    def list_topics(self):
        return []

    def list_consumer_groups(self):
        return []

    def describe_client_throttles(self):
        if self.error is not None:
            raise self.error
        return self.rows


def test_collect_asks_the_admin_client_and_reports_its_errors():
    snap = collect(_Admin(WIRE_ROWS), None, at=0.0)
    assert [r.client_id for r in snap.throttles] == ["<script>", "greedy"]
    with pytest.raises(UnsupportedVersionError):  # the broker always has quotas: news
        collect(_Admin(error=UnsupportedVersionError("no such API")), None, at=0.0)

    class KafkaPythonAdmin:  # no describe_client_throttles at all
        def list_topics(self):
            return []

        def list_consumer_groups(self):
            return []

    assert collect(KafkaPythonAdmin(), None, at=0.0).throttles == []
    # on a Kafka cluster that is not labkit, labkit's admin client says the call is
    # labkit-only (client/delegate_admin.py): no throttles table, no error
    labkit_only = IncompatibleBrokerVersion("describe_client_throttles is labkit-only")
    assert collect(_Admin(error=labkit_only), None, at=0.0).throttles == []
