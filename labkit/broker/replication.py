"""Cluster mode's data plane on the loop thread: leaders, followers, the ISR, acks=all.

Theory of operation
-------------------
Built with ``ClusterSync`` (cluster mode only). After each new ZooKeeper snapshot the
loop calls ``apply()``, which gives every local partition of a replicated topic its role
from the partition's state znode:

- **leader** (state.leader is this broker): on a new leader epoch, stop fetching it
  (``FetcherPool.unfollow`` returns once no fetcher thread touches the log), record the
  epoch at the log end (``leader_epochs.assign``, in memory: followers' questions are
  answered from there), and keep a ``LeaderReplicas`` (broker/replica_leader.py) with the state's ISR. The log
  is kept as it is: a new leader never truncates.
  The checkpoint file is written off the loop: the ``labkit-isr`` thread saves it at
  once, and, whatever that thread is doing, the flusher's fsync round of the first
  acks=all produce of the new epoch saves it too (``PartitionLog.flush`` fsyncs the
  batches, then the epochs) before that produce is answered. So no record of the
  epoch is acknowledged before the epoch is durable (KIP-101); a crash before that
  leaves the newest batches under an older epoch, which makes followers truncate
  more than needed, never less (log/leader_epochs.py).
- **follower**: the pool's thread for the leader's broker fetches it (truncation by
  leader epoch first; broker/replica_threads.py); a new leader or epoch re-targets it.
- no leader, or not a replica: neither.

As leader: each replica fetch reports the follower's log end (``on_replica_fetch``:
the high watermark = min log end over the ISR; True wakes the consumer fetches parked
on the partition); a produce's append moves it too when the ISR is the leader alone
(``after_append``). Every ``replica.lag.time.max.ms / 2`` (as Kafka) ``check_isr``
proposes an ISR without the followers lagging longer than that, plus those caught up
again; the ``labkit-isr`` thread writes it to the state znode at the version read
(``ClusterMember.update_isr``: a controller's newer write wins), and the next snapshot
makes it the ISR here (``set_isr``).

**acks=all** (``produce`` with acks=-1): ``check_produce`` refuses before the append with
NOT_ENOUGH_REPLICAS when the ISR is smaller than ``min.insync.replicas`` (the topic's
ZooKeeper config, else the broker's). After the fsync round the reply waits here
(``hold``) until the high watermark reaches the end of what the produce appended; each
loop turn (``release``) answers those that are covered, fails with
NOT_ENOUGH_REPLICAS_AFTER_APPEND a partition whose ISR shrank below the minimum, with
NOT_LEADER_OR_FOLLOWER one this broker no longer leads, and with REQUEST_TIMED_OUT one
still waiting after the produce's ``timeout_ms``.

**High watermark checkpoint**: every ``replica.high.watermark.checkpoint.interval.ms``
(5000, as Kafka) the high watermarks of the partitions led or followed here go to
``replication-offset-checkpoint`` (log/hw_checkpoint.py; written by the ``labkit-isr``
thread, never the loop); at its first role a partition takes its high watermark from
that file (a leader without an entry: its log start, learning the rest from its
followers' fetches).

Loop thread only, except the ``labkit-isr`` thread (its queue) and the fetcher threads.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from labkit._clock import Clock
from labkit.broker.replica_fetcher import Assignment
from labkit.broker.replica_leader import LeaderReplicas
from labkit.broker.replica_threads import FetcherPool, OpenDealer
from labkit.broker.replies import Reply, error_of, fail_target, target_ok
from labkit.cluster.znodes import NO_LEADER, PartitionState
from labkit.errors import (
    NotEnoughReplicasAfterAppendError,
    NotEnoughReplicasError,
    NotLeaderForPartitionError,
    RequestTimedOutError,
)
from labkit.log import PartitionLog, hw_checkpoint

log = logging.getLogger(__name__)

Key = tuple[str, int]
HW_CHECKPOINT_INTERVAL_MS = 5000  # Kafka's replica.high.watermark.checkpoint.interval.ms


@dataclass
class Led:
    """A partition this broker leads, at one leader epoch."""

    epoch: int
    replicas: LeaderReplicas
    plog: PartitionLog
    proposed: frozenset[int] | None = None  # an ISR sent to ZooKeeper, not seen back yet


@dataclass
class Waiting:
    """An acks=all produce reply waiting for the high watermark."""

    identity: bytes
    rid: bytes
    reply: Reply
    targets: list  # [(result index, topic, partition, plog, end offset)]
    deadline_ms: int


class Replication:
    """This broker's leaders and followers (module docstring)."""

    def __init__(
        self,
        cluster,
        registry,
        clock: Clock,
        lag_max_ms: int,
        send: Callable,
        open_dealer: OpenDealer,
    ):
        self.cluster = cluster
        self.broker_id = cluster.broker_id
        self.registry = registry
        self.clock = clock
        self.lag_max_ms = lag_max_ms
        self._send = send
        self.led: dict[Key, Led] = {}
        self.fetchers = FetcherPool(self.broker_id, open_dealer)
        self._waiting: list[Waiting] = []
        self._seen = None
        self._incomplete = False  # a partition's local log did not exist yet: apply again
        self._next_isr_check = 0
        self._marks = hw_checkpoint.read(registry.data_dir)  # the last checkpoint's
        self._next_checkpoint = 0
        self._isr_jobs: queue.Queue = queue.Queue()
        self._isr_thread = threading.Thread(target=self._write_isrs, name="labkit-isr", daemon=True)
        self._isr_thread.start()

    # -- roles --------------------------------------------------------------------------------

    def apply(self) -> bool:
        """Give each partition its role from the newest snapshot; True when one changed."""
        snapshot = self.cluster.snapshot
        if snapshot is self._seen and not self._incomplete:
            return False
        self._seen, self._incomplete = snapshot, False
        me, now = self.broker_id, self.clock.time_ms()
        mine: set[Key] = set()
        for name, view in snapshot.topics.items():
            if view.marked_for_deletion:
                continue
            topic = self.registry.get(name)
            for partition, replicas in view.assignment.items():
                state = view.state(partition)
                if me not in replicas or state is None:
                    continue
                if topic is None or partition >= len(topic.partitions):
                    self._incomplete = True  # its local log is being created: next turn
                    continue
                key = (name, partition)
                plog = topic.partitions[partition]
                if plog._high_watermark is None and key in self._marks:  # restarted here
                    plog.set_high_watermark(self._marks[key])
                if state.leader == me:
                    mine.add(key)
                    self._lead(key, plog, list(replicas), state, now)
                elif state.leader != NO_LEADER and state.leader in snapshot.brokers:
                    mine.add(key)
                    self.led.pop(key, None)
                    info = snapshot.brokers[state.leader]
                    self.fetchers.follow(
                        Assignment(
                            name,
                            partition,
                            state.leader,
                            f"{info.zmq_host}:{info.zmq_port}",
                            state.leader_epoch,
                        ),
                        plog,
                    )
        for key in [k for k in self.led if k not in mine]:
            del self.led[key]
        for key in self.fetchers.followed():
            if key not in mine:
                self.fetchers.unfollow(key)
        return True

    def _lead(self, key: Key, plog, replicas: list[int], state: PartitionState, now: int) -> None:
        led = self.led.get(key)
        if led is not None and led.epoch == state.leader_epoch:
            if led.replicas.isr != frozenset(state.isr) | {self.broker_id}:
                led.replicas.set_isr(set(state.isr) & set(replicas))
                led.proposed = None
            return
        self.fetchers.unfollow(key)  # no fetcher thread touches the log from here on
        leo = plog.log_end_offset
        if plog.leader_epochs.assign(state.leader_epoch, leo):
            self._isr_jobs.put(("epochs", plog))  # the fsync off the loop (module docstring)
        if plog._high_watermark is None:  # never replicated here: nothing known above start
            plog.set_high_watermark(plog.log_start_offset)
        replicas_state = LeaderReplicas(
            self.broker_id,
            replicas,
            set(state.isr) & set(replicas),
            leo,
            now,
            self.lag_max_ms,
            leo,
        )
        self.led[key] = Led(state.leader_epoch, replicas_state, plog)
        replicas_state.advance_high_watermark(plog)
        log.info(
            "%s-%d: leading at leader epoch %d from offset %d, isr %s",
            key[0],
            key[1],
            state.leader_epoch,
            leo,
            sorted(replicas_state.isr),
        )

    # -- the leader's side --------------------------------------------------------------------

    def on_replica_fetch(
        self, topic: str, partition: int, replica_id: int, offset: int, leo: int, now_ms: int
    ) -> bool:
        led = self.led.get((topic, partition))
        if led is None or not led.replicas.on_follower_fetch(replica_id, offset, leo, now_ms):
            return False
        return led.replicas.advance_high_watermark(led.plog)

    def after_append(self, appended: list) -> None:
        """A produce appended: with the leader alone in the ISR, that is the high watermark."""
        for key in appended:
            led = self.led.get(tuple(key))
            if led is not None:
                led.replicas.advance_high_watermark(led.plog)

    def min_insync(self, topic: str) -> int:
        view = self.cluster.snapshot.topics.get(topic)
        value = None if view is None else view.config.get("min.insync.replicas")
        return (
            int(value) if value and value.isdigit() else self.cluster.settings.min_insync_replicas
        )

    def check_produce(self, topic: str, partition: int, acks_all: bool) -> None:
        """Raises NotLeaderForPartitionError while ZooKeeper's decision that this broker
        leads is not applied yet, and for acks=all NotEnoughReplicasError when the ISR is
        smaller than min.insync.replicas."""
        led = self.led.get((topic, partition))
        if led is None:
            raise NotLeaderForPartitionError(
                f"broker {self.broker_id} is becoming the leader of {topic}-{partition}; "
                "retry in a moment"
            )
        if not acks_all:
            return
        wanted = self.min_insync(topic)
        if not led.replicas.enough_replicas(wanted):
            raise NotEnoughReplicasError(
                f"{topic}-{partition} has {len(led.replicas.isr)} in-sync replicas "
                f"{sorted(led.replicas.isr)}, fewer than min.insync.replicas={wanted}: "
                "acks=all is refused until a follower catches up again (see `labkit topics "
                "--describe --under-replicated-partitions`); acks=1 is still accepted"
            )

    def check_isr(self) -> None:
        """Every replica.lag.time.max.ms / 2: propose ISR shrinks and expansions."""
        now = self.clock.time_ms()
        if now < self._next_isr_check:
            return
        self._next_isr_check = now + max(1, self.lag_max_ms // 2)
        snapshot = self.cluster.snapshot
        for key, led in self.led.items():
            if led.proposed is not None:
                continue  # one change at a time: wait for ZooKeeper's answer
            leo, hw = led.plog.log_end_offset, led.plog.high_watermark
            out = led.replicas.shrink_candidates(leo, now)
            back = led.replicas.expand_candidates(hw) & set(snapshot.brokers)
            if not out and not back:
                continue
            view = snapshot.topics.get(key[0])
            found = None if view is None else view.states.get(key[1])
            if found is None:
                continue
            state, version = found
            if state.leader != self.broker_id or state.leader_epoch != led.epoch:
                continue
            isr = (led.replicas.isr - out) | back
            ordered = tuple(r for r in led.replicas.replicas if r in isr)
            led.proposed = frozenset(ordered)
            new = PartitionState(self.broker_id, led.epoch, ordered, state.controller_epoch)
            log.info(
                "%s-%d: ISR %s -> %s (lagging: %s, caught up: %s)",
                key[0],
                key[1],
                sorted(led.replicas.isr),
                list(ordered),
                sorted(out),
                sorted(back),
            )
            self._isr_jobs.put((key, new, version, led))

    def checkpoint(self, force: bool = False) -> None:
        """Every HW_CHECKPOINT_INTERVAL_MS: hand the high watermarks to the labkit-isr thread."""
        now = self.clock.time_ms()
        if now < self._next_checkpoint and not force:
            return
        self._next_checkpoint = now + HW_CHECKPOINT_INTERVAL_MS
        marks = {key: led.plog.high_watermark for key, led in self.led.items()}
        for key in self.fetchers.followed():
            topic = self.registry.get(key[0])
            if topic is not None and key[1] < len(topic.partitions):
                marks[key] = topic.partitions[key[1]].high_watermark
        if marks != self._marks:
            self._marks = marks
            self._isr_jobs.put(("checkpoint", dict(marks)))

    def _write_isrs(self) -> None:
        while True:
            job = self._isr_jobs.get()
            if job is None:
                return
            if job[0] == "epochs":
                try:
                    job[1].leader_epochs.save()
                except OSError as exc:  # the flusher's next round of this log tries again
                    log.warning("could not save a leader-epoch checkpoint: %s", exc)
                continue
            if job[0] == "checkpoint":
                try:
                    hw_checkpoint.write(self.registry.data_dir, job[1])
                except OSError as exc:
                    log.warning("could not write the high-watermark checkpoint: %s", exc)
                continue
            (topic, partition), new, version, led = job
            member = self.cluster.member
            try:
                written = member is not None and member.update_isr(topic, partition, new, version)
            except Exception as exc:  # noqa: BLE001 - ZooKeeper away: proposed again later
                log.warning("%s-%d: could not write the ISR (%s)", topic, partition, exc)
                written = False
            if not written:
                led.proposed = None  # the state moved on: the next check decides again

    # -- acks=all ------------------------------------------------------------------------------

    def hold(self, identity: bytes, rid: bytes, reply: Reply) -> bool:
        """After the fsync round: keep an acks=all reply until the ISR has its records.
        False: nothing to wait for, send it now."""
        targets = [
            t
            for t in (reply.replicate or ())
            if target_ok(reply.header, t[0]) and t[3].high_watermark < t[4]  # fsync failed: said so
        ]
        if not targets:
            return False
        deadline = self.clock.time_ms() + reply.replicate_timeout_ms
        self._waiting.append(Waiting(identity, rid, reply, targets, deadline))
        return True

    def release(self) -> None:
        """Answer the acks=all replies that are covered, shrunk, moved or timed out."""
        if not self._waiting:
            return
        now = self.clock.time_ms()
        still = []
        for waiting in self._waiting:
            pending = []
            for target in waiting.targets:
                index, topic, partition, plog, end = target
                led = self.led.get((topic, partition))
                error: Exception | None = None
                if plog.high_watermark >= end:
                    # covered, but by fewer replicas than promised when the ISR shrank
                    # below the minimum meanwhile (Kafka's checkEnoughReplicasReachOffset)
                    if (
                        led is None
                        or led.plog is not plog
                        or led.replicas.enough_replicas(self.min_insync(topic))
                    ):
                        continue
                    error = NotEnoughReplicasAfterAppendError(
                        f"{topic}-{partition}'s ISR shrank to {sorted(led.replicas.isr)}, fewer "
                        f"than min.insync.replicas={self.min_insync(topic)}, before the batch "
                        "reached min.insync.replicas brokers; retry once the followers caught up"
                    )
                elif led is None or led.plog is not plog:
                    error = NotLeaderForPartitionError(
                        f"broker {self.broker_id} stopped leading {topic}-{partition} before "
                        "the in-sync replicas had this batch; it may or may not be kept: "
                        "retry (an idempotent producer's retry is not stored twice)"
                    )
                elif not led.replicas.enough_replicas(self.min_insync(topic)):
                    error = NotEnoughReplicasAfterAppendError(
                        f"{topic}-{partition}'s ISR shrank to {sorted(led.replicas.isr)}, fewer "
                        f"than min.insync.replicas={self.min_insync(topic)}, after the batch "
                        "was appended; retry once the followers caught up"
                    )
                elif now >= waiting.deadline_ms:
                    error = RequestTimedOutError(
                        f"the in-sync replicas of {topic}-{partition} did not have the batch "
                        "within the produce's timeout_ms; retry"
                    )
                if error is None:
                    pending.append(target)
                else:
                    code, text = error_of(error)
                    fail_target(waiting.reply.header, index, code, text)
            if pending:
                waiting.targets = pending
                still.append(waiting)
            else:
                self._send(waiting.identity, waiting.rid, waiting.reply.header)
        self._waiting = still

    def close(self) -> None:
        """Stop the threads (the last checkpoint written first); answer what waits."""
        self.checkpoint(force=True)
        self._isr_jobs.put(None)
        self._isr_thread.join(timeout=10)
        self.fetchers.close()
        for waiting in self._waiting:
            for index, *_rest in waiting.targets:
                code, text = error_of(RequestTimedOutError("the broker is shutting down; retry"))
                fail_target(waiting.reply.header, index, code, text)
            self._send(waiting.identity, waiting.rid, waiting.reply.header)
        self._waiting = []
