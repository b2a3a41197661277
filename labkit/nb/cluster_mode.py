"""``nb.cluster()``: a ZooKeeper and three labkit brokers in cluster mode, for notebook 13.

Theory of operation
-------------------
``nb.cluster()`` starts, as subprocesses of the kernel, one Apache ZooKeeper (the jars of
``make zookeeper``; ``labkit.launch.zookeeper``) and ``brokers`` labkit brokers with
``--broker-id N --zookeeper ...`` (``labkit.launch.broker.BrokerProcess``), each on free ports
with its data directory in one temporary folder. It returns a ``Cluster``: the brokers'
addresses (their Kafka listeners: Kafka clients follow leaders there), ``kill(id)`` (kill -9),
``pause(id)``/``resume(id)`` (SIGSTOP/SIGCONT), ``start(id)`` (again, same ports, same data),
``describe(topic)`` (each partition's leader, replicas and ISR, read from ZooKeeper: the
state the controller wrote) and ``watch(topic)``, a live plot of the leader and the ISR size.

One cluster per kernel: calling ``nb.cluster()`` again returns the running one (re-running a
notebook's cells must not start a second); ``close()`` stops it, and so does the kernel's
exit (``atexit``); a kill -9 of the kernel ends them too (labkit/launch/lifeline.py).

``$LABKIT_CLUSTER`` (``host:port,host:port,...``) names a cluster that runs elsewhere (the
lab's, with three brokers): ``nb.cluster()`` then describes it -- through ZooKeeper when
``$LABKIT_ZOOKEEPER`` names it, else through Kafka's Metadata -- and refuses kill, pause and
start, which need the broker processes (``nb.cluster(local=True)`` starts a local one).

The parts that need no process (reading ZooKeeper's JSON into rows, the plot's points, the
environment) are plain functions, unit-tested in tests/unit/test_nb_cluster_mode.py.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labkit.errors import IllegalArgumentError, IllegalStateError
from labkit.i18n import _

__all__ = ["Cluster", "PartitionState", "cluster"]

CLUSTER_ENV = "LABKIT_CLUSTER"
ZOOKEEPER_ENV = "LABKIT_ZOOKEEPER"
# short, so that a failover takes seconds in a lesson (Kafka's default: 18000)
SESSION_TIMEOUT_MS = 4000
# a follower that comes back rejoins the ISR within half of this (Kafka's default: 30000)
REPLICA_LAG_MS = 4000
# a bound, not a wait: a broker's start is mostly Python's imports, slow on a busy machine
BROKER_START_TIMEOUT_S = 60.0

_RUNNING: Cluster | None = None


@dataclass(frozen=True)
class PartitionState:
    """One partition as ``kafka-topics.sh --describe`` shows it (leader -1: none)."""

    topic: str
    partition: int
    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    leader_epoch: int = 0

    def __str__(self) -> str:
        return (
            f"Topic: {self.topic}\tPartition: {self.partition}\tLeader: "
            f"{self.leader if self.leader >= 0 else 'none'}\tReplicas: "
            f"{','.join(map(str, self.replicas))}\tIsr: {','.join(map(str, self.isr))}"
        )


def states_from_znodes(topic: str, read_json: Callable[[str], Any]) -> list[PartitionState]:
    """The partitions of ``topic`` from ZooKeeper's znodes, as Kafka's ZooKeeper mode keeps
    them. ``read_json(path)`` returns a znode's JSON, or None when it does not exist.
    Raises ``IllegalArgumentError`` for a topic that does not exist."""
    assignment = read_json(f"/brokers/topics/{topic}")
    if assignment is None:
        raise IllegalArgumentError(
            _("no topic {topic!r} in this cluster: create it first").format(topic=topic)
        )
    rows = []
    for key, replicas in sorted(assignment["partitions"].items(), key=lambda kv: int(kv[0])):
        state = read_json(f"/brokers/topics/{topic}/partitions/{key}/state") or {}
        rows.append(
            PartitionState(
                topic=topic,
                partition=int(key),
                leader=int(state.get("leader", -1)),
                replicas=tuple(replicas),
                isr=tuple(state.get("isr", ())),
                leader_epoch=int(state.get("leader_epoch", 0)),
            )
        )
    return rows


def states_from_metadata(topic: str, partitions: list[dict]) -> list[PartitionState]:
    """The partitions of ``topic`` from kafka-python's ``describe_topics()`` rows."""
    return [
        PartitionState(
            topic=topic,
            partition=p["partition"],
            leader=p["leader"],
            replicas=tuple(p["replicas"]),
            isr=tuple(p["isr"]),
            leader_epoch=p.get("leader_epoch", 0) or 0,
        )
        for p in sorted(partitions, key=lambda p: p["partition"])
    ]


def existing_cluster(environ: dict[str, str] | None = None) -> tuple[str, str | None] | None:
    """``($LABKIT_CLUSTER, $LABKIT_ZOOKEEPER or None)``, or None when no cluster is named."""
    env = os.environ if environ is None else environ
    servers = (env.get(CLUSTER_ENV) or "").strip()
    if not servers:
        return None
    return servers, (env.get(ZOOKEEPER_ENV) or "").strip() or None


class Cluster:
    """A cluster of labkit brokers on ZooKeeper: a local one (``nb.cluster()`` starts it) or
    one named by ``$LABKIT_CLUSTER`` (describe only). See the module docstring."""

    def __init__(self, zookeeper: str | None, bootstrap: dict[int, str], *, local: bool):
        self.zookeeper = zookeeper
        self._bootstrap = dict(bootstrap)
        self.local = local
        self._zk_server: Any = None
        self._processes: dict[int, Any] = {}
        self._paused: set[int] = set()
        self._home: Path | None = None
        self._kazoo: Any = None
        self._lock = threading.Lock()
        self._plots: list[Any] = []

    # -- addresses -------------------------------------------------------------

    @property
    def broker_ids(self) -> list[int]:
        return sorted(self._bootstrap)

    @property
    def bootstrap_servers(self) -> str:
        """Every broker's address (``host:port,...``): what a Kafka client needs."""
        return ",".join(self._bootstrap[i] for i in self.broker_ids)

    def address(self, broker_id: int) -> str:
        """One broker's ``host:port`` (its Kafka listener; labkit's tools bootstrap there)."""
        self._known(broker_id)
        return self._bootstrap[broker_id]

    def alive(self) -> list[int]:
        """The brokers running and not paused (a local cluster; else every broker named)."""
        if not self.local:
            return self.broker_ids
        return [
            i
            for i, proc in sorted(self._processes.items())
            if proc.proc is not None and proc.proc.poll() is None and i not in self._paused
        ]

    @property
    def any_alive(self) -> str:
        """The address of a running broker, for tools that take one (``--bootstrap-server``)."""
        alive = self.alive()
        if not alive:
            raise IllegalStateError(
                _("no broker of the cluster is running: start one with cluster.start(1)")
            )
        return self._bootstrap[alive[0]]

    # -- faults ------------------------------------------------------------------

    def kill(self, broker_id: int) -> None:
        """kill -9 the broker, as a crash would: ZooKeeper notices when its session ends."""
        self._local_only("kill")
        self._known(broker_id)
        self._paused.discard(broker_id)
        proc = self._processes[broker_id]
        if proc.pid is not None and proc.proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)  # a paused one dies too
        proc.kill()

    def pause(self, broker_id: int) -> None:
        """SIGSTOP: the broker stops answering (its ZooKeeper session runs out after
        zookeeper.session.timeout.ms, 4 s here)."""
        self._local_only("pause")
        self._signal(broker_id, signal.SIGSTOP)
        self._paused.add(broker_id)

    def resume(self, broker_id: int) -> None:
        """SIGCONT: a paused broker goes on."""
        self._local_only("resume")
        self._signal(broker_id, signal.SIGCONT)
        self._paused.discard(broker_id)

    def start(self, broker_id: int) -> None:
        """Start a stopped or killed broker again: same ports, same data directory."""
        self._local_only("start")
        self._known(broker_id)
        proc = self._processes[broker_id]
        if proc.proc is not None and proc.proc.poll() is None:
            self.resume(broker_id)
            return
        proc.restart()

    def _signal(self, broker_id: int, sig: int) -> None:
        self._known(broker_id)
        proc = self._processes[broker_id]
        if proc.proc is None or proc.proc.poll() is not None:
            raise IllegalStateError(
                _("broker {broker_id} is not running: cluster.start({broker_id}) first").format(
                    broker_id=broker_id
                )
            )
        os.kill(proc.pid, sig)

    def _local_only(self, what: str) -> None:
        if not self.local:
            raise IllegalStateError(
                _(
                    "{what} needs a cluster started by this notebook: ${env} names a cluster that runs elsewhere; nb.cluster(local=True) starts a local one"
                ).format(what=what, env=CLUSTER_ENV)
            )

    def _known(self, broker_id: int) -> None:
        if broker_id not in self._bootstrap:
            raise IllegalArgumentError(
                _("no broker {broker_id} in this cluster: its brokers are {ids}").format(
                    broker_id=broker_id, ids=", ".join(map(str, self.broker_ids))
                )
            )

    # -- what the cluster says ---------------------------------------------------

    def describe(self, topic: str, *, broker: int | None = None) -> list[PartitionState]:
        """Each partition of ``topic``: leader, replicas, ISR (ZooKeeper's state). With
        ``broker=id``: what that broker believes now (its own metadata), which follows
        ZooKeeper a moment later. Raises ``IllegalArgumentError`` for a topic that does not
        exist."""
        if broker is not None:
            return self._describe_by_broker(topic, broker)
        if self.zookeeper is None:
            return self._describe_by_metadata(topic)
        return states_from_znodes(topic, self._read_json)

    def state(self, topic: str, partition: int = 0, *, broker: int | None = None) -> PartitionState:
        """One partition's ``PartitionState`` (``broker=id``: as that broker sees it)."""
        for row in self.describe(topic, broker=broker):
            if row.partition == partition:
                return row
        raise IllegalArgumentError(
            _("topic {topic!r} has no partition {partition}").format(
                topic=topic, partition=partition
            )
        )

    def show(self, topic: str) -> None:
        """Print ``describe(topic)`` as ``kafka-topics.sh --describe`` does."""
        for row in self.describe(topic):
            print(row)

    def topics(self) -> list[str]:
        """The cluster's topics, as ZooKeeper holds them (a broker's metadata may lag behind
        for a moment after a create or delete)."""
        if self.zookeeper is None:
            from kafka import KafkaAdminClient

            admin = KafkaAdminClient(bootstrap_servers=self.bootstrap_servers)
            try:
                return sorted(admin.list_topics())
            finally:
                admin.close()
        return sorted(self._zk().get_children("/brokers/topics"))

    def topic_config(self, topic: str) -> dict[str, str]:
        """The topic's configs kept in ZooKeeper (``/config/topics/<topic>``)."""
        if self.zookeeper is None:
            return {}
        found = self._read_json(f"/config/topics/{topic}") or {}
        return dict(found.get("config", {}))

    def controller(self) -> int | None:
        """The broker id of the controller (None while there is none)."""
        if self.zookeeper is None:
            return None
        found = self._read_json("/controller")
        return None if found is None else int(found["brokerid"])

    def wait_for(self, what: str, condition: Callable[[], Any], timeout_s: float = 30.0) -> Any:
        """Poll ``condition()`` every 0.1 s until it is truthy; returns its value. Raises
        ``TimeoutError`` naming ``what`` after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(
                    _("waited {seconds:.0f} s for {what}").format(seconds=timeout_s, what=what)
                )
            time.sleep(0.1)

    def watch(self, topic: str, partition: int = 0, *, interval_s: float = 0.25, **plot_options):
        """A live plot of the partition's leader and ISR size over time (a ``LivePlot``;
        ``plot.stop()`` or ``nb.stop_all()`` ends it). ``plot.history`` keeps the samples."""
        from labkit.nb.cluster_plot import ClusterPlot

        plot = ClusterPlot(self, topic, partition, interval_s=interval_s, **plot_options)
        self._plots.append(plot)
        return plot

    def _read_json(self, path: str) -> Any:
        client = self._zk()
        from kazoo.exceptions import NoNodeError

        try:
            data, _stat = client.get(path)
        except NoNodeError:
            return None
        return json.loads(data) if data else None

    def _zk(self) -> Any:
        with self._lock:
            if self._kazoo is None:
                from kazoo.client import KazooClient

                client = KazooClient(hosts=self.zookeeper, timeout=10.0)
                client.start(timeout=15)
                self._kazoo = client
            return self._kazoo

    def _describe_by_broker(self, topic: str, broker_id: int) -> list[PartitionState]:
        self._local_only("describe(broker=...)")
        self._known(broker_id)
        from labkit.client.transport import Transport

        # one connection to that broker alone (a client would ask any broker)
        transport = Transport([self._bootstrap[broker_id]], client_id="labkit-nb-cluster")
        try:
            header = transport.call("metadata", {"topics": [topic]}).header
        finally:
            transport.close()
        rows = header.get("topics") or [{}]
        if rows[0].get("error") or not rows[0].get("partitions"):
            raise IllegalArgumentError(
                _("no topic {topic!r} in this cluster: create it first").format(topic=topic)
            )
        return states_from_metadata(topic, rows[0]["partitions"])

    def _describe_by_metadata(self, topic: str) -> list[PartitionState]:
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap_servers)
        try:
            rows = admin.describe_topics([topic])
        finally:
            admin.close()
        if not rows or rows[0].get("error_code"):
            raise IllegalArgumentError(
                _("no topic {topic!r} in this cluster: create it first").format(topic=topic)
            )
        return states_from_metadata(topic, rows[0]["partitions"])

    # -- life ------------------------------------------------------------------

    def close(self) -> None:
        """Stop the live plots, the brokers and ZooKeeper; remove the data. Safe twice."""
        global _RUNNING
        for plot in self._plots:
            plot.stop()
        self._plots.clear()
        if self._kazoo is not None:
            try:
                self._kazoo.stop()
                self._kazoo.close()
            except Exception:  # noqa: BLE001 - closing: ZooKeeper may be gone already
                pass
            self._kazoo = None
        for broker_id, proc in self._processes.items():
            if broker_id in self._paused and proc.pid is not None:
                try:
                    os.kill(proc.pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
            proc.close()
        self._paused.clear()
        if self._zk_server is not None:
            self._zk_server.close()
            self._zk_server = None
        if self._home is not None:
            shutil.rmtree(self._home, ignore_errors=True)
            self._home = None
        if _RUNNING is self:
            _RUNNING = None

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = _("local") if self.local else CLUSTER_ENV
        return f"<Cluster {where}: brokers {self.bootstrap_servers}; zookeeper {self.zookeeper}>"


def _start_local(brokers: int, session_timeout_ms: int, replica_lag_ms: int) -> Cluster:
    from labkit.launch.broker import BrokerProcess
    from labkit.launch.zookeeper import ZooKeeperMissing, ZooKeeperServer

    try:
        zk_server = ZooKeeperServer().start()
    except ZooKeeperMissing as exc:
        raise IllegalStateError(
            _(
                "cannot start the notebook's cluster: {reason}. Then run this cell again (or set ${env} to a running cluster's brokers)"
            ).format(reason=exc, env=CLUSTER_ENV)
        ) from None
    home = Path(tempfile.mkdtemp(prefix="labkit-cluster-"))
    made = Cluster(zk_server.connect, {}, local=True)
    made._zk_server = zk_server
    made._home = home
    try:
        for broker_id in range(1, brokers + 1):
            made._processes[broker_id] = BrokerProcess(
                data_dir=home / f"broker-{broker_id}",
                config={
                    "broker.id": str(broker_id),
                    "zookeeper.connect": zk_server.connect,
                    "zookeeper.session.timeout.ms": str(session_timeout_ms),
                    "replica.lag.time.max.ms": str(replica_lag_ms),
                },
                start_timeout_s=BROKER_START_TIMEOUT_S,
            )
        # side by side: a Python start-up is mostly imports, and a lab machine has cores
        with ThreadPoolExecutor(max_workers=brokers) as pool:
            for proc in pool.map(lambda proc: proc.start(), made._processes.values()):
                made._bootstrap[int(proc.config["broker.id"])] = proc.bootstrap
    except BaseException:
        made.close()
        raise
    return made


def cluster(
    brokers: int = 3,
    *,
    local: bool | None = None,
    session_timeout_ms: int = SESSION_TIMEOUT_MS,
    replica_lag_ms: int = REPLICA_LAG_MS,
) -> Cluster:
    """The notebook's cluster: the running one, else a new local one (ZooKeeper and
    ``brokers`` labkit brokers), else -- with ``$LABKIT_CLUSTER`` set and ``local`` not
    True -- the cluster it names (describe only). Raises ``IllegalStateError`` saying what
    to run when ZooKeeper's jars or Java are missing."""
    global _RUNNING
    if _RUNNING is not None:
        return _RUNNING
    if not 1 <= brokers <= 9:
        raise IllegalArgumentError(
            _("brokers={brokers}: a lab cluster has 1 to 9 brokers").format(brokers=brokers)
        )
    named = existing_cluster() if local is not True else None
    if named is not None:
        servers, zookeeper = named
        addresses = [s.strip() for s in servers.split(",") if s.strip()]
        _RUNNING = Cluster(zookeeper, dict(enumerate(addresses, start=1)), local=False)
    else:
        _RUNNING = _start_local(brokers, session_timeout_ms, replica_lag_ms)
        atexit.register(_RUNNING.close)
    return _RUNNING
