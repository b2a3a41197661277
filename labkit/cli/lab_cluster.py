"""``labkit lab --brokers N``: one ZooKeeper and N brokers in cluster mode for the lab.

Theory of operation
-------------------
The no-Docker twin of docker-compose's ``cluster`` profile (docs/replication.md, "The
lab"). ``plan`` is pure: broker ``i`` (ids 1..N) listens on 127.0.0.1 at ``--port + i -
1`` (9092, 9093, 9094: broker 1 is where the single-broker lab's broker is, so course
code with ``localhost:9092`` runs as is) with ZeroMQ on that port + 100, keeps its log in
``<data-dir>/broker-<i>`` and joins ZooKeeper at 127.0.0.1:``--zookeeper-port`` (2181,
its data in ``<data-dir>/zookeeper``). Topics created without a replication factor get
``default.replication.factor`` = min(N, 3) and ``min.insync.replicas`` = that - 1 (at
least 1): with three brokers, RF 3 and ``acks=all`` survive one broker down. A killed
broker's partitions move after ``SESSION_TIMEOUT_MS`` (6 s, not Kafka's 18 s: the lab
shows a failover while the student watches; docker-compose's cluster profile too).

``start`` checks every port first (a taken one stops the lab with its fix), starts
ZooKeeper from the ``make zookeeper`` jars (``labkit.launch.zookeeper.require`` says
what is missing: the jars or Java), waits until it serves, then starts the brokers and
waits until each answers and all N are registered (one ``metadata`` lists them). It
returns the children in start order; ``stop`` stops them in reverse: the brokers
together (SIGTERM to each, then the waits: they leave ZooKeeper cleanly), ZooKeeper
last. A failed start stops what had started.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from labkit._clock import REAL_CLOCK, Clock
from labkit.cli.lab_supervisor import (
    POLL_S,
    LabError,
    _check_port_free,
    _say,
    _spawn,
    _stop_child,
    _Stopped,
)

ZOOKEEPER_PORT = 2181
MAX_DEFAULT_RF = 3
START_WAIT_S = 60.0
ZOOKEEPER_HEAP = "128m"
SESSION_TIMEOUT_MS = 6000  # zookeeper.session.timeout.ms: the failover time of a kill -9


@dataclass(frozen=True)
class BrokerSpec:
    broker_id: int
    port: int
    data_dir: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass(frozen=True)
class ClusterPlan:
    brokers: list[BrokerSpec]
    zookeeper_port: int
    data_dir: Path

    @property
    def zookeeper_connect(self) -> str:
        return f"127.0.0.1:{self.zookeeper_port}"

    @property
    def zookeeper_dir(self) -> Path:
        return self.data_dir / "zookeeper"

    @property
    def bootstrap(self) -> str:
        """What notebooks get as LABKIT_BOOTSTRAP: every broker, so any one may be down."""
        return ",".join(f"localhost:{b.port}" for b in self.brokers)

    def topic_defaults(self) -> dict[str, str]:
        rf = min(len(self.brokers), MAX_DEFAULT_RF)
        return {"default.replication.factor": str(rf), "min.insync.replicas": str(max(1, rf - 1))}

    def broker_argv(self, spec: BrokerSpec) -> list[str]:
        argv = [
            sys.executable, "-m", "labkit", "broker",
            "--host", "127.0.0.1",
            "--port", str(spec.port),
            "--broker-id", str(spec.broker_id),
            "--zookeeper", self.zookeeper_connect,
            "--data-dir", str(spec.data_dir),
        ]  # fmt: skip
        for key, value in self.topic_defaults().items():
            argv += ["--config", f"{key}={value}"]
        argv += ["--config", f"zookeeper.session.timeout.ms={SESSION_TIMEOUT_MS}"]
        return argv


def plan(brokers: int, port: int, zookeeper_port: int, data_dir: Path) -> ClusterPlan:
    """Ids, ports and folders of an N-broker lab (pure)."""
    specs = [BrokerSpec(i, port + i - 1, data_dir / f"broker-{i}") for i in range(1, brokers + 1)]
    return ClusterPlan(specs, zookeeper_port, data_dir)


def ports_to_check(cluster: ClusterPlan) -> list[tuple[int, str]]:
    """Every port the cluster listens on, with what uses it."""
    out = [(cluster.zookeeper_port, "ZooKeeper")]
    for b in cluster.brokers:
        out += [(b.port, f"broker {b.broker_id}"), (b.port + 100, f"broker {b.broker_id}'s ZeroMQ")]
    return out


# -- ZooKeeper --------------------------------------------------------------------


def zookeeper_config(home: Path, port: int) -> Path:
    """``zoo.cfg`` for a standalone server on 127.0.0.1:``port`` with its data in ``home``."""
    (home / "data").mkdir(parents=True, exist_ok=True)
    cfg = home / "zoo.cfg"
    cfg.write_text(
        "tickTime=2000\n"
        f"dataDir={home / 'data'}\n"
        f"clientPort={port}\n"
        "clientPortAddress=127.0.0.1\n"
        "admin.enableServer=false\n"  # else an HTTP server on 8080, which JupyterLab may want
        "4lw.commands.whitelist=ruok,srvr,stat,cons\n"
        "maxClientCnxns=0\n",
        encoding="utf-8",
    )
    return cfg


def zookeeper_argv(libs: Path, cfg: Path) -> list[str]:
    return [
        "java",
        f"-Xmx{ZOOKEEPER_HEAP}",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        "-Dzookeeper.jmx.log4j.disable=true",
        "-cp",
        str(libs / "*"),
        "org.apache.zookeeper.server.ZooKeeperServerMain",
        str(cfg),
    ]


def _zookeeper_libs() -> Path:
    from labkit.launch.zookeeper import ZooKeeperMissing, require

    try:
        return require()
    except ZooKeeperMissing as exc:
        raise LabError(
            f"`labkit lab --brokers` needs Apache ZooKeeper: {exc}. In a checkout: "
            "`make zookeeper`, then `make lab-cluster`. Without Java: "
            '`docker-compose --profile cluster up` (docs/replication.md, "The lab").'
        ) from None


def _zookeeper_serves(port: int) -> bool:
    from labkit.launch.zookeeper import four_letter_word

    answer = four_letter_word(port, "srvr", 0.5)
    return bool(answer and "Mode:" in answer)


# -- start and stop ---------------------------------------------------------------


def start(
    cluster: ClusterPlan, stop: threading.Event, clock: Clock = REAL_CLOCK
) -> list[tuple[str, subprocess.Popen]]:
    """ZooKeeper, then the brokers; each waited for. Raises LabError or _Stopped."""
    for port, what in ports_to_check(cluster):
        _check_port_free(
            "127.0.0.1",
            port,
            f"Port {port} ({what} of the {len(cluster.brokers)}-broker lab) is taken. "
            "(Another `labkit lab` or `docker-compose up`? Stop it.) Or move the lab's "
            "ports: `labkit lab --brokers N --port P --zookeeper-port Z` (with make: "
            "make lab-cluster LAB_ARGS='--port 9292 --zookeeper-port 2182').",
        )
    libs = _zookeeper_libs()
    children: list[tuple[str, subprocess.Popen]] = []
    try:
        home = cluster.zookeeper_dir
        cfg = zookeeper_config(home, cluster.zookeeper_port)
        _say(f"starting ZooKeeper on {cluster.zookeeper_connect} (data in {home})")
        with open(home / "zookeeper.out", "ab") as out:
            zk = _spawn(
                zookeeper_argv(libs, cfg),
                dict(os.environ),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        children.append(("ZooKeeper", zk))
        _wait(
            "ZooKeeper",
            lambda: _zookeeper_serves(cluster.zookeeper_port),
            zk,
            stop,
            clock,
            f"its log is {home / 'zookeeper.out'}",
        )
        for spec in cluster.brokers:
            _say(
                f"starting broker {spec.broker_id} on localhost:{spec.port} (data in {spec.data_dir})"
            )
            proc = _spawn(cluster.broker_argv(spec), dict(os.environ))
            children.append((f"broker {spec.broker_id}", proc))
        for (name, proc), spec in zip(children[1:], cluster.brokers, strict=True):
            _wait(
                name,
                lambda spec=spec: _registered(spec.address, len(cluster.brokers)),
                proc,
                stop,
                clock,
                "its messages are above",
            )
        return children
    except BaseException:
        stop_all(children)
        raise


def _registered(address: str, brokers: int) -> bool:
    """The broker at ``address`` answers and its metadata lists all ``brokers``."""
    from labkit.client.probe import broker_answers

    if not broker_answers(address, 1.0, client_id="labkit-lab"):
        return False
    from labkit.client.admin import KafkaAdminClient

    try:
        admin = KafkaAdminClient(
            bootstrap_servers=[address], client_id="labkit-lab", request_timeout_ms=2000
        )
    except Exception:  # noqa: BLE001 - not up yet: the next poll asks again
        return False
    try:
        return len(admin.describe_cluster()["brokers"]) >= brokers
    except Exception:  # noqa: BLE001 - not up yet: the next poll asks again
        return False
    finally:
        admin.close()


def _wait(what, ready, proc, stop: threading.Event, clock: Clock, where: str) -> None:
    deadline = clock.monotonic() + START_WAIT_S
    while not stop.is_set():
        if proc.poll() is not None:
            raise LabError(f"{what} exited with code {proc.returncode} at start ({where}).")
        if ready():
            return
        if clock.monotonic() > deadline:
            raise LabError(f"{what} did not come up within {START_WAIT_S:.0f} s ({where}).")
        stop.wait(POLL_S)
    raise _Stopped()


def stop_all(children: list[tuple[str, subprocess.Popen]]) -> None:
    """The brokers together (each leaves ZooKeeper cleanly), then ZooKeeper."""
    brokers = [(n, p) for n, p in children if n != "ZooKeeper"]
    for _name, proc in brokers:
        if proc.poll() is None:
            proc.terminate()
    for name, proc in brokers:
        _stop_child(proc, name)
    for name, proc in children:
        if name == "ZooKeeper":
            _stop_child(proc, name)
