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
  one event), a session event arrives, or ``RESYNC_S`` passes; then it re-registers if the
  session was lost, tries to become controller when ``/controller`` is empty (ephemeral:
  it vanishes with its owner's session, so a dead controller is replaced within the session
  timeout), reads a whole snapshot, and, as controller, writes the decisions of
  ``partition_changes`` and ``topics_to_delete``.
- **Fencing**: becoming controller increments ``/controller_epoch`` with a conditional set;
  every state write is a ZooKeeper transaction that checks that znode's version, plus the
  state znode's own version, so a controller that lost its seat cannot overwrite a newer
  controller's decision: its transaction fails, it frees ``/controller`` if that is still
  its own, and the next round elects again (with a new epoch) rather than leaving the
  cluster without a controller.
- **Admin writes** (``create_topic``, ``delete_topic``, ``add_partitions``) are called by
  the broker's loop thread; each waits at most ``ADMIN_TIMEOUT_S`` for ZooKeeper. They
  write what Kafka's AdminZkClient wrote: the config, then the assignment (the controller
  then creates the partition states), or the ``/admin/delete_topics`` marker.
- **The leader's ISR writes** (``update_isr``, from the broker's ``labkit-isr`` thread): the
  state znode set at the version the leader read, as Kafka 2.x's leader did; a state the
  controller changed since fails the write and the leader decides again.
- **stop()** closes the session, so the ephemeral nodes go at once (a clean shutdown hands
  the controller over without waiting for a session timeout).

Thread-safety: ``snapshot`` is replaced whole (one reference assignment); kazoo's client is
thread-safe; the worker is the only thread that makes controller writes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import (
    BadVersionError,
    KazooException,
    NodeExistsError,
    NoNodeError,
    RolledBackError,
)
from kazoo.handlers.threading import KazooTimeoutError

from labkit.cluster import znodes
from labkit.cluster.decisions import (
    ClusterSnapshot,
    TopicView,
    added_partitions_assignment,
    new_topic_assignment,
    partition_changes,
    topics_to_delete,
)
from labkit.cluster.znodes import Assignment, BrokerInfo
from labkit.errors import (
    KafkaConfigurationError,
    RequestTimedOutError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)

log = logging.getLogger(__name__)

RESYNC_S = 5.0  # a full read even when no watch fired (a safety net, not the mechanism)
ADMIN_TIMEOUT_S = 10.0  # an admin write from the broker's loop waits at most this
RETRY_S = 0.5  # after a failed round (ZooKeeper away), before the next


class ZooKeeperUnavailable(KafkaConfigurationError):
    """ZooKeeper did not answer at ``zookeeper.connect``; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class ClusterSettings:
    broker_id: int
    connect: str  # HOST:PORT[,HOST:PORT...][/chroot]
    session_timeout_ms: int = 18_000  # Kafka 2.5+'s zookeeper.session.timeout.ms
    connection_timeout_ms: int | None = None  # None: the session timeout (Kafka's)
    unclean_leader_election: bool = False
    default_replication_factor: int = 1
    min_insync_replicas: int = 1  # the broker's default (acks=all enforces it)


def _how_to_start(connect: str) -> str:
    return (
        f"Start ZooKeeper first and check zookeeper.connect={connect}: e.g. Apache "
        "ZooKeeper 3.8's `bin/zkServer.sh start`, `docker run -p 2181:2181 zookeeper:3.8`, "
        "or in a labkit checkout `make zookeeper` and labkit.testing.zookeeper "
        "(docs/replication.md). Without --zookeeper, labkit runs as one broker."
    )


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
        self._rng = rng or random.Random()
        self._zk = KazooClient(
            hosts=settings.connect,
            timeout=settings.session_timeout_ms / 1000.0,
            connection_retry={"max_tries": -1, "delay": 0.2, "max_delay": 1.0},
        )
        self._zk.add_listener(self._session_event)
        self._wake = threading.Event()
        self._stopping = False
        self._registered = False
        self._epoch_version: int | None = None  # set while this broker is the controller
        self.controller_epoch = 0
        self._thread: threading.Thread | None = None
        self._skipped: set[str] = set()  # junk znodes already reported

    @property
    def is_controller(self) -> bool:
        return self._epoch_version is not None

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
                f"zookeeper.connection.timeout.ms). {_how_to_start(settings.connect)}"
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
                f"{_how_to_start(self.settings.connect)}"
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
            self._epoch_version = None
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
        self._contend()
        snapshot = self._read()
        if self.is_controller and snapshot.controller_id != self.settings.broker_id:
            log.warning("broker %d is no longer the controller", self.settings.broker_id)
            self._epoch_version = None
        if self.is_controller and self._control(snapshot):
            snapshot = self._read()
        self.snapshot = snapshot
        self.on_change(snapshot)

    # -- registration and the controller -----------------------------------------------------

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

    def _contend(self) -> None:
        """Create /controller if it is empty; when it is ours, take the next epoch."""
        me = self.settings.broker_id
        try:
            self._zk.create(
                znodes.CONTROLLER,
                znodes.encode_controller(me, int(time.time() * 1000)),
                ephemeral=True,
            )
        except NodeExistsError:
            return
        try:
            data, stat = self._zk.get(znodes.CONTROLLER_EPOCH)
        except NoNodeError:
            try:
                self._zk.create(znodes.CONTROLLER_EPOCH, znodes.encode_epoch(0))
            except NodeExistsError:
                pass
            data, stat = self._zk.get(znodes.CONTROLLER_EPOCH)
        version = stat.version
        try:
            epoch = znodes.decode_epoch(data)
        except ValueError as exc:
            # fencing rests on the znode's version, not its text: start the count again
            log.warning("%s; broker %d writes epoch 1 over it", exc, me)
            epoch = 0
        try:
            stat = self._zk.set(znodes.CONTROLLER_EPOCH, znodes.encode_epoch(epoch + 1), version)
        except BadVersionError:  # another controller moved the epoch first: step down
            self._resign()
            return
        self.controller_epoch = epoch + 1
        self._epoch_version = stat.version
        log.info("broker %d is the controller (controller epoch %d)", me, epoch + 1)

    def _resign(self) -> None:
        """Stop acting as controller and free /controller if it is still ours, so that the
        next round elects again (with a new epoch) instead of leaving no one in charge."""
        self._epoch_version = None
        try:
            data, stat = self._zk.get(znodes.CONTROLLER)
            if znodes.decode_controller(data) == self.settings.broker_id:
                self._zk.delete(znodes.CONTROLLER, version=stat.version)
        except (NoNodeError, BadVersionError, ValueError):
            pass
        self._wake.set()

    def _control(self, snapshot: ClusterSnapshot) -> bool:
        """Write the controller's decisions. True when something was written."""
        wrote = False
        snapshot = dataclasses.replace(snapshot, controller_epoch=self.controller_epoch)
        unclean = self.settings.unclean_leader_election
        for change in partition_changes(snapshot, unclean):
            path = znodes.state_path(change.topic, change.partition)
            transaction = self._zk.transaction()
            transaction.check(znodes.CONTROLLER_EPOCH, self._epoch_version)
            if change.version is None:
                self._zk.ensure_path(path.rsplit("/", 1)[0])
                transaction.create(path, znodes.encode_state(change.new))
            else:
                transaction.set_data(path, znodes.encode_state(change.new), change.version)
            results = transaction.commit()
            if isinstance(results[0], BaseException) and not isinstance(
                results[0], RolledBackError
            ):
                log.warning(
                    "the controller epoch moved on: broker %d steps down", self.settings.broker_id
                )
                self._resign()
                return wrote
            if any(isinstance(result, BaseException) for result in results):
                continue  # the state moved since it was read: the next round decides again
            wrote = True
            log.info(
                "%s-%d: leader %d, leader epoch %d, isr %s (%s)",
                change.topic,
                change.partition,
                change.new.leader,
                change.new.leader_epoch,
                list(change.new.isr),
                change.why,
            )
        for name in topics_to_delete(snapshot):
            for path, recursive in (
                (znodes.topic_path(name), True),
                (znodes.config_path(name), False),
                (znodes.delete_path(name), False),
            ):
                try:
                    self._zk.delete(path, recursive=recursive)
                except NoNodeError:
                    pass  # gone already (another round, or never written)
            log.info("deleted topic %s", name)
            wrote = True
        return wrote

    # -- reading the cluster ------------------------------------------------------------------

    def _read(self) -> ClusterSnapshot:
        """Everything in one pass, each read arming a one-shot watch that wakes the worker."""
        zk, poke = self._zk, self._poke
        brokers = {}
        for child in zk.get_children(znodes.BROKER_IDS, watch=poke):
            if not child.isdigit():
                continue
            try:
                data, _ = zk.get(znodes.broker_path(int(child)))
                brokers[int(child)] = znodes.decode_broker(int(child), data)
            except NoNodeError:
                continue
            except ValueError as exc:
                self._skip(f"ignoring broker {child}: {exc}")
        controller = -1
        if zk.exists(znodes.CONTROLLER, watch=poke):
            try:
                controller = znodes.decode_controller(zk.get(znodes.CONTROLLER, watch=poke)[0])
            except (NoNodeError, ValueError):
                controller = -1
        try:
            epoch = znodes.decode_epoch(zk.get(znodes.CONTROLLER_EPOCH)[0])
        except (NoNodeError, ValueError):
            epoch = 0
        try:
            cluster_id = znodes.decode_cluster_id(zk.get(znodes.CLUSTER_ID)[0])
        except (NoNodeError, ValueError):
            cluster_id = None
        deleting = set(zk.get_children(znodes.DELETE_TOPICS, watch=poke))
        topics = {}
        for name in zk.get_children(znodes.TOPICS, watch=poke):
            view = self._read_topic(name, name in deleting)
            if view is not None:
                topics[name] = view
        return ClusterSnapshot(dict(sorted(brokers.items())), controller, epoch, cluster_id, topics)

    def _read_topic(self, name: str, deleting: bool) -> TopicView | None:
        zk, poke = self._zk, self._poke
        try:
            assignment = znodes.decode_topic(name, zk.get(znodes.topic_path(name), watch=poke)[0])
        except NoNodeError:
            return None
        except ValueError as exc:
            self._skip(f"ignoring topic {name}: {exc}")
            return None
        try:
            config = znodes.decode_config(name, zk.get(znodes.config_path(name), watch=poke)[0])
        except (NoNodeError, ValueError):
            config = {}
        states = {}
        for partition in assignment:
            path = znodes.state_path(name, partition)
            try:
                if zk.exists(path, watch=poke) is None:
                    continue
                data, stat = zk.get(path, watch=poke)
                states[partition] = (znodes.decode_state(f"{name}-{partition}", data), stat.version)
            except NoNodeError:
                continue
            except ValueError as exc:
                self._skip(f"ignoring the state of {name}-{partition}: {exc}")
        return TopicView(name, assignment, config, states, deleting)

    def _skip(self, why: str) -> None:
        """A znode that is not Kafka's JSON: said once (every round reads it again)."""
        if why not in self._skipped:
            self._skipped.add(why)
            log.warning("%s", why)

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

    # -- admin writes (from the broker's loop thread) ------------------------------------------

    def live_brokers(self) -> list[int]:
        """The ids of the brokers registered now, read afresh (a registration that is not
        Kafka's JSON does not count: no partition may be assigned to it)."""
        children = self._zk.get_children_async(znodes.BROKER_IDS).get(timeout=ADMIN_TIMEOUT_S)
        live = []
        for child in children:
            if not child.isdigit():
                continue
            path = znodes.broker_path(int(child))
            try:
                data, _ = self._zk.get_async(path).get(timeout=ADMIN_TIMEOUT_S)
                znodes.decode_broker(int(child), data)
            except (NoNodeError, ValueError):
                continue
            live.append(int(child))
        return sorted(live)

    def create_topic(
        self, name: str, partitions: int, replication_factor: int, config: dict[str, str]
    ) -> Assignment:
        """Write a new topic's config and assignment. Raises InvalidReplicationFactorError,
        TopicAlreadyExistsError, RequestTimedOutError."""
        with _admin(f"creating topic {name!r}"):
            assignment = new_topic_assignment(
                partitions, replication_factor, self.live_brokers(), self._rng
            )
            if self._zk.exists_async(znodes.topic_path(name)).get(timeout=ADMIN_TIMEOUT_S):
                raise TopicAlreadyExistsError(f"Topic '{name}' already exists.")
            config_data = znodes.encode_config(config)
            try:
                self._zk.create_async(znodes.config_path(name), config_data).get(
                    timeout=ADMIN_TIMEOUT_S
                )
            except NodeExistsError:  # left by an earlier attempt: ours now
                self._zk.set_async(znodes.config_path(name), config_data).get(
                    timeout=ADMIN_TIMEOUT_S
                )
            try:
                self._zk.create_async(
                    znodes.topic_path(name),
                    znodes.encode_topic(assignment, znodes.new_cluster_id()),
                ).get(timeout=ADMIN_TIMEOUT_S)
            except NodeExistsError:
                raise TopicAlreadyExistsError(f"Topic '{name}' already exists.") from None
        self._wake.set()
        return assignment

    def add_partitions(self, name: str, total: int) -> Assignment:
        """Grow a topic's assignment to ``total`` partitions (new ones on live brokers).
        Raises InvalidPartitionsError, UnknownTopicOrPartitionError, RequestTimedOutError."""
        with _admin(f"adding partitions to {name!r}"):
            try:
                data, stat = self._zk.get_async(znodes.topic_path(name)).get(
                    timeout=ADMIN_TIMEOUT_S
                )
            except NoNodeError:
                raise UnknownTopicOrPartitionError(f"topic {name!r} does not exist") from None
            existing = znodes.decode_topic(name, data)
            added = added_partitions_assignment(existing, total, self.live_brokers())
            topic_id = _topic_id(data)
            self._zk.set_async(
                znodes.topic_path(name),
                znodes.encode_topic({**existing, **added}, topic_id),
                stat.version,
            ).get(timeout=ADMIN_TIMEOUT_S)
        self._wake.set()
        return added

    def delete_topic(self, name: str) -> None:
        """Mark a topic for deletion (the controller deletes it). Raises
        UnknownTopicOrPartitionError, RequestTimedOutError."""
        with _admin(f"deleting topic {name!r}"):
            if not self._zk.exists_async(znodes.topic_path(name)).get(timeout=ADMIN_TIMEOUT_S):
                raise UnknownTopicOrPartitionError(f"topic {name!r} does not exist")
            try:
                self._zk.create_async(znodes.delete_path(name)).get(timeout=ADMIN_TIMEOUT_S)
            except NodeExistsError:
                pass  # already marked
        self._wake.set()


@contextlib.contextmanager
def _admin(what: str) -> Iterator[None]:
    """Turns ZooKeeper's timeouts and connection losses into REQUEST_TIMED_OUT."""
    try:
        yield
    except (NodeExistsError, NoNodeError):
        raise
    except (KazooTimeoutError, KazooException) as exc:
        raise RequestTimedOutError(
            f"ZooKeeper did not answer while {what} ({type(exc).__name__}); "
            "is it running? The broker retries its connection; try again."
        ) from None


def _topic_id(data: bytes) -> str:
    """The topic id Kafka's assignment znode holds (a new one when it has none)."""
    try:
        value = json.loads(data).get("topic_id")
    except (ValueError, AttributeError):
        value = None
    return value if isinstance(value, str) and value else znodes.new_cluster_id()
