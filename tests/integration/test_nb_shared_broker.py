"""Two students on one broker: the same master notebook, run at the same time by
LABKIT_STUDENT=anna and LABKIT_STUDENT=bartek against one real broker, passes for both;
every topic each creates carries their prefix; neither run deletes the other's topics, a
third student's, or a private lab's unprefixed ones.

How it runs: as `labkit grade` and tests/integration/test_series_masters.py do, each
notebook is `pytest --nbval-lax` in its own process with LABKIT_GRADING=1 (a check that
does not pass fails its cell) and LABKIT_GRADE_LOG collecting the checks' results. While
both run, a watcher lists the broker's topics every 100 ms, to see the names they used.
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

pytest.importorskip("nbval")

from labkit import KafkaAdminClient, NewTopic  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
MASTER = ROOT / "instructor" / "masters" / "01_topics_and_console.ipynb"
STUDENTS = ("anna", "bartek")
# names that belong to others: a third student, and a private lab's unprefixed topic
OTHERS = ("celina.nb01-rta", "celina.nb01-payments", "nb01-rta")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def run_as(student: str, bootstrap: str) -> tuple[int | None, str, list[dict]]:
    """Run the master as ``student`` in shared mode; (returncode, output, check log lines)."""
    with tempfile.TemporaryDirectory(prefix=f"labkit-shared-{student}-") as tmp:
        work = Path(tmp)
        copy = work / MASTER.name
        copy.write_bytes(MASTER.read_bytes())
        (work / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
        log = work / "grade-log.jsonl"
        env = dict(os.environ, LABKIT_BOOTSTRAP=bootstrap, LABKIT_GRADE_LOG=str(log),
                   LABKIT_GRADING="1", LABKIT_STUDENT=student, LABKIT_SHARED="1",
                   MPLBACKEND="Agg", PYTHONUNBUFFERED="1",
                   PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
        env.pop("PYTEST_ADDOPTS", None)
        command = [sys.executable, "-m", "pytest", str(copy), "-c", str(work / "pytest.ini"),
                   "--rootdir", str(work), "--noconftest", "-p", "no:cacheprovider", "-q",
                   "--nbval-lax", "--nbval-current-env", "--nbval-cell-timeout=60", "--color=no"]
        try:
            done = subprocess.run(command, cwd=work, env=env, stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=400)
            returncode, output = done.returncode, done.stdout + done.stderr
        except subprocess.TimeoutExpired as exc:
            returncode, output = None, f"killed after 400 s\n{exc.stdout or ''}"
        records = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()
                   if line.strip()] if log.exists() else []
        return returncode, output, records


class TopicWatcher:
    """Every topic name seen on the broker while it runs (a daemon thread polling)."""

    def __init__(self, bootstrap: str) -> None:
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="watcher")
        self._thread = threading.Thread(target=self._run, name="topic-watcher", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.seen.update(self._admin.list_topics())

    def __enter__(self) -> TopicWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._admin.close()


def test_two_students_run_the_same_notebook_at_once_on_one_broker(broker):
    with KafkaAdminClient(bootstrap_servers=broker.bootstrap) as admin:
        admin.create_topics([NewTopic(name, 1, 1) for name in OTHERS])

    with TopicWatcher(broker.bootstrap) as watcher, ThreadPoolExecutor(len(STUDENTS)) as pool:
        runs = {}
        for student in STUDENTS:
            runs[student] = pool.submit(run_as, student, broker.bootstrap)
            time.sleep(1.0)  # bartek's clean-up cell runs while anna's topics exist
        results = {student: future.result() for student, future in runs.items()}

    for student, (returncode, output, records) in results.items():
        tail = "\n".join(output.strip().splitlines()[-40:])
        assert returncode == 0, f"{student}'s run failed under nbval:\n{tail}"
        statuses = {r["exercise"]: r["status"] for r in records}
        assert statuses == {"01.1": "PASS", "01.2": "PASS"}, (student, statuses)

    created = watcher.seen - set(OTHERS)
    for student in STUDENTS:
        mine = {t for t in created if t.startswith(f"{student}.")}
        assert {f"{student}.nb01-rta", f"{student}.nb01-payments", f"{student}.nb01-cli"} <= mine
    strays = sorted(t for t in created if not t.startswith(tuple(f"{s}." for s in STUDENTS)))
    assert strays == [], f"topics created without a student's prefix: {strays}"

    with KafkaAdminClient(bootstrap_servers=broker.bootstrap) as admin:
        left = {t for t in admin.list_topics() if not t.startswith("__")}
    assert left == set(OTHERS), "each run deletes exactly its own topics, nobody else's"
