"""Notebook 11's Spark section without Spark: its two cells (both languages' masters and
student versions) print what is missing and how to get it, and raise nothing. Here the
connector's jars are missing (an empty LABKIT_SPARK_KAFKA_JARS folder); without pyspark
or Java the same cells name those instead (labkit.ecosystem.spark.connector_jars)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = {
    "instructor/masters/11_stream_processing.ipynb": "Skipping the Spark section",
    "instructor/masters/pl/11_stream_processing.ipynb": "Pomijam część o Sparku",
    "notebooks/11_stream_processing.ipynb": "Skipping the Spark section",
    "notebooks/pl/11_stream_processing.ipynb": "Pomijam część o Sparku",
}


@pytest.mark.parametrize("path", sorted(NOTEBOOKS))
def test_without_the_connector_the_spark_cells_say_what_to_run(path, tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_SPARK_KAFKA_JARS", str(tmp_path))  # no jars in it
    notebook = nbformat.read(str(ROOT / path), as_version=4)
    cells = [c.source for c in notebook.cells if "nbval-skip" in c.metadata.get("tags", [])]
    assert len(cells) == 2
    namespace: dict = {"BOOTSTRAP": "localhost:1", "TX_TOPIC": "unused"}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        for source in cells:
            exec(compile(source, path, "exec"), namespace)
    assert namespace["spark"] is None
    text = printed.getvalue()
    assert NOTEBOOKS[path] in text
    assert "make spark-kafka" in text  # the missing piece, from labkit.ecosystem.spark
    assert "make streams spark-kafka" in text  # everything the section needs
