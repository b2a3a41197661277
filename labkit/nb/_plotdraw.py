"""Drawing a live plot's snapshot with matplotlib (Agg canvas, no pyplot) into PNG bytes.

``Canvas`` owns one ``Figure`` and one ``Axes``; ``render`` clears the axes and
draws a snapshot of a ``_plotmodel`` model, ``png`` returns the picture. Not
thread-safe: ``LivePlot`` holds its draw lock around both.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Hashable, Mapping
from datetime import datetime
from typing import Any

from labkit.i18n import _

BAR_COLOR = "#4c72b0"
HIST_COLOR = "#55a868"


class Canvas:
    def __init__(self, figsize: tuple[float, float], dpi: int = 100):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self.fig = Figure(figsize=figsize, dpi=dpi, layout="tight")
        FigureCanvasAgg(self.fig)
        self.ax = self.fig.add_subplot()

    @property
    def width_px(self) -> int:
        return int(self.fig.get_figwidth() * self.fig.dpi)

    def png(self) -> bytes:
        buf = io.BytesIO()
        self.fig.savefig(buf, format="png")
        return buf.getvalue()

    def render(
        self,
        kind: str,
        model: Any,
        snap: Any,
        *,
        title: str,
        info: str,
        xlabel: str | None,
        ylabel: str | None,
    ) -> None:
        ax = self.ax
        ax.clear()
        ax.set_title(title or kind, loc="left", fontsize=11)
        ax.set_title(info, loc="right", fontsize=8, color="#666")
        ax.grid(True, alpha=0.3)
        ax.set_axisbelow(True)
        if kind == "line":
            _line(ax, model, snap, xlabel, ylabel)
        elif kind == "bar":
            keys = [str(k) for k, _ in snap]
            ax.bar(keys, [v for _, v in snap], color=BAR_COLOR)
            if len(keys) > 8:
                ax.tick_params(axis="x", labelrotation=45)
            ax.set_ylabel(ylabel or model.agg)
        else:
            edges, counts, _low, _high = snap
            widths = [b - a for a, b in itertools.pairwise(edges)]
            ax.bar(
                edges[:-1], counts, width=widths, align="edge", color=HIST_COLOR, edgecolor="white"
            )
            ax.set_ylabel(ylabel or _("count"))
        if xlabel:
            ax.set_xlabel(xlabel)


def _line(
    ax: Any,
    model: Any,
    snap: Mapping[Hashable, tuple[list[float], list[float]]],
    xlabel: str | None,
    ylabel: str | None,
) -> None:
    time_axis = model.x_is_time
    if time_axis:
        import matplotlib.dates as mdates

        tz = datetime.now().astimezone().tzinfo
        locator = mdates.AutoDateLocator(tz=tz, minticks=3, maxticks=8)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=tz))
    for name, (xs, ys) in snap.items():
        if time_axis:
            xs = [x / 86400.0 for x in xs]  # matplotlib date numbers: days since 1970
        ax.plot(xs, ys, marker="." if len(xs) < 50 else None, label=str(name))
    if len(snap) > 1:
        ax.legend(loc="upper left", fontsize=8)
    if ylabel:
        ax.set_ylabel(ylabel)
    elif model.bucket_s:
        ax.set_ylabel(f"{model.agg} per {model.bucket_s:g} s")
    if not xlabel and not time_axis:  # a time axis shows the date on its own
        ax.set_xlabel(_("arrival"))
