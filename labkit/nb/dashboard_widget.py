"""``nb.dashboard()``: topics, offsets, records/s and consumer lag, live in the notebook.

Theory of operation
-------------------
``Dashboard`` runs one daemon thread (``labkit-dashboard``) that every
``refresh_s`` seconds calls ``collect()`` -- the client's admin and consumer
API, kafka-python's names: ``list_topics``, ``describe_topics``,
``beginning_offsets``/``end_offsets``, ``list_consumer_groups``,
``list_consumer_group_offsets``, and labkit's ``describe_client_throttles``
(clients a quota is slowing down; labkit-only: on a Kafka cluster that is not labkit the
admin client raises IncompatibleBrokerVersion for it, and the table stays empty) -- feeds
the ``Snapshot`` to a
``DashboardModel`` (rates, lag; pure, in ``_dashmodel``) and writes the
rendered HTML into an ``ipywidgets.HTML``. What Kafka UI shows, inside the
notebook. With ``describe_cluster`` it also learns the brokers; a broker in cluster
mode (``_dashcluster.is_cluster``) adds the brokers, each partition's leader, replicas
and ISR (``describe_topics``' own rows), and the offsets are asked partition by
partition when the batch fails on a partition whose leader is elsewhere or missing
(NOT_LEADER_OR_FOLLOWER, LEADER_NOT_AVAILABLE): those show as unknown, the others stay.

The thread owns its two clients; it opens them (again) when they are missing
or a round failed, so a broker that starts late or restarts is picked up. A
failed round shows the error and what to do, above the last good tables (the
broker always has topics, groups and quotas: any error is reported, none hidden).

``stop()`` (the Stop button, leaving a ``with`` block, or ``nb.stop_all()``)
sets an event, joins the thread and closes the clients. Only the thread
touches the model and the clients, so nothing else is locked.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from labkit._clock import REAL_CLOCK, Clock
from labkit.errors import (
    IllegalArgumentError,
    IllegalStateError,
    IncompatibleBrokerVersion,
    LeaderNotAvailableError,
    NotLeaderForPartitionError,
)
from labkit.i18n import _
from labkit.nb._connect import bootstrap_servers, explain
from labkit.nb._dashcluster import BrokerInfo, ReplicaState, is_cluster
from labkit.nb._dashmodel import (
    DashboardModel,
    Snapshot,
    ThrottleRow,
    View,
    render_html,
    render_text,
)
from labkit.nb._plotview import in_kernel, quiet_box
from labkit.nb.live import _ACTIVE

__all__ = ["Dashboard", "dashboard"]


def _partitions_of(described: Any) -> dict[str, list[int]]:
    """Topic -> partition ids from ``describe_topics`` (kafka-python's or the wire's shape)."""
    out: dict[str, list[int]] = {}
    for item in described or []:
        if not isinstance(item, dict):
            continue
        name = item.get("topic", item.get("name"))
        parts = []
        for p in item.get("partitions") or []:
            pid = p.get("partition", p.get("partition_index")) if isinstance(p, dict) else p
            if isinstance(pid, int):
                parts.append(pid)
        if isinstance(name, str):
            out[name] = sorted(parts)
    return out


def _replica_states(described: Any) -> dict[tuple[str, int], ReplicaState]:
    """(topic, partition) -> leader, replicas, ISR from ``describe_topics``' rows."""
    out: dict[tuple[str, int], ReplicaState] = {}
    for item in described or []:
        if not isinstance(item, dict):
            continue
        name = item.get("topic", item.get("name"))
        for p in item.get("partitions") or []:
            if not isinstance(p, dict):
                continue
            pid = p.get("partition", p.get("partition_index"))
            leader = p.get("leader", p.get("leader_id", -1))
            if isinstance(name, str) and isinstance(pid, int):
                out[(name, pid)] = ReplicaState(
                    leader if isinstance(leader, int) else -1,
                    tuple(p.get("replicas", p.get("replica_nodes")) or ()),
                    tuple(p.get("isr", p.get("isr_nodes")) or ()),
                )
    return out


def _brokers(admin: Any) -> tuple[list[BrokerInfo] | None, int | None]:
    """The live brokers and the controller (``describe_cluster``); (None, None) without it."""
    describe = getattr(admin, "describe_cluster", None)
    if not callable(describe):  # an admin client without the call
        return None, None
    answer = describe() or {}
    brokers = [
        BrokerInfo(int(b.get("node_id", b.get("broker_id", 0))), str(b.get("host")), b.get("port"))
        for b in answer.get("brokers") or []
        if isinstance(b, dict)
    ]
    controller = answer.get("controller_id")
    return brokers, controller if isinstance(controller, int) else None


# Errors of a partition whose leader moved or went away while it was asked (the client
# follows leaders, but not past its timeout): in cluster mode its offsets are unknown, not
# an error.
_LEADER_ELSEWHERE = (NotLeaderForPartitionError, LeaderNotAvailableError)


def _offsets(consumer: Any, tps: list, cluster: bool) -> dict[tuple[str, int], tuple[int, int]]:
    def ask(wanted: list) -> dict[tuple[str, int], tuple[int, int]]:
        starts = consumer.beginning_offsets(wanted)
        ends = consumer.end_offsets(wanted)
        return {(tp[0], tp[1]): (int(starts.get(tp, 0)), int(ends.get(tp, 0))) for tp in wanted}

    try:
        return ask(tps)
    except _LEADER_ELSEWHERE:
        if not cluster:
            raise
    out: dict[tuple[str, int], tuple[int, int]] = {}
    for tp in tps:
        try:
            out.update(ask([tp]))
        except _LEADER_ELSEWHERE:
            pass
    return out


def _leader_of(replicas: dict[tuple[str, int], ReplicaState], tp: Any) -> int | None:
    state = replicas.get((tp[0], tp[1]))
    return None if state is None else state.leader


def _group_ids(listed: Any) -> list[str]:
    ids = []
    for item in listed or []:
        gid = item[0] if isinstance(item, tuple | list) else getattr(item, "group_id", item)
        if isinstance(gid, str):
            ids.append(gid)
    return sorted(ids)


def _offset_value(v: Any) -> int | None:
    off = getattr(v, "offset", v)
    return off if isinstance(off, int) and off >= 0 else None


def _throttles(admin: Any) -> list[ThrottleRow]:
    """Throttled clients (labkit's admin call; none on a Kafka cluster that is not labkit)."""
    describe = getattr(admin, "describe_client_throttles", None)
    if not callable(describe):  # an admin client without the call (kafka-python's)
        return []
    try:
        rows = describe()
    except IncompatibleBrokerVersion:  # labkit-only: Kafka shows throttling as JMX metrics
        return []
    return [ThrottleRow.from_wire(row) for row in rows or [] if isinstance(row, dict)]


def collect(
    admin: Any,
    consumer: Any,
    *,
    at: float,
    taken_ms: int | None = None,
    topics: list[str] | None = None,
    include_internal: bool = False,
) -> Snapshot:
    """One snapshot of the broker. Raises what the client raises (the caller reports it)."""
    names = sorted(admin.list_topics())
    if topics is not None:
        names = [n for n in names if n in topics]
    elif not include_internal:
        names = [n for n in names if not n.startswith("__")]
    from labkit import TopicPartition

    described = admin.describe_topics(names) if names else []
    parts = _partitions_of(described)
    replicas = _replica_states(described)
    brokers, controller = _brokers(admin)
    cluster = is_cluster(brokers, replicas)
    tps = [TopicPartition(t, p) for t in names for p in parts.get(t, [])]
    if cluster:  # a partition without a leader (its brokers are down) has no offsets to ask
        tps = [tp for tp in tps if _leader_of(replicas, tp) != -1]
    offsets = _offsets(consumer, tps, cluster) if tps else {}
    groups: dict[str, dict[tuple[str, int], int | None]] = {}
    for gid in _group_ids(admin.list_consumer_groups()):
        committed = admin.list_consumer_group_offsets(gid) or {}
        groups[gid] = {(tp[0], tp[1]): _offset_value(v) for tp, v in committed.items()}
    return Snapshot(
        at=at,
        offsets=offsets,
        groups=groups,
        taken_ms=taken_ms,
        throttles=_throttles(admin),
        brokers=brokers,
        controller_id=controller,
        replicas=replicas if cluster else {},
    )


def _open_clients(servers: list[str]) -> tuple[Any, Any]:
    # labkit's clients (over kafka-python's on a Kafka cluster that is not labkit)
    from labkit import KafkaAdminClient, KafkaConsumer

    admin = KafkaAdminClient(bootstrap_servers=servers, client_id="labkit-dashboard")
    try:
        consumer = KafkaConsumer(
            bootstrap_servers=servers,
            client_id="labkit-dashboard",
            group_id=None,
            enable_auto_commit=False,
        )
    except BaseException:
        admin.close()
        raise
    return admin, consumer


class Dashboard:
    """A live broker dashboard widget. ``stop()`` ends its refresh thread."""

    def __init__(
        self,
        bootstrap: str | list[str] | None = None,
        refresh_s: float = 1.0,
        *,
        topics: list[str] | None = None,
        include_internal: bool = False,
        rate_window_s: float = 5.0,
        display: bool = True,
        start: bool = True,
        client_factory: Callable[[list[str]], tuple[Any, Any]] | None = None,
        clock: Clock = REAL_CLOCK,
    ):
        if not refresh_s > 0:
            raise IllegalArgumentError(
                _("refresh_s must be a positive number of seconds, got {refresh_s!r}").format(
                    refresh_s=refresh_s
                )
            )
        self.servers = bootstrap_servers(bootstrap)
        self.refresh_s = float(refresh_s)
        self.topics = list(topics) if topics is not None else None
        self.include_internal = include_internal
        self.model = DashboardModel(rate_window_s)
        self.rounds = 0
        self._clock = clock
        self._client_factory = client_factory or _open_clients
        self._stop = threading.Event()
        self._admin: Any = None
        self._consumer: Any = None
        self.widget = self._make_widget()
        self._thread = threading.Thread(target=self._loop, name="labkit-dashboard", daemon=True)
        _ACTIVE.add(self)
        if start:
            self._thread.start()
        if display and self.widget is not None and in_kernel():
            from IPython.display import display as show

            show(self.widget)

    @property
    def view(self) -> View:
        return self.model.view

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        """Start the refresh thread (done at creation unless ``start=False``)."""
        if self._thread.is_alive():
            return
        if self._thread.ident is not None or self._stop.is_set():
            raise IllegalStateError(
                _("a stopped dashboard cannot restart: call nb.dashboard() again")
            )
        self._thread.start()

    def text(self) -> str:
        return render_text(self.view)

    def html(self) -> str:
        return self._html()

    def refresh(self) -> View:
        """Take one snapshot now, in the caller's thread (with ``start=False``: tests, scripts)."""
        self._round()
        return self.view

    def stop(self, timeout: float = 5.0) -> None:
        """Stop refreshing, join the thread, close the clients. Safe to call twice."""
        self._stop.set()
        if self._thread.ident is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        if not self._thread.is_alive():
            self._close_clients()
        if self.widget is not None:
            self._button.disabled = True
            self._button.description = _("stopped")
            self._body.value = self._html(_("stopped"))

    close = stop

    def __enter__(self) -> Dashboard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = _("running") if self.running else _("stopped")
        return f"<Dashboard {','.join(self.servers)}: {len(self.view.topics)} topics, {state}>"

    # -- the refresh thread ---------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._round()
            self._stop.wait(self.refresh_s)
        self._close_clients()

    def _round(self) -> None:
        at = self._clock.monotonic()
        try:
            if self._admin is None or self._consumer is None:
                self._open_clients()
            snap = collect(
                self._admin,
                self._consumer,
                at=at,
                taken_ms=self._clock.time_ms(),
                topics=self.topics,
                include_internal=self.include_internal,
            )
        except Exception as exc:  # noqa: BLE001 - shown in the widget; the next round retries
            self._close_clients()
            snap = Snapshot(at=at, error=explain(exc))
        self.model.observe(snap)
        self.rounds += 1
        if self.widget is not None and not self._stop.is_set():
            self._body.value = self._html()

    def _open_clients(self) -> None:
        self._admin, self._consumer = self._client_factory(self.servers)

    def _close_clients(self) -> None:
        clients = (self._consumer, self._admin)
        self._consumer = self._admin = None
        for client in clients:
            if client is not None:
                try:
                    client.close()
                except Exception:  # noqa: BLE001 - closing a broken client must not hide the real error
                    pass

    def _html(self, state: str | None = None) -> str:
        view = self.view
        when = ""
        if view.taken_ms is not None:
            when = _("updated {time}").format(
                time=time.strftime("%H:%M:%S", time.localtime(view.taken_ms / 1000))
            )
        status = " · ".join(
            x
            for x in (
                ",".join(self.servers),
                when,
                state or _("every {seconds:g} s").format(seconds=self.refresh_s),
            )
            if x
        )
        return render_html(view, _("labkit broker"), status)

    def _make_widget(self) -> Any:
        try:
            import ipywidgets as w
        except ImportError:
            return None
        self._body = w.HTML(render_html(self.view, _("labkit broker"), _("connecting…")))
        self._button = w.Button(
            description=_("stop"),
            icon="stop",
            tooltip=_("stop refreshing"),
            layout=w.Layout(width="90px"),
        )
        self._button.on_click(lambda _b: self.stop())
        box = quiet_box(
            w,
            [self._body, self._button],
            _(
                "labkit dashboard of {servers} (a live widget: run the notebook in JupyterLab "
                "to see it)"
            ).format(servers=",".join(self.servers)),
        )
        box.add_class("labkit-dashboard")
        return box


def dashboard(
    bootstrap: str | list[str] | None = None, refresh_s: float = 1.0, **kwargs: Any
) -> Dashboard:
    """Show a live broker dashboard: topics, partitions, offsets, records/s, group lag.

    ``bootstrap`` defaults to ``$LABKIT_BOOTSTRAP`` or localhost:9092. Keyword
    options: ``topics=[...]`` (only these), ``include_internal``, ``rate_window_s``,
    ``start=False`` (no thread; call ``refresh()`` yourself).
    Stop it with its button or ``.stop()``. A broker that is not running yet is
    reported in the widget and picked up when it starts.
    """
    return Dashboard(bootstrap, refresh_s, **kwargs)
