"""``nb.progress``: a progress bar for long producer/consumer loops.

In JupyterLab it is tqdm's ipywidgets bar; in a terminal (or where widgets are
missing) tqdm's text bar on stderr. Use it around an iterable, or with a total
and ``update()``::

    for i in nb.progress(range(10_000), desc="sending"):
        producer.send("rta", {"i": i})

    with nb.progress(total=1000, desc="reading", unit="msg") as bar:
        for msg in consumer:
            bar.update(1)
            if bar.n >= 1000:
                break
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from labkit.errors import IllegalArgumentError
from labkit.i18n import _

__all__ = ["progress"]


def progress(
    iterable: Iterable[Any] | None = None,
    total: int | float | None = None,
    *,
    desc: str | None = None,
    unit: str = "it",
    **tqdm_kwargs: Any,
) -> Any:
    """A ``tqdm`` progress bar (notebook widget in Jupyter, text elsewhere).

    ``total`` defaults to ``len(iterable)`` when it has one. Extra keyword
    arguments go to tqdm (``leave``, ``mininterval``, ``unit_scale``...).
    Raises ``IllegalArgumentError`` when there is neither an iterable nor a
    total, or for a negative total.
    """
    if iterable is None and total is None:
        raise IllegalArgumentError(
            _("progress() needs something to count: progress(items) or progress(total=1000)")
        )
    if total is not None and (
        isinstance(total, bool) or not isinstance(total, int | float) or total < 0
    ):
        raise IllegalArgumentError(
            _("total must be a number of items (>= 0), got {total!r}").format(total=total)
        )
    try:
        from tqdm.auto import tqdm
    except ImportError as exc:
        raise ImportError(
            _(
                "nb.progress needs tqdm: pip install 'labkit-streaming[lab]' (in a checkout: make venv)"
            )
        ) from exc
    return tqdm(iterable, total=total, desc=desc, unit=unit, **tqdm_kwargs)
