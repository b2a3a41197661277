"""Does a labkit broker answer? The one probe behind ``labkit lab``, ``nb.doctor()``,
``labkit.testing.BrokerProcess`` and the Docker healthcheck.

A probe is a real client handshake: the transport connects and asks ``api_versions``,
so "answers" means a labkit broker speaks the wire protocol there, not merely that a
port is open. A plain TCP check comes first in ``broker_answers`` so that a port where
nothing listens costs no client time-out.
"""

from __future__ import annotations

import socket
from typing import Any

from labkit.errors import KafkaError


def broker_info(
    servers: list[str], timeout_s: float, client_id: str = "labkit-probe"
) -> dict[str, Any]:
    """The broker's ``api_versions`` answer (name, version, APIs).

    Raises NoBrokersAvailable (naming the addresses tried) or another KafkaError."""
    from labkit.client.transport import Transport

    wait_ms = max(timeout_s * 1000, 100)
    transport = Transport(
        list(servers),
        client_id=client_id,
        connect_timeout_ms=wait_ms,
        bootstrap_timeout_ms=wait_ms,
        name="probe",
    )
    try:
        return dict(transport.broker_info)
    finally:
        transport.close()


def broker_answers(address: str, timeout_s: float, client_id: str = "labkit-probe") -> bool:
    """True when a labkit broker at ``host:port`` answers ``api_versions`` within
    ``timeout_s``."""
    if not port_open(address, timeout_s):
        return False  # nothing listens: no need to wait for the client's time-out
    try:
        broker_info([address], timeout_s, client_id)
    except KafkaError:
        return False
    return True


def port_open(address: str, timeout_s: float) -> bool:
    """True when a TCP connection to ``host:port`` succeeds within ``timeout_s``."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection(
            (host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout_s
        ):
            return True
    except (OSError, ValueError):
        return False
