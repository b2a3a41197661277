"""The pure data models behind nb.LivePlot: windows, aggregation, bins (no matplotlib)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from labkit.errors import IllegalArgumentError
from labkit.nb._plotmodel import BarModel, HistModel, LineModel, to_seconds
from labkit.testing import FakeClock


def test_model_module_imports_no_plotting_library():
    import labkit.nb._plotmodel as m

    src = Path(m.__file__).read_text(encoding="utf-8")
    assert "matplotlib" not in src.split('"""', 2)[2]
    assert "ipywidgets" not in src.split('"""', 2)[2]
    assert "labkit.nb._plotmodel" in sys.modules


# -- event time ---------------------------------------------------------------


def test_to_seconds_reads_every_time_format_the_lab_produces():
    dt = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    assert to_seconds(dt) == dt.timestamp()
    assert to_seconds("2024-05-01T12:00:00+00:00") == dt.timestamp()
    assert to_seconds("2024-05-01T12:00:00Z") == dt.timestamp()
    assert to_seconds(dt.timestamp() * 1000) == dt.timestamp()  # Kafka ms timestamp
    assert to_seconds(int(dt.timestamp() * 1000)) == dt.timestamp()
    assert to_seconds(12.5) == 12.5
    assert to_seconds("7") == 7.0


@pytest.mark.parametrize("bad", ["yesterday", None, True, float("nan"), [1]])
def test_to_seconds_rejects_what_it_cannot_read(bad):
    with pytest.raises(IllegalArgumentError):
        to_seconds(bad)


# -- line ---------------------------------------------------------------------


def test_line_without_x_uses_arrival_index():
    m = LineModel()
    for y in (5, 7, 6):
        m.add(y)
    assert m.snapshot() == {"value": ([0.0, 1.0, 2.0], [5.0, 7.0, 6.0])}
    assert not m.x_is_time


def test_line_points_are_ordered_by_event_time_even_when_they_arrive_out_of_order():
    m = LineModel()
    m.add(10, 1.0)
    m.add(12, 3.0)
    m.add(11, 2.0)
    xs, ys = m.snapshot()["value"]
    assert xs == [10.0, 11.0, 12.0]
    assert ys == [1.0, 2.0, 3.0]


def test_line_event_time_window_evicts_old_points_and_drops_late_ones():
    m = LineModel(window_s=10)
    for t in (100, 105, 110):
        m.add(t, 1)
    assert m.snapshot()["value"][0] == [100.0, 105.0, 110.0]
    m.add(115, 1)  # watermark 115: keeps x >= 105
    assert m.snapshot()["value"][0] == [105.0, 110.0, 115.0]
    assert m.add(104, 1) is False  # already outside the window
    assert m.dropped_late == 1
    assert m.add(107, 1) is True  # late but inside the window: kept, in order
    assert m.snapshot()["value"][0] == [105.0, 107.0, 110.0, 115.0]


def test_line_count_window_keeps_last_n_per_series():
    m = LineModel(window_n=3)
    for i in range(10):
        m.add(i, i * 10, series="a")
    m.add(0, 1, series="b")
    snap = m.snapshot()
    assert snap["a"] == ([7.0, 8.0, 9.0], [70.0, 80.0, 90.0])
    assert snap["b"] == ([0.0], [1.0])


def test_line_buckets_aggregate_events_per_second():
    m = LineModel(bucket_s=1.0, agg="sum")
    base = 1_700_000_000_000  # Kafka ms timestamps
    for dt_ms in (0, 100, 900, 1000, 1500, 2999):
        m.add(base + dt_ms, 1)
    xs, ys = m.snapshot()["value"]
    assert ys == [3.0, 2.0, 1.0]
    assert xs == [1_700_000_000.0, 1_700_000_001.0, 1_700_000_002.0]
    assert m.x_is_time


def test_line_bucket_mean_and_max():
    for agg, want in (
        ("mean", [2.0]),
        ("max", [3.0]),
        ("min", [1.0]),
        ("count", [3.0]),
        ("last", [2.0]),
    ):
        m = LineModel(bucket_s=10, agg=agg)
        for y in (1, 3, 2):
            m.add(5, y)
        assert m.snapshot()["value"][1] == want, agg


def test_line_update_adds_one_point_per_series_at_the_same_index():
    m = LineModel()
    m.update({"Warszawa": 3, "Kraków": 5})
    m.update({"Warszawa": 4, "Kraków": 1})
    snap = m.snapshot()
    assert snap["Warszawa"] == ([0.0, 1.0], [3.0, 4.0])
    assert snap["Kraków"] == ([0.0, 1.0], [5.0, 1.0])


def test_line_rejects_non_numbers_with_a_clear_message():
    m = LineModel()
    with pytest.raises(IllegalArgumentError, match="y must be a number"):
        m.add(1, "12.5")
    with pytest.raises(IllegalArgumentError, match="agg"):
        LineModel(agg="median")
    with pytest.raises(IllegalArgumentError, match="window_s"):
        LineModel(window_s=0)


def test_line_memory_is_bounded_without_a_window():
    m = LineModel(max_points=100)
    for i in range(1000):
        m.add(i)
    xs, _ = m.snapshot()["value"]
    assert len(xs) == 100
    assert xs[0] == 900.0


# -- bar ----------------------------------------------------------------------


def test_bar_counts_per_key_in_natural_order():
    m = BarModel()
    for k in ("p10", "p2", "p2", "p1"):
        m.add(k)
    assert m.snapshot() == [("p1", 1.0), ("p2", 2.0), ("p10", 1.0)]


def test_bar_sum_mean_and_sort_by_value_with_top_n():
    m = BarModel(agg="sum", sort="value", top_n=2)
    for store, amount in (("Gdańsk", 10), ("Kraków", 50), ("Gdańsk", 45), ("Wrocław", 1)):
        m.add(store, amount)
    assert m.snapshot() == [("Gdańsk", 55.0), ("Kraków", 50.0)]
    mean = BarModel(agg="mean")
    mean.add("a", 1)
    mean.add("a", 4)
    assert mean.snapshot() == [("a", 2.5)]


def test_bar_event_time_window():
    m = BarModel(window_s=60)
    m.add("a", t=1000)
    m.add("b", t=1030)
    m.add("a", t=1061)  # evicts the first "a" (1000 < 1061 - 60)
    assert m.snapshot() == [("a", 1.0), ("b", 1.0)]
    assert m.add("c", t=900) is False
    assert m.dropped_late == 1


def test_bar_window_without_event_time_uses_the_clock():
    clock = FakeClock()
    m = BarModel(window_s=5, clock=clock)
    m.add("a")
    clock.advance(3)
    m.add("b")
    clock.advance(3)
    m.add("b")
    assert m.snapshot() == [("b", 2.0)]


def test_bar_count_window_keeps_last_n_events():
    m = BarModel(window_n=3)
    for k in "aaabb":
        m.add(k)
    assert m.snapshot() == [("a", 1.0), ("b", 2.0)]


def test_bar_update_replaces_everything_shown():
    m = BarModel()
    m.add("old", 5)
    m.update({0: 120, 1: 98, 2: 101})
    assert m.snapshot() == [(0, 120.0), (1, 98.0), (2, 101.0)]
    m.update({0: 130})
    assert m.snapshot() == [(0, 130.0)]
    with pytest.raises(IllegalArgumentError):
        m.update({0: "many"})
    assert m.snapshot() == [(0, 130.0)]  # a bad update changes nothing


# -- histogram ----------------------------------------------------------------


def test_hist_fixed_range_counts_and_out_of_range():
    m = HistModel(bins=4, range=(0, 100))
    m.extend([0, 10, 25, 49.9, 50, 99, 100, -1, 150])
    edges, counts, below, above = m.snapshot()
    assert edges == [0.0, 25.0, 50.0, 75.0, 100.0]
    assert counts == [2, 2, 1, 2]  # 50 opens bin 2; 100 falls into the last bin
    assert (below, above) == (1, 1)
    assert sum(counts) + below + above == m.total


def test_hist_auto_range_follows_the_data():
    m = HistModel(bins=2)
    m.extend([10, 20, 30])
    edges, counts, below, above = m.snapshot()
    assert edges == [10.0, 20.0, 30.0]
    assert counts == [1, 2]
    assert below == above == 0
    single = HistModel(bins=1)
    single.add(5)
    assert single.snapshot()[0] == [4.5, 5.5]
    assert HistModel().snapshot()[1] == [0] * 20


def test_hist_explicit_edges_and_window():
    m = HistModel(bins=[0, 1, 10, 100], window_n=2)
    m.extend([0.5, 5, 50])
    assert m.snapshot()[1] == [0, 1, 1]
    with pytest.raises(IllegalArgumentError):
        HistModel(bins=[3, 2])
    with pytest.raises(IllegalArgumentError):
        HistModel(range=(5, 5))


def test_hist_update_replaces_values():
    m = HistModel(bins=2, range=(0, 2))
    m.extend([0.5, 0.5])
    m.update([1.5])
    assert m.snapshot()[1] == [0, 1]
