"""Which broker to ask: each partition's leader and each broker's ZeroMQ endpoint.

Theory of operation
-------------------
A labkit cluster (docs/replication.md) answers ``metadata`` with every live broker
(``node_id``, Kafka ``host``/``port``, ``zmq_host``/``zmq_port``) and, per partition,
its ``leader``. Produce and fetch requests must go to a partition's leader (the others
answer NOT_LEADER_OR_FOLLOWER), so the client keeps one connection per broker it needs
(client/connections.py) and ``Routes`` says which one:

- ``update(header)`` takes every metadata answer the transport carries (whoever asked:
  the producer's refresh, the consumer's, the admin's): the brokers' endpoints and the
  leaders of the topics it names. A topic the answer names with an error keeps no
  leaders (its requests go to any broker, which answers why).
- ``multi`` is True once an answer names several brokers (and stays True). Until then (single-broker
  mode, the default) nothing is routed: ``split()`` returns one group for the bootstrap
  connection and costs one attribute read, so one broker pays nothing for this.
- ``split(items, tp_of)`` groups items (batches, fetch rows) by their partition's
  leader, keeping their order within each group: one request per leader, all of them
  in flight at once. A partition whose leader is unknown (-1 while an election runs,
  or a topic not in metadata yet) goes to ``ANY_BROKER``; the broker then answers
  NOT_LEADER_OR_FOLLOWER / LEADER_NOT_AVAILABLE and the caller refreshes metadata and
  tries again after ``retry_backoff_ms``.

Written on the I/O thread (metadata answers), read by the I/O thread and the
consumer's thread: every update replaces whole dicts, so readers see the old or the
new table, never half of one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

ANY_BROKER = None  # no leader known: the bootstrap connection (or any live one)

T = TypeVar("T")


class Routes:
    def __init__(self, bootstrap_node: int | None = None):
        self.bootstrap_node = bootstrap_node  # the node id the bootstrap broker answered
        self.multi = False  # metadata named several brokers: route by leader
        self._leaders: dict[tuple[str, int], int] = {}
        self._endpoints: dict[int, str] = {}  # node id -> "host:port" of its ZeroMQ socket

    def update(self, header: dict[str, Any]) -> None:
        """Apply a metadata answer: brokers' endpoints and the named topics' leaders.
        Rows that are not what docs/wire.md says are skipped (a broken answer must not
        take the I/O thread down)."""
        brokers = _dicts(header.get("brokers"))
        endpoints = {}
        for broker in brokers:
            node, port = broker.get("node_id"), broker.get("zmq_port")
            if type(node) is int and type(port) is int:
                host = broker.get("zmq_host") or broker.get("host") or "localhost"
                endpoints[node] = f"{host}:{port}"
        if endpoints:
            self._endpoints = endpoints
        if len(brokers) > 1:
            self.multi = True  # and stays so: a cluster down to one live broker still routes
        if not self.multi:
            return
        leaders = dict(self._leaders)
        for topic in _dicts(header.get("topics")):
            name = topic.get("name")
            if not isinstance(name, str):
                continue  # a malformed row: no route to update
            for key in [k for k in leaders if k[0] == name]:
                del leaders[key]
            if topic.get("error", 0):
                continue
            for row in _dicts(topic.get("partitions")):
                partition, leader = row.get("partition"), row.get("leader", -1)
                if type(partition) is int and type(leader) is int and leader >= 0:
                    leaders[(name, partition)] = leader
        self._leaders = leaders

    def learn_coordinator(self, header: dict[str, Any]) -> None:
        """Apply a find_coordinator answer: in cluster mode it names the coordinator's
        ZeroMQ endpoint (metadata may not have named that broker yet)."""
        node, port = header.get("node_id"), header.get("zmq_port")
        if type(node) is int and type(port) is int:
            host = header.get("zmq_host") or header.get("host") or "localhost"
            self._endpoints = {**self._endpoints, node: f"{host}:{port}"}
            self.multi = True  # only a cluster's brokers answer with an endpoint

    def leader(self, topic: str, partition: int) -> int | None:
        """The node id leading the partition; ``ANY_BROKER`` when not known."""
        return self._leaders.get((topic, partition), ANY_BROKER)

    def endpoint(self, node: int) -> str | None:
        """The ``host:port`` of a broker's ZeroMQ socket, as metadata named it."""
        return self._endpoints.get(node)

    @property
    def nodes(self) -> set[int]:
        return set(self._endpoints)

    def split(
        self, items: Iterable[T], tp_of: Callable[[T], tuple[str, int]]
    ) -> list[tuple[int | None, list[T]]]:
        """Group ``items`` by the leader of their partition (order kept in each group)."""
        if not self.multi:
            return [(ANY_BROKER, list(items))]
        leaders = self._leaders
        groups: dict[int | None, list[T]] = {}
        for item in items:
            node = leaders.get(tp_of(item), ANY_BROKER)
            group = groups.get(node)
            if group is None:
                groups[node] = [item]
            else:
                group.append(item)
        return list(groups.items())


def _dicts(rows: object) -> list[dict]:
    return [row for row in rows if isinstance(row, dict)] if isinstance(rows, list) else []


class Backoff:
    """Partitions that wait ``retry_backoff_ms`` before they are fetched again: their
    leader answered NOT_LEADER_OR_FOLLOWER / LEADER_NOT_AVAILABLE, or could not be
    reached, and metadata is being refreshed (Kafka's consumer waits the same)."""

    def __init__(self, backoff_ms: float):
        self._backoff = backoff_ms / 1000.0
        self._until: dict[Any, float] = {}

    def __bool__(self) -> bool:
        return bool(self._until)

    def hold(self, tps: Iterable[Any], now: float) -> None:
        until = now + self._backoff
        for tp in tps:
            self._until[tp] = until

    def held(self, tp: Any, now: float) -> bool:
        until = self._until.get(tp)
        if until is None:
            return False
        if now >= until:
            del self._until[tp]
            return False
        return True

    def next_in(self, now: float) -> float | None:
        """Seconds until the first held partition may be fetched (None: none held)."""
        if not self._until:
            return None
        return max(0.0, min(self._until.values()) - now)
