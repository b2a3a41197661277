"""What the broker's loop thread decides, without sockets: ``BrokerLoop``.

Theory of operation
-------------------
``broker/server.py`` owns the ZeroMQ sockets and calls this class; everything the
loop *decides* lives here, so that it is tested without sockets, with a fake
transport and ``FakeClock`` (``tests/unit/test_broker_loop.py``), as h11 tests its
state machine. The server hands over:

- each message read from the ROUTER (``receive``: identity + frames) — it is parsed,
  muted when its connection is throttled, then dispatched: to the group service, the
  quota APIs, or the handlers; the reply goes out at once, is parked (a fetch short
  of ``min_bytes``), or waits for the flusher's round (``broker/flusher.py``);
- each connection the socket monitor reports (``connection_accepted``/``_closed``),
  and each client's descriptor (``connections.bind``);
- each finished flusher round (``flushes_done``);
- one ``turn()`` per poll: re-check parked fetches whose partitions got data (all of
  them after an admin change), expire parked fetches whose time is up, measure the
  connections' byte budgets every ``BUDGET_CHECK_S``, hand the next round to the
  flusher, handle the requests of connections whose throttle time is over, and tick
  the group service every ``TICK_S``. ``wait_s(now)`` says how long the server may
  poll before the next turn is due.

Every reply leaves through ``send``, which counts it against its connection's
budget and writes it with the ``transport`` callable ``(identity, request id,
header bytes, payloads)``; a connection over budget is closed and its parked
fetches are answered (``forget_clients``). Nothing a client sends raises out of
``receive``: an unexpected error is logged and answered with UNKNOWN (-1).

Used by the loop thread only; not thread-safe.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from labkit._clock import Clock
from labkit.broker.classic_api import handle_classic
from labkit.broker.config import BrokerConfig
from labkit.broker.connections import ConnectionTable, frame_overhead
from labkit.broker.descriptors import FD_LOW_WATER, open_descriptors, open_file_limit
from labkit.broker.flusher import GroupCommit
from labkit.broker.group_api import GROUP_APIS, GroupService
from labkit.broker.handlers import Handlers
from labkit.broker.parking import ParkingLot
from labkit.broker.quotas import (
    CONSUMER_BYTE_RATE,
    PRODUCER_BYTE_RATE,
    QUOTA_APIS,
    ClientQuotas,
    client_id_of,
)
from labkit.broker.replies import Reply, error_of
from labkit.broker.throttle import ThrottleGate
from labkit.broker.topics import TopicRegistry
from labkit.errors import InvalidRequestError, ProtocolError, UnknownError
from labkit.protocol.frames import MAGIC, MAX_REQUEST_ID, encode_header, parse_request
from labkit.protocol.messages import CLASSIC_GROUP_APIS

if TYPE_CHECKING:
    from labkit.broker.cluster_sync import ClusterSync
    from labkit.broker.offsets_log import ReplicatedOffsets
    from labkit.broker.replication import Replication

log = logging.getLogger(__name__)

TICK_S = 0.1  # group service tick period
BUDGET_CHECK_S = 0.05  # how often every connection's inbound bytes are measured
FD_CHECK_S = 5.0  # how often the loop looks whether descriptors ran out
MAX_FRAMES = 10_000  # frames kept per message; the rest are read and discarded
MAX_QUEUE_WAIT_S = 10.0  # longest a throttled connection's request waits unhandled

Transport = Callable[[bytes, bytes, bytes, tuple | list], None]


def new_stats() -> dict[str, int]:
    return {"requests": 0, "dropped": 0, "errors": 0, "fsync_rounds": 0, "synced_produces": 0}


class BrokerLoop:
    """The loop thread's state and decisions (see the module docstring)."""

    def __init__(
        self,
        config: BrokerConfig,
        clock: Clock,
        registry: TopicRegistry,
        quotas: ClientQuotas,
        transport: Transport,
        stats: dict[str, int] | None = None,
        connections: ConnectionTable | None = None,
    ):
        self.config = config
        self.clock = clock
        self.stats = new_stats() if stats is None else stats
        self.registry = registry
        self.quotas = quotas
        self._transport = transport
        self.handlers = Handlers(
            registry, config, clock, GROUP_APIS | CLASSIC_GROUP_APIS | QUOTA_APIS
        )
        self.parking = ParkingLot(self._parked_fetch)
        self.gate = ThrottleGate()
        if connections is None:
            connections = ConnectionTable(config.connection_max_buffered_bytes)
        self.connections = connections
        self.groups = GroupService(
            config.data_dir,
            clock,
            self._partitions_of,
            self._log_end_offset,
            offsets_retention_ms=config.offsets_retention_minutes * 60_000,
            retention_check_interval_ms=config.offsets_retention_check_interval_ms,
            max_group_size=config.group_max_size,
            initial_rebalance_delay_ms=config.group_initial_rebalance_delay_ms,
        )
        self.durable = GroupCommit(
            registry,
            self.groups.offsets,
            self.dispatch,
            self.handlers.try_auto_create,
            self.send,
            self.stats,
            quotas,
        )
        self.stopping = False  # shutting down: nothing is muted any more
        # cluster mode only (kazoo is imported then, never in single-broker mode)
        self.cluster: ClusterSync | None = None
        self.replication: Replication | None = None
        self.offsets_log: ReplicatedOffsets | None = None  # __consumer_offsets (cluster mode)
        self._dirty: set = set()  # partitions that got data this turn
        self._recheck_all = False
        self._next_tick = clock.monotonic() + TICK_S
        self._next_budget_check = 0.0
        self._next_fd_check = 0.0

    # -- requests ----------------------------------------------------------------

    def receive(self, frames: list, admitted: bool = False) -> None:
        """One message from the ROUTER: [identity, magic, request id, api, header, ...]."""
        try:
            self._on_message(frames, admitted)
        except Exception as exc:  # noqa: BLE001 - nothing a client sends may stop the loop
            self._internal_error(frames, exc)

    def _on_message(self, frames: list, admitted: bool) -> None:
        if len(frames) < 2:
            self._drop("an empty message")
            return
        identity = frames[0]
        body = frames[1:]
        try:
            if len(frames) > MAX_FRAMES:
                raise ProtocolError(f"more than {MAX_FRAMES} frames in one message")
            rid, api, header, payloads = parse_request(body)
        except ProtocolError as exc:
            known_rid: bytes | None = getattr(exc, "request_id", None)
            if (
                known_rid is None
                and len(body) >= 2
                and body[0] == MAGIC
                and len(body[1]) <= MAX_REQUEST_ID
            ):
                known_rid = body[1]
            if known_rid is None:
                self._drop(str(exc))
            else:
                self.stats["errors"] += 1
                self.send(
                    identity,
                    known_rid,
                    {"error": InvalidRequestError.errno, "message": f"malformed request: {exc}"},
                )
            return
        if api in QUOTA_APIS:
            mark = self.durable.mark()
            answer = self._quota_request(api, header)
            if not self.durable.reply_when_durable(identity, rid, api, answer, mark):
                self.send(identity, rid, answer)
            return
        if (
            api in ("produce", "fetch")
            and not admitted
            and not self.gate.admit(
                identity, frames, _max_queue_wait_s(header), self.clock.monotonic()
            )
        ):
            return  # a throttled connection: handled when its throttle time is over
        self.dispatch(identity, rid, api, header, payloads)

    def dispatch(
        self, identity: bytes, rid: bytes, api: str, header: dict, payloads: list, holds: int = 0
    ) -> None:
        """Handle one parsed request (again, for one held while its topics were created)."""
        durable = self.durable
        if durable.hold(identity, rid, api, header, payloads, holds, before=True):
            return  # a produce to a topic being created: handled once it exists
        offsets_log = self.offsets_log
        if offsets_log is not None and (api in GROUP_APIS or api in CLASSIC_GROUP_APIS):
            refusal = offsets_log.refusal(api, header)  # not this group's coordinator
            if refusal is not None:
                self.send(identity, rid, refusal)
                return
        if api in CLASSIC_GROUP_APIS:  # answered now, or parked in the classic coordinator
            self._send_classic(handle_classic(self.groups, (identity, rid), api, header))
            return
        mark = durable.mark()
        if api in GROUP_APIS:
            if offsets_log is not None:
                offsets_log.begin()
            answer = self._group_request(api, header)
            if offsets_log is not None:  # cluster mode: a change waits for the ISR
                replicated = offsets_log.finish(api, header, answer)
                if replicated is not None:
                    self._offsets_appended(replicated)
                    durable.wait(identity, rid, api, replicated)
                    return
            if not durable.reply_when_durable(identity, rid, api, answer, mark):
                self.send(identity, rid, answer)
            return
        if api == "fetch" and self.quotas.active:
            header = self.quotas.bound_fetch(header)
        reply = self.handlers.handle(api, header, payloads)
        if api == "produce":
            self._charge(identity, PRODUCER_BYTE_RATE, header, reply.header, payloads)
        if reply.appended:
            self._dirty.update(reply.appended)
            if self.replication is not None and api == "produce":
                self.replication.after_append(reply.appended)
        if reply.rolled:
            durable.write_indexes(reply.rolled)
        if reply.topics_changed:
            self._recheck_all = True
        if reply.changed_topics:
            self.groups.topics_changed(reply.changed_topics)
        if reply.silent:
            return
        if durable.hold(identity, rid, api, header, payloads, holds, before=False):
            pass  # a metadata request: answered again once the topics it names exist
        elif reply.sync or reply.log_starts or durable.changed_since(mark):
            durable.wait(identity, rid, api, reply)
        elif reply.keys is not None:
            deadline = self.clock.monotonic() + reply.park_ms / 1000.0
            self._send_answers(self.parking.park(identity, rid, header, deadline, reply.keys))
        else:
            if api == "fetch":
                self._charge(identity, CONSUMER_BYTE_RATE, header, reply.header, reply.payloads)
            self.send(identity, rid, reply.header, reply.payloads)

    def _offsets_appended(self, reply: Reply) -> None:
        """Records went to __consumer_offsets: followers' parked fetches and the high
        watermark (a lone ISR) move, as after a produce."""
        appended = reply.appended or []
        self._dirty.update(appended)
        if self.replication is not None:
            self.replication.after_append(appended)
        rolled = [plog for _i, plog in reply.sync or () if plog.sealed_unindexed]
        if rolled:
            self.durable.write_indexes(rolled)

    def _group_request(self, api: str, header: dict) -> dict:
        try:
            return self.groups.handle(api, header)
        except Exception as exc:  # noqa: BLE001 - the contract says never, but be safe
            code, text = error_of(exc)
            return {"error": code, "message": text}

    def _send_classic(self, answers: list) -> None:
        for (identity, rid), answer in answers:
            self.send(identity, rid, answer)

    def _quota_request(self, api: str, header: dict) -> dict:
        try:
            return self.quotas.handle(api, header, self.clock.monotonic())
        except Exception as exc:  # noqa: BLE001 - a bad request must not stop the loop
            code, text = error_of(exc)
            return {"error": code, "message": text}

    def _internal_error(self, frames: list, exc: Exception) -> None:
        self.stats["errors"] += 1
        log.error("a request could not be handled; the broker carries on", exc_info=exc)
        if len(frames) >= 3 and frames[1] == MAGIC and len(frames[2]) <= MAX_REQUEST_ID:
            self.send(
                frames[0],
                frames[2],
                {
                    "error": UnknownError.errno,
                    "message": f"unexpected broker error {type(exc).__name__}: {exc} "
                    "(see the broker log)",
                },
            )

    def _drop(self, why: str) -> None:
        self.stats["dropped"] += 1
        count = self.stats["dropped"]
        if count <= 10 or count % 1000 == 0:
            log.warning("dropped a malformed message (%s); %d dropped so far", why, count)

    # -- replies -----------------------------------------------------------------

    def send(self, identity: bytes, rid: bytes, header: dict, payloads=()) -> None:
        """The one way out: count the reply against its connection, then write it."""
        try:
            head = encode_header(header)
        except (TypeError, ValueError) as exc:  # never send half a message
            log.error("reply header is not JSON (%s): %r", exc, header)
            head = encode_header(
                {
                    "error": UnknownError.errno,
                    "message": "the broker built a bad reply; see the broker log",
                }
            )
            payloads = ()
        wire = (
            len(MAGIC)
            + len(rid)
            + len(head)
            + 4
            + frame_overhead(len(head))
            + sum(len(p) + frame_overhead(len(p)) for p in payloads)
        )
        gone = self.connections.on_send(identity, wire)
        if gone is not None:  # that client stopped reading its replies: disconnected
            self.forget_clients(gone)
            return
        self._transport(identity, rid, head, payloads)

    def _parked_fetch(self, header: dict, final: bool) -> Reply:
        reply = self.handlers.fetch(header, final)
        reply.request = header  # the client id its quota is charged to
        return reply

    def _send_answers(self, answers: list) -> None:
        for identity, rid, reply in answers:
            if reply.request is not None:
                self._charge(
                    identity, CONSUMER_BYTE_RATE, reply.request, reply.header, reply.payloads
                )
            self.send(identity, rid, reply.header, reply.payloads)

    # -- client quotas (broker/quotas.py, broker/throttle.py) ----------------------

    def _charge(
        self, identity: bytes, key: str, request: dict, reply_header: dict, payloads
    ) -> None:
        """Count a produce's or fetch's record bytes against the client's quota; a
        client over it gets ``throttle_time_ms`` and its connection is muted."""
        if not self.quotas.active:
            return
        now = self.clock.monotonic()
        delay = self.quotas.record(key, client_id_of(request), sum(map(len, payloads)), now)
        reply_header["throttle_time_ms"] = delay
        if not self.stopping:
            self.gate.mute(identity, delay, now)

    def release_throttled(self, everything: bool = False) -> None:
        """Handle the queued requests of connections whose throttle time is over."""
        now = self.clock.monotonic()
        for identity in self.gate.due(now, everything):
            while (frames := self.gate.pop_ready(identity, now, everything)) is not None:
                self.receive(frames, admitted=True)

    # -- each turn -----------------------------------------------------------------

    def wait_s(self, now: float) -> float:
        """How long the server may wait for a socket before the next turn is due
        (zero or less: due now)."""
        wait = min(self._next_tick, self._next_budget_check) - now
        for deadline in (self.parking.next_deadline(), self.gate.next_due()):
            if deadline is not None:
                wait = min(wait, deadline - now)
        return wait

    def join_cluster(self, cluster: ClusterSync, replication: Replication | None = None) -> None:
        """Cluster mode: the handlers answer from ZooKeeper's view, each turn applies it;
        ``replication`` (broker/replication.py) leads and follows the partitions."""
        self.cluster = cluster
        self.handlers.cluster = cluster
        if replication is not None:
            self.replication = replication
            self.handlers.replication = replication
            self.handlers.on_replica_fetch = replication.on_replica_fetch
            self.durable.replicated = replication.hold
            from labkit.broker.offsets_log import ReplicatedOffsets

            self.offsets_log = ReplicatedOffsets(
                cluster,
                replication,
                self.groups.offsets,
                self.clock,
                self.config.offsets_topic_num_partitions,
                self.config.offsets_topic_replication_factor,
            )
            self.groups.coordinator_of = self.offsets_log.find

    def turn(self) -> None:
        """Housekeeping after the server handled what its sockets had."""
        if self.cluster is not None:
            changed = self.cluster.turn()
            if changed:
                self._recheck_all = True
                self.groups.topics_changed(changed)
        if self.replication is not None:
            if self.replication.apply():
                self._recheck_all = True  # a new leader's parked fetches may be answered
            self.replication.check_isr()
            self.replication.checkpoint()
            self.replication.release()
        if self.offsets_log is not None:  # load the offsets partitions it now leads
            for belongs in self.offsets_log.on_roles():  # and let go of the others' groups
                self._send_classic(self.groups.unload(belongs))
        self._wake_parked()
        now = self.clock.monotonic()
        self._send_answers(self.parking.expire(now))
        if now >= self._next_budget_check:
            self._next_budget_check = now + BUDGET_CHECK_S
            self.forget_clients(self.connections.check())
            self._check_descriptors(now)
        self.durable.hand_over()
        self.release_throttled()
        now = self.clock.monotonic()
        if now >= self._next_tick:
            self._next_tick = now + TICK_S
            try:
                self.groups.tick()
                self._send_classic(self.groups.classic.tick())
            except Exception:
                log.exception("group service tick failed")

    def _wake_parked(self) -> None:
        if self._recheck_all:
            self._recheck_all = False
            self._dirty.clear()
            self._send_answers(self.parking.wake_all())
        elif self._dirty:
            dirty, self._dirty = self._dirty, set()
            self._send_answers(self.parking.wake(dirty))

    def flushes_done(self) -> None:
        """The flusher finished rounds: send their replies, tell who waits on new topics."""
        installed = self.durable.finish()
        if installed:
            self._recheck_all = True  # parked fetches may name a topic that now exists
            # groups subscribed to them rebalance now that their partitions exist
            self.groups.topics_changed(installed)

    def _check_descriptors(self, now: float) -> None:
        """Say plainly when the process is (nearly) out of descriptors: libzmq then
        cannot accept connections, and new clients only see silence."""
        if now < self._next_fd_check:
            return
        self._next_fd_check = now + FD_CHECK_S
        limit, used = open_file_limit(), open_descriptors()
        if limit is not None and used is not None and used >= limit - FD_LOW_WATER:
            log.error(
                "the broker is out of file descriptors (%d of %d open): new clients "
                "cannot connect until some disconnect or topics are deleted. Raise "
                "the limit (ulimit -n, or ulimits: nofile: in docker-compose.yml) and "
                "restart the broker",
                used,
                limit,
            )

    # -- connections -----------------------------------------------------------------

    def connection_accepted(self, fd: int) -> None:
        self.connections.accepted(fd)

    def connection_closed(self, fd: int) -> None:
        self.forget_clients(self.connections.closed(fd))

    def forget_clients(self, identities: list) -> None:
        """Clients gone (or cut off): their parked fetches are answered now."""
        for identity in identities:
            self._send_answers(self.parking.release_client(identity))

    # -- shutdown --------------------------------------------------------------------

    def shutdown(self) -> None:
        """Answer what is waiting, make durable what is pending, close the groups."""
        self.stopping = True
        self.release_throttled(everything=True)
        self._send_answers(self.parking.answer_all())
        self._send_classic(self.groups.classic.answer_all())
        self.durable.stop()
        self.groups.close()

    # -- what the group service asks about topics -------------------------------------

    def _partitions_of(self, topic: str) -> int | None:
        found = self.registry.get(topic)
        return None if found is None else len(found.partitions)

    def _log_end_offset(self, topic: str, partition: int) -> int | None:
        found = self.registry.get(topic)
        if found is None or not 0 <= partition < len(found.partitions):
            return None
        return found.partitions[partition].log_end_offset


def _max_queue_wait_s(header: dict) -> float:
    """How long a muted connection's request may wait: well within the client's own
    request timeout (a produce says it), so it is never timed out and sent twice."""
    timeout_ms = header.get("timeout_ms")
    if type(timeout_ms) is int and timeout_ms > 0:
        return min(MAX_QUEUE_WAIT_S, timeout_ms / 2000.0)
    return MAX_QUEUE_WAIT_S
