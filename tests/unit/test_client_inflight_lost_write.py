"""A write that loses its connection, inside the transport's send loop: the connection's
on_down runs at once (ZmtpConnection._lose), and the transport's handler puts the
requests in flight on it back in the outbox and sends the outbox again — while the outer
loop is still sending. Before the fix, the inner loop sent the half-sent request a second
time and emptied the outbox, and the outer loop's popleft() then dropped an unsent request
or crashed the I/O thread (IndexError; a producer's flush() then hung). Seen in
test_idempotent_produce's broker restarts."""

from __future__ import annotations

from labkit.client.connections import Connections
from labkit.client.future import Future
from labkit.client.inflight import InFlight, Pending
from labkit.client.routing import ANY_BROKER, Routes
from labkit.testing import FakeClock


class LosingConnection:
    """Stands in for a ZmtpConnection whose socket resets on the first write."""

    def __init__(self):
        self.host, self.port, self.state = "h", 9192, "ready"
        self.fail_fast = False
        self.written: list[bytes] = []
        self.held: list[bytes] = []
        self.on_down = None

    def send(self, frames):
        if self.state != "ready":
            self.held.append(frames[0])  # goes out once reconnected
            return
        if not self.written and not self.held:  # the first write finds the socket reset
            self.state = "down"
            self.on_down()
            return
        self.written.append(frames[0])


def request(rid: bytes, idempotent: bool = True) -> Pending:
    return Pending(rid, "metadata", [rid], Future(), 30.0, idempotent, True, ANY_BROKER)


def in_flight_over(conn: LosingConnection) -> InFlight:
    routes = Routes(bootstrap_node=None)
    inflight = InFlight(Connections(conn, routes, None), routes, FakeClock(), 3, conn, "h:9092")

    def connection_down():  # what Transport._connection_down does
        inflight.lost(conn, "h:9092")
        inflight.send_outbox(0.0, closing=False)

    conn.on_down = connection_down
    return inflight


def test_a_lost_write_sends_each_request_once_and_drops_none():
    conn = LosingConnection()
    inflight = in_flight_over(conn)
    inflight.outbox.extend([request(b"r1"), request(b"r2"), request(b"r3")])
    inflight.send_outbox(0.0, closing=False)
    assert not inflight.outbox
    assert conn.held == [b"r2", b"r3", b"r1"]  # r1 again, after the ones never sent
    assert sorted(inflight.inflight) == [b"r1", b"r2", b"r3"]
    assert inflight.inflight[b"r1"].resends == 1


def test_a_lost_write_of_a_request_that_cannot_be_resent_fails_it_at_once():
    conn = LosingConnection()
    inflight = in_flight_over(conn)
    first, second = request(b"r1", idempotent=False), request(b"r2")
    inflight.outbox.extend([first, second])
    inflight.send_outbox(0.0, closing=False)
    assert first.future.failed()  # not left to wait for its 30 s deadline
    assert "before it answered metadata" in str(first.future.exception)
    assert conn.held == [b"r2"]
    assert list(inflight.inflight) == [b"r2"]
