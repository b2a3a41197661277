"""``nb.LivePlot``: a matplotlib figure that updates in place while events arrive.

Theory of operation
-------------------
A ``LivePlot`` owns one data model from ``_plotmodel`` (line, bar or hist) and
one renderer. Callers feed the model -- ``add``/``update``/``extend`` from a
loop in the cell, or ``follow(topic_or_consumer)`` from a background thread --
and every change marks the plot dirty.

This module collects the data: the feeding methods, the follower thread and what a
record adds to the model (``value_fn``). The picture -- the throttled redraw timer,
PNG bytes, the widget -- is ``_plotview.PlotView``, ``LivePlot``'s base class, whose
docstring explains the throttle; the two halves share one ``LivePlot``'s state and
locks, so they are one object, written in two modules.

Threads and locks: ``_lock`` guards the model; ``_draw_lock`` serialises
rendering (one figure is never drawn by two threads at once). ``follow()``
starts one daemon thread named ``labkit-liveplot``; ``stop()`` (or leaving a
``with`` block, or ``nb.stop_all()``) ends it and joins it. A failure in the
thread -- broker gone, ``value_fn`` raising -- stops following and shows the
error, with what to do, under the plot (``plot.error`` keeps it).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from labkit._clock import REAL_CLOCK, Clock
from labkit.errors import IllegalArgumentError, IllegalStateError
from labkit.i18n import _
from labkit.nb._plotdraw import Canvas
from labkit.nb._plotmodel import BarModel, HistModel, LineModel
from labkit.nb._plotview import PlotView, in_kernel

__all__ = ["LivePlot", "stop_all"]

KINDS = ("line", "bar", "hist")
_ACTIVE: weakref.WeakSet = weakref.WeakSet()


def stop_all() -> int:
    """Stop every running live plot follower and dashboard; returns how many were running."""
    n = 0
    for thing in list(_ACTIVE):
        if thing.running:
            n += 1
        thing.stop()
    return n


class LivePlot(PlotView):
    """A line, bar or histogram plot that redraws in place as data arrives.

    ``LivePlot("line", title="amount", window_s=60)``; then ``add(x, y)``,
    ``add(y)`` (x = arrival index), ``update({"series": y})``.
    ``LivePlot("bar", agg="sum")``; ``add(key, value=1, t=None)``, ``update(mapping)``.
    ``LivePlot("hist", bins=20, range=(0, 500))``; ``add(value)``, ``extend(values)``.

    Raises ``IllegalArgumentError`` for an unknown kind or option.
    """

    def __init__(
        self,
        kind: str = "line",
        title: str = "",
        *,
        window_s: float | None = None,
        window_n: int | None = None,
        bucket_s: float | None = None,
        agg: str | None = None,
        bins: int | Iterable[float] = 20,
        range: tuple[float, float] | None = None,
        sort: str = "key",
        top_n: int | None = None,
        xlabel: str | None = None,
        ylabel: str | None = None,
        max_fps: float = 5.0,
        figsize: tuple[float, float] = (6.4, 3.2),
        display: bool = True,
        clock: Clock = REAL_CLOCK,
    ):
        if kind not in KINDS:
            raise IllegalArgumentError(
                _("kind={kind!r}: use one of {value_join}").format(
                    kind=kind, value_join=", ".join(KINDS)
                )
            )
        if not max_fps > 0:
            raise IllegalArgumentError(
                _("max_fps must be positive, got {max_fps!r}").format(max_fps=max_fps)
            )
        self.kind = kind
        self.title = title
        self.xlabel = xlabel
        self.ylabel = ylabel
        self._clock = clock
        self._min_interval = 1.0 / max_fps
        if kind == "line":
            self.model: Any = LineModel(
                window_s=window_s, window_n=window_n, bucket_s=bucket_s, agg=agg or "sum"
            )
        elif kind == "bar":
            self.model = BarModel(
                agg=agg or "sum",
                window_s=window_s,
                window_n=window_n,
                sort=sort,
                top_n=top_n,
                clock=clock,
            )
        else:
            self.model = HistModel(
                bins=bins, range=range, window_s=window_s, window_n=window_n, clock=clock
            )
        self._lock = threading.RLock()
        self._draw_lock = threading.Lock()
        self._dirty = False
        self._last_draw = -1e18  # when the last redraw ended (clock.monotonic())
        self._last_draw_s = 0.0  # how long it took
        self._timer: threading.Timer | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.error: str | None = None
        self.draws = 0
        self._png = b""
        self._canvas = Canvas(figsize)
        self.widget = self._make_widget()
        _ACTIVE.add(self)
        self.draw()
        if display and self.widget is not None and in_kernel():
            self.show()

    # -- feeding --------------------------------------------------------------

    def add(self, *args: Any, **kwargs: Any) -> bool:
        """Add one event (see the class docstring for each kind). False if dropped as late."""
        with self._lock:
            ok = self.model.add(*args, **kwargs)
        self._changed()
        return ok

    def update(self, values: Any, **kwargs: Any) -> None:
        """Line: one point per series; bar: replace all bars; hist: replace all values."""
        with self._lock:
            self.model.update(values, **kwargs)
        self._changed()

    def extend(self, values: Iterable[Any]) -> None:
        """Add many events: hist values, line ``y`` values, or bar keys."""
        with self._lock:
            if self.kind == "hist":
                self.model.extend(values)
            else:
                for v in values:
                    self.model.add(v)
        self._changed()

    def clear(self) -> None:
        with self._lock:
            self.model.clear()
        self._changed()

    # -- background consumer ---------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def follow(
        self,
        source: Any,
        value_fn: Callable[[Any], Any] | None = None,
        *,
        bootstrap_servers: str | list[str] | None = None,
        from_beginning: bool = False,
        poll_timeout_ms: int = 200,
    ) -> LivePlot:
        """Feed the plot from a topic (name or list of names) or a consumer, in the background.

        ``value_fn(record)`` says what each record adds; return ``None`` to skip it.
        line: ``y`` (x = the record's timestamp), ``(x, y)`` or ``(x, y, series)``;
        bar: ``key`` or ``(key, value)`` (default: one count per partition);
        hist: the value. A dict returned by ``value_fn`` goes to ``update()``.
        A consumer you pass is used only by the plot's thread until ``stop()``
        (do not poll it yourself meanwhile) and is not closed.
        Raises ``IllegalStateError`` if already following.
        """
        if self.running:
            raise IllegalStateError(
                _("this plot is already following a source: call plot.stop() first")
            )
        if not hasattr(source, "poll"):
            _topics(source)  # a bad argument fails here, not later in the thread
        if value_fn is None:
            if self.kind != "bar":
                raise IllegalArgumentError(
                    _(
                        "follow() on a {kind} plot needs value_fn, e.g. value_fn=lambda r: r.value['amount']"
                    ).format(kind=self.kind)
                )
            value_fn = _partition_key
        self._stop = threading.Event()
        self.error = None
        self._thread = threading.Thread(
            target=self._follow_loop,
            name="labkit-liveplot",
            daemon=True,
            args=(source, value_fn, bootstrap_servers, from_beginning, poll_timeout_ms),
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop following (joins the thread) and draw the final state. Safe to call twice."""
        self._stop.set()
        self._cancel_timer()  # the final draw below (or the follower's) shows everything
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)
        self._cancel_timer()
        if self._dirty:
            self.draw()

    close = stop

    def __enter__(self) -> LivePlot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _follow_loop(
        self,
        source: Any,
        value_fn: Callable[[Any], Any],
        bootstrap: Any,
        from_beginning: bool,
        poll_ms: int,
    ) -> None:
        consumer = None
        owned = False
        try:
            if hasattr(source, "poll"):
                consumer = source
            else:
                consumer = _open_consumer(source, bootstrap, from_beginning)
                owned = True
            self._status(_("following {source}").format(source=_describe(source)))
            while not self._stop.is_set():
                batches = consumer.poll(timeout_ms=poll_ms)
                for records in (batches or {}).values():
                    for record in records:
                        self._feed_record(value_fn, record)
        except Exception as exc:  # noqa: BLE001 - shown to the student, not lost in a thread
            self.error = _explain(exc)
            self._status(self.error, error=True)
        else:
            self._status(_("stopped"))
        finally:
            if owned and consumer is not None:
                try:
                    consumer.close()
                except Exception as exc:  # noqa: BLE001 - shown like any other error
                    self.error = self.error or _("closing the consumer failed: {exc}").format(
                        exc=exc
                    )
            self._cancel_timer()
            if self._dirty:  # else a redraw has shown the last record already
                self.draw()

    def _feed_record(self, value_fn: Callable[[Any], Any], record: Any) -> None:
        try:
            out = value_fn(record)
        except Exception as exc:
            raise _ValueFnError(
                _(
                    "value_fn raised {name}: {exc} (record offset {getattr_record}); fix value_fn and call follow() again"
                ).format(
                    name=type(exc).__name__, exc=exc, getattr_record=getattr(record, "offset", "?")
                )
            ) from exc
        if out is None:
            return
        t = getattr(record, "timestamp", None)
        t = t if isinstance(t, int | float) and t >= 0 else None
        with self._lock:
            if isinstance(out, Mapping) and self.kind == "line":
                self.model.update(out, x=t)
            elif isinstance(out, Mapping):
                self.model.update(out)
            elif self.kind == "line":
                if isinstance(out, tuple):
                    self.model.add(*out)
                elif t is not None:
                    self.model.add(t, out)
                else:
                    self.model.add(out)
            elif self.kind == "bar":
                key, value = out if isinstance(out, tuple) else (out, 1)
                self.model.add(key, value, t=t)
            else:
                self.model.add(out, t=t)
        self._changed()

    def __repr__(self) -> str:
        state = "following" if self.running else "idle"
        return f"<LivePlot {self.kind} {self.title!r}: {self.model.total} events, {state}>"


class _ValueFnError(Exception):
    pass


def _partition_key(record: Any) -> str:
    return _("partition {partition}").format(partition=record.partition)


def _describe(source: Any) -> str:
    if isinstance(source, str):
        return _("topic {source!r}").format(source=source)
    if isinstance(source, list | tuple):
        return "topics " + ", ".join(map(repr, source))
    return type(source).__name__


def _topics(source: Any) -> list[str]:
    topics = [source] if isinstance(source, str) else source
    if (
        not isinstance(topics, list | tuple)
        or not topics
        or not all(isinstance(t, str) and t for t in topics)
    ):
        raise IllegalArgumentError(
            _("follow() takes a topic name, a list of names or a consumer, not {source!r}").format(
                source=source
            )
        )
    return list(topics)


def _open_consumer(source: Any, bootstrap: Any, from_beginning: bool) -> Any:
    from labkit import KafkaConsumer
    from labkit.nb._connect import bootstrap_servers

    topics = _topics(source)
    servers = bootstrap_servers(bootstrap)
    return KafkaConsumer(
        *topics,
        bootstrap_servers=servers,
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
        group_id=None,
    )


def _explain(exc: BaseException) -> str:
    from labkit.nb._connect import explain

    return explain(exc)
