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

What needs no process is elsewhere: the addresses, ``describe`` and ``watch`` in
``ClusterView`` (labkit/nb/cluster_view.py, which ``Cluster`` extends), the plain data
(ZooKeeper's JSON into rows, the environment) in labkit/nb/cluster_state.py, the plot in
labkit/nb/cluster_plot.py; the plain parts are unit-tested in tests/unit/test_nb_cluster_mode.py.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from labkit.errors import IllegalArgumentError, IllegalStateError
from labkit.i18n import _
from labkit.nb.cluster_state import CLUSTER_ENV, PartitionState, existing_cluster
from labkit.nb.cluster_view import ClusterView

__all__ = ["Cluster", "PartitionState", "cluster"]

# short, so that a failover takes seconds in a lesson (Kafka's default: 18000)
SESSION_TIMEOUT_MS = 4000
# a follower that comes back rejoins the ISR within half of this (Kafka's default: 30000)
REPLICA_LAG_MS = 4000
# a bound, not a wait: a broker's start is mostly Python's imports, slow on a busy machine
BROKER_START_TIMEOUT_S = 60.0

_RUNNING: Cluster | None = None


class Cluster(ClusterView):
    """A cluster of labkit brokers on ZooKeeper: a local one (``nb.cluster()`` starts it) or
    one named by ``$LABKIT_CLUSTER`` (describe only). See the module docstring."""

    def __init__(self, zookeeper: str | None, bootstrap: dict[int, str], *, local: bool):
        super().__init__(zookeeper, bootstrap, local=local)
        self._zk_server: Any = None
        self._processes: dict[int, Any] = {}
        self._paused: set[int] = set()
        self._home: Path | None = None

    def alive(self) -> list[int]:
        """The brokers running and not paused (a local cluster; else every broker named)."""
        if not self.local:
            return self.broker_ids
        return [
            i
            for i, proc in sorted(self._processes.items())
            if proc.proc is not None and proc.proc.poll() is None and i not in self._paused
        ]

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

    # -- life ------------------------------------------------------------------

    def close(self) -> None:
        """Stop the live plots, the brokers and ZooKeeper; remove the data. Safe twice."""
        global _RUNNING
        super().close()
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
