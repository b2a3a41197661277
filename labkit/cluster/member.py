"""One broker's life in a ZooKeeper-coordinated cluster: the thin kazoo layer.

Theory of operation
-------------------
``ClusterMember`` owns one kazoo client (kazoo runs its own connection threads) and one
worker thread, ``labkit-cluster``. It never touches the broker's state: it publishes an
immutable ``ClusterSnapshot`` (cluster/decisions.py) and calls ``on_change`` with each new
one; the broker hands that to its loop thread (broker/cluster_sync.py).

- **start()** connects (a clear ``ZooKeeperUnavailable`` naming the address when it
  cannot), creates Kafka's persistent paths and ``/cluster/id``, registers
  ``/brokers/ids/<id>`` as an ephemeral node (waiting up to one session timeout for a
  previous session of the same id to expire), reads a first snapshot and starts the worker.
- **The worker** sleeps until a watch fires (every read arms a one-shot watch that sets
  one event: cluster/snapshot_reader.py), a session event arrives, or ``RESYNC_S``
  passes; then it re-registers if the session was lost, contends for the controller's
  seat, reads a whole snapshot, and, as controller, writes its decisions
  (cluster/controller.py: election, fencing by ``/controller_epoch``, the writes).
- **Admin writes** (``create_topic``, ``delete_topic``, ``add_partitions``) come from the
  broker's loop thread and go to cluster/admin.py (each bounded by ``ADMIN_TIMEOUT_S``).
- **The leader's ISR writes** (``update_isr``, from the broker's ``labkit-isr`` thread): the
  state znode set at the version the leader read, as Kafka 2.x's leader did; a state the
  controller changed since fails the write and the leader decides again.
- **stop()** closes the session, so the ephemeral nodes go at once (a clean shutdown hands
  the controller over without waiting for a session timeout).

Thread-safety: ``snapshot`` is replaced whole (one reference assignment); kazoo's client is
thread-safe; the worker is the only thread that makes controller writes.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from collections.abc import Callable

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import BadVersionError, KazooException, NodeExistsError, NoNodeError
from kazoo.handlers.threading import KazooTimeoutError

from labkit.cluster import znodes
from labkit.cluster.admin import TopicAdmin
from labkit.cluster.controller import ControllerSeat
from labkit.cluster.decisions import ClusterSnapshot
from labkit.cluster.producer_id_blocks import ZkProducerIdBlocks
from labkit.cluster.snapshot_reader import SnapshotReader
from labkit.cluster.zk_errors import ADMIN_TIMEOUT_S, ZooKeeperUnavailable, how_to_start
from labkit.cluster.znodes import Assignment, BrokerInfo
from labkit.errors import KafkaConfigurationError

__all__ = ["ADMIN_TIMEOUT_S", "ClusterMember", "ClusterSettings", "ZooKeeperUnavailable"]

log = logging.getLogger(__name__)

RESYNC_S = 5.0  # a full read even when no watch fired (a safety net, not the mechanism)
RETRY_S = 0.5  # after a failed round (ZooKeeper away), before the next


@dataclasses.dataclass(frozen=True)
class ClusterSettings:
    broker_id: int
    connect: str  # HOST:PORT[,HOST:PORT...][/chroot]
    session_timeout_ms: int = 18_000  # Kafka 2.5+'s zookeeper.session.timeout.ms
    connection_timeout_ms: int | None = None  # None: the session timeout (Kafka's)
    unclean_leader_election: bool = False
    default_replication_factor: int = 1
    min_insync_replicas: int = 1  # the broker's default (acks=all enforces it)


class ClusterMember:
    """This broker in the cluster (see the module docstring)."""

    def __init__(
        self,
        settings: ClusterSettings,
        info: BrokerInfo,
        on_change: Callable[[ClusterSnapshot], None] = lambda snapshot: None,
        rng: random.Random | None = None,
    ):
        self.settings = settings
        self.info = info
        self.on_change = on_change
        self.snapshot = ClusterSnapshot()
        self._zk = KazooClient(
            hosts=settings.connect,
            timeout=settings.session_timeout_ms / 1000.0,
            connection_retry={"max_tries": -1, "delay": 0.2, "max_delay": 1.0},
        )
        self._zk.add_listener(self._session_event)
        self._wake = threading.Event()
        self._stopping = False
        self._registered = False
        self._thread: threading.Thread | None = None
        self._seat = ControllerSeat(self._zk, settings.broker_id, self._wake.set)
        self._reader = SnapshotReader(self._zk, self._poke)
        self._admin = TopicAdmin(self._zk, rng or random.Random(), self._wake.set)
        self._producer_id_blocks = ZkProducerIdBlocks(self._zk, settings.broker_id)

    @property
    def is_controller(self) -> bool:
        return self._seat.is_controller

    @property
    def controller_epoch(self) -> int:
        return self._seat.controller_epoch

    # -- life cycle --------------------------------------------------------------------------

    def start(self) -> ClusterMember:
        """Connect, register, read the cluster, start the worker.

        Raises ZooKeeperUnavailable, KafkaConfigurationError (the id is taken)."""
        settings = self.settings
        wait_ms = settings.connection_timeout_ms or settings.session_timeout_ms
        self._ensure_chroot(wait_ms / 1000.0)
        try:
            self._zk.start(timeout=wait_ms / 1000.0)
        except KazooTimeoutError:
            self._zk.close()
            raise ZooKeeperUnavailable(
                f"cannot reach ZooKeeper at {settings.connect} (tried for {wait_ms} ms, "
                f"zookeeper.connection.timeout.ms). {how_to_start(settings.connect)}"
            ) from None
        try:
            for path in znodes.PERSISTENT_PATHS:
                self._zk.ensure_path(path)
            self._ensure_cluster_id()
            self._register(wait_s=settings.session_timeout_ms / 1000.0 + 1.0)
            self._round()
        except BaseException:
            self._zk.stop()
            self._zk.close()
            raise
        self._thread = threading.Thread(target=self._work, name="labkit-cluster", daemon=True)
        self._thread.start()
        return self

    def _ensure_chroot(self, timeout_s: float) -> None:
        """Kafka creates ``zookeeper.connect``'s chroot path when it is missing; so do we."""
        hosts, slash, chroot = self.settings.connect.partition("/")
        if not slash or not chroot.strip("/"):
            return
        bare = KazooClient(hosts=hosts, timeout=self.settings.session_timeout_ms / 1000.0)
        try:
            bare.start(timeout=timeout_s)
        except KazooTimeoutError:
            bare.close()
            raise ZooKeeperUnavailable(
                f"cannot reach ZooKeeper at {hosts} (tried for {timeout_s * 1000:.0f} ms). "
                f"{how_to_start(self.settings.connect)}"
            ) from None
        try:
            bare.ensure_path("/" + chroot.strip("/"))
        finally:
            bare.stop()
            bare.close()

    def stop(self) -> None:
        """Close the session (the ephemeral nodes go with it) and end the worker."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5.0)
        try:
            self._zk.stop()
        finally:
            self._zk.close()

    def _session_event(self, state: str) -> None:
        """kazoo's connection thread: never block here."""
        if state == KazooState.LOST:  # the session expired: its ephemeral nodes are gone
            self._registered = False
            self._seat.lost()
        self._wake.set()

    def _poke(self, _event: object = None) -> None:
        self._wake.set()

    # -- the worker ------------------------------------------------------------------------------

    def _work(self) -> None:
        while not self._stopping:
            self._wake.wait(RESYNC_S)
            self._wake.clear()
            if self._stopping:
                return
            try:
                self._round()
            except (KazooException, KazooTimeoutError) as exc:
                log.warning("ZooKeeper round failed (%s); retrying", type(exc).__name__)
                time.sleep(RETRY_S)
                self._wake.set()
            except Exception:
                log.exception("cluster round failed; retrying")
                time.sleep(RETRY_S)
                self._wake.set()

    def _round(self) -> None:
        """Register if needed, contend for controller, read everything, act as controller."""
        if self._zk.state != KazooState.CONNECTED:
            return
        if not self._registered:
            self._register(wait_s=0.0)
        self._seat.contend()
        snapshot = self._reader.read()
        self._seat.check_seat(snapshot)
        unclean = self.settings.unclean_leader_election
        if self.is_controller and self._seat.control(snapshot, unclean):
            snapshot = self._reader.read()
        self.snapshot = snapshot
        self.on_change(snapshot)

    # -- registration ------------------------------------------------------------------------

    def _ensure_cluster_id(self) -> None:
        try:
            self._zk.create(znodes.CLUSTER_ID, znodes.encode_cluster_id(znodes.new_cluster_id()))
        except NodeExistsError:
            pass

    def _register(self, wait_s: float) -> None:
        path = znodes.broker_path(self.settings.broker_id)
        data = znodes.encode_broker(self.info, int(time.time() * 1000))
        deadline = time.monotonic() + wait_s
        while True:
            try:
                self._zk.create(path, data, ephemeral=True)
                self._registered = True
                log.info("registered as broker %d at %s", self.settings.broker_id, path)
                return
            except NodeExistsError:
                if time.monotonic() >= deadline:
                    raise KafkaConfigurationError(
                        f"broker.id {self.settings.broker_id} is already registered in "
                        f"ZooKeeper ({path} at {self.settings.connect}): another broker runs "
                        "with this id. Give each broker its own --broker-id."
                    ) from None
                if wait_s:
                    log.info("%s exists (an earlier session?): waiting for it to expire", path)
                time.sleep(0.2)

    # -- the leader's ISR writes (from the broker's replication thread) -------------------------

    def update_isr(
        self, topic: str, partition: int, state: znodes.PartitionState, version: int
    ) -> bool:
        """A leader's new ISR, written as Kafka 2.x's leader did in ZooKeeper mode: the
        state znode set only at ``version`` (the one this leader read), so a leader the
        controller has replaced since, or a state the controller changed, fails. True
        when written; the worker then reads it (the set fires the state's watch)."""
        try:
            self._zk.set_async(
                znodes.state_path(topic, partition), znodes.encode_state(state), version
            ).get(timeout=ADMIN_TIMEOUT_S)
        except (BadVersionError, NoNodeError):
            return False
        self._poke()
        return True

    # -- admin writes (from the broker's loop thread; cluster/admin.py) --------------------------

    def live_brokers(self) -> list[int]:
        return self._admin.live_brokers()

    def create_topic(
        self, name: str, partitions: int, replication_factor: int, config: dict[str, str]
    ) -> Assignment:
        return self._admin.create_topic(name, partitions, replication_factor, config)

    def add_partitions(self, name: str, total: int) -> Assignment:
        return self._admin.add_partitions(name, total)

    def delete_topic(self, name: str) -> None:
        self._admin.delete_topic(name)

    def claim_producer_ids(self, floor: int) -> int:
        """A block of producer ids claimed cluster-wide, its first id (blocks on ZooKeeper:
        the broker's producer-ids thread calls it; cluster/producer_id_blocks.py)."""
        return self._producer_id_blocks.claim(floor).first
