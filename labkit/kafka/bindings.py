"""Kafka's listeners as sockets: what to bind (``ListenSpec``), binding them
(``bind``, ``bind_all``) and what a bound one tells its connections (``Bound``).

Theory of operation
-------------------
The broker's config resolves Kafka's ``listeners`` / ``advertised.listeners`` (and the
main port) into ``ListenSpec`` rows (broker/listeners.py parses them). ``bind_all``
binds every one as a non-blocking listening socket, or none: a port that is taken or an
address that cannot be bound closes the sockets bound so far and raises
KafkaConfigurationError naming the listener and the flag to change. Each ``Bound`` keeps
its spec, its bound port (a spec's port 0 takes any free one) and the ``apis.Context``
its connections' responses use: the advertised host and port Metadata names to a
client that came in on that listener (Kafka's rule). No threads, no zmq: the listener
thread (listener.py) owns the sockets once bound.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Sequence
from typing import NamedTuple

from labkit.errors import KafkaConfigurationError
from labkit.kafka import apis


class ListenSpec(NamedTuple):
    """One listener to bind (the broker's config resolves Kafka's settings into these)."""

    name: str
    bind_host: str
    port: int  # 0: any free port
    advertised_host: str  # what Metadata names to clients of this listener
    advertised_port: int  # 0: the bound port
    zmq_host: str | None  # labkit's bootstrap answer (None: the host the client dialled)
    zmq_port: int
    flag: str = "--listeners"  # what to change when the port is taken


class Bound:
    """A listening socket, its spec, and the context its connections' responses use."""

    def __init__(
        self, spec: ListenSpec, sock: socket.socket, default_partitions: int, max_frame: int
    ):
        self.spec = spec
        self.sock = sock
        self.port: int = sock.getsockname()[1]
        self.context = apis.Context(
            spec.advertised_host, spec.advertised_port or self.port, default_partitions, max_frame
        )


def bind(spec: ListenSpec) -> socket.socket:
    """A non-blocking listening socket for ``spec``. Raises KafkaConfigurationError."""
    family = socket.AF_INET6 if ":" in spec.bind_host else socket.AF_INET
    server = socket.socket(family, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        server.bind((spec.bind_host, spec.port))
    except OSError as exc:
        server.close()
        where = f"{spec.bind_host}:{spec.port}"
        if exc.errno == errno.EADDRINUSE:
            raise KafkaConfigurationError(
                f"port {spec.port} on {spec.bind_host} (listener {spec.name}) is already in "
                f"use. Is another broker running? Stop it, or choose another port with "
                f"{spec.flag}"
            ) from None
        raise KafkaConfigurationError(
            f"cannot listen for Kafka clients on {where} (listener {spec.name}): "
            f"{exc.strerror} (check --host, --port and --listeners)"
        ) from None
    server.listen(128)
    server.setblocking(False)
    return server


def bind_all(
    specs: Sequence[ListenSpec], default_partitions: int, max_frame: int
) -> dict[int, Bound]:
    """Bind every listener: {listening descriptor: Bound}. Raises KafkaConfigurationError
    (after closing the ones already bound)."""
    bound: dict[int, Bound] = {}
    try:
        for spec in specs:
            one = Bound(spec, bind(spec), default_partitions, max_frame)
            bound[one.sock.fileno()] = one
    except KafkaConfigurationError:
        for one in bound.values():
            one.sock.close()
        raise
    return bound
