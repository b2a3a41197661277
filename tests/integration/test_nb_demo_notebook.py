"""notebooks/demo_helpers.ipynb executed by nbclient against a real broker, and the
widget helpers it uses (doctor, dashboard, LivePlot.follow) driven directly against it.

The browser side (the same notebook in a real JupyterLab) is tests/browser/.
"""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipywidgets")
pytest.importorskip("matplotlib")

from labkit import KafkaAdminClient, KafkaProducer, NewTopic  # noqa: E402
from labkit.nb.dashboard_widget import Dashboard  # noqa: E402
from labkit.nb.doctor_checks import OK, doctor  # noqa: E402
from labkit.nb.live import LivePlot  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "notebooks" / "demo_helpers.ipynb"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def _stdout(cell) -> str:
    return "".join(
        o.get("text", "")
        for o in cell.get("outputs", [])
        if o.output_type == "stream" and o.name == "stdout"
    )


def _widgets_shown(cell) -> int:
    return sum(1 for o in cell.get("outputs", []) if WIDGET_VIEW in o.get("data", {}))


@pytest.fixture(scope="module")
def executed_demo(tmp_path_factory, shared_broker):
    """The demo notebook after a full run (a copy: the repository file stays untouched)."""
    work = tmp_path_factory.mktemp("demo")
    shutil.copy(DEMO, work / DEMO.name)
    nb = nbformat.read(work / DEMO.name, as_version=4)
    mp = pytest.MonkeyPatch()
    mp.setenv("LABKIT_BOOTSTRAP", shared_broker.bootstrap)
    mp.delenv("LABKIT_GRADING", raising=False)
    try:
        client = nbclient.NotebookClient(
            nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(work)}}
        )
        client.execute()
    finally:
        mp.undo()
    return nb


def _code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def test_every_cell_runs_without_an_error(executed_demo):
    for cell in _code_cells(executed_demo):
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert not errors, (
            f"cell failed: {cell.source[:80]!r}: {errors[0].ename}: {errors[0].evalue}"
        )


def test_doctor_and_checks_print_their_lines(executed_demo):
    text = "\n".join(_stdout(c) for c in _code_cells(executed_demo))
    assert "✔ broker: labkit" in text
    assert "✔ round trip" in text
    assert "all checks passed" in text
    assert "PASS 00.1 (1/1 points)" in text
    assert "PASS 09.1 (1/1 points)" in text


def test_widgets_are_shown_and_the_plots_consumed_everything(executed_demo):
    cells = {c.source.split("\n")[0]: c for c in _code_cells(executed_demo)}
    sending = next(c for k, c in cells.items() if k.startswith("admin = "))
    assert _widgets_shown(sending) == 1  # the progress bar
    dash = next(c for k, c in cells.items() if k.startswith("dash = "))
    assert _widgets_shown(dash) == 1
    plots = [c for c in _code_cells(executed_demo) if "nb.LivePlot(" in c.source]
    assert sum(_widgets_shown(c) for c in plots) == 3
    text = "\n".join(_stdout(c) for c in _code_cells(executed_demo))
    read = int(re.search(r"read (\d+) transactions", text).group(1))
    assert read >= 540  # 300 sent in the loop + 240 by the background stream
    assert "sent=240 finished" in text
    assert "events, idle>" in text  # the background follower was stopped


def test_saved_widget_state_holds_the_final_plots_and_dashboard(executed_demo):
    state = executed_demo.metadata["widgets"][WIDGET_STATE]["state"]
    images = [m for m in state.values() if m["model_name"] == "ImageModel"]
    assert len(images) == 3
    for model in images:
        buf = next(b for b in model["buffers"] if b["path"] == ["value"])
        png = base64.b64decode(buf["data"])
        assert png.startswith(PNG_MAGIC)
        assert len(png) > 5000
    html = [m["state"].get("value", "") for m in state.values() if m["model_name"] == "HTMLModel"]
    board = next(v for v in html if "labkit-dashboard-body" in v)
    assert "demo-helpers" in board
    assert "stopped" in board


# -- the helpers driven directly against the real broker -----------------------------


def test_doctor_passes_against_the_broker(shared_broker):
    out = io.StringIO()
    report = doctor(shared_broker.bootstrap, file=out)
    assert report.ok, out.getvalue()
    assert report["broker"].status == OK
    assert report["round trip"].status == OK
    topics = KafkaAdminClient(bootstrap_servers=shared_broker.bootstrap)
    try:
        assert not [t for t in topics.list_topics() if t.startswith("labkit-doctor-")]
    finally:
        topics.close()


def test_doctor_sees_a_stopped_broker(broker):
    bootstrap = broker.bootstrap
    broker.stop()
    out = io.StringIO()
    report = doctor(bootstrap, timeout_s=1, file=out)
    assert not report.ok
    assert "✘ broker:" in out.getvalue()
    assert "labkit broker" in out.getvalue()


def test_dashboard_shows_offsets_and_records_per_second(shared_broker, unique_topic):
    admin = KafkaAdminClient(bootstrap_servers=shared_broker.bootstrap)
    admin.create_topics([NewTopic(unique_topic, num_partitions=2, replication_factor=1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=shared_broker.bootstrap)
    board = Dashboard(shared_broker.bootstrap, topics=[unique_topic], start=False, display=False)
    try:
        first = board.refresh()
        assert first.error is None, first.error
        assert [p.end for p in first.topic(unique_topic).partitions] == [0, 0]
        for i in range(30):
            producer.send(unique_topic, b"x", partition=i % 2)
        producer.flush()
        time.sleep(0.2)
        view = board.refresh()
        t = view.topic(unique_topic)
        assert [p.end for p in t.partitions] == [15, 15]
        assert t.records == 30
        assert t.rate > 0
        assert unique_topic in board.html()
    finally:
        board.stop()
        producer.close()


def test_live_plot_follows_a_topic_and_stops_cleanly(shared_broker, unique_topic):
    producer = KafkaProducer(bootstrap_servers=shared_broker.bootstrap)
    for i in range(20):
        producer.send(unique_topic, str(i).encode())
    producer.flush()
    plot = LivePlot("hist", bins=4, range=(0, 20), display=False)
    before = plot.png()
    plot.follow(
        unique_topic,
        value_fn=lambda r: int(r.value),
        from_beginning=True,
        bootstrap_servers=shared_broker.bootstrap,
    )
    deadline = time.monotonic() + 20
    while plot.model.total < 20 and time.monotonic() < deadline and plot.error is None:
        time.sleep(0.05)
    plot.stop()
    producer.close()
    assert plot.error is None
    assert plot.model.snapshot()[1] == [5, 5, 5, 5]
    assert plot.png() != before
    assert not [t for t in threading.enumerate() if t.name == "labkit-liveplot"]


def test_live_plot_follow_without_a_broker_reports_what_to_do(tmp_path):
    from labkit.testing.broker import free_port

    plot = LivePlot("bar", display=False)
    plot.follow("nowhere", bootstrap_servers=f"127.0.0.1:{free_port()}")
    deadline = time.monotonic() + 20
    while plot.running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not plot.running
    assert "labkit broker" in plot.error
    assert "doctor" in plot.error


def test_demo_notebook_passes_nbval(tmp_path, shared_broker):
    """What `labkit grade` does: pytest --nbval-lax, headless, every cell must run."""
    shutil.copy(DEMO, tmp_path / DEMO.name)
    env = dict(os.environ, LABKIT_BOOTSTRAP=shared_broker.bootstrap)
    env.pop("LABKIT_GRADING", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--nbval-lax",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(tmp_path),
            str(tmp_path / DEMO.name),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout
    assert "failed" not in proc.stdout
