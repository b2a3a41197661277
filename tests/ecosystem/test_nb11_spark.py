"""Notebook 11's Spark section, run for real. The series' nbval runs (and `labkit grade`)
skip its two cells (tag ``nbval-skip``: Spark's start costs 15-30 s, four notebook runs in
CI would add minutes); here the English master runs whole, once, in a Jupyter kernel
against a labkit broker, with pyspark 4.2.0 and the connector's jars of `make spark-kafka`:
Spark's windowed count per store must agree with every window quixstreams closed. The
skip message without Spark is tested in tests/unit/test_nb11_spark_skip.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(600),
    # authlib (under quixstreams, in the kernel's process) warns about httpx on import
    pytest.mark.filterwarnings("ignore:The httpx module is deprecated"),
]

MASTER = (
    Path(__file__).resolve().parents[2] / "instructor" / "masters" / "11_stream_processing.ipynb"
)


def test_the_spark_section_runs_and_agrees_with_quixstreams(shared_broker, tmp_path, monkeypatch):
    from labkit.ecosystem.spark import connector_jars

    connector_jars()  # fails (not skips) with what to run when pyspark, Java or the jars are missing
    monkeypatch.setenv("LABKIT_BOOTSTRAP", shared_broker.bootstrap)
    monkeypatch.setenv("LABKIT_GRADING", "1")  # a check that does not pass raises in its cell
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.delenv("LABKIT_GRADE_LOG", raising=False)
    notebook = nbformat.read(str(MASTER), as_version=4)
    spark_cells = [c for c in notebook.cells if "nbval-skip" in c.metadata.get("tags", [])]
    assert len(spark_cells) == 2

    client = nbclient.NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute(env=dict(os.environ))

    output = "".join(
        out.get("text", "") for out in spark_cells[1].outputs if out.output_type == "stream"
    )
    assert "Skipping" not in "".join(o.get("text", "") for o in spark_cells[0].outputs)
    assert "Spark wrote" in output, output
    # "Spark wrote N windows; M of quixstreams' K have the same count": all K agree
    words = output.split()
    same, quix = int(words[4]), int(words[7].rstrip("'"))
    assert same == quix > 20, output
