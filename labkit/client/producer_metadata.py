"""The producer's metadata refresh (the sender's I/O thread).

Theory of operation
-------------------
Topic metadata is asked for every ``metadata_max_age_ms`` (the first turn only sets
the due time), and at once after an error that says metadata is stale
(``schedule``), so partitions added while the producer runs are used and a moved
leader is found. One request at a time; a failed one is asked again after
``retry_backoff_ms`` plus up to 100 ms of jitter. An answer updates the shared
``ClusterMetadata`` and is handed to ``on_metadata`` (the producer's partition
counts). ``due`` is read by the sender to know when to wake. I/O thread only: no lock.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from labkit.client.metadata import ClusterMetadata, request_header


class MetadataRefresh:
    def __init__(
        self,
        transport: Any,
        cluster: ClusterMetadata,
        max_age: float,
        backoff: float,
        on_metadata: Callable[[dict], None],
        clock: Callable[[], float],
    ):
        self._transport = transport
        self._cluster = cluster
        self._metadata_age = max_age  # seconds
        self._backoff = backoff  # seconds
        self._on_metadata = on_metadata
        self._clock = clock
        self.due: float | None = None
        self._metadata_in_flight = False

    def schedule(self, now: float, delay: float = 0.0) -> None:
        due = now + delay
        if self.due is None or due < self.due:
            self.due = due

    def maybe_refresh(self, now: float) -> None:
        if self.due is None:
            self.due = now + self._metadata_age
            return
        if now < self.due or self._metadata_in_flight:
            return
        topics = sorted(self._cluster.topics(exclude_internal=False))
        self.due = now + self._metadata_age
        if not topics:
            return
        self._metadata_in_flight = True
        future = self._transport.request("metadata", request_header(topics, False), idempotent=True)
        future.add_callback(self._on_metadata_response, topics)
        future.add_errback(self._on_metadata_failure)

    def _on_metadata_response(self, topics: list[str], response: Any) -> None:
        self._metadata_in_flight = False
        if not response.header.get("error", 0):
            self._cluster.update(response.header, topics, self._clock())
            self._on_metadata(response.header)

    def _on_metadata_failure(self, error: BaseException) -> None:
        self._metadata_in_flight = False
        self.schedule(self._clock(), self._backoff + random.random() * 0.1)
