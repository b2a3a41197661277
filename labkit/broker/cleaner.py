"""The cleaner thread: retention and compaction in the background.

Theory of operation
-------------------
Every ``RECHECK_S`` the thread asks the broker config how often to clean
(``log.retention.check.interval.ms``, sooner for topics with a short
``retention.ms``, at most ``log.cleaner.backoff.ms`` while a topic is compacted)
and, when that time has come, runs ``apply_retention()`` and ``compact()`` over a
snapshot of every partition. It never touches the socket; ``PartitionLog`` makes
both safe against the loop's appends and reads, and a log closed meanwhile (topic
deleted) does nothing. A failing partition is logged and skipped.
"""

from __future__ import annotations

import logging
import threading

from labkit._clock import Clock
from labkit.broker.config import BrokerConfig
from labkit.broker.topics import TopicRegistry

log = logging.getLogger(__name__)


class Cleaner(threading.Thread):
    """Applies retention and compaction in the background."""

    RECHECK_S = 0.5  # how soon a new short-retention topic changes the pace

    def __init__(self, registry: TopicRegistry, config: BrokerConfig, clock: Clock):
        super().__init__(name="labkit-cleaner", daemon=True)
        self._registry = registry
        self._config = config
        self._clock = clock
        self.stop_event = threading.Event()

    def run(self) -> None:
        last = self._clock.monotonic()
        while not self.stop_event.wait(self.RECHECK_S):
            interval = self._config.retention_check_interval_s(
                self._registry.shortest_retention_ms(), self._registry.any_compacted()
            )
            now = self._clock.monotonic()
            if now - last >= interval - 0.01:
                last = now
                self.clean_once()

    def clean_once(self) -> None:
        """One pass over every partition. A log closed meanwhile (topic deleted) does
        nothing; PartitionLog makes retention and compaction safe against the loop."""
        for topic, partition, plog in self._registry.partitions_snapshot():
            if self.stop_event.is_set():
                return
            try:
                if topic.config.deletes:
                    plog.apply_retention()
                if topic.config.compacts:
                    plog.compact()
                if plog.producers is not None:  # fold a long producer-state journal
                    plog.producers.maintain()
            except Exception:
                log.exception("cleaning %s-%d failed", topic.name, partition)

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=30)
