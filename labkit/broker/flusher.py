"""Group commit: everything the broker makes durable, done by one flusher thread.

Theory of operation
-------------------
The loop thread never waits for a disk. A reply that promises durability waits in
``GroupCommit`` instead of going out: a produce with ``acks=-1``, and any request
that changed state which must survive a crash before it is acknowledged (topics
created, deleted, grown or reconfigured — also auto-created — offset commits,
group deletions and client-quota changes; ``mark``/``changed_since`` tell), and a
delete_records whose new log start offsets are not durable yet (``Reply.log_starts``). A metadata request naming a topic
that is still being created, and a produce naming one (before any of its batches is
appended), are held and handled again once the topic exists.

When the flusher is idle and something is due, the loop hands it one **round**:
the waiting replies, the logs they appended to, the logs whose start offset moved,
the registry's metadata round (``TopicRegistry.begin_round``), the offset store and
the client quotas' round (``ClientQuotas.begin_round``). The flusher thread then

1. writes each moved log start offset's checkpoint (``save_log_start``), before
   step 2 may delete a topic's directory,
2. writes topics.json once and does the topics' file work (``run_round``),
3. writes the queued offset-commit records and fsyncs them once (``sync``),
4. writes quotas.json, if an admin changed a quota,
5. fsyncs each log once,
6. writes the index files of segments that produces sealed (``Reply.rolled``; a
   cache, so no reply waits for it: the loop thread only never writes them),

and wakes the loop over an inproc socket. The loop (``finish``) installs the
created topics, turns the failures into per-target errors, sends the replies and
answers the held metadata requests. Whatever arrives while a round runs waits for
the next one, which then covers all of it with one write per file.

Thread-safety: ``run`` is the flusher thread; everything else is the loop thread.
They share the job queue, the ``done`` deque and what a round hands over (the
registry's and the quotas' round snapshots, logs, the offset store's queue), never
the socket.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from labkit.broker.offsets import OffsetStore
from labkit.broker.quota_entities import QuotaRound
from labkit.broker.quotas import ClientQuotas
from labkit.broker.replies import Reply, error_of, fail_target
from labkit.broker.topic_files import MetadataRound
from labkit.broker.topics import TopicRegistry
from labkit.errors import KafkaStorageError
from labkit.protocol.messages import DeletedRecords

log = logging.getLogger(__name__)

TOPIC_APIS = frozenset({"create_topics", "delete_topics", "create_partitions", "alter_configs"})
OFFSET_APIS = frozenset({"offset_commit", "delete_groups", "offset_delete"})
QUOTA_ALTER = "alter_client_quotas"
MAX_HOLDS = 3  # rounds a metadata request waits for a topic being created


@dataclass
class Round:
    """One job of the flusher thread and, once it ran, what failed."""

    replies: list
    logs: dict
    metadata: MetadataRound | None
    offsets: OffsetStore | None
    quotas: QuotaRound | None = None
    starts: dict = field(default_factory=dict)  # id(log) -> log whose start moved
    rolled: dict = field(default_factory=dict)  # id(log) -> log with sealed, unwritten indexes
    failed_logs: dict = field(default_factory=dict)
    failed_starts: dict = field(default_factory=dict)
    offsets_error: Exception | None = None

    def run(self, registry: TopicRegistry) -> None:
        """Flusher thread: make everything in this round durable; record failures."""
        self.failed_starts = save_log_starts(self.starts)
        if self.metadata is not None:
            try:
                registry.run_round(self.metadata)
            except Exception as exc:  # a bug must not stop the flusher
                log.exception("writing topic metadata failed")
                self.metadata.error = self.metadata.error or exc
        if self.offsets is not None:
            try:
                self.offsets.sync()
            except Exception as exc:  # noqa: BLE001 - OSError, or a bug: reported, kept queued
                self.offsets_error = exc
        if self.quotas is not None:
            self.quotas.run()
        self.failed_logs = flush_logs(self.logs)
        for plog in self.rolled.values():  # a cache: failures are logged, never raised
            plog.write_sealed_indexes()


def flush_logs(logs: dict) -> dict:
    """fsync each log once; return {id(log): exception} for the ones that failed."""
    failed = {}
    for key, plog in logs.items():
        try:
            plog.flush()
        except Exception as exc:  # noqa: BLE001 - reported to the producer, not raised
            failed[key] = exc
    return failed


def save_log_starts(logs: dict) -> dict:
    """Write each log's moved start offset; return {id(log): exception} for failures."""
    failed = {}
    for key, plog in logs.items():
        try:
            plog.save_log_start()
        except Exception as exc:  # noqa: BLE001 - reported to the admin, not raised
            failed[key] = exc
    return failed


OpenWaker = Callable[[], tuple[Callable[[], None], Callable[[], None]]]  # -> (wake, close)


class _FlusherThread(threading.Thread):
    def __init__(self, open_waker: OpenWaker, registry: TopicRegistry):
        super().__init__(name="labkit-flusher", daemon=True)
        self._open_waker = open_waker
        self._registry = registry
        self.jobs: queue.Queue = queue.Queue()
        self.done: deque = deque()

    def run(self) -> None:
        wake, close = self._open_waker()  # this thread's own socket to the loop
        try:
            while True:
                job = self.jobs.get()
                if job is None:
                    return
                job.run(self._registry)
                self.done.append(job)
                wake()
        finally:
            close()


Send = Callable[[bytes, bytes, dict, list], None]
Dispatch = Callable[[bytes, bytes, str, dict, list, int], None]


def _named_topics(header: dict, key: str) -> list[str]:
    """Topic names in a produce's ``targets`` rows or a metadata's ``topics`` list."""
    rows = header.get(key)
    if not isinstance(rows, list):
        return []
    if key == "targets":
        rows = [row[0] for row in rows if isinstance(row, list) and row]
    return [name for name in rows if isinstance(name, str)]


class GroupCommit:
    """The loop thread's side of the flusher: who waits, what the next round covers."""

    def __init__(
        self,
        registry: TopicRegistry,
        offsets: OffsetStore,
        dispatch: Dispatch,
        auto_create: Callable[[str], None],
        send: Send,
        stats: dict,
        quotas: ClientQuotas | None = None,
    ):
        self._registry = registry
        self._offsets = offsets
        self._quotas = quotas if quotas is not None else ClientQuotas(None)
        self._dispatch = dispatch
        self._auto_create = auto_create
        self._send = send
        self._stats = stats
        self._waiting: list = []  # (identity, rid, api, reply)
        self._held: list = []  # (identity, rid, api, header, payloads, holds)
        self._rolled: dict = {}  # id(log) -> log whose sealed segment needs its index files
        self._busy = False
        self._thread: _FlusherThread | None = None
        # cluster mode: holds an acks=all reply for the ISR after its fsync (True: held)
        self.replicated: Callable[[bytes, bytes, Reply], bool] | None = None
        registry.deferred = True
        offsets.group_commit = True
        self._quotas.deferred = True

    def start(self, open_waker: OpenWaker) -> None:
        """Start the flusher thread; ``open_waker`` (called on it) gives it a way to wake
        the loop (the server's inproc socket: only broker/server.py imports zmq)."""
        self._thread = _FlusherThread(open_waker, self._registry)
        self._thread.start()

    # -- deciding who waits ----------------------------------------------------------

    def mark(self) -> tuple[int, int, int]:
        """Taken before a request is handled, for ``changed_since``."""
        return self._registry.version, self._offsets.queued, self._quotas.version

    def changed_since(self, mark: tuple[int, int, int]) -> bool:
        """Whether state that must be durable changed since ``mark``."""
        return mark != self.mark()

    def write_indexes(self, logs: list) -> None:
        """Have the next round write the index files of segments these logs sealed."""
        for plog in logs:
            self._rolled[id(plog)] = plog

    def wait(self, identity: bytes, rid: bytes, api: str, reply: Reply) -> None:
        """Send ``reply`` after the next round (the one that covers it)."""
        self._waiting.append((identity, rid, api, reply))

    def reply_when_durable(
        self, identity: bytes, rid: bytes, api: str, answer: dict, mark: tuple[int, int, int]
    ) -> bool:
        """Hold a group or quota API's answer for the round that makes its change durable.

        A commit (a quota change) that changed nothing also waits while earlier ones are
        not durable yet (it acknowledges them too). False: send it now."""
        if (api not in OFFSET_APIS and api != QUOTA_ALTER) or answer.get("error") != 0:
            return False
        if not (
            self.changed_since(mark)
            or (api == "offset_commit" and self._offsets.unsynced)
            or (api == QUOTA_ALTER and self._quotas.unsaved)
        ):
            return False
        self.wait(identity, rid, api, Reply(answer))
        return True

    def hold(
        self,
        identity: bytes,
        rid: bytes,
        api: str,
        header: dict,
        payloads: list,
        holds: int,
        before: bool,
    ) -> bool:
        """Hold a request that names a topic being created; False: go on with it.

        ``before`` handling: a produce naming a topic that does not exist yet starts its
        creation (auto-create) and waits whole, so none of its batches is appended before
        the others. After handling: a metadata request (which started the creation itself)
        is answered again later. Each request waits for at most MAX_HOLDS rounds."""
        if holds >= MAX_HOLDS or api != ("produce" if before else "metadata"):
            return False
        names = _named_topics(header, "targets" if before else "topics")
        if before:
            for name in names:
                if self._registry.get(name) is None and not self._registry.being_created(name):
                    self._auto_create(name)
        if not any(self._registry.being_created(name) for name in names):
            return False
        self._held.append((identity, rid, api, header, payloads, holds + 1))
        return True

    # -- rounds ------------------------------------------------------------------------

    def hand_over(self) -> None:
        """Start a round if the flusher is idle and something is due (each loop turn)."""
        if self._busy or self._thread is None:
            return
        if not self._due():
            return
        self._busy = True
        self._thread.jobs.put(self._next_round())

    def _next_round(self) -> Round:
        replies, self._waiting = self._waiting, []
        logs, starts = {}, {}
        for _identity, _rid, _api, reply in replies:
            for _index, plog in reply.sync or ():
                logs[id(plog)] = plog
            for _index, plog in reply.log_starts or ():
                starts[id(plog)] = plog
        offsets = self._offsets if self._offsets.unsynced else None
        rolled, self._rolled = self._rolled, {}
        return Round(
            replies,
            logs,
            self._registry.begin_round(),
            offsets,
            self._quotas.begin_round(),
            starts,
            rolled,
        )

    def _due(self) -> bool:
        return bool(
            self._waiting
            or self._rolled
            or self._held
            or self._registry.pending
            or self._offsets.unsynced
            or self._quotas.pending
        )

    def finish(self) -> list[str]:
        """Answer the rounds the flusher has finished; the topics they installed (created,
        or given new partitions), so the loop can tell parked fetches and groups."""
        thread = self._thread
        installed: list[str] = []
        while thread is not None and thread.done:
            installed += self._finish(thread.done.popleft())
            self._busy = False
        return installed

    def _finish(self, round_: Round) -> list[str]:
        failed_topics = {}
        if round_.metadata is not None:
            failed_topics = self._registry.finish_round(round_.metadata)
        quotas_error = None
        if round_.quotas is not None:
            quotas_error = self._quotas.finish_round(round_.quotas)
        self._stats["fsync_rounds"] += 1
        for identity, rid, api, reply in round_.replies:
            header = reply.header
            if reply.sync is not None:
                self._stats["synced_produces"] += 1
                _patch_produce(header, reply.sync, round_.failed_logs)
            if api in TOPIC_APIS and failed_topics:
                _patch_topics(header, failed_topics)
            elif api in OFFSET_APIS and round_.offsets_error is not None:
                _code, text = error_of(round_.offsets_error)
                header = {
                    "error": KafkaStorageError.errno,
                    "message": f"the broker could not write committed offsets ({text}); "
                    "check the disk space of the data directory, then retry",
                }
            elif api == QUOTA_ALTER and quotas_error is not None:
                _patch_quotas(header, quotas_error)
            elif reply.log_starts and round_.failed_starts:
                _patch_log_starts(header, reply.log_starts, round_.failed_starts)
            if (
                reply.replicate
                and self.replicated is not None
                and self.replicated(identity, rid, reply)
            ):
                continue  # cluster mode: it waits for the in-sync replicas too
            self._send(identity, rid, header, reply.payloads)
        held, self._held = self._held, []
        for identity, rid, api, header, payloads, holds in held:
            self._dispatch(identity, rid, api, header, payloads, holds)
        if round_.metadata is None:
            return []
        return [
            c.topic.name for c in round_.metadata.creations if c.topic.name not in failed_topics
        ]

    def stop(self) -> None:
        """Finish the running round, then make the rest durable on this thread (shutdown)."""
        thread = self._thread
        if thread is not None:
            thread.jobs.put(None)
            thread.join(timeout=30)
            self.finish()
            self._thread = None
        for _attempt in range(MAX_HOLDS + 2):  # bounded: a failing disk must not hang it
            if not self._due():
                return
            round_ = self._next_round()
            round_.run(self._registry)
            self._finish(round_)


def _patch_produce(header: dict, sync: list, failed: dict) -> None:
    for index, plog in sync:
        exc = failed.get(id(plog))
        if exc is not None:
            code, text = error_of(exc)
            fail_target(header, index, code, text)


def _patch_topics(header: dict, failed: dict) -> None:
    for entry in header.get("topics", ()):
        error = failed.get(entry.get("name"))
        if error is not None and entry.get("error") == 0:
            code, text = error_of(
                KafkaStorageError(
                    f"the change to topic {entry['name']!r} could not be saved ({error}); check "
                    "the disk space of the data directory, then retry"
                )
            )
            entry["error"], entry["message"] = code, text


def _patch_quotas(header: dict, error: Exception) -> None:
    code, text = error_of(
        KafkaStorageError(
            f"the client quota change could not be saved ({error}); check the disk space "
            "of the data directory, then retry"
        )
    )
    for entry in header.get("entries", ()):
        if entry.get("error") == 0:
            entry["error"], entry["message"] = code, text


def _patch_log_starts(header: dict, unsaved: list, failed: dict) -> None:
    rows = header["partitions"]
    for index, plog in unsaved:
        error = failed.get(id(plog))
        if error is not None:
            topic, partition = rows[index][0], rows[index][1]
            code, text = error_of(error)  # the log's own words: what failed, what to do
            rows[index] = DeletedRecords(
                topic,
                partition,
                code,
                -1,
                f"the new log start offset of {topic}-{partition} is not saved: {text} "
                "Then retry the same delete_records: it waits until the start is saved.",
            )
