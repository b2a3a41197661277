"""The Kafka listener: one thread in the broker process that speaks Kafka on a TCP port.

Theory of operation
-------------------
The listener is a bridge, not a second broker. Its thread owns the Kafka TCP sockets
(non-blocking): one listening socket per configured listener (Kafka's ``listeners``,
bound by bindings.py; each connection remembers which one it came in on, so Metadata
advertises that listener's address, Kafka's rule) and, for each Kafka connection, one ZeroMQ DEALER
connected to the broker's own ROUTER over ``inproc://`` (same zmq.Context): every Kafka client is a
connection of its own to the broker, so the loop's fairness, byte budgets, quotas,
long-poll parking and ``acks=all`` group commit apply to it unchanged, and no broker
state is touched from this thread.

One ``zmq.Poller`` watches the listening socket, every TCP descriptor and every
DEALER. Per connection:

- bytes read go through a ``FrameReader`` (codec.py): a frame over
  ``socket.request.max.bytes`` or with a negative size closes the connection;
- complete frames queue; one request is processed at a time (Kafka's guarantee:
  responses leave in request order). ApiVersions and labkit's bootstrap request
  (protocol/bootstrap.py: where this listener's ZeroMQ endpoint is) are answered
  here; a bridged API (bridges.py) becomes one labkit request on the DEALER, and its
  reply becomes the Kafka response. Produce and Fetch (produce_fetch.py) carry payload
  frames: their records are converted here, in this thread, never in the broker's
  loop. A Produce with acks=0 gets no Kafka response: it is sent without waiting
  (``silent``, at most ``MAX_SILENT`` per connection), and its labkit answer only says
  whether to close the connection, as Kafka does after a failed acks=0 produce;
- a Fetch that leaves records waiting is followed by a read-ahead (read_ahead.py): the
  client's predicted next Fetch, sent to the broker and converted while the client is
  busy with the last answer; the next Fetch, if it is that one, is answered from it;
- a frame that does not parse closes the connection, as Kafka does;
- the socket is read only while nothing is queued, no request waits, fewer than
  ``MAX_SILENT`` acks=0 produces are in flight and less than
  ``connection.max.buffered.bytes`` of responses wait to be written, so one
  connection holds at most a frame, one recv's worth of queued frames and that
  budget of output.

Every error from one connection closes that connection and nothing else: the thread
survives any input. A closed connection's DEALER closes with it (linger 0); an inproc
peer gives the broker no disconnect event, so a fetch it had parked stays parked until
its max_wait (at most ``fetch.max.wait.max.ms``) and the ROUTER drops the answer: one
such fetch per closed connection at most, within the parking lot's bounds.
``close()`` stops the thread and closes every socket (the broker calls it before
terminating the zmq.Context).

While it runs, the process's GIL switch interval is ``SWITCH_INTERVAL_S`` (0.5 ms, not
CPython's 5 ms): this thread's conversions then keep the broker's loop waiting for the
GIL at most that long at a time (ZeroMQ clients' latency under Kafka load,
benchmarks/NOTES.md section 11.1); ``close()`` sets it back.
"""

from __future__ import annotations

import collections
import itertools
import logging
import socket
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import zmq

from labkit.errors import ProtocolError
from labkit.kafka import apis, bridges, codec, read_ahead
from labkit.kafka.bindings import Bound, ListenSpec, bind_all
from labkit.kafka.produce_fetch import FETCH_KEY, fetch_response
from labkit.protocol import bootstrap
from labkit.protocol.frames import build_request, parse_response

log = logging.getLogger(__name__)

__all__ = ["KafkaListener", "ListenSpec"]  # ListenSpec: kafka/bindings.py, named here too

RECV_BYTES = 65536
POLL_MS = 100  # how often the thread looks at its stop flag
ACCEPT_BACKOFF_S = 0.5  # pause in accepting after accept() failed (out of descriptors)
MAX_SILENT = 4  # acks=0 produces of one connection the broker may not have handled yet
# the GIL switch interval while a listener runs (CPython's default is 5 ms): the thread
# converting Kafka batches keeps the GIL that long each time the broker's loop asks for
# it, which is what ZeroMQ clients' latency waited for (benchmarks/NOTES.md section 11)
SWITCH_INTERVAL_S = 0.0005


class _Connection:
    """One Kafka client: its TCP socket, its DEALER, its queue and output."""

    def __init__(
        self, sock: socket.socket, peer: str, dealer: zmq.Socket, max_frame: int, via: Bound
    ):
        self.sock = sock
        self.via = via  # the listener it came in on (what Metadata advertises to it)
        self.peer = peer
        self.dealer = dealer
        self.frames = codec.FrameReader(max_frame)
        self.queue: collections.deque[bytes] = collections.deque()
        self.out = bytearray()
        # the request waiting for the broker:
        # (request id, correlation id, request, version, api, state of a payload api)
        self.waiting: tuple[bytes, int, Any, int, apis.Api, Any] | None = None
        # acks=0 produces sent and not yet answered by the broker: request id -> as waiting
        self.silent: dict[bytes, tuple[bytes, int, Any, int, apis.Api, Any]] = {}
        self.client_id = ""
        self.fetch_header: dict | None = None  # the labkit fetch the waiting request sent
        self.read_ahead = read_ahead.Slot()  # the predicted next fetch


class KafkaListener:
    """``start()`` binds and starts the thread; ``close()`` stops it."""

    def __init__(
        self,
        context: zmq.Context,
        broker_endpoint: str,
        listeners: Sequence[ListenSpec],
        max_frame_bytes: int,
        max_buffered_bytes: int,
        default_partitions: int = 1,
    ):
        self._ctx = context
        self._endpoint = broker_endpoint
        self._specs = tuple(listeners)
        self._max_frame = max_frame_bytes
        self._max_buffered = max_buffered_bytes
        self._default_partitions = default_partitions
        self._bound: dict[int, Bound] = {}  # listening descriptor -> its listener
        self._thread: threading.Thread | None = None
        self._stop = False
        self._request_ids = itertools.count()
        self._poller = zmq.Poller()
        self._by_fd: dict[int, _Connection] = {}
        self._by_dealer: dict[zmq.Socket, _Connection] = {}
        self._accept_paused_until = 0.0  # monotonic time; 0: accepting
        self.ports: list[int] = [spec.port for spec in self._specs]  # bound by start()
        self._switch_interval_before: float | None = None  # set back by close()
        self.stats = {
            "connections": 0,
            "requests": 0,
            "closed_for_bad_input": 0,
        }
        self._aheads = read_ahead.ReadAheads(self.stats)  # adds its counters to stats

    # -- life cycle ---------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The first listener's port (the broker's main port)."""
        return self.ports[0]

    def start(self) -> None:
        """Bind every listener and start the thread. Raises KafkaConfigurationError."""
        self._bound = bind_all(self._specs, self._default_partitions, self._max_frame)
        self.ports = [bound.port for bound in self._bound.values()]
        if sys.getswitchinterval() > SWITCH_INTERVAL_S:
            self._switch_interval_before = sys.getswitchinterval()
            sys.setswitchinterval(SWITCH_INTERVAL_S)
        self._thread = threading.Thread(target=self._run, name="kafka-listener", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the thread; it closes every socket it owns."""
        self._stop = True
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._switch_interval_before is not None:
            sys.setswitchinterval(self._switch_interval_before)
            self._switch_interval_before = None

    # -- the thread ---------------------------------------------------------------------

    def _listen(self, on: bool) -> None:
        """Poll the listening sockets (``on``) or stop polling them."""
        for fd in self._bound:
            if on:
                self._poller.register(fd, zmq.POLLIN)
            elif fd in self._poller:
                self._poller.unregister(fd)

    def _run(self) -> None:
        self._listen(True)
        try:
            while not self._stop:
                if self._accept_paused_until and time.monotonic() >= self._accept_paused_until:
                    self._accept_paused_until = 0.0
                    self._listen(True)
                if not self._poller.sockets:  # pyzmq returns at once from an empty poll
                    time.sleep(POLL_MS / 1000)
                    continue
                for item, events in self._poller.poll(POLL_MS):
                    try:
                        self._serve(item, events)
                    except Exception:  # nothing may stop the thread (logged with its traceback)
                        log.exception("the Kafka listener failed to serve %r", item)
        finally:
            for conn in list(self._by_fd.values()):
                self._drop(conn, "")
            for bound in self._bound.values():
                bound.sock.close()

    def _serve(self, item, events: int) -> None:
        """One ready socket: the listening one, a client's TCP socket or its DEALER."""
        listening = self._bound.get(item) if not isinstance(item, zmq.Socket) else None
        if listening is not None:
            self._accept(listening)
            return
        is_dealer = isinstance(item, zmq.Socket)
        conn = self._by_dealer.get(item) if is_dealer else self._by_fd.get(item)
        if conn is None:
            return  # closed earlier in this turn
        try:
            if is_dealer:
                self._broker_replied(conn)
            else:
                if events & zmq.POLLIN:
                    self._read(conn)
                if events & zmq.POLLOUT:
                    self._write(conn)
                if events & zmq.POLLERR and not events & (zmq.POLLIN | zmq.POLLOUT):
                    raise _Close("")  # reset or hung up while not being read
            self._interest(conn)
        except _Close as why:
            self._drop(conn, str(why))
        except Exception:  # one connection's failure ends only it (logged)
            log.exception("Kafka connection from %s failed", conn.peer)
            self._drop(conn, "")

    def _accept(self, via: Bound) -> None:
        while True:
            try:
                sock, address = via.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._pause_accepting(exc)
                return
            try:
                dealer = self._ctx.socket(zmq.DEALER)  # its signalling eventfd is a descriptor
            except zmq.ZMQError as exc:
                sock.close()
                self._pause_accepting(exc)
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            dealer.setsockopt(zmq.LINGER, 0)
            dealer.connect(self._endpoint)
            peer = "{}:{}".format(*address[:2])
            conn = _Connection(sock, peer, dealer, self._max_frame, via)
            self._by_fd[sock.fileno()] = conn
            self._by_dealer[dealer] = conn
            self._poller.register(dealer, zmq.POLLIN)
            self._poller.register(sock.fileno(), zmq.POLLIN)
            self.stats["connections"] += 1

    def _pause_accepting(self, exc: Exception) -> None:
        """Out of descriptors: a pending connection stays in the backlog and the listening
        socket stays readable, so stop polling it for a while instead of spinning (a
        spinning thread would also take the GIL from the broker's loop)."""
        log.warning(
            "cannot accept a Kafka connection (%s); trying again in %.1f s", exc, ACCEPT_BACKOFF_S
        )
        self._listen(False)
        self._accept_paused_until = time.monotonic() + ACCEPT_BACKOFF_S

    def _drop(self, conn: _Connection, why: str) -> None:
        if why:
            self.stats["closed_for_bad_input"] += 1
            log.warning("closed the Kafka connection from %s: %s", conn.peer, why)
        if conn.out:  # answers to the requests before the bad one: best effort
            try:
                conn.sock.send(conn.out)
            except OSError:
                pass
        self._aheads.drop(conn.read_ahead)
        fd = conn.sock.fileno()
        self._by_fd.pop(fd, None)
        self._by_dealer.pop(conn.dealer, None)
        for item in (fd, conn.dealer):
            # not registered while a request waits (_interest's flags 0 unregisters it)
            if item in self._poller:
                self._poller.unregister(item)
        conn.sock.close()
        conn.dealer.close(linger=0)

    def _interest(self, conn: _Connection) -> None:
        """Read only when nothing is queued and the output is under budget (see module
        doc). Flags 0 unregisters the descriptor (pyzmq)."""
        flags = 0
        if (
            not conn.queue
            and conn.waiting is None
            and len(conn.silent) < MAX_SILENT
            and len(conn.out) < self._max_buffered
        ):
            flags |= zmq.POLLIN
        if conn.out:
            flags |= zmq.POLLOUT
        self._poller.modify(conn.sock.fileno(), flags)

    # -- one connection -----------------------------------------------------------------

    def _read(self, conn: _Connection) -> None:
        try:
            data = conn.sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except (ConnectionResetError, BrokenPipeError):
            raise _Close("") from None  # the client left (reset): not bad input
        except OSError as exc:
            raise _Close(f"read failed: {exc}") from None
        if not data:
            raise _Close("")  # the client closed it
        try:
            conn.queue.extend(conn.frames.feed(data))
        except codec.FrameTooLarge as exc:
            raise _Close(str(exc)) from None
        self._next(conn)

    def _write(self, conn: _Connection) -> None:
        try:
            sent = conn.sock.send(conn.out)
        except (BlockingIOError, InterruptedError):
            return
        except (ConnectionResetError, BrokenPipeError):
            raise _Close("") from None  # the client left before reading its answers
        except OSError as exc:
            raise _Close(f"write failed: {exc}") from None
        del conn.out[:sent]

    def _next(self, conn: _Connection) -> None:
        """Process queued requests until one waits for the broker."""
        while conn.waiting is None and conn.queue and len(conn.silent) < MAX_SILENT:
            frame = conn.queue.popleft()
            self.stats["requests"] += 1
            if bootstrap.is_bootstrap_request(frame):  # labkit's own client, not Kafka's
                conn.out += self._bootstrap_answer(conn, frame)
                continue
            try:
                header, request = codec.decode_request(frame)
            except codec.BadRequest as exc:
                raise _Close(f"a request that does not parse ({exc})") from None
            del frame
            version = header.request_api_version
            correlation = header.correlation_id
            conn.client_id = header.client_id or ""
            if header.request_api_key == codec.API_VERSIONS_KEY:
                if request is None:  # a version this listener does not know (KIP-511)
                    response = apis.api_versions_response(0, apis.ErrorCode.unsupported_version)
                else:
                    response = apis.api_versions_response(version)
                conn.out += codec.encode_response(correlation, response)
                continue
            api = bridges.BRIDGED[header.request_api_key]
            payloads: list = []
            state = None
            bridged = None
            if api.payloads:
                bridged = api.to_labkit(request, version, conn.via.context)
                name, labkit_header, payloads, state = bridged[:4]
                if name is None:  # answered here (every partition refused, a bad session)
                    if bridged.close:
                        raise _Close(bridged.close)
                    if bridged.reply_expected:
                        response = api.to_kafka(None, [], state, request, version, conn.via.context)
                        conn.out += codec.encode_response(correlation, response)
                    continue
            else:
                name, labkit_header = api.to_labkit(request, version)
            labkit_header["client_id"] = conn.client_id
            conn.fetch_header = labkit_header if name == "fetch" else None
            if name == "fetch" and self._answer_from_read_ahead(
                conn, correlation, request, version, state
            ):
                continue
            if name == "classic_join":  # Kafka's tools show a member's host as "/1.2.3.4"
                labkit_header["client_host"] = "/" + conn.peer.rsplit(":", 1)[0]
            rid = b"k%d" % next(self._request_ids)
            # copy=False: record batches (up to socket.request.max.bytes) go by reference
            conn.dealer.send_multipart(
                build_request(rid, name, labkit_header, payloads), copy=bool(not payloads)
            )
            waiting = (rid, correlation, request, version, api, state)
            if bridged is not None and bridged.close:
                raise _Close(bridged.close)
            if bridged is not None and not bridged.reply_expected:
                conn.silent[rid] = waiting  # acks=0: its answer only says whether to close
                continue
            conn.waiting = waiting
        if conn.out:
            self._write(conn)

    def _broker_replied(self, conn: _Connection) -> None:
        while True:
            try:
                frames = conn.dealer.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                rid, reply, payloads = parse_response(frames)
            except ProtocolError as exc:
                raise _Close(f"the broker's reply does not parse ({exc})") from None
            del frames
            if conn.read_ahead.ahead is not None and rid == conn.read_ahead.ahead.rid:
                self._aheads.arrived(conn.read_ahead, reply, payloads)
                continue
            silent = conn.silent.pop(rid, None)
            if silent is not None:  # the client reads no response to it
                _, _, request, version, api, state = silent
                why = api.to_kafka(reply, payloads, state, request, version, conn.via.context)
                if why:
                    raise _Close(why)
                self._next(conn)
                continue
            if conn.waiting is None or conn.waiting[0] != rid:
                continue  # not the request waiting (cannot happen: one at a time)
            _, correlation, request, version, api, state = conn.waiting
            conn.waiting = None
            if api.payloads:
                response = api.to_kafka(reply, payloads, state, request, version, conn.via.context)
                if conn.fetch_header is not None:
                    self._read_ahead(conn, conn.fetch_header, reply, payloads)
            else:
                response = api.to_kafka(reply, request, version, conn.via.context)
            del payloads
            conn.out += codec.encode_response(correlation, response)
            self._next(conn)

    # -- read-ahead (read_ahead.py) -----------------------------------------------------

    def _answer_from_read_ahead(
        self, conn: _Connection, correlation: int, request: Any, version: int, state: Any
    ) -> bool:
        """True: this Fetch is the one the read-ahead predicted, and it is answered from it
        or, if the broker's answer is still on its way, waits for that answer. False: the
        request goes to the broker as always."""
        assert conn.fetch_header is not None
        ahead = self._aheads.claim(conn.read_ahead, conn.fetch_header)
        if ahead is None:
            return False
        if ahead.reply is None:  # on its way: its answer is this request's
            api = bridges.BRIDGED[FETCH_KEY]
            conn.waiting = (ahead.rid, correlation, request, version, api, state)
            conn.fetch_header = ahead.header
            return True
        response = fetch_response(ahead.reply, ahead.converted, state, request, version)
        conn.out += codec.encode_response(correlation, response)
        self._read_ahead(conn, ahead.header, ahead.reply, ahead.payloads)
        return True

    def _read_ahead(self, conn: _Connection, header: dict, reply: dict, payloads: list) -> None:
        """After answering ``header`` with ``reply``: read ahead the client's next fetch."""

        def send(predicted: dict) -> bytes:
            rid = b"k%d" % next(self._request_ids)
            conn.dealer.send_multipart(build_request(rid, "fetch", predicted, []))
            return rid

        self._aheads.start(conn.read_ahead, read_ahead.next_fetch(header, reply, payloads), send)

    @staticmethod
    def _bootstrap_answer(conn: _Connection, frame: bytes) -> bytes:
        """Where ZeroMQ is for the listener ``conn`` came in on (protocol/bootstrap.py)."""
        try:
            version, correlation = bootstrap.decode_request(frame)
        except ProtocolError as exc:
            raise _Close(f"a request that does not parse ({exc})") from None
        spec = conn.via.spec
        answer = {
            "broker": "labkit",
            "listener": spec.name,
            "zmq_host": spec.zmq_host,
            "zmq_port": spec.zmq_port,
        }
        return bootstrap.encode_response(correlation, version, answer)


class _Close(Exception):
    """Close this connection (the message says why; empty: the client left)."""
