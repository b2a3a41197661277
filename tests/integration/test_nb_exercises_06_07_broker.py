"""Notebooks 06 and 07: the checks that ask the broker, run on the masters' own cells.

Each test executes the master's code cells in order in one namespace (as a kernel would;
cells with `!` shell lines are skipped), against a real broker, with `LABKIT_GRADE_LOG`
collecting what every `nb.check` printed. Then it does what a student does: runs an
exercise's cell with a wrong answer (the cell's source with one edit), sees it FAIL, runs
the original cell again and sees it PASS -- the re-run after a wrong first attempt. The
cheating answers from issue 18 (`{'a': sent, 'b': sent}`, `replayed = sent`) must FAIL.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

from labkit import KafkaProducer, nb  # noqa: E402
from labkit.nb import evaluate  # noqa: E402

MASTERS = Path(__file__).resolve().parents[2] / "instructor" / "masters"


class Notebook:
    """A master's code cells, run one by one in a shared namespace."""

    def __init__(self, name: str, log: Path) -> None:
        master = nbformat.read(str(MASTERS / f"{name}.ipynb"), as_version=4)
        self.cells = {c.id: c.source for c in master.cells if c.cell_type == "code"}
        self.order = list(self.cells)
        self.ns: dict = {"__name__": "__main__"}
        self.log = log

    def run(self, cell_id: str, *replace: tuple[str, str]) -> None:
        """Run one cell, after replacing (old, new) pairs in its source: a wrong answer."""
        source = self.cells[cell_id]
        for old, new in replace:
            assert old in source, f"{cell_id}: {old!r} is not in the cell any more"
            source = source.replace(old, new)
        exec(compile(source, f"<{cell_id}>", "exec"), self.ns)

    def run_until(self, last: str) -> None:
        """Every cell from the first through ``last`` (shell cells skipped)."""
        for cell_id in self.order:
            if not any(line.lstrip().startswith("!") for line in self.cells[cell_id].splitlines()):
                self.run(cell_id)
            if cell_id == last:
                return
        raise AssertionError(f"no cell {last!r}")

    def results(self, exercise: str) -> list[str]:
        """The statuses of every check of ``exercise`` so far, in order."""
        lines = self.log.read_text(encoding="utf-8").splitlines() if self.log.exists() else []
        records = [json.loads(line) for line in lines if line.strip()]
        return [r["status"] for r in records if r["exercise"] == exercise]

    def last_message(self, exercise: str) -> str:
        lines = self.log.read_text(encoding="utf-8").splitlines()
        messages = [json.loads(line) for line in lines if line.strip()]
        return [m["message"] for m in messages if m["exercise"] == exercise][-1]


@pytest.fixture
def lab(shared_broker, tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_BOOTSTRAP", shared_broker.bootstrap)
    monkeypatch.setenv("LABKIT_GRADE_LOG", str(tmp_path / "grade-log.jsonl"))
    for name in ("LABKIT_GRADING", "LABKIT_STUDENT", "LABKIT_SHARED"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebooks: list[Notebook] = []

    def open_notebook(name: str) -> Notebook:
        notebooks.append(Notebook(name, tmp_path / "grade-log.jsonl"))
        return notebooks[-1]

    yield open_notebook
    for book in notebooks:
        _close(book.ns)


def _close(ns: dict) -> None:
    """Close what the cells opened, delete what they created (their clean-up cell, roughly)."""
    nb.stop_all()
    admin = ns.get("admin")
    for name in ("consumer", "reader", "producer", "probe"):
        client = ns.get(name)
        if client is not None and hasattr(client, "close"):
            client.close()
    if admin is not None:
        topics = [ns[n] for n in ("TOPIC", "PAYMENTS", "SHORT", "CARDS") if n in ns]
        groups = [g for g in ns.get("GROUPS", [ns.get("GROUP")]) if g]
        admin.delete_consumer_groups(groups)
        admin.delete_topics([t for t in topics if t in admin.list_topics()])
        admin.close()


# -- 06.1 -------------------------------------------------------------------------------------


def test_06_1_rerun_after_a_first_run_without_earliest_passes(lab):
    book = lab("06_consumer_groups")
    book.run_until("send")
    # the first try forgets auto_offset_reset: the new groups start at the end, read nothing,
    # and close() commits the end offsets
    book.run("ex-06-1", ('auto_offset_reset="earliest"', 'auto_offset_reset="latest"'))
    assert book.results("06.1") == ["FAIL"]
    assert "read 0 of 120 records" in book.last_message("06.1")
    assert "auto_offset_reset='earliest'" in book.last_message("06.1")
    assert "nb.reset('06.1')" in book.last_message("06.1")  # offered, and it works
    nb.reset("06.1")
    book.run("ex-06-1")  # fixed, run again: the cell starts both groups afresh
    assert book.results("06.1") == ["FAIL", "PASS"]
    book.run("ex-06-1")  # and a third run still passes
    assert book.results("06.1") == ["FAIL", "PASS", "PASS"]


def test_06_1_answers_not_read_from_the_broker_fail(lab):
    book = lab("06_consumer_groups")
    book.run_until("ex-06-1")
    ns = book.ns
    topic, sent, read = ns["TOPIC"], ns["sent"], ns["read"]
    assert evaluate("06.1", read, topic=topic).status == "PASS"

    cheat = evaluate("06.1", {"a": sent, "b": sent}, topic=topic)
    assert cheat.status == "FAIL", cheat.line
    assert "ConsumerRecords themselves" in cheat.line
    # real records, but under groups that never read (or committed) anything
    records = read[ns["FRAUD"]]
    renamed = evaluate("06.1", {"a": records, "b": records}, topic=topic)
    assert renamed.status == "FAIL", renamed.line
    assert "committed no offset" in renamed.line, renamed.line
    # one group's records handed in twice: the second group read only part of the topic
    half = {ns["FRAUD"]: records, ns["REPORTING"]: records[:40]}
    assert "read 40 of 120 records" in evaluate("06.1", half, topic=topic).line


# -- 07.1 - 07.4 --------------------------------------------------------------------------


def test_07_exercises_fail_wrong_answers_and_pass_when_run_again(lab):
    book = lab("07_retention_and_replay")
    book.run_until("first-read")
    ns = book.ns

    # 07.1: forgot to seek -> nothing replayed; then the real cell
    book.run("ex-07-1", ("consumer.seek_to_beginning(tp)\n", ""))
    assert "30 of 30 records not replayed" in book.last_message("07.1")
    book.run("ex-07-1")
    assert book.results("07.1") == ["FAIL", "PASS"]
    cheat = evaluate("07.1", ns["sent"], topic=ns["PAYMENTS"], earlier=ns["first"])
    assert cheat.status == "FAIL", cheat.line
    assert "ConsumerRecords themselves" in cheat.line, cheat.line
    again = evaluate("07.1", ns["first"], topic=ns["PAYMENTS"], earlier=ns["first"])
    assert again.status == "FAIL", again.line
    assert "records of the first read" in again.line, again.line

    # 07.2: seeking to the beginning instead of the offset for since_ms; then the real cell
    book.run("seek")
    book.run("ex-07-2", ("consumer.seek(tp, found.offset)", "consumer.seek(tp, 0)"))
    assert "starts at offset 0, before since_ms" in book.last_message("07.2")
    book.run("ex-07-2")
    assert book.results("07.2") == ["FAIL", "PASS"]
    assert ns["since"][0].offset == 20
    sent_since = evaluate("07.2", ns["sent"][20:], topic=ns["PAYMENTS"], since_ms=ns["since_ms"])
    assert sent_since.status == "FAIL", sent_since.line

    # 07.3: retention runs (a few seconds); predicting offset 0 and the last record's offset
    for cell in ("create-short", "wait-retention", "retention-hidden", "freeze-retention"):
        book.run(cell)
    wrong = 'predicted = {"earliest": 0, "latest": 59}\n'
    solution = book.cells["ex-07-3"]
    begin, end = solution.index("predicted = {"), solution.index("### END SOLUTION")
    book.run("ex-07-3", (solution[begin:end], wrong))
    assert "cannot continue at offset 0" in book.last_message("07.3")
    off_by_one = 'predicted = {"earliest": log_start, "latest": 59}\n'
    book.run("ex-07-3", (solution[begin:end], off_by_one))
    assert "the offset of the last record" in book.last_message("07.3")
    book.run("ex-07-3")
    book.run("reset")
    book.run("reset-hidden")  # the broker did what was predicted
    assert book.results("07.3") == ["FAIL", "FAIL", "PASS"]

    # 07.4: the course's JSON serializer writes b"null" for None (kafka-python does): FAIL,
    # then the cell with json_or_tombstone writes a real tombstone after it: PASS
    book.run("compact-create")
    book.run(
        "ex-07-4",
        ("value_serializer=json_or_tombstone", "value_serializer=nb.json_serializer"),
        ('nb.check("07.4", json_or_tombstone', 'nb.check("07.4", nb.json_serializer'),
    )
    assert "b'null'" in book.last_message("07.4")
    book.run("ex-07-4")
    assert book.results("07.4") == ["FAIL", "PASS"]


def test_07_4_the_broker_must_hold_a_null_value_not_the_bytes_null(lab, unique_topic):
    from labkit import KafkaAdminClient, NewTopic

    bootstrap = nb.bootstrap_servers()
    with KafkaAdminClient(bootstrap_servers=bootstrap) as admin:
        admin.create_topics([NewTopic(unique_topic, num_partitions=1, replication_factor=1)])
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    producer.send(unique_topic, key=b"u03", value=b'{"spent": 1.0}')
    producer.send(unique_topic, key=b"u03", value=b"null")  # what json.dumps(None) gives
    producer.flush()

    def right(value):
        return None if value is None else json.dumps(value).encode("utf-8")

    try:
        result = evaluate("07.4", right, topic=unique_topic, key=b"u03")
        assert result.status == "FAIL", result.line
        assert "value b'null'" in result.line, result.line
        producer.send(unique_topic, key=b"u03", value=None)  # a real tombstone
        producer.flush()
        assert evaluate("07.4", right, topic=unique_topic, key=b"u03").status == "PASS"
        missing = evaluate("07.4", right, topic=unique_topic, key=b"u99")
        assert "no record with the key b'u99'" in missing.line
    finally:
        producer.close()
        with KafkaAdminClient(bootstrap_servers=bootstrap) as admin:
            admin.delete_topics([unique_topic])
