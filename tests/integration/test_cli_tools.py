"""The console tools as a student runs them: installed scripts in subprocesses, against
the real broker process. Topic names come from ``unique_topic`` so the tests can share
one broker."""

from __future__ import annotations

import os
import pty
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from labkit.testing.broker import free_port

BIN = Path(sys.executable).parent
TIMEOUT_S = 60


def tool(name: str) -> list[str]:
    path = BIN / name
    if path.exists():
        return [str(path)]
    if name == "labkit":
        return [sys.executable, "-m", "labkit"]
    raise AssertionError(f"{path} is not installed; run `make venv` (pip install -e .)")


def clean_env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k != "LABKIT_BOOTSTRAP"}
    base["PYTHONUNBUFFERED"] = "1"
    base.update(extra)
    return base


def run(
    *args: str, stdin: bytes = b"", program: str = "labkit", environ: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run a tool to completion; output decoded as UTF-8 (replacement for bad bytes)."""
    result = subprocess.run(
        [*tool(program), *args],
        input=stdin,
        capture_output=True,
        timeout=TIMEOUT_S,
        env=environ or clean_env(),
    )
    return subprocess.CompletedProcess(
        result.args,
        result.returncode,
        result.stdout.decode("utf-8", errors="replace"),
        result.stderr.decode("utf-8", errors="replace"),
    )


@pytest.fixture
def kafka(shared_broker):
    """``kafka("topics", "--list")`` runs ``labkit topics --list --bootstrap-server <broker>``."""

    def call(command: str, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
        return run(command, *args, "--bootstrap-server", shared_broker.bootstrap, stdin=stdin)

    return call


def create(kafka, topic: str, partitions: int = 1) -> None:
    result = kafka("topics", "--create", "--topic", topic, "--partitions", str(partitions))
    assert result.returncode == 0, result.stderr


# -- topics -------------------------------------------------------------------------


def test_topic_lifecycle(kafka, unique_topic):
    t = unique_topic
    created = kafka(
        "topics",
        "--create",
        "--topic",
        t,
        "--partitions",
        "3",
        "--replication-factor",
        "1",
        "--config",
        "retention.ms=60000",
    )
    assert (created.returncode, created.stdout, created.stderr) == (0, f"Created topic {t}.\n", "")

    again = kafka("topics", "--create", "--topic", t, "--partitions", "3")
    assert again.returncode == 1
    # as Kafka's TopicCommand: the error on stdout; labkit's hint on stderr
    assert again.stdout == f"Error while executing topic command : Topic '{t}' already exists.\n"
    assert "--if-not-exists" in again.stderr
    quiet = kafka("topics", "--create", "--topic", t, "--if-not-exists")
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")

    listed = kafka("topics", "--list")
    assert listed.returncode == 0
    assert t in listed.stdout.splitlines()

    described = kafka("topics", "--describe", "--topic", t)
    assert described.returncode == 0, described.stderr
    lines = described.stdout.splitlines()
    assert re.fullmatch(
        rf"Topic: {t}\tTopicId: \S+\tPartitionCount: 3\tReplicationFactor: 1\t"
        r"Configs: (.*,)?retention\.ms=60000(,.*)?",
        lines[0],
    ), lines[0]
    assert len(lines) == 4
    for number, line in enumerate(lines[1:]):
        assert re.fullmatch(
            rf"\tTopic: {t}\tPartition: {number}\tLeader: \d+\tReplicas: \d+\t"
            r"Isr: \d+\tLogStartOffset: 0\tLogEndOffset: 0",
            line,
        ), line

    deleted = kafka("topics", "--delete", "--topic", t)
    assert (deleted.returncode, deleted.stdout) == (0, f"Deleted topic {t}.\n")
    assert t not in kafka("topics", "--list").stdout.splitlines()
    missing = kafka("topics", "--describe", "--topic", t)
    assert missing.returncode == 1
    assert (
        f"Error while executing topic command : Topic '{t}' does not exist as expected"
        in missing.stdout
    )
    assert kafka("topics", "--delete", "--topic", t, "--if-exists").returncode == 0


def test_alter_partitions_and_configs(kafka, unique_topic):
    t = unique_topic
    create(kafka, t, partitions=2)
    grown = kafka("topics", "--alter", "--topic", t, "--partitions", "4")
    assert grown.returncode == 0, grown.stderr
    shrink = kafka("topics", "--alter", "--topic", t, "--partitions", "3")
    assert shrink.returncode == 1
    assert "can only be increased" in shrink.stdout
    assert "currently has 4 partitions" in shrink.stdout

    configured = kafka("topics", "--alter", "--topic", t, "--config", "retention.ms=5000")
    assert configured.returncode == 0, configured.stderr
    header = kafka("topics", "--describe", "--topic", t).stdout.splitlines()[0]
    assert "PartitionCount: 4" in header
    assert "retention.ms=5000" in header

    reset = kafka("topics", "--alter", "--topic", t, "--delete-config", "retention.ms")
    assert reset.returncode == 0, reset.stderr
    header = kafka("topics", "--describe", "--topic", t).stdout.splitlines()[0]
    assert "retention.ms" not in header


def test_topic_errors_are_one_clear_line(kafka, unique_topic):
    bad_rf = kafka("topics", "--create", "--topic", unique_topic, "--replication-factor", "3")
    assert bad_rf.returncode == 1
    assert bad_rf.stdout.startswith("Error while executing topic command : ")
    assert "Traceback" not in bad_rf.stderr + bad_rf.stdout
    bad_name = kafka("topics", "--create", "--topic", "../escape")
    assert bad_name.returncode == 1
    assert "Traceback" not in bad_name.stderr
    usage = kafka("topics", "--create")
    assert usage.returncode == 2
    assert "--topic is required" in usage.stderr


def test_no_broker_is_a_clear_error_not_a_hang():
    port = free_port()
    result = run("topics", "--list", "--bootstrap-server", f"127.0.0.1:{port}")
    assert result.returncode == 1
    # kafka-topics.sh prints "Error while executing topic command : ..." on stdout
    assert result.stdout.startswith("Error while executing topic command : ")
    assert f"127.0.0.1:{port}" in result.stdout
    assert "Traceback" not in result.stderr + result.stdout


def test_bootstrap_defaults_to_labkit_bootstrap(shared_broker, unique_topic):
    environ = clean_env(LABKIT_BOOTSTRAP=shared_broker.bootstrap)
    assert run("topics", "--create", "--topic", unique_topic, environ=environ).returncode == 0
    assert unique_topic in run("topics", "--list", environ=environ).stdout.splitlines()


def test_kafka_script_names_are_installed(shared_broker, unique_topic):
    for name in (
        "labkit",
        "kafka-topics.sh",
        "kafka-console-producer.sh",
        "kafka-console-consumer.sh",
        "kafka-consumer-groups.sh",
    ):
        assert (BIN / name).exists(), f"{name} is missing from {BIN}; reinstall: pip install -e ."
    server = ("--bootstrap-server", shared_broker.bootstrap)
    assert (
        run("--create", "--topic", unique_topic, *server, program="kafka-topics.sh").returncode == 0
    )
    sent = run(
        "--topic", unique_topic, *server, stdin=b"hello\n", program="kafka-console-producer.sh"
    )
    assert sent.returncode == 0, sent.stderr
    got = run(
        "--topic",
        unique_topic,
        *server,
        "--from-beginning",
        "--max-messages",
        "1",
        program="kafka-console-consumer.sh",
    )
    assert (got.returncode, got.stdout) == (0, "hello\n")


# -- producer and consumer ------------------------------------------------------------


def test_keyed_lines_round_trip(kafka, unique_topic):
    t = unique_topic
    create(kafka, t)
    sent = kafka(
        "console-producer",
        "--topic",
        t,
        "--property",
        "parse.key=true",
        "--property",
        "key.separator=:",
        stdin=b"jan:45\nfeb:50\r\nbroken line\nmar:55\n",
    )
    assert sent.returncode == 1, "a rejected line makes the exit code 1"
    assert "No key separator found on line number 3: 'broken line'" in sent.stderr
    assert sent.stdout == "", "no prompt when stdin is not a terminal"

    got = kafka(
        "console-consumer",
        "--topic",
        t,
        "--from-beginning",
        "--max-messages",
        "3",
        "--property",
        "print.key=true",
        "--property",
        "key.separator=:",
    )
    assert got.returncode == 0, got.stderr
    assert got.stdout == "jan:45\nfeb:50\nmar:55\n"
    assert got.stderr.strip().endswith("Processed a total of 3 messages")


def test_full_formatter_line(kafka, unique_topic):
    t = unique_topic
    create(kafka, t)
    assert (
        kafka(
            "console-producer", "--topic", t, "--property", "parse.key=true", stdin=b"k\tv\n"
        ).returncode
        == 0
    )
    got = kafka(
        "console-consumer",
        "--topic",
        t,
        "--from-beginning",
        "--max-messages",
        "1",
        "--property",
        "print.timestamp=true",
        "--property",
        "print.partition=true",
        "--property",
        "print.offset=true",
        "--property",
        "print.key=true",
    )
    assert re.fullmatch(r"CreateTime:\d{13}\tPartition:0\tOffset:0\tk\tv\n", got.stdout), got.stdout


def test_partition_and_offset(kafka, unique_topic):
    t = unique_topic
    create(kafka, t)
    lines = b"".join(b"value-%d\n" % i for i in range(6))
    assert kafka("console-producer", "--topic", t, stdin=lines).returncode == 0
    got = kafka(
        "console-consumer",
        "--topic",
        t,
        "--partition",
        "0",
        "--offset",
        "4",
        "--max-messages",
        "2",
        "--property",
        "print.offset=true",
    )
    assert got.stdout == "Offset:4\tvalue-4\nOffset:5\tvalue-5\n", got.stderr
    earliest = kafka(
        "console-consumer",
        "--topic",
        t,
        "--partition",
        "0",
        "--offset",
        "earliest",
        "--max-messages",
        "1",
    )
    assert earliest.stdout == "value-0\n"
    no_such = kafka("console-consumer", "--topic", t, "--partition", "3", "--max-messages", "1")
    assert no_such.returncode == 2
    assert "has no partition 3" in no_such.stderr


def test_timeout_ms_ends_the_consumer(kafka, unique_topic):
    t = unique_topic
    create(kafka, t)
    assert kafka("console-producer", "--topic", t, stdin=b"a\nb\n").returncode == 0
    got = kafka("console-consumer", "--topic", t, "--from-beginning", "--timeout-ms", "1500")
    assert got.returncode == 0
    assert got.stdout == "a\nb\n"
    assert "Processed a total of 2 messages" in got.stderr


def test_values_are_printed_as_utf8_with_replacement(kafka, unique_topic):
    t = unique_topic
    create(kafka, t)
    assert (
        kafka(
            "console-producer", "--topic", t, stdin="zażółć\n".encode() + b"bad \xff byte\n"
        ).returncode
        == 0
    )
    got = kafka("console-consumer", "--topic", t, "--from-beginning", "--max-messages", "2")
    assert got.stdout == "zażółć\nbad \ufffd byte\n"


def test_ctrl_c_reports_the_count_and_exits_130(shared_broker, unique_topic):
    t = unique_topic
    proc = subprocess.Popen(
        [
            *tool("labkit"),
            "console-consumer",
            "--topic",
            t,
            "--bootstrap-server",
            shared_broker.bootstrap,
            "--from-beginning",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_env(),
    )
    try:
        sent = run(
            "console-producer",
            "--topic",
            t,
            "--bootstrap-server",
            shared_broker.bootstrap,
            stdin=b"first\n",
        )
        assert sent.returncode == 0, sent.stderr
        assert proc.stdout.readline() == b"first\n"
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert b"Processed a total of 1 messages" in err
    assert b"Traceback" not in err


def test_prompt_only_on_a_terminal(kafka, shared_broker, unique_topic):
    t = unique_topic
    create(kafka, t)
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [
            *tool("labkit"),
            "console-producer",
            "--topic",
            t,
            "--bootstrap-server",
            shared_broker.bootstrap,
        ],
        stdin=terminal,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_env(),
    )
    os.close(terminal)
    try:
        assert proc.stdout.read(1) == b">"
        os.write(controller, b"typed\n")
        assert proc.stdout.read(1) == b">"
        os.write(controller, b"\x04")  # Ctrl-D: end of input
        _out, err = proc.communicate(timeout=TIMEOUT_S)
    finally:
        os.close(controller)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    got = kafka("console-consumer", "--topic", t, "--from-beginning", "--max-messages", "1")
    assert got.stdout == "typed\n"


def test_consumer_exits_when_its_reader_goes_away(kafka, shared_broker, unique_topic):
    """`labkit console-consumer ... | head -1` must not wait forever on an idle topic."""
    t = unique_topic
    create(kafka, t)
    assert kafka("console-producer", "--topic", t, stdin=b"one\ntwo\n").returncode == 0
    proc = subprocess.Popen(
        [
            *tool("labkit"),
            "console-consumer",
            "--topic",
            t,
            "--bootstrap-server",
            shared_broker.bootstrap,
            "--from-beginning",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_env(),
    )
    try:
        assert proc.stdout.readline() == b"one\n"
        proc.stdout.close()
        err = proc.stderr.read()
        proc.wait(timeout=TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert proc.returncode == 0
    assert b"Traceback" not in err
    assert b"Processed a total of" in err


def test_group_continues_where_it_stopped(kafka, unique_topic):
    t = unique_topic
    create(kafka, t)
    assert kafka("console-producer", "--topic", t, stdin=b"1\n2\n3\n4\n").returncode == 0
    group = f"{t}-group"
    first = kafka(
        "console-consumer",
        "--topic",
        t,
        "--group",
        group,
        "--from-beginning",
        "--max-messages",
        "2",
    )
    assert first.stdout == "1\n2\n", first.stderr
    second = kafka(
        "console-consumer",
        "--topic",
        t,
        "--group",
        group,
        "--from-beginning",
        "--max-messages",
        "2",
    )
    assert second.stdout == "3\n4\n", "the group's committed offsets are where it restarts"


def test_include_reads_every_matching_topic(kafka, unique_topic):
    for suffix in ("a", "b"):
        create(kafka, f"{unique_topic}-{suffix}")
        sent = kafka(
            "console-producer", "--topic", f"{unique_topic}-{suffix}", stdin=suffix.encode() + b"\n"
        )
        assert sent.returncode == 0, sent.stderr
    got = kafka(
        "console-consumer",
        "--include",
        re.escape(unique_topic) + "-.*",
        "--from-beginning",
        "--max-messages",
        "2",
    )
    assert got.returncode == 0, got.stderr
    assert sorted(got.stdout.splitlines()) == ["a", "b"]
