"""Per-connection byte budgets for the ROUTER socket. No zmq here.

Theory of operation
-------------------
libzmq bounds one frame (``ZMQ_MAXMSGSIZE``) and counts whole messages (the HWMs), but
never bytes per connection: a multipart message whose last frame never comes is kept
whole inside libzmq where the loop cannot see it (60 frames of 16 MiB = 960 MB), and
replies a client never reads queue in libzmq's pipe (~1 MB per fetch). So the broker
measures both with the kernel's TCP counters (Linux ``TCP_INFO``: ``bytes_received``,
``bytes_acked``) against what the loop itself has read and sent on that connection::

    buffered in  = bytes_received - wire bytes of the messages the loop has read
    buffered out = wire bytes of the replies the loop has sent - bytes_acked

(wire bytes = frames + their ZMTP frame headers; the handshake and heartbeats add a
few bytes of slack). Bytes in also count whole requests queued for the loop (at most
the server's RCVHWM of them), so a connection is judged stuck when it is over
``connection.max.buffered.bytes`` *and* the loop read nothing from it since the last
check (a message that never ends blocks everything behind it), or when it is over
``FLOOD_FACTOR`` times the budget (it sends faster than the loop can read). Replies
are judged by the budget alone. A connection judged so is shut down with ``shutdown(2)`` on its descriptor: libzmq reads end-of-file, closes the
connection and frees what it held; the client's ids are reported so the server can
drop their parked fetches. Other connections notice nothing. Since a request can
only complete once all its bytes are in, the budget also bounds one request's size.

Connections are learned from the socket monitor (``accepted``/``closed`` with the
descriptor); a client's routing id is tied to its descriptor by the first message it
sends (``ZMQ_SRCFD``). The monitor's events and the messages travel separately, and
the OS reuses a closed descriptor at once, so a new client's first message may come
before the old connection's ``closed``: ``bind`` compares the peer's address with the
one recorded for that descriptor and starts a new entry when they differ, and a
``closed`` event for an entry whose ``accepted`` has not come yet belongs to the
older connection and is ignored (the monitor reports a connection's events in order). Outbound budgets are checked as replies are sent (a syscall
only when the estimate passes the budget; the reply being sent never counts, so one
large fetch reply is always allowed); inbound ones by ``check()``, which the loop
calls every few tens of milliseconds. Where ``TCP_INFO`` lacks the counters (not
Linux), nothing is enforced and ``enforced`` is False.

Used by the loop thread only; not thread-safe.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import sys
from collections.abc import Callable

log = logging.getLogger(__name__)

# struct tcp_info (linux/tcp.h): __u64 tcpi_bytes_acked at 120, tcpi_bytes_received at 128
_TCP_INFO_COUNTERS = struct.Struct("=QQ")
_COUNTERS_AT = 120
_TCP_INFO_LEN = _COUNTERS_AT + _TCP_INFO_COUNTERS.size
FLOOD_FACTOR = 4  # bytes in beyond this many budgets are cut even while being read


def frame_overhead(size: int) -> int:
    """ZMTP 3 header bytes of one frame: flags + 1-byte size, or + 8-byte size."""
    return 2 if size < 256 else 9


def counters_supported() -> bool:
    """Whether this OS reports TCP byte counters at all (Linux's TCP_INFO)."""
    return getattr(socket, "TCP_INFO", None) is not None and sys.platform.startswith("linux")


def _borrowed_socket(fd: int) -> socket.socket:
    """A socket object over a duplicate of ``fd`` (closing it leaves libzmq's descriptor
    alone). Raises OSError, with the duplicate closed, when ``fd`` is no socket: the
    descriptor of a connection that closed may already be a log file."""
    dup = os.dup(fd)
    try:
        return socket.socket(fileno=dup)
    except OSError:
        os.close(dup)  # socket() refused it: without this, every check leaked one
        raise


def tcp_counters(fd: int) -> tuple[int, int] | None:
    """(bytes acked by the peer, bytes received from it) of a TCP socket descriptor, or
    None when the OS does not say (not Linux, not a TCP socket, already closed)."""
    option = getattr(socket, "TCP_INFO", None)
    if option is None or not sys.platform.startswith("linux"):
        return None
    try:
        with _borrowed_socket(fd) as sock:
            info = sock.getsockopt(socket.IPPROTO_TCP, option, _TCP_INFO_LEN)
    except OSError:
        return None
    if len(info) < _TCP_INFO_LEN:
        return None  # a kernel older than 4.1
    return _TCP_INFO_COUNTERS.unpack_from(info, _COUNTERS_AT)


def peer_address(fd: int) -> str:
    """``host:port`` of the peer of a socket descriptor, or '?' (closed, or its number
    already reused by a socket that is not TCP: a Unix socket's peer name is a string)."""
    try:
        with _borrowed_socket(fd) as sock:
            peer = sock.getpeername()
    except OSError:
        return "?"
    if not isinstance(peer, tuple) or len(peer) < 2:
        return "?"
    return f"{peer[0]}:{peer[1]}"


def shutdown_connection(fd: int) -> None:
    """shutdown(2) a TCP connection libzmq owns; libzmq reads end-of-file and closes it."""
    try:
        with _borrowed_socket(fd) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already gone


class Connection:
    __slots__ = (
        "fd",
        "peer",
        "identities",
        "read",
        "read_checked",
        "sent",
        "acked",
        "accepted",
        "cut",
    )

    def __init__(self, fd: int, peer: str, accepted: bool):
        self.fd = fd
        self.peer = peer
        self.identities: set[bytes] = set()
        self.read = 0  # wire bytes of the messages the loop has read
        self.read_checked = 0  # `read` at the previous check
        self.sent = 0  # wire bytes of the replies the loop has sent
        self.acked = 0  # bytes_acked when last asked
        self.accepted = accepted
        self.cut = False


class ConnectionTable:
    """Connections by descriptor and by client id, with byte budgets (see module doc)."""

    def __init__(
        self,
        budget: int,
        counters: Callable[[int], tuple[int, int] | None] = tcp_counters,
        shutdown: Callable[[int], None] = shutdown_connection,
        peer: Callable[[int], str] = peer_address,
        supported: bool | None = None,
    ):
        self.budget = budget
        self._supported = counters_supported() if supported is None else supported
        self._counters = counters
        self._shutdown = shutdown
        self._peer = peer
        self._by_fd: dict[int, Connection] = {}
        self._by_identity: dict[bytes, Connection] = {}
        self.enforced: bool | None = None  # unknown until the first connection
        self.closed_for_budget = 0

    def __len__(self) -> int:
        return len(self._by_fd)

    def knows(self, identity: bytes) -> bool:
        return identity in self._by_identity

    def accepted(self, fd: int) -> None:
        """The monitor saw a new connection on ``fd``."""
        conn = self._by_fd.get(fd)
        if conn is not None and not conn.accepted:
            conn.accepted = True  # its first message came before the monitor event
            return
        if conn is not None:
            self._forget(conn)  # a stale entry: that descriptor was closed and reused
        self._by_fd[fd] = Connection(fd, self._peer(fd), accepted=True)
        if self.enforced is None:
            if self._counters(fd) is not None:
                self.enforced = True
            elif not self._supported:
                self.enforced = False
                log.warning(
                    "this OS does not report TCP byte counters; per-connection "
                    "byte budgets (connection.max.buffered.bytes) are not enforced"
                )
            # else: that connection closed before the event was read (a port probe, a
            # scanner); judge by the next one, never disable the budgets for it

    def closed(self, fd: int) -> list[bytes]:
        """The monitor saw ``fd`` disconnect; returns the client ids that went with it."""
        conn = self._by_fd.get(fd)
        if conn is None or not conn.accepted:
            return []  # not yet accepted: the event is the older connection's
        self._forget(conn)
        return list(conn.identities)

    def bind(self, identity: bytes, fd: int) -> None:
        """The first message of ``identity`` came from ``fd`` (``ZMQ_SRCFD``)."""
        conn = self._by_fd.get(fd)
        if conn is not None and conn.accepted:
            peer = self._peer(fd)
            if peer != conn.peer:  # the descriptor was reused before its `closed` came
                self._forget(conn)
                conn = self._by_fd[fd] = Connection(fd, peer, accepted=False)
        if conn is None:
            conn = self._by_fd[fd] = Connection(fd, self._peer(fd), accepted=False)
        conn.identities.add(identity)
        self._by_identity[identity] = conn

    def on_read(self, identity: bytes, wire_bytes: int) -> None:
        conn = self._by_identity.get(identity)
        if conn is not None:
            conn.read += wire_bytes

    def on_send(self, identity: bytes, wire_bytes: int) -> list[bytes] | None:
        """Count a reply about to be sent. None: send it. A list: do not send, the
        connection is closed for unread replies (the list holds the client ids when it
        was closed just now, to release what they had waiting; else it is empty)."""
        conn = self._by_identity.get(identity)
        if conn is None or not self.enforced:
            return None
        if conn.cut:
            return []
        if conn.sent - conn.acked > self.budget:  # an estimate: refresh before judging
            counters = self._counters(conn.fd)
            if counters is not None:
                conn.acked = counters[0]
                if conn.sent - conn.acked > self.budget:
                    return self._cut(conn, "replies it has not read", conn.sent - conn.acked)
        conn.sent += wire_bytes
        return None

    def check(self) -> list[bytes]:
        """Measure every connection's unread request bytes; close those over budget.
        Returns the client ids of the connections closed."""
        if not self.enforced:
            return []
        gone: list[bytes] = []
        for conn in list(self._by_fd.values()):
            if conn.cut:
                continue
            counters = self._counters(conn.fd)
            if counters is None:
                continue
            conn.acked = counters[0]
            buffered_in = counters[1] - conn.read
            stalled = conn.read == conn.read_checked
            conn.read_checked = conn.read
            if buffered_in > self.budget * FLOOD_FACTOR or (buffered_in > self.budget and stalled):
                gone += self._cut(conn, "request bytes not yet complete or read", buffered_in)
        return gone

    def _cut(self, conn: Connection, what: str, size: int) -> list[bytes]:
        conn.cut = True
        self.closed_for_budget += 1
        self._shutdown(conn.fd)
        log.warning(
            "closed the connection from %s: it holds %d bytes of %s in the broker, "
            "more than connection.max.buffered.bytes=%d",
            conn.peer,
            size,
            what,
            self.budget,
        )
        return list(conn.identities)

    def _forget(self, conn: Connection) -> None:
        self._by_fd.pop(conn.fd, None)
        for identity in conn.identities:
            if self._by_identity.get(identity) is conn:
                del self._by_identity[identity]
