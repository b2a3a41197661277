"""`labkit lab --brokers 3` (what `make lab-cluster` runs): ZooKeeper and three brokers in
cluster mode beside JupyterLab; a replication-factor-3 topic has three replicas and a
leader per partition; Ctrl-C stops every process it started.

Real processes over real sockets, on free ports; the lab leads its own process group,
and the test ends by stopping that group whatever happens (``stop_tree``).
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from e2e_helpers import (
    connect_error,
    gone,
    http_status,
    port_is_free,
    stop_tree,
    wait_until,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs Linux /proc"),
]


def _free_block() -> int:
    """A base port P with P, P+1, P+2 and P+100..P+102 free (the brokers' ports)."""
    for _ in range(200):
        base = random.randrange(20000, 40000)
        if all(port_is_free(base + d) for d in (0, 1, 2, 100, 101, 102)):
            return base
    raise AssertionError("no free block of ports")


def _free_port() -> int:
    while True:
        port = random.randrange(40000, 50000)
        if port_is_free(port):
            return port


def _labkit(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "labkit", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def zookeeper_jars():
    from labkit.testing.zookeeper import ZooKeeperMissing, require

    try:
        require()
    except ZooKeeperMissing as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))


@pytest.mark.usefixtures("zookeeper_jars")
def test_lab_with_three_brokers_replicates_and_stops_on_sigint(tmp_path: Path):
    port, zk_port, lab_port = _free_block(), _free_port(), _free_port()
    (tmp_path / "nb").mkdir()
    log_path = tmp_path / "lab.log"
    data = tmp_path / "data-cluster"
    with open(log_path, "wb") as log:
        lab = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "labkit",
                "lab",
                "--brokers",
                "3",
                "--no-browser",
                "--port",
                str(port),
                "--zookeeper-port",
                str(zk_port),
                "--lab-port",
                str(lab_port),
                "--data-dir",
                str(data),
                "--notebooks",
                str(tmp_path / "nb"),
                "--kafka-bin",
                "off",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=dict(os.environ, JUPYTER_TOKEN="e2e-token"),
        )
    try:
        wait_until(
            lambda: lab.poll() is not None or "labkit lab is ready" in log_path.read_text(),
            180,
            what="ZooKeeper, three brokers and JupyterLab",
        )
        out = log_path.read_text()
        assert lab.poll() is None, out
        bootstrap = f"localhost:{port},localhost:{port + 1},localhost:{port + 2}"
        assert f"the 3 brokers at {bootstrap}" in out, out
        assert http_status(f"http://127.0.0.1:{lab_port}/api") == 200

        # No --replication-factor: the lab's default.replication.factor (3) applies.
        created = _labkit(
            "topics", "--create", "--topic", "lab-rf3", "--partitions", "3",
            "--bootstrap-server", f"localhost:{port + 1}",
        )  # fmt: skip
        assert created.returncode == 0, created.stderr

        def described() -> str | None:
            result = _labkit(
                "topics", "--describe", "--topic", "lab-rf3", "--bootstrap-server", bootstrap
            )
            rows = re.findall(
                r"Partition: (\d+)\tLeader: (-?\d+)\tReplicas: ([\d,]+)\tIsr: ([\d,]+)",
                result.stdout,
            )
            return (
                result.stdout
                if len(rows) == 3 and all(len(r[3].split(",")) == 3 for r in rows)
                else None
            )

        text = wait_until(described, 30, interval=0.5, what="three in-sync replicas per partition")
        assert "ReplicationFactor: 3" in text, text
        rows = re.findall(r"Leader: (-?\d+)\tReplicas: ([\d,]+)", text)
        assert len(rows) == 3, text
        for leader, replicas in rows:
            assert sorted(replicas.split(",")) == ["1", "2", "3"], text
            assert leader in ("1", "2", "3"), text
        assert {leader for leader, _ in rows} == {"1", "2", "3"}, text  # Kafka's assignment
        os.killpg(lab.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole group
        assert lab.wait(90) == 0, log_path.read_text()
    finally:
        stop_tree(lab)
    wait_until(
        lambda: gone(str(tmp_path), port, port + 1, port + 2, zk_port, lab_port),
        20,
        what="ZooKeeper, the brokers and JupyterLab to exit",
    )
    for p in (port, port + 1, port + 2, zk_port, lab_port):
        assert connect_error("127.0.0.1", p) is not None, p
    out = log_path.read_text()
    assert out.count("broker stopped cleanly") == 3, out
    for i in (1, 2, 3):
        assert (data / f"broker-{i}" / "lab-rf3-0").is_dir(), sorted(data.rglob("*"))
    assert (data / "zookeeper" / "data").is_dir()
