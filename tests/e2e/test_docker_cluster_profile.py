"""`docker-compose --profile cluster up`: ZooKeeper (run from the project's own image: Java
17 and the jars of `make zookeeper`) and three brokers in cluster mode beside their lab.
A topic created without a replication factor gets 3 replicas with leaders on the three
brokers; `docker-compose kill` of one broker moves its leadership to another after the
ZooKeeper session timeout (6 s here); `down -v` removes every container and volume.

One build and one `up`, on a temporary copy of the repository with its own project name;
`down -v` always runs at the end. The commands run inside the lab container (the brokers
are reachable in the compose network only).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import time

import pytest
from e2e_helpers import REPO, compose_commands, free_port, wait_until
from test_docker_compose import COPY_IGNORE, HEALTH_TIMEOUT_S, Compose

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(1800)]

BUILD_TIMEOUT_S = 1200  # Java and a Maven run in the image's stages
SERVICES = ("zookeeper", "broker-1", "broker-2", "broker-3", "lab-cluster")
ROW = re.compile(r"Partition: (\d+)\tLeader: (-?\d+)\tReplicas: ([\d,]+)\tIsr: ([\d,]+)")


def _copy_ignore(directory: str, names: list[str]) -> set[str]:
    """The docker test's copy, without .cache: the image fetches its own jars."""
    return set(COPY_IGNORE(directory, names)) | ({".cache"} & set(names))


@pytest.fixture
def cluster_compose(docker_engine, tmp_path_factory) -> Compose:
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
            "--profile", "cluster", "down", "-v", "--remove-orphans", timeout=300, check=False
        )


def _in_lab(compose: Compose, *command: str, timeout: float = 120) -> str:
    return compose.run(
        "--profile", "cluster", "exec", "-T", "lab-cluster", "labkit-entrypoint", *command,
        timeout=timeout,
    )  # fmt: skip


def _rows(text: str) -> list[tuple[int, int, list[int], list[int]]]:
    return [
        (int(p), int(leader), [int(r) for r in reps.split(",")], [int(i) for i in isr.split(",")])
        for p, leader, reps, isr in ROW.findall(text)
    ]


def test_cluster_profile_replicates_and_fails_over(cluster_compose: Compose):
    compose = cluster_compose
    started = time.monotonic()
    compose.run("--profile", "cluster", "build", "lab-cluster", timeout=BUILD_TIMEOUT_S)
    built = time.monotonic() - started
    compose.env.update(LABKIT_CLUSTER_LAB_PORT=str(free_port()))
    compose.run("--profile", "cluster", "up", "-d", *SERVICES, timeout=300)

    def healthy() -> bool:
        states = [compose.health(service) for service in SERVICES]
        for state in states:
            if state.startswith(("exited", "dead")):
                pytest.fail(f"a container stopped: {states}\n{compose.logs()}", pytrace=False)
        return all(state == "running healthy" for state in states)

    wait_until(healthy, HEALTH_TIMEOUT_S, interval=1.0, what="a healthy cluster and lab")
    print(f"cluster profile: first start {time.monotonic() - started:.0f} s (build {built:.0f} s)")
    assert compose.run("ps", "-q", "broker").strip() == ""  # the default broker stays off
    out = _in_lab(compose, "sh", "-c", "java -version 2>&1; echo $LABKIT_BOOTSTRAP")
    assert 'version "17' in out, out
    assert "broker-1:9092,broker-2:9092,broker-3:9092" in out, out

    # What an in-kernel cluster (notebook 13's helper) needs: a ZooKeeper of its own
    # starts inside the lab from the image's jars.
    out = _in_lab(
        compose, "python", "-c",
        "from labkit.testing.zookeeper import ZooKeeperServer\n"
        "with ZooKeeperServer() as zk: print('in-lab zookeeper', zk.connect)",
    )  # fmt: skip
    assert "in-lab zookeeper 127.0.0.1:" in out, out

    bootstrap = "broker-1:9092,broker-2:9092,broker-3:9092"
    topic = "rf3-" + secrets.token_hex(3)
    out = _in_lab(
        compose, "labkit", "topics", "--create", "--topic", topic, "--partitions", "3",
        "--bootstrap-server", "broker-2:9092",
    )  # fmt: skip
    assert "Created topic" in out, out

    def described(check):
        def once():
            text = _in_lab(
                compose, "labkit", "topics", "--describe", "--topic", topic,
                "--bootstrap-server", bootstrap,
            )  # fmt: skip
            rows = _rows(text)
            return rows if len(rows) == 3 and check(rows) else None

        return once

    rows = wait_until(
        described(lambda rows: all(len(isr) == 3 for *_x, isr in rows)),
        60,
        what="three in-sync replicas per partition",
    )
    assert all(sorted(replicas) == [1, 2, 3] for _p, _l, replicas, _i in rows), rows
    assert sorted(leader for _p, leader, _r, _i in rows) == [1, 2, 3], rows  # one each

    # broker 2 crashes (SIGKILL): after the session timeout its partition has a new leader
    # from the ISR, and the ISR lost broker 2.
    led_by_2 = next(p for p, leader, _r, _i in rows if leader == 2)
    compose.run("--profile", "cluster", "kill", "broker-2")
    killed = time.monotonic()
    rows = wait_until(
        described(
            lambda rows: all(leader in (1, 3) and 2 not in isr for _p, leader, _r, isr in rows)
        ),
        90,
        what="a new leader for broker 2's partition",
    )
    print(f"leader of partition {led_by_2} moved within {time.monotonic() - killed:.1f} s")
    assert rows[led_by_2][1] in (1, 3)
    under = _in_lab(
        compose, "labkit", "topics", "--describe", "--under-replicated-partitions",
        "--bootstrap-server", "broker-1:9092",
    )  # fmt: skip
    assert len(_rows(under)) == 3, under

    compose.run("--profile", "cluster", "down", "-v", timeout=300)
    assert compose.run("ps", "-q").strip() == ""
    volumes = subprocess.run(
        ["docker", "volume", "ls", "-q", "--filter", f"name={compose.project}"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert volumes.strip() == "", volumes
