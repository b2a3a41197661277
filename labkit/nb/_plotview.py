"""A live plot's picture: throttled redraws into an ``ipywidgets.Image``.

Theory of operation
-------------------
``PlotView`` is the drawing half of ``live.LivePlot`` (its base class): ``LivePlot``
collects the data into its model and calls ``_changed()``; ``PlotView`` turns the
model into a picture. It keeps no state of its own: ``LivePlot.__init__`` sets the
attributes both halves share (``model``, ``kind``, ``title``, ``xlabel``, ``ylabel``,
``_clock``, ``_min_interval``, the locks, ``_dirty``, ``_timer``, ``_last_draw``,
``_last_draw_s``, ``_canvas``, ``_png``, ``draws``, ``widget``), then calls
``_make_widget()`` and ``draw()``.

Rendering: the figure is a plain ``matplotlib.figure.Figure`` on the Agg canvas
(no pyplot, no GUI backend, no ipympl; ``_plotdraw``). Each redraw clears the
axes, draws the model's ``snapshot()``, saves PNG bytes and assigns them to an
``ipywidgets.Image``; JupyterLab swaps the picture in place. This needs no lab
extension beyond ipywidgets and runs headless (nbclient/nbval) unchanged.
Outside a Jupyter kernel nothing is displayed; ``png()``/``save()`` still work.

Throttling: a change never renders in the thread that made it (the cell's consumer
loop, a follower): it schedules one redraw on a short-lived ``threading.Timer``,
at most ``max_fps`` per second, and never sooner after the last redraw than that
redraw took, so rendering gets at most about half of the time however slow it is
(a PNG can take 0.1-0.7 s on a busy machine: drawn in the caller's loop, two plots
cut a consumer loop to a record or two per second, a 600-record cell overran
nbval's cell timeout, and the interrupted kernel could not answer in time: the
"kernel died" of a graded notebook 09). ``draw()``, ``png()`` and ``stop()``
render at once.

Locks: ``_lock`` (the plot's, guarding the model) is held only to take a snapshot and
to start or clear the one timer; ``_draw_lock`` serialises rendering (one figure is
never drawn by two threads at once).

``in_kernel`` and ``quiet_box`` serve the dashboard's widget too.
"""

from __future__ import annotations

import threading
from typing import Any

from labkit.errors import IllegalStateError
from labkit.i18n import _


def in_kernel() -> bool:
    """True inside a Jupyter kernel (JupyterLab, nbclient, nbval), where widgets show."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    ip = get_ipython()
    return ip is not None and getattr(ip, "kernel", None) is not None


def quiet_box(widgets: Any, children: list[Any], text: str) -> Any:
    """A VBox whose text form (saved in the notebook for viewers without widgets) is
    ``text`` instead of a repr full of PNG bytes or HTML."""

    class _Box(widgets.VBox):
        def __repr__(self) -> str:
            return text

    return _Box(children)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class PlotView:
    """The picture of a ``LivePlot``: throttled redraws, PNG bytes and the widget."""

    def _changed(self) -> None:
        self._dirty = True
        self._schedule()

    def _schedule(self) -> None:
        """Start the one redraw timer, unless it is waiting or rendering already (then it
        reschedules itself when its render is done: changes never pile up threads)."""
        with self._lock:
            if self._timer is not None:
                return
            gap = max(self._min_interval, self._last_draw_s)
            wait = max(0.0, self._last_draw + gap - self._clock.monotonic())
            timer = threading.Timer(wait, self._trailing_draw)
            timer.daemon = True
            timer.name = "labkit-liveplot-redraw"
            self._timer = timer
            timer.start()

    def _trailing_draw(self) -> None:
        try:
            if self._dirty:
                self._render()
        finally:
            with self._lock:
                if self._timer is threading.current_thread():
                    self._timer = None
            if self._dirty:  # changed while rendering
                self._schedule()

    def _cancel_timer(self) -> None:
        with self._lock:
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    def draw(self) -> None:
        """Redraw now (ignores the throttle)."""
        self._cancel_timer()
        self._render()

    def _render(self) -> None:
        with self._draw_lock:
            with self._lock:
                self._dirty = False
                snap = self.model.snapshot()
                info = self._info(snap)
            started = self._clock.monotonic()
            self._canvas.render(
                self.kind,
                self.model,
                snap,
                title=self.title,
                info=info,
                xlabel=self.xlabel,
                ylabel=self.ylabel,
            )
            self._png = self._canvas.png()
            self._last_draw = self._clock.monotonic()
            self._last_draw_s = self._last_draw - started
            self.draws += 1
            if self.widget is not None:
                self._image.value = self._png

    def png(self) -> bytes:
        """The current picture as PNG bytes (redrawn if anything changed)."""
        if self._dirty:
            self.draw()
        return self._png

    def save(self, path: str) -> None:
        with open(path, "wb") as f:
            f.write(self.png())

    def show(self) -> None:
        """Display the plot (again) in the notebook."""
        if self.widget is None:
            raise IllegalStateError(
                _("ipywidgets is not installed: pip install 'labkit-streaming[lab]'")
            )
        from IPython.display import display

        display(self.widget)

    def _info(self, snap: Any) -> str:
        parts = [_("{total} events").format(total=self.model.total)]
        if self.model.dropped_late:
            parts.append(
                _("{dropped_late} late dropped").format(dropped_late=self.model.dropped_late)
            )
        if self.kind == "hist":
            _edges, _counts, below, above = snap
            if below or above:
                parts.append(
                    _("{below} below / {above} above range").format(below=below, above=above)
                )
        return " · ".join(parts)

    def _make_widget(self) -> Any:
        try:
            import ipywidgets as w
        except ImportError:
            return None
        width = self._canvas.width_px
        self._image = w.Image(format="png", layout=w.Layout(width=f"{width}px", max_width="100%"))
        self._image.add_class("labkit-liveplot-image")
        self._label = w.HTML("")
        box = quiet_box(
            w,
            [self._image, self._label],
            _(
                "LivePlot {kind} {title!r} (a live widget: run the notebook in JupyterLab to see it)"
            ).format(kind=self.kind, title=self.title),
        )
        box.add_class("labkit-liveplot")
        return box

    def _status(self, text: str, error: bool = False) -> None:
        if self.widget is None:
            return
        color = "#b00020" if error else "#555"
        self._label.value = f'<span style="color:{color}">{_escape(text)}</span>'
