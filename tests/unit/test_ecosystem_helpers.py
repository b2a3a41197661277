"""The ecosystem helpers' pure parts: connector configs, `labkit connect`'s flags,
the worker's properties and which connector jars go on Spark's classpath."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from labkit.cli import connect_cmd
from labkit.cli._common import UsageError
from labkit.ecosystem import spark
from labkit.ecosystem.connect import ConnectWorker, file_source, read_properties


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    connect_cmd.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_file_flags_become_connectors(tmp_path):
    args = parse("--file-source", "data/tx.jsonl:transactions", "--file-sink", "alerts:out.txt")
    source, sink = connect_cmd.connectors(args)
    assert source["name"] == "file-source-transactions"
    assert source["connector.class"] == "FileStreamSource"
    assert source["topic"] == "transactions"
    assert source["file"] == str(Path("data/tx.jsonl").resolve())
    assert (sink["name"], sink["topics"], sink["connector.class"]) == (
        "file-sink-alerts",
        "alerts",
        "FileStreamSink",
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["--file-source", "no-topic"],
        ["--file-sink", ":out.txt"],
        ["--file-source", "a.jsonl:t", "--file-source", "b.jsonl:t"],  # one name twice
        [],  # nothing to run in standalone mode
    ],
)
def test_bad_connector_flags_are_usage_errors(argv):
    with pytest.raises(UsageError):
        connect_cmd.connectors(parse(*argv))


def test_properties_files_are_read_and_checked(tmp_path):
    good = tmp_path / "good.properties"
    good.write_text("# a comment\nname=x\nconnector.class=FileStreamSource\nfile = a.txt\n")
    assert read_properties(good) == {
        "name": "x",
        "connector.class": "FileStreamSource",
        "file": "a.txt",
    }
    bad = tmp_path / "bad.properties"
    bad.write_text("connector.class=FileStreamSource\n")
    with pytest.raises(UsageError, match="needs `name=`"):
        connect_cmd.connectors(parse(str(bad)))


def test_worker_properties_by_mode(tmp_path):
    standalone = ConnectWorker("h:1", tmp_path, [file_source("s", "f", "t")], rest_port=1234)
    props = standalone.worker_properties()
    assert props["bootstrap.servers"] == "h:1"
    assert props["offset.storage.file.filename"] == str((tmp_path / "connect.offsets").resolve())
    assert props["listeners"] == "http://127.0.0.1:1234"
    assert "group.id" not in props
    distributed = ConnectWorker("h:1", tmp_path, mode="distributed", group_id="g")
    props = distributed.worker_properties()
    assert props["group.id"] == "g"
    assert [props[f"{kind}.storage.topic"] for kind in ("config", "offset", "status")] == [
        "g-configs",
        "g-offsets",
        "g-status",
    ]
    assert "offset.storage.file.filename" not in props
    with pytest.raises(ValueError, match="standalone"):
        ConnectWorker("h:1", tmp_path, mode="cluster")


def test_spark_classpath_leaves_out_what_pyspark_ships(tmp_path):
    cache, shipped = tmp_path / "cache", tmp_path / "pyspark-jars"
    cache.mkdir()
    shipped.mkdir()
    for name in [
        "spark-sql-kafka-0-10_2.13-4.2.0.jar",
        "kafka-clients-3.9.2.jar",
        "commons-pool2-2.13.1.jar",
        "lz4-java-1.10.1.jar",
    ]:
        (cache / name).write_bytes(b"")
    for name in ["lz4-java-1.11.0.jar", "scala-library-2.13.18.jar", "spark-sql_2.13-4.2.0.jar"]:
        (shipped / name).write_bytes(b"")
    assert [jar.name for jar in spark.select_jars(cache, shipped)] == [
        "commons-pool2-2.13.1.jar",
        "kafka-clients-3.9.2.jar",
        "spark-sql-kafka-0-10_2.13-4.2.0.jar",
    ]


def test_spark_without_the_connector_says_which_make_target(tmp_path):
    with pytest.raises(spark.SparkMissing, match="make spark-kafka"):
        spark.select_jars(tmp_path, tmp_path)
