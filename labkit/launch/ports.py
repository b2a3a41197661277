"""A free TCP port for a child process to listen on: the brokers, ZooKeeper and Connect
workers labkit starts, Apache Kafka in the tests, the tests' own listeners."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on at ``host`` now (the OS's pick; free until someone binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]
