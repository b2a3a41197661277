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
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from labkit.errors import CoordinatorLoadInProgressError
from labkit.log.recovery import write_atomically

log = logging.getLogger(__name__)

BLOCK_SIZE = 1000  # Kafka's ProducerIdsBlock.PRODUCER_ID_BLOCK_SIZE
CHECKPOINT = "producer-ids.checkpoint"


def reserve_block(data_dir: Path) -> int:
    """Claim the next block durably; returns its first id. Raises OSError."""
    path = data_dir / CHECKPOINT
    try:
        text = path.read_text("ascii").strip()
    except FileNotFoundError:
        text = "0"
    if not text.isdigit():
        raise OSError(f"{path} holds {text[:40]!r}, not a producer id")
    start = int(text)
    write_atomically(path, f"{start + BLOCK_SIZE}\n".encode("ascii"))
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
        self.error: OSError | None = None  # the last reservation's failure

    def start(self) -> None:
        """Reserve the first block (in the background)."""
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
                f"{self._data_dir / CHECKPOINT}{why}; retry in a moment"
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
            start = reserve_block(self._data_dir)
        except OSError as exc:
            log.error("cannot reserve producer ids in %s: %s", self._data_dir, exc)
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
