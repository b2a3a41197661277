"""The leader's side of one replicated partition: followers' progress, the high
watermark, and which followers leave or join the ISR. Pure: no I/O, no clock reads.

Theory of operation
-------------------
As Kafka's ``Partition`` / ``ReplicaState`` (3.x, 4.x):

- ``on_follower_fetch(replica, fetch_offset, leader_leo, now_ms)`` (Kafka's
  ``updateFollowerFetchState``): a follower fetches from its log end offset, so
  ``fetch_offset`` *is* its log end. Its ``last_caught_up_ms`` moves to this fetch's
  time when it asked for the leader's log end, or to its previous fetch's time when
  it reached what the leader's log end was then (it was caught up at that moment).
- ``high_watermark(leader_leo)`` (``maybeIncrementLeaderHW``): the smallest log end
  offset over the leader and the ISR's followers; a follower whose log end is not
  known yet (no fetch since this leader took over) holds it where it is. It never
  moves back: ``advance_high_watermark`` sets the log's only when it grows.
- ``shrink_candidates(leader_leo, now_ms)`` (``maybeShrinkIsr``'s out-of-sync
  replicas): ISR followers that are not at the leader's log end and were last caught
  up more than ``replica.lag.time.max.ms`` ago (Kafka's default 30000).
- ``expand_candidates(hw)`` (``isFollowerInSync``): followers outside the ISR whose
  log end reached the high watermark and this leader epoch's start offset, and that
  fetched since they left the ISR (``set_isr``: a shrink this leader proposed). Kafka
  expands the ISR only on a follower's fetch; here a periodic check proposes it, so a
  fetch from before the removal must not count. (A controller's shrink bumps the leader
  epoch: the leader starts over, with every follower's log end unknown.)
- The ISR changes only through ``set_isr``, once the controller (ZooKeeper) accepted
  the change, as Kafka's AlterPartition; candidates are what to propose.
- Becoming leader (``__init__``) treats ISR followers as caught up now and the
  leader's log end then as their last fetch's (Kafka's ``resetReplicaState``), so
  none is shrunk before it had ``replica.lag.time.max.ms`` to fetch.
"""

from __future__ import annotations

from dataclasses import dataclass

REPLICA_LAG_TIME_MAX_MS = 30_000  # Kafka's replica.lag.time.max.ms default
UNKNOWN_OFFSET = -1


@dataclass
class FollowerState:
    """What the leader knows of one follower."""

    log_end_offset: int = UNKNOWN_OFFSET
    last_caught_up_ms: int = 0
    last_fetch_ms: int = 0
    last_fetch_leader_leo: int = UNKNOWN_OFFSET
    fetched_since_leaving_isr: bool = True  # False from set_isr's removal to its next fetch


class LeaderReplicas:
    """One partition's followers as its leader sees them (module docstring)."""

    def __init__(
        self,
        leader_id: int,
        replicas: list[int],
        isr: set[int] | frozenset[int],
        leader_epoch_start_offset: int,
        now_ms: int,
        replica_lag_time_max_ms: int = REPLICA_LAG_TIME_MAX_MS,
        leader_log_end_offset: int = UNKNOWN_OFFSET,
    ):
        if leader_id not in replicas:
            raise ValueError(f"leader {leader_id} is not one of the replicas {replicas}")
        self.leader_id = leader_id
        self.replicas = list(replicas)
        self.isr = frozenset(isr) | {leader_id}
        self.leader_epoch_start_offset = leader_epoch_start_offset
        self.lag_max_ms = replica_lag_time_max_ms
        self.followers = {
            r: FollowerState(
                last_caught_up_ms=now_ms if r in self.isr else 0,
                last_fetch_ms=now_ms,
                last_fetch_leader_leo=leader_log_end_offset,
            )
            for r in replicas
            if r != leader_id
        }

    def on_follower_fetch(
        self, replica_id: int, fetch_offset: int, leader_leo: int, now_ms: int
    ) -> bool:
        """Record a follower's fetch; False for a broker that is not a replica here."""
        state = self.followers.get(replica_id)
        if state is None:
            return False
        if fetch_offset >= leader_leo:
            state.last_caught_up_ms = max(state.last_caught_up_ms, now_ms)
        elif fetch_offset >= state.last_fetch_leader_leo >= 0:
            state.last_caught_up_ms = max(state.last_caught_up_ms, state.last_fetch_ms)
        state.log_end_offset = fetch_offset
        state.last_fetch_leader_leo = leader_leo
        state.last_fetch_ms = now_ms
        state.fetched_since_leaving_isr = True
        return True

    def high_watermark(self, leader_leo: int, current_hw: int) -> int:
        """min log end offset over the ISR, never below ``current_hw``."""
        lowest = leader_leo
        for replica in self.isr:
            if replica == self.leader_id:
                continue
            leo = self.followers[replica].log_end_offset
            if leo == UNKNOWN_OFFSET:
                return current_hw  # not fetched since this leader took over
            lowest = min(lowest, leo)
        return max(lowest, current_hw)

    def advance_high_watermark(self, plog) -> bool:
        """Move ``plog``'s high watermark up to what the ISR has; True when it moved
        (parked consumer fetches on the partition may now be answered)."""
        new = self.high_watermark(plog.log_end_offset, plog.high_watermark)
        if new > plog.high_watermark:
            plog.set_high_watermark(new)
            return True
        return False

    def shrink_candidates(self, leader_leo: int, now_ms: int) -> set[int]:
        """ISR followers lagging for more than replica.lag.time.max.ms."""
        return {
            r
            for r in self.isr
            if r != self.leader_id
            and self.followers[r].log_end_offset != leader_leo
            and now_ms - self.followers[r].last_caught_up_ms > self.lag_max_ms
        }

    def expand_candidates(self, high_watermark: int) -> set[int]:
        """Followers outside the ISR that caught up with the high watermark and this
        epoch's start offset, by a fetch made since they left the ISR."""
        return {
            r
            for r, state in self.followers.items()
            if r not in self.isr
            and state.fetched_since_leaving_isr
            and state.log_end_offset >= high_watermark
            and state.log_end_offset >= self.leader_epoch_start_offset
        }

    def set_isr(self, isr: set[int] | frozenset[int]) -> None:
        """The ISR the controller accepted. Raises ValueError for a non-replica."""
        unknown = set(isr) - set(self.replicas)
        if unknown:
            raise ValueError(f"ISR members {sorted(unknown)} are not replicas {self.replicas}")
        new = frozenset(isr) | {self.leader_id}
        for left in self.isr - new:
            self.followers[left].fetched_since_leaving_isr = False
        self.isr = new

    def enough_replicas(self, min_insync_replicas: int) -> bool:
        """Whether acks=all may be accepted (else NOT_ENOUGH_REPLICAS, 19)."""
        return len(self.isr) >= min_insync_replicas
