"""Reading the whole cluster from ZooKeeper into one ``ClusterSnapshot``.

Theory of operation
-------------------
``SnapshotReader.read()`` walks Kafka's layout (cluster/znodes.py) in one pass: the broker
registrations, ``/controller`` and its epoch, ``/cluster/id``, the topics marked for
deletion, and each topic's assignment, config and partition states (with their znode
versions, which the controller's and the leader's conditional writes check). Every read
arms a one-shot watch whose callback (``poke``) wakes the member's worker, which then
reads again: the watches are the mechanism, the worker's periodic resync only a safety
net. A znode that is not Kafka's JSON (a student's ``zkCli.sh set``) is skipped and said
once, not on every round.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError

from labkit.cluster import znodes
from labkit.cluster.decisions import ClusterSnapshot, TopicView

log = logging.getLogger(__name__)


class SnapshotReader:
    """Reads snapshots; ``poke`` is every watch's callback (see the module docstring)."""

    def __init__(self, zk: KazooClient, poke: Callable[[object], None]):
        self._zk = zk
        self._poke = poke
        self._skipped: set[str] = set()  # junk znodes already reported

    def read(self) -> ClusterSnapshot:
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
