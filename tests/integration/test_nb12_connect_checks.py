"""Notebook 12's broker-checked exercises (12.3 alerts through the sink, 12.4 a restart that
sends nothing twice) against a real broker. The checks judge what Connect left in the topics
and the files; here a producer and plain file writes stand in for the connectors (the real
worker runs in the notebook's nbval run and in tests/ecosystem/test_connect.py), so each
thing a worker can get wrong is made on purpose: a source started without its offsets (every
line twice), one that restarts mid-line (a non-ASCII file), a sink that has not caught up."""

from __future__ import annotations

import itertools
import json
import time
from collections import namedtuple

import pytest

from labkit import KafkaAdminClient, KafkaConsumer, KafkaProducer, NewTopic, nb
from labkit.course.exercises._ref import alert_line

COUNT, MORE = 40, 10  # as notebook 12 has them
_students = itertools.count()


@pytest.fixture
def lab(monkeypatch, shared_broker, tmp_path):
    """A student of their own on the shared test broker, with notebook 12's two topics."""
    monkeypatch.setenv("LABKIT_BOOTSTRAP", shared_broker.bootstrap)
    monkeypatch.setenv("LABKIT_STUDENT", f"connect{next(_students)}-{time.monotonic_ns()}")
    monkeypatch.delenv("LABKIT_SHARED", raising=False)
    monkeypatch.delenv("LABKIT_GRADING", raising=False)
    monkeypatch.delenv("LABKIT_GRADE_LOG", raising=False)
    topics = [nb.topic("nb12-transactions"), nb.topic("nb12-alerts")]
    admin = KafkaAdminClient(bootstrap_servers=nb.bootstrap_servers())
    admin.create_topics([NewTopic(t, num_partitions=1, replication_factor=1) for t in topics])
    yield tmp_path
    admin.delete_topics(topics)
    admin.close()


def transactions() -> list[dict]:
    """Notebook 12's transactions: at least one over 3000 PLN among the first COUNT."""
    found = list(nb.transactions(seed=14, count=COUNT + MORE, suspicious_share=0.4))
    assert any(tx["amount"] > 3000 for tx in found[:COUNT])
    return found


def send(topic: str, values: list[str]) -> None:
    producer = KafkaProducer(bootstrap_servers=nb.bootstrap_servers(), value_serializer=str.encode)
    for value in values:
        producer.send(nb.topic(topic), value)
    producer.close()


def read_back(topic: str) -> list:
    reader = KafkaConsumer(
        nb.topic(topic),
        bootstrap_servers=nb.bootstrap_servers(),
        auto_offset_reset="earliest",
        consumer_timeout_ms=1500,
    )
    records = list(reader)
    reader.close()
    return records


def write_lines(path, lines: list[str]) -> None:
    with path.open("a", encoding="utf-8") as out:
        out.write("".join(line + "\n" for line in lines))


def large_alerts(txs: list[dict]) -> list[str]:
    return [alert_line(tx) for tx in txs if tx["amount"] > 3000]


# -- 12.3 alerts through the sink --------------------------------------------------------


def test_12_3_the_alerts_in_the_topic_and_in_the_file_pass(lab):
    txs = transactions()[:COUNT]
    send("nb12-transactions", [json.dumps(tx) for tx in txs])
    send("nb12-alerts", large_alerts(txs))
    alerts_file = lab / "alerts.txt"
    write_lines(alerts_file, large_alerts(txs))  # what the sink writes
    written = alerts_file.read_text(encoding="utf-8").splitlines()
    result = nb.evaluate("12.3", written, file=str(alerts_file))
    assert result.status == "PASS", result.line


@pytest.mark.parametrize(
    ("alerts", "in_file", "hint"),
    [
        ("all", "none", "there is no file"),
        ("all", "half", "the sink has written"),
        ("twice", "all", "times: send each alert once"),
        ("none", "none", "missing from the alerts topic"),
        ("over-1000", "all", "which is not the alert line of a transaction over 3000 PLN"),
    ],
)
def test_12_3_what_the_check_sees_on_the_broker_and_on_the_disk(lab, alerts, in_file, hint):
    txs = transactions()[:COUNT]
    send("nb12-transactions", [json.dumps(tx) for tx in txs])
    wanted = large_alerts(txs)
    on_topic = {
        "all": wanted,
        "twice": wanted + wanted[:1],
        "none": [],
        "over-1000": [alert_line(tx) for tx in txs if tx["amount"] > 1000],
    }[alerts]
    send("nb12-alerts", on_topic)
    alerts_file = lab / "alerts.txt"
    if in_file != "none":
        write_lines(alerts_file, on_topic if in_file == "all" else on_topic[: len(on_topic) // 2])
    result = nb.evaluate("12.3", list(wanted), file=str(alerts_file))
    assert result.status == "FAIL"
    assert hint in result.line


def test_12_3_lines_that_are_not_the_files_fail(lab):
    txs = transactions()[:COUNT]
    send("nb12-transactions", [json.dumps(tx) for tx in txs])
    send("nb12-alerts", large_alerts(txs))
    alerts_file = lab / "alerts.txt"
    write_lines(alerts_file, large_alerts(txs))
    result = nb.evaluate("12.3", large_alerts(txs)[:-1], file=str(alerts_file))
    assert result.status == "FAIL"
    assert "the lines you hand in are not the file's" in result.line
    assert nb.evaluate("12.3", ..., file=str(alerts_file)).status == "NOT ATTEMPTED"


# -- 12.4 a restart sends nothing twice --------------------------------------------------


def file_of(lab, txs: list[dict], *, ascii_only: bool = True):
    path = lab / "transactions.jsonl"
    write_lines(path, [json.dumps(tx, ensure_ascii=ascii_only) for tx in txs])
    return path


def test_12_4_every_line_once_passes(lab):
    txs = transactions()
    path = file_of(lab, txs)
    send("nb12-transactions", path.read_text(encoding="utf-8").splitlines())
    result = nb.evaluate("12.4", read_back("nb12-transactions"), file=str(path), first=COUNT)
    assert result.status == "PASS", result.line


def test_12_4_a_worker_started_without_its_offsets_sends_the_file_again(lab):
    txs = transactions()
    path = file_of(lab, txs)
    lines = path.read_text(encoding="utf-8").splitlines()
    send("nb12-transactions", lines[:COUNT] + lines)  # the second run read from the top
    result = nb.evaluate("12.4", read_back("nb12-transactions"), file=str(path), first=COUNT)
    assert result.status == "FAIL"
    assert "the same WORK_DIR" in result.line


def test_12_4_a_source_that_restarts_mid_line_is_explained(lab):
    """FileStreamSource (Kafka 4.1.1) stores a position in characters and skips that many
    bytes on restart: with UTF-8 letters in the file it starts inside a line."""
    txs = transactions()
    path = file_of(lab, txs, ascii_only=False)
    raw = path.read_bytes()
    lines = raw.decode("utf-8").splitlines()
    chars_sent = sum(len(line) + 1 for line in lines[:COUNT])
    tail = raw[chars_sent:].decode("utf-8", "replace").splitlines()  # what the restart reads
    assert tail[0] not in lines  # a piece of a line
    send("nb12-transactions", lines[:COUNT] + tail)
    result = nb.evaluate("12.4", read_back("nb12-transactions"), file=str(path), first=COUNT)
    assert result.status == "FAIL"
    assert "json.dumps(tx), without ensure_ascii=False" in result.line


@pytest.mark.parametrize(
    ("appended", "sent", "hint"),
    [
        (False, COUNT, "still has only its first 40 lines"),
        (True, COUNT, "is the worker running again"),
    ],
)
def test_12_4_a_file_not_appended_or_a_worker_not_restarted_fails(lab, appended, sent, hint):
    txs = transactions() if appended else transactions()[:COUNT]
    path = file_of(lab, txs)
    send("nb12-transactions", path.read_text(encoding="utf-8").splitlines()[:sent])
    result = nb.evaluate("12.4", read_back("nb12-transactions"), file=str(path), first=COUNT)
    assert result.status == "FAIL"
    assert hint in result.line


def test_12_4_records_read_too_early_or_made_up_fail(lab):
    txs = transactions()
    path = file_of(lab, txs)
    lines = path.read_text(encoding="utf-8").splitlines()
    send("nb12-transactions", lines[:COUNT])
    early = read_back("nb12-transactions")
    send("nb12-transactions", lines[COUNT:])
    result = nb.evaluate("12.4", early, file=str(path), first=COUNT)
    assert result.status == "FAIL"
    assert "read it again from the beginning" in result.line
    Record = namedtuple("Record", "topic partition offset key value")
    fake = [
        Record(nb.topic("nb12-transactions"), 0, 100 + n, None, v.encode())
        for n, v in enumerate(lines)
    ]
    assert nb.evaluate("12.4", fake, file=str(path), first=COUNT).status == "FAIL"
