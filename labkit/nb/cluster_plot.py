"""``cluster.watch(topic)``: a live plot of one partition's leader and ISR size over time.

A ``LivePlot`` (line) fed by one background thread (``labkit-clusterplot``) that reads the
partition's state from the cluster every ``interval_s`` and adds two points at that clock
time: the leader's broker id (0: no leader) and the number of in-sync replicas
(``plot_points``). It uses ``LivePlot``'s own thread slot and stop event, so
``plot.stop()``, ``with``, ``nb.stop_all()`` and the cluster's ``close()`` end it like a
``follow()``. A failed read (ZooKeeper busy, the topic not created yet) is shown under the
plot and the thread keeps reading: the picture comes back with the cluster.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from labkit.i18n import _
from labkit.nb.live import LivePlot


def plot_points(state: Any) -> dict[str, int]:
    """What the plot shows for one partition at one moment (a ``PartitionState`` or None):
    the leader's broker id (0: no leader) and the number of in-sync replicas."""
    if state is None:
        return {"leader": 0, "ISR size": 0}
    return {"leader": max(state.leader, 0), "ISR size": len(state.isr)}


class ClusterPlot(LivePlot):
    """Leader and ISR size of ``topic``'s ``partition`` over time; ``history`` keeps
    ``(time, PartitionState or None)`` per sample."""

    def __init__(
        self,
        cluster: Any,
        topic: str,
        partition: int = 0,
        *,
        interval_s: float = 0.25,
        **options: Any,
    ):
        options.setdefault(
            "title",
            _("{topic} partition {partition}: leader and ISR size").format(
                topic=topic, partition=partition
            ),
        )
        options.setdefault("ylabel", _("broker id / replicas"))
        super().__init__("line", **options)
        self.cluster = cluster
        self.topic = topic
        self.partition = partition
        self.history: list[tuple[float, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._watch_loop, args=(interval_s,), name="labkit-clusterplot", daemon=True
        )
        self._thread.start()

    def _watch_loop(self, interval_s: float) -> None:
        while not self._stop.is_set():
            now = time.time()
            try:
                state = self.cluster.state(self.topic, self.partition)
            except Exception as exc:  # noqa: BLE001 - shown under the plot; the next read may work
                self.error = str(exc)
                self._status(self.error, error=True)
                state = None
            else:
                if self.error is not None:
                    self.error = None
                    self._status(_("watching {topic}").format(topic=self.topic))
            self.history.append((now, state))
            with self._lock:
                self.model.update(plot_points(state), x=now)
            self._changed()
            self._stop.wait(interval_s)

    def __repr__(self) -> str:
        state = "watching" if self.running else "stopped"
        return f"<ClusterPlot {self.topic}[{self.partition}]: {len(self.history)} samples, {state}>"
