"""Where a Connect worker finds Java and the jars (notebook 12's first check, `labkit
connect`): JAVA_HOME before PATH, LABKIT_APACHE_KAFKA_LIBS / LABKIT_KAFKA_CONNECT_LIBS before
the checkout's .cache; and when something is missing, a message that says how to get it on
the machine and in the Docker lab."""

from __future__ import annotations

import os
import stat

import pytest

from labkit.ecosystem import connect


@pytest.fixture
def jars(tmp_path, monkeypatch):
    """A fake installation: a java on a JAVA_HOME of its own, the two jar folders."""
    home = tmp_path / "jdk"
    (home / "bin").mkdir(parents=True)
    java = home / "bin" / "java"
    java.write_text("#!/bin/sh\n", encoding="utf-8")
    java.chmod(java.stat().st_mode | stat.S_IXUSR)
    kafka, files = tmp_path / "kafka-libs", tmp_path / "connect-libs"
    kafka.mkdir()
    files.mkdir()
    for jar in (kafka / "kafka_2.13-4.1.1.jar", kafka / "connect-runtime-4.1.1.jar"):
        jar.write_bytes(b"")
    (files / "connect-file-4.1.1.jar").write_bytes(b"")
    monkeypatch.setenv("JAVA_HOME", str(home))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no other java anywhere
    monkeypatch.setenv("LABKIT_APACHE_KAFKA_LIBS", str(kafka))
    monkeypatch.setenv("LABKIT_KAFKA_CONNECT_LIBS", str(files))
    return java, kafka, files


def test_java_home_and_the_two_folders_are_what_the_worker_uses(jars, tmp_path):
    java, kafka, files = jars
    assert connect.java_executable() == str(java)
    assert connect.classpath() == f"{kafka / '*'}{os.pathsep}{files / '*'}"
    line = connect.installation()
    for where in (java, kafka, files):
        assert str(where) in line
    worker = connect.ConnectWorker("localhost:9092", tmp_path / "work")
    command = worker.command()
    assert command[0] == str(java)
    # C1 only: on a 2-core lab machine C2's compiler threads made the start 3-5x slower
    assert "-XX:TieredStopAtLevel=1" in command


def test_without_java_home_java_comes_from_path(jars, tmp_path, monkeypatch):
    java, _, _ = jars
    monkeypatch.delenv("JAVA_HOME")
    monkeypatch.setenv("PATH", str(java.parent))
    assert connect.java_executable() == str(java)


@pytest.mark.parametrize("missing", ["java", "kafka", "connect-file"])
def test_what_is_missing_is_named_with_how_to_get_it(jars, monkeypatch, missing):
    _java, kafka, files = jars
    if missing == "java":
        monkeypatch.delenv("JAVA_HOME")
    else:
        for jar in (kafka if missing == "kafka" else files).iterdir():
            jar.unlink()
    with pytest.raises(connect.ConnectMissing) as caught:
        connect.installation()
    text = str(caught.value)
    named = {"java": "no Java found", "kafka": str(kafka), "connect-file": str(files)}[missing]
    assert named in text
    for way in ("make kafka-connect", "docker-compose --profile", "LABKIT_KAFKA_CONNECT_LIBS"):
        assert way in text


def test_stop_all_stops_the_workers_this_process_started(tmp_path, monkeypatch):
    """A notebook cell run twice, or a kernel that exits, must not leave a Java worker
    running (it has a session of its own, so nothing else would stop it)."""
    monkeypatch.setattr(connect.ConnectWorker, "command", lambda self: ["sleep", "60"])
    monkeypatch.setattr(connect.ConnectWorker, "_get", lambda self, path: {})  # "REST answers"
    first = connect.ConnectWorker("localhost:9092", tmp_path / "a", log_to_file=False).start()
    again = connect.ConnectWorker("localhost:9092", tmp_path / "a", log_to_file=False).start()
    processes = [first.proc, again.proc]
    first.stop()  # stopped by hand: stop_all leaves it alone
    assert connect.stop_all() == 1
    assert all(p.poll() is not None for p in processes)
    assert connect.stop_all() == 0
