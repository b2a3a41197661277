"""The client's own ZMTP connection (labkit/client/zmtp.py) against a peer played by the
test over real TCP, and against the real broker: what libzmq did for the client before
(framing, handshake, reconnecting, holding messages until connected) still happens, and
libzmq's I/O thread no longer wakes for a delivered record (issue 19)."""

from __future__ import annotations

import socket
import struct
import threading
import time
from pathlib import Path
from typing import ClassVar

import pytest

from labkit import KafkaConsumer, KafkaProducer
from labkit._clock import REAL_CLOCK
from labkit.client import zmtp
from labkit.client.transport import Transport
from labkit.client.zmtp import GREETING, ZmtpConnection, command, ready_command


class Peer:
    """A ZMTP peer (the broker's side) on a listening socket, driven by the test."""

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.sock: socket.socket | None = None
        self.buf = b""

    def accept(self, greet: bytes = GREETING, ready: bool = True) -> None:
        self.server.settimeout(10)
        self.sock, _ = self.server.accept()
        self.sock.settimeout(10)
        self.sock.sendall(greet + (ready_command(b"ROUTER") if ready else b""))
        assert self.take(64) == GREETING
        flags, size = self.take(2)
        assert flags == 4
        assert self.take(size).startswith(b"\x05READY")

    def take(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 20)
            assert chunk, "the client closed the connection"
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def frame(self) -> tuple[int, bytes]:
        flags = self.take(1)[0]
        size = struct.unpack(">Q", self.take(8))[0] if flags & 2 else self.take(1)[0]
        return flags, self.take(size)

    def message(self) -> list[bytes]:
        frames = []
        while True:
            flags, body = self.frame()
            if flags & 4:
                frames.append(("command", body))
                return frames
            frames.append(body)
            if not flags & 1:
                return frames

    def send(self, frames: list[bytes]) -> None:
        out = b""
        for index, frame in enumerate(frames):
            more = 1 if index < len(frames) - 1 else 0
            if len(frame) < 256:
                out += bytes([more, len(frame)]) + frame
            else:
                out += bytes([more | 2]) + struct.pack(">Q", len(frame)) + frame
        self.sock.sendall(out)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.server.close()


class Client:
    """A ZmtpConnection driven the way the transport's I/O thread drives it."""

    made: ClassVar[list[Client]] = []  # closed by the peer fixture

    def __init__(self, port: int):
        Client.made.append(self)
        self.ups, self.downs, self.got = 0, [], []
        self.conn = ZmtpConnection(
            "127.0.0.1",
            port,
            clock=REAL_CLOCK,
            on_up=self._up,
            on_down=self.downs.append,
            reconnect_backoff=(0.01, 0.05),
            handshake_timeout=2.0,
        )

    def _up(self) -> None:
        self.ups += 1

    def turn(self, wait: float = 0.05) -> None:
        import select

        self.conn.tick(time.monotonic())
        fd = self.conn.fileno()
        if fd is None:
            time.sleep(wait)
            return
        writes = [fd] if self.conn.wants_write() else []
        readable, writable, _ = select.select([fd], writes, [fd], wait)
        if writable:
            self.conn.write()
        if readable:
            self.got.extend(self.conn.read())

    def until(self, done, seconds: float = 10.0) -> None:
        deadline = time.monotonic() + seconds
        while not done():
            assert time.monotonic() < deadline, "gave up waiting"
            self.turn()


@pytest.fixture
def peer():
    peer = Peer()
    yield peer
    peer.close()
    for client in Client.made:
        client.conn.close()
    Client.made.clear()


def _accept_in_background(peer: Peer, **kw) -> threading.Thread:
    thread = threading.Thread(target=peer.accept, kwargs=kw, daemon=True)
    thread.start()
    return thread


def test_messages_sent_before_the_handshake_go_out_after_it_in_order(peer):
    client = Client(peer.port)
    client.conn.send([b"LK1", b"1", b"first"])
    client.conn.send([b"LK1", b"2", b"second"])
    accepting = _accept_in_background(peer)
    client.until(lambda: client.ups == 1)
    accepting.join(10)
    assert peer.message() == [b"LK1", b"1", b"first"]
    assert peer.message() == [b"LK1", b"2", b"second"]


@pytest.mark.parametrize("gathered", [True, False], ids=["sendmsg", "send"])
def test_big_and_small_frames_cross_whole_both_ways(peer, monkeypatch, gathered):
    monkeypatch.setattr(zmtp, "_HAS_SENDMSG", gathered)  # False: as on Windows
    client = Client(peer.port)
    accepting = _accept_in_background(peer)
    client.until(lambda: client.ups == 1)
    accepting.join(10)
    big = bytes(range(256)) * 12_000  # ~3 MB: many reads, its own buffer
    mid = b"m" * 70_000  # over the copy threshold, under one read buffer
    received = []
    reading = threading.Thread(target=lambda: received.append(peer.message()), daemon=True)
    reading.start()
    client.conn.send([b"LK1", b"r", b"h" * 300, big])  # more than the socket takes at once
    client.until(lambda: not reading.is_alive())
    assert received == [[b"LK1", b"r", b"h" * 300, big]]
    sending = threading.Thread(
        target=lambda: [
            peer.send([b"LK1", b"r", b"{}", big, b"", mid]),
            peer.send([b"LK1", b"s", b"{}"]),
        ],
        daemon=True,
    )
    sending.start()
    client.until(lambda: len(client.got) == 2)
    sending.join(10)
    first, second = client.got
    assert [bytes(f) for f in first] == [b"LK1", b"r", b"{}", big, b"", mid]
    assert second == [b"LK1", b"s", b"{}"]


def test_a_ping_is_answered_with_its_context(peer):
    client = Client(peer.port)
    accepting = _accept_in_background(peer)
    client.until(lambda: client.ups == 1)
    accepting.join(10)
    peer.sock.sendall(command(b"PING", b"\x00\x0a" + b"ctx"))
    client.until(lambda: not client.conn.wants_write(), 2)
    client.turn()
    assert peer.message() == [("command", b"\x04PONGctx")]


def test_a_lost_connection_is_reported_once_and_made_again(peer):
    client = Client(peer.port)
    accepting = _accept_in_background(peer)
    client.until(lambda: client.ups == 1)
    accepting.join(10)
    peer.sock.close()
    client.until(lambda: client.downs)
    assert client.conn.state == "down"
    accepting = _accept_in_background(peer)
    client.until(lambda: client.ups == 2)
    accepting.join(10)
    client.conn.send([b"LK1", b"3", b"after"])
    assert peer.message() == [b"LK1", b"3", b"after"]
    assert len(client.downs) == 1
    assert "closed" in client.downs[0]


def test_a_frame_bigger_than_any_reply_drops_the_connection(peer):
    client = Client(peer.port)
    accepting = _accept_in_background(peer)
    client.until(lambda: client.ups == 1)
    accepting.join(10)
    peer.sock.sendall(b"\x02" + struct.pack(">Q", 1 << 40) + b"x" * 100)
    client.until(lambda: client.downs)
    assert "frame of 1099511627776 bytes" in client.downs[0]
    assert client.conn.state == "down"  # and it connects again after the backoff


def test_a_peer_that_is_not_zmtp_is_dropped_without_reporting_a_loss(peer):
    client = Client(peer.port)
    accepting = threading.Thread(target=lambda: _not_zmtp(peer), daemon=True)
    accepting.start()
    client.until(lambda: client.conn.connects >= 2)  # it gave up and tries again
    accepting.join(10)
    assert client.ups == 0
    assert client.downs == []
    assert "ZMTP" in client.conn.last_error


def _not_zmtp(peer: Peer) -> None:
    peer.server.settimeout(10)
    sock, _ = peer.server.accept()
    sock.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n" + b" " * 64)
    time.sleep(0.5)
    sock.close()


# -- against the real broker -----------------------------------------------------


def _zmq_io_thread_wakeups() -> int:
    """Voluntary context switches (wake-ups) of libzmq's threads in this process (Linux)."""
    total = 0
    for task in Path("/proc/self/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            status = (task / "status").read_text()
        except OSError:
            continue  # the thread ended meanwhile
        if name.startswith("ZMQbg"):
            total += int(status.split("voluntary_ctxt_switches:")[1].split()[0])
    return total


def test_a_delivered_record_does_not_wake_libzmq_s_thread(shared_broker, unique_topic):
    """Counted, not timed: with a libzmq DEALER each record woke libzmq's I/O thread
    at least twice in this process (the produce and its answer, the fetch answer and
    the next fetch); the client's own ZMTP leaves it asleep."""
    producer = KafkaProducer(bootstrap_servers=shared_broker.bootstrap, acks=1)
    consumer = KafkaConsumer(
        unique_topic, bootstrap_servers=shared_broker.bootstrap, auto_offset_reset="earliest"
    )
    try:
        producer.send(unique_topic, b"first").get(timeout=10)
        deadline = time.monotonic() + 30
        while not consumer.poll(timeout_ms=200) and time.monotonic() < deadline:
            pass
        before, got = _zmq_io_thread_wakeups(), 0
        for n in range(20):
            producer.send(unique_topic, b"r%d" % n).get(timeout=10)
            deadline = time.monotonic() + 10
            while got <= n and time.monotonic() < deadline:
                got += sum(len(rs) for rs in consumer.poll(timeout_ms=500).values())
        woke = _zmq_io_thread_wakeups() - before
    finally:
        consumer.close()
        producer.close()
    assert got == 20
    assert woke < 10, f"libzmq's threads woke {woke} times for 20 records"


def test_the_answer_is_read_by_the_transport_s_own_thread(shared_broker):
    transport = Transport(shared_broker.bootstrap)
    readers = []
    read = transport._conn.read

    def spying_read():
        messages = read()
        if messages:
            readers.append(threading.get_ident())
        return messages

    transport._conn.read = spying_read
    try:
        assert transport.call("api_versions", {}).header["error"] == 0
    finally:
        transport.close()
    assert readers
    assert set(readers) == {transport._thread.ident}


def test_where_poll_is_missing_the_transport_sleeps_in_select(shared_broker, monkeypatch):
    """Windows has no select.poll: the I/O thread falls back to select.select."""
    import select

    monkeypatch.delattr(select, "poll")
    transport = Transport(shared_broker.bootstrap)
    try:
        assert transport._thread.is_alive()
        for _ in range(3):  # the thread sleeps between them: woken by the socket pair
            assert transport.call("api_versions", {}).header["error"] == 0
            time.sleep(0.05)
    finally:
        transport.close()
