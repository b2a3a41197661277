"""`docker-compose --profile spark up`: the Java lab (service `lab-spark`) runs the
course's Spark Structured Streaming lab and notebook 12's Kafka Connect worker against the broker
service, with nothing but what the image brings (Java 17, pyspark, the connector's and
Connect's jars at $LABKIT_SPARK_KAFKA_JARS / $LABKIT_KAFKA_CONNECT_LIBS).

One build and one `up` (the image is ~1.7 GB; a first build takes minutes, a rebuild
after a change to labkit's code seconds: its layers come last, docs/docker.md), on a temporary copy of the repository with its own project
name; `down -v` always runs at the end. The first start (build + up until healthy) is
printed, for docs/docker.md.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import time

import pytest
from e2e_helpers import REPO, compose_commands, free_port, wait_until
from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from test_docker_compose import COPY_IGNORE, HEALTH_TIMEOUT_S, NEEDS_JAVA, Compose

from tests.ecosystem.test_spark import (
    EXPECTED_ALERTS,
    EXPECTED_WINDOWS,
    produce_transactions,
    read_all,
)

pytestmark = [
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.timeout(2400),
    pytest.mark.usefixtures("kafka_python_garbage"),
]

SPARK_BUILD_TIMEOUT_S = 1800  # pyspark alone is a 450 MB download built into a wheel
SERVICES = ("broker", "lab-spark")


def _copy_ignore(directory: str, names: list[str]) -> set[str]:
    """The docker test's copy, without .cache: the image fetches its own jars."""
    return set(COPY_IGNORE(directory, names)) | ({".cache"} & set(names))


@pytest.fixture
def spark_compose(docker_engine, tmp_path_factory) -> Compose:
    clis = compose_commands()
    if not clis:
        message = "docker-compose (v1) is not installed (the engine script installs it)"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    workdir = tmp_path_factory.mktemp("repo") / "labkit"
    shutil.copytree(REPO, workdir, ignore=_copy_ignore)
    (workdir / "notebooks").mkdir(exist_ok=True)
    env = dict(os.environ)
    env.update(JUPYTER_TOKEN="e2e-" + secrets.token_hex(8))
    project = Compose(clis[0], workdir, env)
    try:
        yield project
    finally:
        project.run(
            "--profile", "spark", "down", "-v", "--remove-orphans", timeout=300, check=False
        )


def _exec(compose: Compose, *command: str, timeout: float = 600) -> str:
    return compose.run(
        "--profile", "spark", "exec", "-T", "lab-spark", "labkit-entrypoint", *command,
        timeout=timeout,
    )  # fmt: skip


def test_spark_profile_runs_spark_and_connect_against_the_broker(spark_compose: Compose):
    compose = spark_compose
    started = time.monotonic()
    compose.run("--profile", "spark", "build", *SERVICES, timeout=SPARK_BUILD_TIMEOUT_S)
    built = time.monotonic() - started
    # Ports chosen after the build (minutes) and never the defaults, which the default
    # docker test prefers: a port found free before a long build may be taken by then.
    compose.env.update(
        LABKIT_BROKER_PORT=str(free_port()),
        LABKIT_ZMQ_PORT=str(free_port()),
        LABKIT_LAB_PORT=str(free_port()),
        LABKIT_SPARK_LAB_PORT=str(free_port()),
    )
    broker_port = int(compose.env["LABKIT_BROKER_PORT"])
    compose.run("--profile", "spark", "up", "-d", *SERVICES, timeout=300)

    def healthy() -> bool:
        states = [compose.health(service) for service in SERVICES]
        for state in states:
            if state.startswith(("exited", "dead")):
                pytest.fail(f"a container stopped: {states}\n{compose.logs()}", pytrace=False)
        return all(state == "running healthy" for state in states)

    wait_until(healthy, HEALTH_TIMEOUT_S, interval=1.0, what="healthy broker and lab-spark")
    first_start = time.monotonic() - started
    size = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Size}}", "labkit-spark:latest"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()
    print(
        f"lab-spark: first start {first_start:.0f} s (build {built:.0f} s, then up until "
        f"healthy {first_start - built:.0f} s), image {size} B"
    )
    # Only the profile's services run: the default lab is not started by this `up`.
    assert compose.run("ps", "-q", "lab").strip() == ""

    # The lab's log names its own port.
    port = compose.env["LABKIT_SPARK_LAB_PORT"]
    wait_until(
        lambda: f"http://localhost:{port}/lab" in compose.logs("lab-spark"),
        60,
        what="the lab-spark URL in its log",
    )

    # Java, the streams extra and `labkit connect`.
    out = _exec(
        compose,
        "sh",
        "-c",
        "java -version 2>&1; labkit connect --help; "
        "python -c 'import pyspark, quixstreams; print(pyspark.__version__, quixstreams.__version__)'",
    )
    assert 'version "17' in out, out
    assert "--file-source" in out, out
    assert "4.2.0 3.28.1" in out, out

    # The course's Spark lab, inside the container, on the broker service.
    bootstrap = f"localhost:{broker_port}"  # from this machine, the EXTERNAL listener
    topic, alerts_topic = "spark-tx-" + secrets.token_hex(3), "spark-alerts-" + secrets.token_hex(3)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, 1, 1), NewTopic(alerts_topic, 1, 1)])
    finally:
        admin.close()
    produce_transactions(bootstrap, topic)
    out = _exec(
        compose,
        "python", "-m", "labkit.ecosystem.spark_transactions",
        "--bootstrap-server", "broker:9092",
        "--topic", topic, "--alerts-topic", alerts_topic,
        "--available-now", "--max-per-batch", "4",
        "--checkpoint-dir", "/tmp/e2e-spark-checkpoints", "--out", "/tmp/e2e-windows.jsonl",
        timeout=600,
    )  # fmt: skip
    rows = [
        json.loads(line)
        for line in _exec(compose, "cat", "/tmp/e2e-windows.jsonl").splitlines()
        if line.startswith("{")
    ]
    written = [
        (r["window_start"], r["window_end"], r["store"], r["count"], r["total"]) for r in rows
    ]
    assert sorted(written) == EXPECTED_WINDOWS, out[-4000:]
    assert read_all(bootstrap, alerts_topic) == EXPECTED_ALERTS

    # Kafka Connect: notebook 12's solution master (a standalone worker, a file source and a
    # file sink, offsets across a restart), graded, with only what the image brings; the
    # default lab has no Java (test_docker_compose.py leaves these masters to this test).
    for master in (REPO / "instructor" / "masters" / name for name in NEEDS_JAVA):
        shutil.copy(master, compose.workdir / "notebooks" / master.name)
    out = compose.run(
        "--profile", "spark", "exec", "-T", "-e", "LABKIT_GRADING=1", "-e", "MPLBACKEND=Agg",
        "lab-spark", "labkit-entrypoint", "python", "-m", "pytest", "-q",
        "-p", "no:cacheprovider", "--nbval-lax", "--nbval-cell-timeout=180", *NEEDS_JAVA,
        timeout=900, check=False,
    )  # fmt: skip
    # pytest's last line (stderr, e.g. the entrypoint's note on the owner, comes after it)
    summary = next(
        (line for line in reversed(out.splitlines()) if re.search(r"\d+ (passed|failed)", line)),
        "(no pytest summary)",
    )
    why = f"the Java masters in lab-spark: {summary}\n\n{out[-6000:]}"
    assert " passed" in summary, why
    assert "failed" not in summary, why
    assert "error" not in summary, why
