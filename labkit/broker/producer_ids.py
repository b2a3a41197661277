"""Producer ids for InitProducerId: never the same id twice, even across restarts.

Theory of operation
-------------------
As Kafka's ProducerIdManager, ids are handed out from blocks of ``BLOCK_SIZE``
(1,000, Kafka's). A block is *reserved* before its first id is handed out: the file
``producer-ids.checkpoint`` in the data directory holds one line, the first id no
block has claimed yet; reserving ``[n, n + BLOCK_SIZE)`` replaces it with
``n + BLOCK_SIZE`` (a temporary file, fsync, rename, fsync of the directory). A
broker killed at any moment therefore restarts past every id it handed out: at
worst it skips the rest of a block.

The loop thread never touches the disk here: ``next_id`` takes from the current
block and, when half of it is used, starts a short-lived thread that reserves the
next one. If the current block runs out before that thread finished (or the file
cannot be written), ``next_id`` raises CoordinatorLoadInProgressError (14,
retriable), what Kafka answers while it waits for its next block; the client
retries. The first block is reserved the same way when the broker starts.

In cluster mode the blocks come from ZooKeeper instead (``start(claim=...)``,
cluster/producer_id_blocks.py: Kafka's ``/latest_producer_id_block``), so no two brokers
hand out the same id; the claim runs on the same background thread. A claim never starts
below this broker's local checkpoint (ids it handed out as a single broker) and moves the
checkpoint past the block it got, so the broker stays past its ids in either mode.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from labkit.errors import CoordinatorLoadInProgressError
from labkit.log.recovery import write_atomically

log = logging.getLogger(__name__)

BLOCK_SIZE = 1000  # Kafka's ProducerIdsBlock.PRODUCER_ID_BLOCK_SIZE
CHECKPOINT = "producer-ids.checkpoint"


def read_checkpoint(data_dir: Path) -> int:
    """The first id no block of this broker has claimed yet (0: none). Raises OSError."""
    path = data_dir / CHECKPOINT
    try:
        text = path.read_text("ascii").strip()
    except FileNotFoundError:
        text = "0"
    if not text.isdigit():
        raise OSError(f"{path} holds {text[:40]!r}, not a producer id")
    return int(text)


def reserve_block(data_dir: Path) -> int:
    """Claim the next block durably; returns its first id. Raises OSError."""
    start = read_checkpoint(data_dir)
    write_atomically(data_dir / CHECKPOINT, f"{start + BLOCK_SIZE}\n".encode("ascii"))
    return start


def reserve_cluster_block(data_dir: Path, claim: Callable[[int], int]) -> int:
    """Cluster mode: ``claim(floor)`` claims a block cluster-wide (its first id, never
    below ``floor``); the local checkpoint then moves past it. Raises what claim raises."""
    floor = read_checkpoint(data_dir)
    start = claim(floor)
    if start + BLOCK_SIZE > floor:
        write_atomically(data_dir / CHECKPOINT, f"{start + BLOCK_SIZE}\n".encode("ascii"))
    return start


class ProducerIds:
    """Hands out producer ids on the loop thread; reserves blocks on another."""

    def __init__(self, data_dir: Path):
        self._data_dir = Path(data_dir)
        self._lock = threading.Lock()
        self._next = 0
        self._end = 0  # the current block is [_next, _end)
        self._reserved: int | None = None  # first id of the next block, once durable
        self._reserving = False
        self.error: Exception | None = None  # the last reservation's failure
        self._reserve_block: Callable[[], int] = lambda: reserve_block(self._data_dir)
        self._source = str(self._data_dir / CHECKPOINT)

    def start(self, claim: Callable[[int], int] | None = None, source: str = "") -> None:
        """Reserve the first block (in the background). Cluster mode passes ``claim``
        (see reserve_cluster_block) and ``source``, where the blocks come from."""
        if claim is not None:
            self._reserve_block = lambda: reserve_cluster_block(self._data_dir, claim)
            self._source = source
        self._reserve_next()

    def next_id(self) -> int:
        """A producer id never handed out before. Raises CoordinatorLoadInProgressError."""
        with self._lock:
            if self._next >= self._end and self._reserved is not None:
                self._next, self._end = self._reserved, self._reserved + BLOCK_SIZE
                self._reserved = None
            if self._next < self._end:
                pid = self._next
                self._next += 1
                half_used = self._end - self._next <= BLOCK_SIZE // 2
            else:
                pid = None
                half_used = True
        if half_used:
            self._reserve_next()
        if pid is None:
            why = f" (the last attempt failed: {self.error})" if self.error else ""
            raise CoordinatorLoadInProgressError(
                "the broker is reserving the next block of producer ids in "
                f"{self._source}{why}; retry in a moment"
            )
        return pid

    def _reserve_next(self) -> None:
        with self._lock:
            if self._reserving or self._reserved is not None:
                return
            self._reserving = True
        threading.Thread(target=self._reserve, name="labkit-producer-ids", daemon=True).start()

    def _reserve(self) -> None:
        try:
            start = self._reserve_block()
        except Exception as exc:  # noqa: BLE001 - the disk or ZooKeeper: retried on demand
            log.error("cannot reserve producer ids in %s: %s", self._source, exc)
            with self._lock:
                self.error = exc
                self._reserving = False
            return
        with self._lock:
            self._reserved = start
            self._reserving = False
            self.error = None

    def wait_reserved(self, timeout: float = 10.0) -> bool:
        """For tests and start-up: wait until a block is ready to hand out."""
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self._next < self._end or self._reserved is not None:
                    return True
            time.sleep(0.01)
        return False
