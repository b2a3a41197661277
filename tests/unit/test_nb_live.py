"""nb.LivePlot's renderer and background follower, outside a Jupyter kernel.

The follower is fed by a small in-memory stand-in with a consumer's ``poll``;
tests/integration/test_nb_demo_notebook.py runs it against the real broker.
"""

from __future__ import annotations

import threading
import time
from collections import namedtuple

import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("ipywidgets")

from labkit.errors import IllegalArgumentError, IllegalStateError
from labkit.nb import live
from labkit.nb.live import LivePlot, stop_all
from labkit.testing import FakeClock

Record = namedtuple("Record", "topic partition offset timestamp key value")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class ListConsumer:
    """Hands out prepared records on poll(), then nothing; counts polls."""

    def __init__(self, records, per_poll=3):
        self._records = list(records)
        self._per_poll = per_poll
        self.polls = 0
        self.closed = False

    def poll(self, timeout_ms=0):
        self.polls += 1
        batch, self._records = self._records[: self._per_poll], self._records[self._per_poll :]
        if not batch:
            time.sleep(timeout_ms / 1000.0)
            return {}
        out = {}
        for r in batch:
            out.setdefault((r.topic, r.partition), []).append(r)
        return out

    def close(self):
        self.closed = True


def _records(n, partitions=3, start_ms=1_700_000_000_000):
    return [
        Record("tx", i % partitions, i // partitions, start_ms + i * 10, None, {"amount": i})
        for i in range(n)
    ]


def _wait(predicate, timeout=30.0):  # generous: each draw renders a PNG, slow on a busy machine
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def _threads(name):
    return [t for t in threading.enumerate() if t.name.startswith(name) and t.is_alive()]


def test_each_kind_renders_png_into_the_widget():
    for kind, feed in (
        ("line", lambda p: p.add(3)),
        ("bar", lambda p: p.add("a", 2)),
        ("hist", lambda p: p.extend([1, 2, 2, 3])),
    ):
        plot = LivePlot(kind, title=kind, display=False)
        empty = plot.png()
        feed(plot)
        plot.stop()
        assert plot.png().startswith(PNG_MAGIC)
        assert plot.widget.children[0].value == plot.png()
        assert plot.png() != empty, kind


def test_unknown_kind_and_options_are_rejected():
    with pytest.raises(IllegalArgumentError, match="kind"):
        LivePlot("pie", display=False)
    with pytest.raises(IllegalArgumentError, match="max_fps"):
        LivePlot("line", max_fps=0, display=False)


def test_redraws_are_throttled_and_the_last_change_still_reaches_the_picture():
    clock = FakeClock()
    plot = LivePlot("bar", max_fps=5, clock=clock, display=False)
    first = plot.draws
    clock.advance(1)
    for _ in range(100):
        plot.add("k")  # fake time stands still: one redraw at once, then one trailing
    # the redraws run on a real-time timer (<= 0.2 s) and the last one shows all 100 events
    assert _wait(lambda: plot.draws > first and not plot._dirty and not plot._timer)
    assert plot.draws <= first + 2
    assert plot.model.snapshot() == [("k", 100.0)]
    assert _wait(lambda: not _threads("labkit-liveplot-redraw"))


def test_adding_never_renders_in_the_adding_thread():
    """A cell's consumer loop calls add() for every record: were it to render there (0.1-0.7 s
    a PNG on a busy machine), two plots would cut the loop to a record or two per second."""
    plot = LivePlot("bar", max_fps=50, display=False)
    render, rendered_in = plot._canvas.render, []

    def slow_render(*args, **kwargs):
        rendered_in.append(threading.current_thread())
        time.sleep(0.05)
        render(*args, **kwargs)

    plot._canvas.render = slow_render
    for n in range(300):
        plot.add(f"store {n % 4}")
        time.sleep(0.001)
    assert threading.current_thread() not in rendered_in
    assert _wait(lambda: rendered_in and not plot._dirty and not plot._timer)
    assert plot.model.snapshot() == [(f"store {k}", 75.0) for k in range(4)]


def test_a_draw_slower_than_the_interval_does_not_make_every_add_draw():
    """05's live bars: 240 add() calls took > 60 s on a busy machine (each draw 0.75 s,
    longer than 1/max_fps, so the interval had always passed when the next add came)."""
    clock = FakeClock()
    plot = LivePlot("bar", max_fps=5, clock=clock, display=False)
    render = plot._canvas.render

    def slow_render(*args, **kwargs):
        clock.advance(0.75)
        return render(*args, **kwargs)

    plot._canvas.render = slow_render
    clock.advance(1)
    first = plot.draws
    for _ in range(20):
        plot.add("k")
    # drawn off this thread, by one redraw timer at a time, not once per add()
    assert _wait(lambda: plot.draws > first and not _threads("labkit-liveplot-redraw"))
    assert plot.draws <= first + 2
    assert plot.model.snapshot() == [("k", 20.0)]
    drawn = plot.draws
    plot.add("k")
    assert _wait(lambda: plot.draws == drawn + 1)  # the trailing redraw shows them all
    assert plot.model.snapshot() == [("k", 21.0)]
    plot.stop()


def test_stop_draws_pending_changes_at_once():
    clock = FakeClock()
    plot = LivePlot("hist", clock=clock, display=False)
    before = plot.png()
    plot.add(5)  # inside the quiet interval: deferred
    plot.stop()
    assert plot.png() != before
    assert not _threads("labkit-liveplot-redraw")


def test_follow_feeds_a_bar_per_partition_and_stop_joins_the_thread():
    consumer = ListConsumer(_records(30))
    plot = LivePlot("bar", display=False)
    plot.follow(consumer, poll_timeout_ms=20)
    assert plot.running
    assert _wait(lambda: plot.model.total == 30)
    plot.stop()
    assert not plot.running
    assert not _threads("labkit-liveplot")
    assert plot.model.snapshot() == [
        ("partition 0", 10.0),
        ("partition 1", 10.0),
        ("partition 2", 10.0),
    ]
    assert not consumer.closed  # the caller's consumer stays the caller's
    assert plot.error is None


def test_follow_value_fn_for_line_uses_record_time_and_for_hist_the_value():
    line = LivePlot("line", bucket_s=0.1, display=False)
    hist = LivePlot("hist", bins=3, range=(0, 30), display=False)
    with line, hist:
        line.follow(ListConsumer(_records(30)), value_fn=lambda r: 1, poll_timeout_ms=20)
        hist.follow(
            ListConsumer(_records(30)), value_fn=lambda r: r.value["amount"], poll_timeout_ms=20
        )
        assert _wait(lambda: line.model.total == 30 and hist.model.total == 30)
    assert not line.running
    assert not hist.running
    xs, ys = line.model.snapshot()["value"]
    assert sum(ys) == 30
    assert len(xs) == 3  # 30 records, 10 ms apart = three 100 ms buckets
    assert line.model.x_is_time
    assert hist.model.snapshot()[1] == [10, 10, 10]


def test_value_fn_can_skip_records_and_return_key_value_pairs():
    plot = LivePlot("bar", agg="sum", display=False)
    fn = lambda r: None if r.partition == 2 else (f"p{r.partition}", r.value["amount"])  # noqa: E731
    plot.follow(ListConsumer(_records(6)), value_fn=fn, poll_timeout_ms=20)
    assert _wait(lambda: plot.model.total == 4)
    plot.stop()
    assert plot.model.snapshot() == [("p0", 0.0 + 3.0), ("p1", 1.0 + 4.0)]


def test_a_failing_value_fn_stops_following_and_says_so():
    plot = LivePlot("hist", display=False)
    plot.follow(
        ListConsumer(_records(5)), value_fn=lambda r: r.value["missing"], poll_timeout_ms=20
    )
    assert _wait(lambda: not plot.running)
    assert "value_fn raised KeyError" in plot.error
    assert "fix value_fn" in plot.error
    assert "value_fn raised KeyError" in plot.widget.children[1].value
    plot.stop()  # safe after the thread ended by itself


def test_follow_needs_value_fn_except_for_bar_and_only_one_source_at_a_time():
    with pytest.raises(IllegalArgumentError, match="value_fn"):
        LivePlot("line", display=False).follow(ListConsumer([]))
    plot = LivePlot("bar", display=False)
    plot.follow(ListConsumer([]), poll_timeout_ms=20)
    try:
        with pytest.raises(IllegalStateError, match="stop"):
            plot.follow(ListConsumer([]))
    finally:
        plot.stop()


def test_follow_rejects_a_bad_source_at_once():
    plot = LivePlot("bar", display=False)
    for bad in (12345, [], ["ok", 3], ""):
        with pytest.raises(IllegalArgumentError, match="topic name"):
            plot.follow(bad)
    assert not plot.running


def test_stop_all_stops_every_follower():
    plots = [LivePlot("bar", display=False) for _ in range(3)]
    for p in plots:
        p.follow(ListConsumer([]), poll_timeout_ms=20)
    assert stop_all() >= 3
    assert not any(p.running for p in plots)
    assert not _threads("labkit-liveplot")


def test_outside_a_kernel_nothing_is_displayed(capsys):
    assert not live.in_kernel()
    plot = LivePlot("line", title="quiet")
    plot.add(1)
    plot.stop()
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err == ""
    assert "quiet" in repr(plot)
    assert "1 events" in repr(plot)


def test_save_writes_the_picture(tmp_path):
    plot = LivePlot("bar", display=False)
    plot.update({"a": 1, "b": 2})
    path = tmp_path / "bars.png"
    plot.save(str(path))
    assert path.read_bytes() == plot.png()
    assert path.read_bytes().startswith(PNG_MAGIC)
