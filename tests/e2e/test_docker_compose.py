"""`docker-compose up` end to end: build, health, a notebook against the broker service,
what is reachable from where, and what survives `down` + `up`.

Runs on a temporary copy of the repository (its own ./notebooks, its own compose
project name and volumes), so the real checkout and a student's running lab are never
touched; `down -v` always runs at the end. The ports are the defaults (9092/8888) when
they are free, else free ones via LABKIT_BROKER_PORT / LABKIT_LAB_PORT, chosen after the
build (minutes): a port found free before it may be taken by the time `up` publishes it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from e2e_helpers import (
    REPO,
    compose_commands,
    connect_error,
    free_port,
    own_non_loopback_ipv4,
    wait_until,
)

pytestmark = [
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.timeout(1500),
    pytest.mark.usefixtures("kafka_python_garbage"),
]

BUILD_TIMEOUT_S = 900
HEALTH_TIMEOUT_S = 180
NOTEBOOK_UID = 1234  # the ./notebooks owner when the test runs as root: not 1000, not 0
COPY_IGNORE = shutil.ignore_patterns(
    ".venv",
    "venv",
    ".git",
    "data",
    "__pycache__",
    "*.pyc",
    ".pytest_cache",
    ".ruff_cache",
    "*.egg-info",
    "build",
    ".ipynb_checkpoints",
    "benchmarks",
)


# Masters that need Java (Kafka Connect's worker): the default lab image has none; they run
# in the Java lab (`--profile spark`, tests/e2e/test_docker_spark_profile.py).
NEEDS_JAVA = ("12_connect.ipynb",)
# Notebook 13 starts ZooKeeper (Java, the jars of `make zookeeper`) and three brokers it kills:
# no lab image has the jars; it runs in tests/integration/test_series_masters.py.
NEEDS_ZOOKEEPER = ("13_replication_and_failover.ipynb",)


def instructor_masters(java: bool = False) -> list[Path]:
    """The notebook series' solution masters (those needing Java only with ``java``); the
    grading example until the series exists."""
    for folder in (REPO / "instructor" / "masters", REPO / "instructor" / "examples"):
        found = sorted(
            p
            for p in folder.glob("*.ipynb")
            if (java or p.name not in NEEDS_JAVA) and p.name not in NEEDS_ZOOKEEPER
        )
        if found:
            return found
    return []


class Compose:
    """One compose project on a copy of the repo, driven through one compose CLI."""

    def __init__(self, cli: list[str], workdir: Path, env: dict[str, str]):
        self.cli, self.workdir, self.env = cli, workdir, env
        self.project = "labkit-e2e-" + secrets.token_hex(4)

    def run(self, *args: str, timeout: float = 300, check: bool = True) -> str:
        result = subprocess.run(
            [*self.cli, "-p", self.project, *args],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            pytest.fail(
                f"`{' '.join(self.cli)} {' '.join(args)}` failed "
                f"({result.returncode}):\n{result.stdout}\n{result.stderr}\n"
                f"logs:\n{self.logs()}",
                pytrace=False,
            )
        return result.stdout + result.stderr

    def build_then_choose_ports(self, *services: str) -> None:
        """Build the images, then choose the host ports `up` will publish."""
        self.run("build", *services, timeout=BUILD_TIMEOUT_S)
        self.env.update(
            LABKIT_BROKER_PORT=str(free_port(9092)),
            LABKIT_ZMQ_PORT=str(free_port(9192)),
            LABKIT_LAB_PORT=str(free_port(8888)),
        )

    def logs(self, service: str = "") -> str:
        result = subprocess.run(
            [*self.cli, "-p", self.project, "logs", "--no-color", *([service] if service else [])],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return result.stdout + result.stderr

    def health(self, service: str) -> str:
        cid = self.run("ps", "-q", service).strip()
        if not cid:
            return "missing"
        out = subprocess.run(
            [
                "docker",
                "inspect",
                "--format",
                "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}",
                cid,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        return out.stdout.strip()

    def wait_healthy(self) -> None:
        def healthy() -> bool:
            states = [self.health(s) for s in ("broker", "lab")]
            for state in states:
                if state.startswith(("exited", "dead")):
                    pytest.fail(f"a container stopped: {states}\n{self.logs()}", pytrace=False)
            return all(state == "running healthy" for state in states)

        try:
            wait_until(healthy, HEALTH_TIMEOUT_S, interval=1.0, what="healthy broker and lab")
        except pytest.fail.Exception:
            print(self.logs())
            raise


@pytest.fixture(params=["docker-compose", "docker compose"])
def compose(request, docker_engine, tmp_path_factory) -> Compose:
    if request.param.split() not in compose_commands():
        if request.param == "docker compose":
            pytest.skip("the `docker compose` v2 plugin is not installed here (v1 is tested)")
        message = "docker-compose (v1) is not installed (the engine script installs it)"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    workdir = tmp_path_factory.mktemp("repo") / "labkit"
    shutil.copytree(REPO, workdir, ignore=COPY_IGNORE)
    notebooks = workdir / "notebooks"
    notebooks.mkdir(exist_ok=True)
    shutil.copy(Path(__file__).with_name("smoke.ipynb"), notebooks / "e2e_smoke.ipynb")
    masters = notebooks / "_e2e_masters"
    masters.mkdir()
    for master in instructor_masters():
        shutil.copy(master, masters / master.name)
    # the course's scripts and the lab that runs them (tests/integration/course_lab.py)
    shutil.copytree(REPO / "examples" / "course", notebooks / "_e2e_course")
    shutil.copy(REPO / "tests" / "integration" / "course_lab.py", notebooks / "_e2e_course_lab.py")
    if os.geteuid() == 0:
        # As root, make ./notebooks belong to a uid the image knows nothing about: the lab
        # must adopt it. As a normal user the folder is already the user's own.
        for path in [notebooks, *notebooks.rglob("*")]:
            os.chown(path, NOTEBOOK_UID, NOTEBOOK_UID)
    env = dict(os.environ)
    env.update(
        JUPYTER_TOKEN="e2e-" + secrets.token_hex(8),
        LABKIT_LANG="en",  # the English landing page (the default is Polish, the course's)
    )
    project = Compose(request.param.split(), workdir, env)
    try:
        yield project
    finally:
        project.run("down", "-v", "--remove-orphans", timeout=300, check=False)


def _http(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _jupyter_put(base: str, token: str, path: str, model: dict) -> int:
    request = urllib.request.Request(
        f"{base}/api/contents/{path}",
        method="PUT",
        data=json.dumps(model).encode(),
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


KAFKA_PYTHON_VIEW = """
from kafka import KafkaAdminClient

def view(bootstrap, topic):
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)
    try:
        (broker,) = admin.describe_cluster()["brokers"]
        return broker["host"], broker["port"], topic in admin.list_topics()
    finally:
        admin.close()
"""


def kafka_python_view(bootstrap: str, topic: str) -> tuple[str, int, bool]:
    """(advertised host, advertised port, whether ``topic`` is listed), by kafka-python."""
    namespace: dict = {}
    exec(KAFKA_PYTHON_VIEW, namespace)  # the same code as in the container
    return namespace["view"](bootstrap, topic)


def test_compose_up_lab_and_broker_work_and_survive_down(compose: Compose):
    from labkit import KafkaConsumer, KafkaProducer

    compose.build_then_choose_ports()
    env = compose.env
    token, broker_port, lab_port = (
        env["JUPYTER_TOKEN"],
        int(env["LABKIT_BROKER_PORT"]),
        int(env["LABKIT_LAB_PORT"]),
    )
    base = f"http://127.0.0.1:{lab_port}"
    compose.run("up", "-d", timeout=300)
    compose.wait_healthy()

    # The lab's log tells the student which URL to open.
    url = f"http://localhost:{lab_port}/lab/tree/README.ipynb?token={token}"
    wait_until(lambda: url in compose.logs("lab"), 60, what="the URL with the token in `logs lab`")

    # A notebook inside the lab container reaches the broker service as broker:9092.
    out = compose.run(
        "exec",
        "-T",
        "lab",
        "labkit-entrypoint",
        "jupyter",
        "nbconvert",
        "--to",
        "notebook",
        "--execute",
        "--output-dir",
        "/tmp",
        "--output",
        "e2e_smoke.out",
        "--ExecutePreprocessor.timeout=120",
        "e2e_smoke.ipynb",
        timeout=300,
    )
    executed = compose.run("exec", "-T", "lab", "cat", "/tmp/e2e_smoke.out.ipynb")
    assert "E2E-SMOKE-OK" in executed, out
    assert "broker:9092" in executed

    # The solution masters pass under grading (a failing check raises) in the container.
    if instructor_masters():
        out = compose.run(
            "exec",
            "-T",
            "-e",
            "LABKIT_GRADING=1",
            "-e",
            "MPLBACKEND=Agg",
            "lab",
            "labkit-entrypoint",
            "python",
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--nbval-lax",
            "--nbval-cell-timeout=120",
            "--rootdir=_e2e_masters",
            "_e2e_masters",
            timeout=900,
            check=False,
        )
        summary = out.strip().splitlines()[-1] if out.strip() else "(no output)"
        failed = [line for line in out.splitlines() if line.startswith(("FAILED", "ERROR"))]
        why = (
            f"solution masters in the lab container: {summary}\n"
            + "\n".join(failed)
            + f"\n\n{out[-6000:]}"
        )
        assert " passed" in summary, why
        assert "failed" not in summary, why
        assert "error" not in summary, why

    # From the host: the broker on 127.0.0.1 (and localhost) through the published port.
    topic = "e2e-persist-" + secrets.token_hex(4)
    producer = KafkaProducer(bootstrap_servers=[f"localhost:{broker_port}"], acks="all")
    producer.send(topic, b"kept across down/up").get(timeout=30)
    producer.close()

    # kafka-python (Kafka's own client) on both sides: each listener advertises the
    # address that works where the client is (issue 13, item 4).
    on_host = kafka_python_view(f"localhost:{broker_port}", topic)
    assert on_host == ("localhost", broker_port, True)
    script = KAFKA_PYTHON_VIEW + f"print(view('broker:9092', {topic!r}))"
    inside = compose.run("exec", "-T", "lab", "labkit-entrypoint", "python", "-c", script)
    assert "('broker', 9092, True)" in inside, inside
    script = KAFKA_PYTHON_VIEW + f"print(view('localhost:9092', {topic!r}))"  # the relay
    inside = compose.run("exec", "-T", "lab", "labkit-entrypoint", "python", "-c", script)
    assert "('broker', 9092, True)" in inside, inside

    # The course's lab as printed (issue 14, item 1), in the lab container: kafka/bin/...
    # from ~, the course-style kafka-python scripts with bootstrap_servers='broker:9092'
    # (filter, count and scoring consumers with their groups), Ctrl-C on `while True`.
    out = compose.run(
        "exec",
        "-T",
        "lab",
        "labkit-entrypoint",
        "python",
        "_e2e_course_lab.py",
        *("--server", "broker:9092", "--scripts", "_e2e_course", "--home", "~"),
        *("--work", "/tmp/course"),
        timeout=600,
    )
    assert "COURSE-LAB-OK" in out, out

    # JupyterLab: token required; with it, the lab and its API answer.
    assert _http(f"{base}/api/contents")[0] == 403
    assert _http(f"{base}/api/contents?token=wrong")[0] == 403
    status, body = _http(f"{base}/api/contents?token={token}")
    assert status == 200
    assert b"e2e_smoke.ipynb" in body
    assert _http(f"{base}/lab?token={token}")[0] == 200

    # Nothing is published on this machine's other addresses.
    addresses = own_non_loopback_ipv4()
    assert addresses, "found no non-loopback address on this machine to test against"
    for address in addresses:
        for port in (broker_port, int(env["LABKIT_ZMQ_PORT"]), lab_port):
            error = connect_error(address, port)
            assert isinstance(error, ConnectionRefusedError), (
                f"{address}:{port} should refuse connections, got {error or 'a connection'}"
            )

    # A notebook saved through JupyterLab lands in ./notebooks with the folder's owner.
    edited = {
        "type": "notebook",
        "format": "json",
        "content": {
            "cells": [{"cell_type": "markdown", "metadata": {}, "source": "my answer 42"}],
            "metadata": {},
            "nbformat": 4,
            "nbformat_minor": 5,
        },
    }
    assert _jupyter_put(base, token, "my_work.ipynb", edited) in (200, 201)
    saved = compose.workdir / "notebooks" / "my_work.ipynb"
    assert "my answer 42" in saved.read_text()
    assert saved.stat().st_uid == (compose.workdir / "notebooks").stat().st_uid

    # Restarting the broker alone leaves the lab working, localhost:9092 included.
    compose.run("restart", "broker", timeout=120)
    compose.wait_healthy()
    compose.run("exec", "-T", "lab", "labkit-healthcheck", "localhost:9092")
    compose.run("exec", "-T", "lab", "labkit-healthcheck", "broker:9092")

    # down (keeping volumes) and up again: the record and the notebook are still there.
    compose.run("down", timeout=300)
    assert connect_error("127.0.0.1", broker_port) is not None
    compose.run("up", "-d", timeout=BUILD_TIMEOUT_S)
    compose.wait_healthy()
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=[f"127.0.0.1:{broker_port}"],
        auto_offset_reset="earliest",
        consumer_timeout_ms=10_000,
    )
    values = [record.value for record in consumer]
    consumer.close()
    assert values == [b"kept across down/up"]
    status, body = _http(f"{base}/api/contents/my_work.ipynb?token={token}")
    assert status == 200
    assert b"my answer 42" in body


def test_broker_memory_is_modest(compose: Compose):
    """The idle broker stays in the tens of MB (students' laptops have 8 GB)."""
    compose.build_then_choose_ports("broker")
    compose.run("up", "-d", "broker", timeout=300)
    wait_until(
        lambda: compose.health("broker") == "running healthy",
        HEALTH_TIMEOUT_S,
        what="a healthy broker",
    )
    time.sleep(2)
    cid = compose.run("ps", "-q", "broker").strip()
    usage = subprocess.run(
        ["docker", "stats", "--no-stream", "--format", "{{.MemUsage}}", cid],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    amount, unit = usage.split("/")[0].strip()[:-3], usage.split("/")[0].strip()[-3:]
    mib = float(amount) * {"KiB": 1 / 1024, "MiB": 1, "GiB": 1024}[unit]
    assert mib < 150, f"the idle broker uses {usage.strip()}"
