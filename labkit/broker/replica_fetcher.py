"""A follower's replica fetcher for one partition, sans-I/O: it says which request to send
to the leader next and applies each answer to the local log.

Theory of operation
-------------------
Built from the controller's decision "partition P, leader L at endpoint E, leader
epoch N" (``Assignment``) and the local ``PartitionLog``. The caller (a thread that
owns a socket to E) loops: ``next_request()`` -> send -> ``on_response(header,
payloads)``. As Kafka's ``ReplicaFetcherThread`` / ``AbstractFetcherThread``:

0. **Starting** (``start``, on the fetcher's thread: the object is built on the loop
   thread, which never touches the disk): a follower with no epochs at all has nothing
   to ask and cuts to its high watermark (this may fsync), then fetches.
1. **Truncating** (KIP-101, KIP-279): the follower sends
   ``offsets_for_leader_epoch`` with its latest epoch (``current_leader_epoch`` = N,
   so a stale leader answers FENCED/UNKNOWN_LEADER_EPOCH). ``truncation_offset``
   decides: the leader answered the epoch we asked about, so cut at
   ``min(its end offset, where that epoch ends here)``; it answered an older epoch
   we do not have as our latest, so cut to where *that* epoch ends here and ask
   again; it knows no epoch, so cut to the high watermark.
2. **Fetching**: ``fetch`` with ``replica_id`` from the log end offset, each row with
   ``current_leader_epoch`` N (KIP-320); the answer's
   batches are appended at the leader's offsets with the epochs sent beside them
   (``append_as_follower``), the high watermark becomes ``min(leader's, own log end)``.
   OFFSET_OUT_OF_RANGE below the leader's log start empties the log to start there
   (``truncate_fully_and_start_at``); any other out-of-range goes back to
   truncating. Other errors (e.g. UNKNOWN_TOPIC_OR_PARTITION while the leader creates
   the topic) leave the state as it is; ``last_error`` tells the caller to back off
   (Kafka's replica.fetch.backoff.ms, 1000) before the next request.
   FENCED_LEADER_EPOCH (74: N is older than the leader's: this broker's view of the
   leader is stale; ``fenced``), UNKNOWN_LEADER_EPOCH (75: the leader has not applied N
   yet) and NOT_LEADER_OR_FOLLOWER stop the fetcher (``STOPPED``): the caller starts
   over after the back-off, or, fenced, waits for the loop's newer assignment
   (broker/replica_threads.py).
3. Each answer returns a ``Progress`` (log end, high watermark, whether it is at the
   leader's high watermark) for the broker to report.

Not thread-safe: one fetcher thread drives it. Truncation fsyncs (that thread's job,
never the loop's: hence ``start``).
"""

from __future__ import annotations

from dataclasses import dataclass

from labkit.errors import (
    FencedLeaderEpochError,
    NotLeaderForPartitionError,
    OffsetOutOfRangeError,
    UnknownLeaderEpochError,
)
from labkit.log.leader_epochs import UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET, LeaderEpochCache

TRUNCATING, FETCHING, STOPPED = "truncating", "fetching", "stopped"
FENCING_ERRORS = frozenset(
    {
        FencedLeaderEpochError.errno,
        UnknownLeaderEpochError.errno,
        NotLeaderForPartitionError.errno,
    }
)
DEFAULT_FETCH_MAX_BYTES = 1 << 20  # Kafka's replica.fetch.max.bytes
DEFAULT_FETCH_WAIT_MS = 500  # Kafka's replica.fetch.wait.max.ms


@dataclass(frozen=True)
class Assignment:
    """The controller's decision for one partition this broker follows."""

    topic: str
    partition: int
    leader_id: int
    leader_endpoint: str
    leader_epoch: int


@dataclass(frozen=True)
class Progress:
    log_end_offset: int
    high_watermark: int
    caught_up: bool  # at the leader's high watermark


def truncation_offset(
    leader_epoch: int,
    leader_end_offset: int,
    epochs: LeaderEpochCache,
    log_end_offset: int,
    high_watermark: int,
) -> tuple[int, bool]:
    """(offset to truncate to, whether truncation is complete) for the leader's
    OffsetsForLeaderEpoch answer, as Kafka's getOffsetTruncationState."""
    if leader_end_offset == UNDEFINED_EPOCH_OFFSET:  # the leader knows no such epoch
        return min(high_watermark, log_end_offset), True
    if leader_epoch == UNDEFINED_EPOCH:
        return min(leader_end_offset, log_end_offset), True
    own_epoch, own_end = epochs.end_offset_for(leader_epoch, log_end_offset)
    if own_end == UNDEFINED_EPOCH_OFFSET:
        return min(leader_end_offset, log_end_offset), True
    if own_epoch != leader_epoch:  # we never had the leader's epoch: cut, ask again
        return min(own_end, log_end_offset), False
    return min(own_end, leader_end_offset, log_end_offset), True


class ReplicaFetcher:
    """One followed partition (module docstring)."""

    def __init__(
        self,
        assignment: Assignment,
        plog,
        replica_id: int,
        fetch_max_bytes: int = DEFAULT_FETCH_MAX_BYTES,
        fetch_wait_ms: int = DEFAULT_FETCH_WAIT_MS,
    ):
        self.assignment = assignment
        self.plog = plog
        self.replica_id = replica_id
        self.fetch_max_bytes = fetch_max_bytes
        self.fetch_wait_ms = fetch_wait_ms
        self.state = TRUNCATING
        self.stopped_because: str | None = None
        self.leader_high_watermark = UNDEFINED_EPOCH_OFFSET
        self.last_error = 0  # the leader's last error code: the caller backs off on one
        self.fenced = False  # the leader has a newer epoch: wait for a new assignment
        self.started = False  # built on the loop thread: no disk work until ``start``

    def start(self) -> None:
        """The first step, on the fetcher's thread (it may truncate, which fsyncs): a log
        with no leader epochs has nothing to ask about and cuts to its high watermark."""
        if self.started:
            return
        self.started = True
        if self.plog.leader_epochs.latest_epoch == UNDEFINED_EPOCH:
            self.plog.truncate_to(self.plog.high_watermark)
            self.state = FETCHING

    def next_request(self) -> tuple[str, dict] | None:
        """(api, header) to send to the leader next; None once stopped."""
        self.start()
        a = self.assignment
        if self.state == TRUNCATING:
            latest = self.plog.leader_epochs.latest_epoch
            return "offsets_for_leader_epoch", {
                "replica_id": self.replica_id,
                "partitions": [[a.topic, a.partition, a.leader_epoch, latest]],
            }
        if self.state == FETCHING:
            return "fetch", {
                "replica_id": self.replica_id,
                "max_wait_ms": self.fetch_wait_ms,
                "min_bytes": 1,
                "max_bytes": self.fetch_max_bytes,
                "partitions": [  # with current_leader_epoch (KIP-320)
                    [
                        a.topic,
                        a.partition,
                        self.plog.log_end_offset,
                        self.fetch_max_bytes,
                        a.leader_epoch,
                    ]
                ],
            }
        return None

    def on_response(self, header: dict, payloads: list) -> Progress:
        """Apply the leader's answer to ``next_request``'s request. Raises what the log's
        append and truncation raise (UnexpectedAppendOffsetError, CorruptRecordError,
        KafkaStorageError): the caller stops this partition and reports it."""
        if header.get("error", 0) != 0:
            self.last_error = header["error"]
            self._stop(f"the leader answered error {header['error']}: {header.get('message')}")
            return self.progress()
        row = header["partitions"][0]
        error = self.last_error = row[2]
        if error in FENCING_ERRORS:
            self.fenced = error == FencedLeaderEpochError.errno
            self._stop(
                f"the leader answered error {error} for epoch {self.assignment.leader_epoch}"
            )
        elif self.state == TRUNCATING:
            self._on_epoch_end(error, row[3], row[4])
        elif error == OffsetOutOfRangeError.errno:
            self._on_out_of_range(row[4])
        elif error == 0:
            self.leader_high_watermark = row[3]
            self.plog.append_as_follower(
                payloads[0] if payloads else b"", epochs=row[5], producers=row[6]
            )
            self.plog.set_high_watermark(min(row[3], self.plog.log_end_offset))
        return self.progress()

    def _on_epoch_end(self, error: int, epoch: int, end_offset: int) -> None:
        if error != 0:
            return  # retriable (e.g. the leader is loading): ask again
        plog = self.plog
        offset, done = truncation_offset(
            epoch, end_offset, plog.leader_epochs, plog.log_end_offset, plog.high_watermark
        )
        plog.truncate_to(offset)
        if done or plog.leader_epochs.latest_epoch == UNDEFINED_EPOCH:
            self.state = FETCHING

    def _on_out_of_range(self, leader_log_start: int) -> None:
        if leader_log_start > self.plog.log_end_offset:  # the leader deleted what we lack
            self.plog.truncate_fully_and_start_at(leader_log_start)
        else:
            self.state = TRUNCATING

    def _stop(self, why: str) -> None:
        self.state = STOPPED
        self.stopped_because = why

    def progress(self) -> Progress:
        leo = self.plog.log_end_offset
        return Progress(
            leo,
            self.plog.high_watermark,
            self.leader_high_watermark >= 0 and leo >= self.leader_high_watermark,
        )
