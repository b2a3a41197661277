"""What a cluster says, for ``nb.cluster()`` (notebook 13): ``ClusterView``, the part of a
``Cluster`` that only reads -- its brokers' addresses, each partition's leader, replicas and
ISR, the controller, a live plot of a partition -- and starts no process.

Theory of operation
-------------------
A view knows the brokers' addresses (id -> ``host:port``) and, when it has one, the
ZooKeeper the cluster keeps its state in. ``describe(topic)`` reads that state from
ZooKeeper's znodes (what the controller wrote) through one kazoo client, opened at the first
read and kept until ``close()``; without a ZooKeeper it asks the brokers' Metadata (Kafka's
admin client). ``describe(topic, broker=id)`` asks one broker of a local cluster for its own
metadata, which follows ZooKeeper a moment later. ``watch()`` starts a ``ClusterPlot`` (a
thread of its own) and keeps it, so that ``close()`` stops it. The processes (kill, pause,
start) are ``Cluster``'s, in labkit/nb/cluster_mode.py.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from labkit.errors import IllegalArgumentError, IllegalStateError
from labkit.i18n import _
from labkit.nb.cluster_state import (
    CLUSTER_ENV,
    PartitionState,
    states_from_metadata,
    states_from_znodes,
)


class ClusterView:
    """The brokers' addresses and what the cluster says (see the module docstring)."""

    def __init__(self, zookeeper: str | None, bootstrap: dict[int, str], *, local: bool):
        self.zookeeper = zookeeper
        self._bootstrap = dict(bootstrap)
        self.local = local
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
        """The brokers that answer (a cluster elsewhere: every broker named)."""
        return self.broker_ids

    @property
    def any_alive(self) -> str:
        """The address of a running broker, for tools that take one (``--bootstrap-server``)."""
        alive = self.alive()
        if not alive:
            raise IllegalStateError(
                _("no broker of the cluster is running: start one with cluster.start(1)")
            )
        return self._bootstrap[alive[0]]

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
        """Stop the live plots and the ZooKeeper client. Safe twice."""
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
