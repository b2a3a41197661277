"""Two students on one broker: the same master notebook, run at the same time by
LABKIT_STUDENT=anna and LABKIT_STUDENT=bartek against one real broker, passes for both;
every topic and consumer group each creates carries their prefix; neither run deletes the
other's topics or groups, a third student's, or a private lab's unprefixed ones. Notebook
01 cleans up by prefix (every topic starting with nb.topic("nb01-")) and uses the console
tools; notebook 10 has a consumer group that both students' scoring services would share
without prefixes.

How it runs: as `labkit grade` and tests/integration/test_series_masters.py do, each
notebook is `pytest --nbval-lax` in its own process with LABKIT_GRADING=1 (a check that
does not pass fails its cell) and LABKIT_GRADE_LOG collecting the checks' results. While
both run, a watcher lists the broker's topics and groups every 100 ms, to see the names
they used.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbval")

from labkit import KafkaAdminClient, KafkaConsumer, NewTopic, OffsetAndMetadata, TopicPartition  # noqa: E402
from labkit.course import grading  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
MASTERS = ROOT / "instructor" / "masters"
STUDENTS = ("anna", "bartek")
# notebook -> (the topics and the groups it creates, unprefixed)
NOTEBOOKS = {
    "01_topics_and_console": ({"nb01-rta", "nb01-payments", "nb01-cli"}, set()),
    "10_fraud_pipeline": (
        {"nb10-transactions", "nb10-alerts", "nb10-enriched"},
        {"nb10-scoring-group", "nb10-enrichment-group"},
    ),
}

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def run_as(student: str, master: Path, bootstrap: str) -> tuple[int | None, str, list[dict]]:
    """Run ``master`` as ``student`` in shared mode; (returncode, output, check log lines)."""
    with tempfile.TemporaryDirectory(prefix=f"labkit-shared-{student}-") as tmp:
        work = Path(tmp)
        copy = work / master.name
        copy.write_bytes(master.read_bytes())
        (work / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
        log = work / "grade-log.jsonl"
        env = dict(
            os.environ,
            LABKIT_BOOTSTRAP=bootstrap,
            LABKIT_GRADE_LOG=str(log),
            LABKIT_GRADING="1",
            LABKIT_STUDENT=student,
            LABKIT_SHARED="1",
            MPLBACKEND="Agg",
            PYTHONUNBUFFERED="1",
            PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
        )
        env.pop("PYTEST_ADDOPTS", None)
        command = [
            sys.executable,
            "-m",
            "pytest",
            str(copy),
            "-c",
            str(work / "pytest.ini"),
            "--rootdir",
            str(work),
            "--noconftest",
            "-p",
            "no:cacheprovider",
            "-q",
            "--nbval-lax",
            "--nbval-current-env",
            "--nbval-cell-timeout=60",
            "--color=no",
        ]
        try:
            done = subprocess.run(
                command,
                cwd=work,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=400,
            )
            returncode, output = done.returncode, done.stdout + done.stderr
        except subprocess.TimeoutExpired as exc:
            returncode, output = None, f"killed after 400 s\n{exc.stdout or ''}"
        records = (
            [
                json.loads(line)
                for line in log.read_text(encoding="utf-8").splitlines()
                if line.strip()
            ]
            if log.exists()
            else []
        )
        return returncode, output, records


class Watcher:
    """Every topic and group name seen on the broker while it runs (a daemon thread polling)."""

    def __init__(self, bootstrap: str) -> None:
        self.topics: set[str] = set()
        self.groups: set[str] = set()
        self._stop = threading.Event()
        self._admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="watcher")
        self._thread = threading.Thread(target=self._run, name="topic-watcher", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.topics.update(self._admin.list_topics())
            self.groups.update(group for group, _ in self._admin.list_consumer_groups())

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._admin.close()


def others_names(names: set[str]) -> set[str]:
    """The same names as a third student's, and as a private lab's (unprefixed)."""
    return {f"celina.{name}" for name in names} | set(names)


def make_others(bootstrap: str, topics: set[str], groups: set[str]) -> None:
    with KafkaAdminClient(bootstrap_servers=bootstrap) as admin:
        admin.create_topics([NewTopic(name, 1, 1) for name in sorted(topics)])
    for group in sorted(groups):  # a group exists once it has committed an offset
        consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
        )
        tp = TopicPartition(sorted(topics)[0], 0)
        consumer.assign([tp])
        consumer.commit({tp: OffsetAndMetadata(0, "", -1)})
        consumer.close()


def prefixed(names: set[str], student: str) -> set[str]:
    return {f"{student}.{name}" for name in names}


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_two_students_run_the_same_notebook_at_once_on_one_broker(broker, name):
    master = MASTERS / f"{name}.ipynb"
    topics, groups = NOTEBOOKS[name]
    other_topics, other_groups = others_names(topics), others_names(groups)
    make_others(broker.bootstrap, other_topics, other_groups)

    with Watcher(broker.bootstrap) as watcher, ThreadPoolExecutor(len(STUDENTS)) as pool:
        runs = {}
        for student in STUDENTS:
            runs[student] = pool.submit(run_as, student, master, broker.bootstrap)
            time.sleep(1.0)  # bartek's clean-up cell runs while anna's topics exist
        results = {student: future.result() for student, future in runs.items()}

    wanted = grading.exercise_ids(nbformat.read(str(master), as_version=4))
    for student, (returncode, output, records) in results.items():
        tail = "\n".join(output.strip().splitlines()[-40:])
        assert returncode == 0, f"{student}'s run of {name} failed under nbval:\n{tail}"
        statuses = {r["exercise"]: r["status"] for r in records}
        assert statuses == dict.fromkeys(wanted, "PASS"), (student, statuses)

    ours = tuple(f"{student}." for student in STUDENTS)
    created_topics, created_groups = watcher.topics - other_topics, watcher.groups - other_groups
    for student in STUDENTS:
        assert prefixed(topics, student) <= created_topics
        assert prefixed(groups, student) <= created_groups
    strays = sorted(t for t in created_topics | created_groups if not t.startswith(ours))
    assert strays == [], f"topics or groups created without a student's prefix: {strays}"

    with KafkaAdminClient(bootstrap_servers=broker.bootstrap) as admin:
        left_topics = {t for t in admin.list_topics() if not t.startswith("__")}
        left_groups = {group for group, _ in admin.list_consumer_groups()}
    assert left_topics == other_topics, "each run deletes exactly its own topics, nobody else's"
    assert left_groups == other_groups, "each run deletes exactly its own groups, nobody else's"
