"""A tiny raw-socket client for tests (``RawClient``); the broker process itself,
``BrokerProcess``, lives in labkit/launch/broker.py (product code starts it too) and is
re-exported here so that tests import it from labkit.testing as before.

``RawClient`` speaks the envelope of ``labkit.protocol.frames`` over one DEALER
socket, without the client library: tests use it to send exactly the bytes they
want (including malformed ones). Given the main port, it asks there where ZeroMQ is
(client/bootstrap.py), as the client library does.
"""

from __future__ import annotations

import time

import zmq

from labkit.client.bootstrap import discover
from labkit.launch.broker import START_TIMEOUT_S, BrokerProcess, BrokerStartError, free_port
from labkit.protocol.frames import build_request, parse_response

__all__ = [
    "START_TIMEOUT_S",
    "BrokerProcess",
    "BrokerStartError",
    "RawClient",
    "free_port",
]


class RawClient:
    """One DEALER socket to a broker; ``request`` sends and waits for the matching reply."""

    def __init__(self, bootstrap: str, timeout: float = 5.0):
        found, problems = discover([bootstrap], timeout, timeout, "labkit-raw")
        if not found:
            raise ConnectionError(f"no ZeroMQ endpoint found at {bootstrap}: {problems}")
        host, _, port = found[0].zmq_address.rpartition(":")
        self._ctx = zmq.Context.instance()
        self.sock = self._ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect("tcp://{}:{}".format(host or "127.0.0.1", port))
        self.timeout = timeout
        self._next = 0
        self._early: dict[bytes, tuple[dict, list[bytes]]] = {}

    def new_id(self) -> bytes:
        self._next += 1
        return b"r%d" % self._next

    def send(self, api: str, header: dict, payloads=(), request_id: bytes | None = None) -> bytes:
        """Send one request without waiting; returns its request id."""
        rid = request_id if request_id is not None else self.new_id()
        self.sock.send_multipart(build_request(rid, api, header, list(payloads)))
        return rid

    def send_raw(self, frames: list[bytes]) -> None:
        self.sock.send_multipart(frames)

    def receive(self, timeout: float | None = None) -> tuple[bytes, dict, list[bytes]] | None:
        """The next reply as (request_id, header, payloads), or None after ``timeout``."""
        wait = self.timeout if timeout is None else timeout
        if not self.sock.poll(int(wait * 1000)):
            return None
        return parse_response(self.sock.recv_multipart())

    def wait_for(self, rid: bytes, timeout: float | None = None) -> tuple[dict, list[bytes]]:
        """The reply to ``rid`` (others that arrive first are kept). Raises TimeoutError."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while rid not in self._early:
            left = deadline - time.monotonic()
            got = self.receive(max(0.0, left)) if left > 0 else None
            if got is None:
                raise TimeoutError(f"no reply to request {rid!r}")
            self._early[got[0]] = (got[1], got[2])
        return self._early.pop(rid)

    def request(self, api: str, header: dict, payloads=(), timeout: float | None = None):
        """Send and wait: returns (header, payloads). Raises TimeoutError."""
        return self.wait_for(self.send(api, header, payloads), timeout)

    def close(self) -> None:
        self.sock.close(linger=0)

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
