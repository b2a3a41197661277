"""nb.progress: tqdm around producer/consumer loops (text bar outside a notebook)."""

from __future__ import annotations

import pytest

pytest.importorskip("tqdm")

from labkit.errors import IllegalArgumentError
from labkit.nb.progress_bar import progress


def test_wraps_an_iterable_and_counts_it(capsys):
    seen = list(progress(range(5), desc="sending", unit="msg", mininterval=0))
    assert seen == [0, 1, 2, 3, 4]
    err = capsys.readouterr().err
    assert "sending" in err
    assert "5/5" in err
    assert "msg" in err


def test_total_and_manual_updates(capsys):
    with progress(total=10, desc="reading") as bar:
        bar.update(4)
        bar.update(6)
        assert bar.n == 10
    assert "10/10" in capsys.readouterr().err


def test_generator_without_len_takes_total():
    bar = progress((i for i in range(3)), total=3)
    assert bar.total == 3
    assert list(bar) == [0, 1, 2]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({}, "needs something to count"), ({"total": -1}, "total"), ({"total": "ten"}, "total")],
)
def test_bad_arguments_say_what_to_pass(kwargs, match):
    with pytest.raises(IllegalArgumentError, match=match):
        progress(**kwargs)
