"""The transport's connections: the bootstrap broker's, plus one per other broker it needs.

Theory of operation
-------------------
Single-broker mode (the default) has exactly one connection, the one the bootstrap
opened; nothing here adds work to it (``for_node`` returns it after one attribute
read; ``Waiter`` polls it as before).

In cluster mode (``Routes.multi``: metadata named several brokers) a request may name
the broker it is for (``node``: a partition's leader, client/routing.py). ``for_node``
opens that broker's connection on first use, at the ZeroMQ endpoint metadata gave
(``zmq_host:zmq_port``); the bootstrap broker's node id keeps the bootstrap
connection, so no broker gets two. A request that names no broker goes to the
bootstrap connection while it is up, else to any connection that is (metadata must
still be asked when the bootstrap broker died).

Every connection of a cluster is *fail-fast* (``ZmtpConnection.fail_fast``): a
connect that fails reports ``on_down`` as a lost connection does, so requests waiting
for a broker that is gone (kill -9) fail at once with KafkaConnectionError -- which
is retriable and says metadata is stale -- instead of waiting ``request_timeout_ms``
for a broker that will not come back; the producer and fetcher then refresh metadata
and go to the new leader.

``Waiter`` sleeps in ``poll(2)`` (``select(2)`` without it) on the wake-up pair and
every connection's socket. Only the transport's I/O thread uses this module.
"""

from __future__ import annotations

import select
from collections.abc import Callable

from labkit.client.routing import ANY_BROKER, Routes
from labkit.client.zmtp import ZmtpConnection


class Connections:
    def __init__(
        self,
        bootstrap: ZmtpConnection,
        routes: Routes,
        open_connection: Callable[[str, int], ZmtpConnection],
    ):
        self.bootstrap = bootstrap
        self.routes = routes
        self._open = open_connection
        self.by_node: dict[int, ZmtpConnection] = {}
        self.all: list[ZmtpConnection] = [bootstrap]  # what the I/O thread polls

    def for_node(self, node: int | None) -> ZmtpConnection | None:
        """The connection to ``node`` (opened now if new); None when metadata names no
        endpoint for it. ``ANY_BROKER``: the bootstrap one, or any that is up."""
        routes = self.routes
        if not routes.multi:
            return self.bootstrap
        self.bootstrap.fail_fast = True  # a cluster: its brokers may die for good
        if node is ANY_BROKER:
            return self.any_live()
        if node == routes.bootstrap_node:
            return self.bootstrap
        conn = self.by_node.get(node)
        if conn is None:
            endpoint = routes.endpoint(node)
            if endpoint is None:
                return None
            host, _, port = endpoint.rpartition(":")
            conn = self._open(host.strip("[]"), int(port))
            conn.fail_fast = True
            self.by_node[node] = conn
            self.all.append(conn)
        return conn

    def any_live(self) -> ZmtpConnection:
        if self.bootstrap.state == "ready":
            return self.bootstrap
        for conn in self.all:
            if conn.state == "ready":
                return conn
        for node in sorted(self.routes.nodes):  # none is up: try a broker not tried yet
            if node != self.routes.bootstrap_node and node not in self.by_node:
                return self.for_node(node) or self.bootstrap
        return self.bootstrap

    def node_of(self, conn: ZmtpConnection) -> str:
        """How log lines and errors name a connection's broker."""
        for node, known in self.by_node.items():
            if known is conn:
                return f"broker {node} at {conn.host}:{conn.port}"
        return f"{conn.host}:{conn.port}"


class Waiter:
    """Sleep until the wake-up pair or a connection's socket is ready, or a timeout."""

    def __init__(self, wake_fd: int):
        self._wake_fd = wake_fd
        self._poll = select.poll() if hasattr(select, "poll") else None
        if self._poll is not None:
            self._poll.register(wake_fd, select.POLLIN)
        self._polled: dict[int, int] = {}  # fd -> the mask registered for it

    def __call__(
        self, conns: list[ZmtpConnection], timeout_ms: int
    ) -> tuple[bool, list[ZmtpConnection], list[ZmtpConnection]]:
        """(woken, readable connections, writable connections)."""
        by_fd: dict[int, ZmtpConnection] = {}
        wanted: dict[int, int] = {}
        for conn in conns:
            fd = conn.fileno()
            if fd is not None:
                by_fd[fd] = conn
                wanted[fd] = (
                    (select.POLLIN | select.POLLOUT) if conn.wants_write() else select.POLLIN
                )
        if self._poll is None:
            return self._select(by_fd, wanted, timeout_ms)
        polled = self._polled
        if wanted != polled:
            for fd in polled:
                if fd not in wanted:
                    self._poll.unregister(fd)  # closed, or a connection down
            for fd, mask in wanted.items():
                if polled.get(fd) != mask:
                    self._poll.register(fd, mask)  # a known fd: its mask is changed
            self._polled = wanted
        woken = False
        readable: list[ZmtpConnection] = []
        writable: list[ZmtpConnection] = []
        for ready_fd, events in self._poll.poll(timeout_ms):
            if ready_fd == self._wake_fd:
                woken = True
                continue
            ready = by_fd.get(ready_fd)
            if ready is None:
                continue
            # an error or hang-up is found by the read (or the connect check)
            if events & ~select.POLLOUT:
                readable.append(ready)
            if events & select.POLLOUT:
                writable.append(ready)
        return woken, readable, writable

    def _select(self, by_fd: dict, wanted: dict, timeout_ms: int):
        reads = [self._wake_fd, *by_fd]
        writes = [fd for fd, mask in wanted.items() if mask & select.POLLOUT]
        r, w, x = select.select(reads, writes, reads, timeout_ms / 1000.0)
        readable = [by_fd[fd] for fd in by_fd if fd in r or fd in x]
        return self._wake_fd in r, readable, [by_fd[fd] for fd in w]
