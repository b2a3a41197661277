"""The client's connection to the broker: ZMTP 3.1 (ZeroMQ's wire protocol) over a plain
TCP socket, spoken by the transport's I/O thread itself.

Why by hand (house rule: only the product itself, or what is measured to be faster):
with a libzmq DEALER every delivered record also woke libzmq's own I/O thread (to
receive the answer, to send the next fetch): 4.2 thread wake-ups per record instead
of 2.7, and 10-15 % more client CPU per record at classroom rates (one record per
fetch answer; benchmarks/NOTES.md section 9.2). Reading and writing the TCP socket on
the thread that waits for it removes those wake-ups, and leaves a plain fd that any
thread can poll. The broker keeps its ROUTER socket: to it this is one more DEALER.

Theory of operation
-------------------
- **Wire** (rfc.zeromq.org/spec/37, NULL mechanism): each side sends a 64-byte greeting
  (signature ``FF 00*8 7F``, version 3.1, mechanism ``NULL``), then a READY command
  with its socket type (ours: ``DEALER``); the peer's READY ends the handshake. Then a
  message is a run of frames: a flags byte (``MORE`` 1, ``LONG`` 2: 8-byte size, else
  1 byte; ``COMMAND`` 4), the size (big-endian), the body. A DEALER talking to a ROUTER
  sends the frames as they are (no delimiter). Commands after the handshake: PING is
  answered with PONG; others (PONG...) are ignored.
- **States**: ``down`` (waiting ``reconnect_at``), ``connecting`` (non-blocking
  connect), ``greeting`` (greeting and READY sent, waiting for the peer's), ``ready``.
  ``send()`` takes a message in any state: before ``ready`` it waits in ``_held`` and
  goes out right after our READY, as libzmq queues for a pending connection.
- **Losing the connection**: a read of 0 bytes, a socket error or a handshake not done
  within ``handshake_timeout`` closes the socket, drops what was written only in part
  (the transport sends again what was in flight) and tries again after the backoff (``reconnect_backoff_ms`` doubling to ``reconnect_backoff_max_ms``, as
  libzmq). ``on_up()`` / ``on_down()`` are called when a handshake completes and when a
  connection that had completed one is lost (what libzmq's monitor reported); the
  transport then sends again or fails what was in flight. Messages held for a
  connection that never completed its handshake wait for the next one.
- **A peer that vanished** (its host gone, a cable pulled) is found by TCP keepalive
  (probes after 2 s of silence, every 2 s, 3 unanswered: gone), as libzmq's
  ``ZMQ_HEARTBEAT_*`` found it before, but by the kernel: an idle client's thread is
  not woken for it. A stopped but living broker keeps its connections (its kernel
  answers); requests to it time out by ``request_timeout_ms``.
- **Buffers**: reads go into one 256 KiB buffer and frames are cut out of it; a frame
  that does not fit gets a buffer of its own that the socket fills directly (a fetch
  answer of megabytes is never copied twice). A frame announced over ``MAX_FRAME``
  (1 GiB; no reply comes near) drops the connection instead of being allocated.
  Writes are gathered with ``sendmsg``; frames of 64 KiB and more are not copied.

Not thread-safe: only the transport's I/O thread calls it (``fileno()``, ``wants_write()``,
``read()``, ``write()``, ``tick()``, ``close()``).
"""

from __future__ import annotations

import errno
import math
import select
import socket
import struct
from collections import deque
from collections.abc import Callable
from typing import Any

from labkit._clock import Clock

GREETING = (
    b"\xff"
    + b"\x00" * 8
    + b"\x7f"  # signature
    + b"\x03\x01"  # ZMTP 3.1
    + b"NULL".ljust(20, b"\x00")  # mechanism
    + b"\x00"  # as-server: no
    + b"\x00" * 31  # filler
)
_MORE, _LONG, _COMMAND = 1, 2, 4
_SIZE = struct.Struct(">Q")
_PROPERTY_SIZE = struct.Struct(">I")
_CHUNK = 256 * 1024  # one read's buffer
_NO_COPY = 65536  # frames this big are written from the caller's buffer
_MAX_IOV = 512  # buffers per sendmsg (the kernel's IOV_MAX is 1024)
# no broker reply comes near (fetch.max.bytes is 55 MiB): a bigger size is a broken or
# hostile peer, dropped instead of allocating it
MAX_FRAME = 1 << 30
_MAX_READS = 16  # reads per read() call before the I/O thread's other work runs again
_RETRY_ERRNOS = (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR)
_HAS_SENDMSG = hasattr(socket.socket, "sendmsg")


def command(name: bytes, body: bytes = b"") -> bytes:
    """A ZMTP command frame."""
    data = bytes([len(name)]) + name + body
    if len(data) < 256:
        return bytes([_COMMAND, len(data)]) + data
    return bytes([_COMMAND | _LONG]) + _SIZE.pack(len(data)) + data


def ready_command(socket_type: bytes) -> bytes:
    props = [(b"Socket-Type", socket_type), (b"Identity", b"")]
    body = b"".join(bytes([len(k)]) + k + _PROPERTY_SIZE.pack(len(v)) + v for k, v in props)
    return command(b"READY", body)


def encode_message(frames: list) -> list:
    """The buffers that put ``frames`` on the wire (small ones joined, big ones as they are)."""
    out: list = []
    small: list = []
    last = len(frames) - 1
    for index, frame in enumerate(frames):
        size = len(frame)
        more = _MORE if index < last else 0
        if size < 256:
            small.append(bytes((more, size)))
        else:
            small.append(bytes((more | _LONG,)) + _SIZE.pack(size))
        if size >= _NO_COPY:
            out.append(b"".join(small))
            out.append(memoryview(frame).cast("B"))
            small = []
        else:
            small.append(frame)
    if small:
        out.append(b"".join(small))
    return out


class ConnectionLost(Exception):
    """Internal: the socket is gone (the reason is in the message)."""


class ZmtpConnection:
    """One DEALER connection to a ROUTER at ``host:port``, reconnecting by itself."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        clock: Clock,
        on_up: Callable[[], None],
        on_down: Callable[[str], None],
        reconnect_backoff: tuple[float, float] = (0.05, 1.0),
        handshake_timeout: float = 10.0,
    ):
        self.host, self.port = host, port
        self._clock = clock
        self._on_up, self._on_down = on_up, on_down
        self._backoff_min, self._backoff_max = reconnect_backoff
        self._backoff = self._backoff_min
        self._handshake_timeout = handshake_timeout
        self.state = "down"
        self.sock: socket.socket | None = None
        self.reconnect_at = clock.monotonic()
        self._handshake_deadline = 0.0
        self._out: deque = deque()  # buffers to write, in order
        self._held: list = []  # messages sent before the handshake completed
        self._rbuf = bytearray(_CHUNK)
        self._rview = memoryview(self._rbuf)
        self._rstart = self._rend = 0
        self._big: bytearray | None = None  # a frame being read straight into its own buffer
        self._big_got = 0
        self._big_flags = 0
        self._frames: list = []  # the message being received
        self._peer_greeted = False
        self.connects = 0  # connections tried (tests, metrics)
        # cluster mode (connections.py): a failed connect reports on_down too, and drops
        # what it held, so requests for a broker that is gone fail instead of waiting
        self.fail_fast = False
        self.last_error = ""  # why the last connection ended or failed

    # -- what the I/O thread asks --------------------------------------------------

    def fileno(self) -> int | None:
        return self.sock.fileno() if self.sock is not None else None

    def wants_write(self) -> bool:
        return self.state == "connecting" or bool(self._out)

    def next_deadline(self) -> float:
        if self.state == "down":
            return self.reconnect_at
        if self.state != "ready":
            return self._handshake_deadline
        return math.inf

    # -- sending ------------------------------------------------------------------

    def send(self, frames: list) -> None:
        """Queue one message (written at once when the socket takes it)."""
        if self.state != "ready":
            self._held.append(frames)
            return
        self._out.extend(encode_message(frames))
        self.write()

    def write(self) -> None:
        """Write what is queued until the socket pushes back (or connect finished)."""
        if self.state == "connecting":
            self._finish_connect()
            return
        out = self._out
        while out and self.sock is not None:
            try:
                if len(out) == 1:
                    sent = self.sock.send(out[0])
                elif _HAS_SENDMSG:
                    sent = self.sock.sendmsg(list(_first(out, _MAX_IOV)))
                else:  # Windows: no gathered writes
                    sent = self.sock.send(b"".join(_first(out, _MAX_IOV)))
            except OSError as exc:
                if exc.errno in _RETRY_ERRNOS:
                    return
                self._lose(f"writing failed: {exc}")
                return
            while sent:
                head = out[0]
                if sent >= len(head):
                    sent -= len(head)
                    out.popleft()
                else:
                    out[0] = memoryview(head)[sent:]
                    sent = 0

    # -- receiving ----------------------------------------------------------------

    def read(self) -> list[list]:
        """Complete messages received (each a list of frames: bytes, or memoryviews of
        big frames). Commands are handled here."""
        messages: list[list] = []
        sock = self.sock
        if self.state == "connecting":  # an error or hang-up while connecting
            self._finish_connect()
            return messages
        if sock is None:
            return messages
        for _ in range(_MAX_READS):
            try:
                if self._big is not None:
                    view = memoryview(self._big)[self._big_got :]
                else:
                    if self._rend == len(self._rbuf):
                        self._compact()
                    view = self._rview[self._rend :]
                space = len(view)
                got = sock.recv_into(view)
            except OSError as exc:
                if exc.errno in _RETRY_ERRNOS:
                    break
                self._lose(f"reading failed: {exc}")
                break
            if not got:
                self._lose("the broker closed the connection")
                break
            if self._big is not None:
                self._big_got += got
                if self._big_got == len(self._big):
                    body, self._big = memoryview(self._big), None
                    self._frame(self._big_flags, body, messages)
            else:
                self._rend += got
                self._parse(messages)
            if self.sock is None or got < space:
                break  # read everything the kernel had (or lost the connection)
        return messages

    def _compact(self) -> None:
        left = self._rend - self._rstart
        self._rbuf[:left] = self._rbuf[self._rstart : self._rend]
        self._rstart, self._rend = 0, left

    def _parse(self, messages: list) -> None:
        buf = self._rbuf
        if not self._peer_greeted:
            if self._rend - self._rstart < 64:
                return
            greeting = bytes(buf[self._rstart : self._rstart + 64])
            self._rstart += 64
            if greeting[0] != 0xFF or greeting[9] & 1 != 1 or greeting[10] < 3:
                self._lose("the peer does not speak ZMTP 3 (not a labkit broker?)")
                return
            if greeting[12:32].rstrip(b"\x00") != b"NULL":
                self._lose("the peer wants a ZMTP security mechanism labkit does not use")
                return
            self._peer_greeted = True
        pos, end = self._rstart, self._rend
        while end - pos >= 2:
            flags = buf[pos]
            if flags & _LONG:
                if end - pos < 9:
                    break
                size = _SIZE.unpack_from(buf, pos + 1)[0]
                start = pos + 9
                if size > MAX_FRAME:
                    self._lose(f"the peer announced a frame of {size} bytes (over {MAX_FRAME})")
                    return
            else:
                size = buf[pos + 1]
                start = pos + 2
            if end - start < size:
                if size >= _NO_COPY or size > len(buf) - (start - pos):
                    # its own buffer: what is here now, the rest read straight into it
                    have = end - start
                    self._big = bytearray(size)
                    self._big[:have] = buf[start:end]
                    self._big_got, self._big_flags = have, flags
                    pos = end
                break
            body = bytes(buf[start : start + size])
            pos = start + size
            self._frame(flags, body, messages)
            if self.sock is None:
                return
        if pos == end:
            self._rstart = self._rend = 0
        else:
            self._rstart = pos

    def _frame(self, flags: int, body: Any, messages: list) -> None:
        if flags & _COMMAND:
            self._command(bytes(body))
            return
        if self.state != "ready":
            self._lose("the peer sent a message before its READY command")
            return
        self._frames.append(body)
        if not flags & _MORE:
            messages.append(self._frames)
            self._frames = []

    def _command(self, body: bytes) -> None:
        name = body[1 : 1 + body[0]] if body else b""
        if name == b"READY" and self.state == "greeting":
            self.state = "ready"
            self._backoff = self._backoff_min
            held, self._held = self._held, []
            for frames in held:
                self._out.extend(encode_message(frames))
            self.write()
            self._on_up()
        elif name == b"PING":  # ttl (2 bytes), then a context to echo in PONG
            self._out.append(command(b"PONG", body[1 + len(name) + 2 :][:16]))
            self.write()
        elif name == b"ERROR":
            self._lose(f"the broker refused the handshake ({body[6:].decode(errors='replace')})")

    # -- timers and connecting -----------------------------------------------------

    def tick(self, now: float) -> None:
        """Connect when due; give up a handshake that takes too long."""
        if self.state == "down":
            if now >= self.reconnect_at:
                self._connect(now)
        elif self.state != "ready" and now >= self._handshake_deadline:
            self._lose(f"no ZeroMQ handshake within {self._handshake_timeout:.0f} s")

    def connect_now(self, timeout: float) -> bool:
        """Connect and complete the handshake before returning (the constructor's
        thread, before the I/O thread runs); True when ready. Otherwise the I/O thread
        carries on: it finishes the handshake, or tries again after the backoff."""
        deadline = self._clock.monotonic() + timeout
        self._connect(self._clock.monotonic())
        while self.state in ("connecting", "greeting"):
            left = deadline - self._clock.monotonic()
            fd = self.fileno()
            if left <= 0 or fd is None:
                break
            writes = [fd] if self.wants_write() else []
            readable, writable, _ = select.select([fd], writes, [fd], left)
            if writable:
                self.write()
            if readable and self.read():
                self._lose("the broker spoke before it was asked")
        return self.state == "ready"

    def _connect(self, now: float) -> None:
        self.connects += 1
        self._handshake_deadline = now + self._handshake_timeout
        try:
            family, kind, proto, _, address = socket.getaddrinfo(
                self.host, self.port, type=socket.SOCK_STREAM
            )[0]
            sock = socket.socket(family, kind, proto)
        except OSError as exc:
            self._lose(f"cannot connect to {self.host}:{self.port}: {exc}")
            return
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as libzmq: no Nagle
        _keepalive(sock)
        self.sock = sock
        code = sock.connect_ex(address)
        if code in (0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN):
            self.state = "connecting"
            if code == 0:
                self._finish_connect()
        else:
            self._lose(f"connect failed: {errno.errorcode.get(code, code)}")

    def _finish_connect(self) -> None:
        assert self.sock is not None
        code = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self._lose(f"connect failed: {errno.errorcode.get(code, code)}")
            return
        self.state = "greeting"
        self._peer_greeted = False
        self._out.append(GREETING + ready_command(b"DEALER"))
        self.write()

    def _lose(self, reason: str) -> None:
        was_ready = self.state == "ready"
        self.close()
        self._retry_later(self._clock.monotonic(), reason)
        if was_ready:
            self._on_down(reason)
        elif self.fail_fast:
            self._held.clear()  # the transport fails the requests these were
            self._on_down(reason)

    def _retry_later(self, now: float, reason: str) -> None:
        self.state = "down"
        self.reconnect_at = now + self._backoff
        self._backoff = min(self._backoff * 2, self._backoff_max)
        self.last_error = reason

    def close(self) -> None:
        """Close the socket; drop what was not written and the message half received."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.state = "down"
        self._out.clear()
        self._frames = []
        self._big = None
        self._rstart = self._rend = 0

    def flush(self, timeout: float) -> None:
        """Write what is queued, blocking up to ``timeout`` seconds (close with linger)."""
        if self.sock is None or self.state != "ready" or not self._out:
            return
        self.sock.settimeout(timeout)
        try:
            self.sock.sendall(b"".join(bytes(b) for b in self._out))
        except OSError:
            pass  # the broker is gone: nothing more to do
        self._out.clear()


def _first(items: deque, n: int):
    for index, item in enumerate(items):
        if index == n:
            return
        yield item


def _keepalive(sock: socket.socket) -> None:
    """Find a vanished peer within ~8 s (where the platform lets us set the timers)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", 2), ("TCP_KEEPINTVL", 2), ("TCP_KEEPCNT", 3)):
        option = getattr(socket, name, None)
        if option is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, option, value)
            except OSError:
                pass  # not settable here: the system's defaults apply
