"""The pure model behind ``nb.dashboard()``: snapshots in, rates and lag out, HTML/text.

Theory of operation
-------------------
The dashboard thread periodically takes a ``Snapshot`` of the broker: per
topic-partition the log start and end offsets, and per consumer group its
committed offsets (``groups is None`` when the broker does not support groups
yet). Nothing here talks to the broker; ``dashboard.py`` fills snapshots in.

``DashboardModel.observe(snapshot)`` keeps the snapshots of the last
``rate_window_s`` seconds and returns a ``View``:

- records/s of a partition = (end now - end then) / (seconds between), over the
  oldest snapshot still in the window (smoother than refresh-to-refresh);
  unknown (``None``) for a partition first seen now, or whose end offset went
  down (the topic was deleted and created again).
- lag of a group on a partition = log end - committed offset (never below 0);
  ``None`` when the group has committed nothing there.
- a snapshot with ``error`` set (broker unreachable) keeps the last good view
  and carries the error, so the widget can show both.
- throttled clients (client quotas, Kafka's ``producer_byte_rate`` /
  ``consumer_byte_rate``) pass through as ``ThrottleRow``s, most recent first;
  the table appears only while some client is being throttled.

- a broker in cluster mode (``_dashcluster``) adds the brokers (id, host:port,
  alive, controller), each partition's leader, replicas and ISR, and the
  under-replicated partitions; the single broker's view is unchanged.

``render_html`` and ``render_text`` turn a view into what the widget or a
terminal shows. Not thread-safe: one dashboard thread owns one model.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from html import escape

from labkit.i18n import _, pgettext
from labkit.nb._dashcluster import (
    BrokerInfo,
    BrokerRow,
    ReplicaState,
    broker_rows,
    ids,
    is_cluster,
    leader_text,
    render_brokers_html,
    render_brokers_text,
    render_under_replicated_html,
    render_under_replicated_text,
)

TP = tuple[str, int]


@dataclass(frozen=True)
class Snapshot:
    at: float
    """Monotonic seconds when it was taken."""
    offsets: dict[TP, tuple[int, int]] = field(default_factory=dict)
    """(topic, partition) -> (log start offset, log end offset)."""
    groups: dict[str, dict[TP, int | None]] | None = field(default_factory=dict)
    """group -> (topic, partition) -> committed offset; None = groups unsupported."""
    groups_note: str | None = None
    error: str | None = None
    taken_ms: int | None = None
    """Wall-clock time (epoch ms) for the 'updated at' line."""
    throttles: list[ThrottleRow] = field(default_factory=list)
    """Clients a quota throttled in the last quota window (empty: none, or unsupported)."""
    brokers: list[BrokerInfo] | None = None
    """The live brokers metadata names; None = not asked."""
    controller_id: int | None = None
    replicas: dict[TP, ReplicaState] = field(default_factory=dict)
    """(topic, partition) -> leader, replicas, ISR (cluster mode's; every partition)."""


@dataclass(frozen=True)
class ThrottleRow:
    client_id: str
    quota_type: str
    """``producer_byte_rate`` or ``consumer_byte_rate``."""
    byte_rate: float | None
    quota: float | None
    throttle_time_ms: int
    ago_ms: int

    @property
    def kind(self) -> str:
        return "produce" if self.quota_type.startswith("producer") else "fetch"

    @classmethod
    def from_wire(cls, row: dict) -> ThrottleRow:
        return cls(
            str(row.get("client_id", "")),
            str(row.get("quota_type", "")),
            row.get("byte_rate"),
            row.get("quota"),
            int(row.get("throttle_time_ms", 0)),
            int(row.get("throttled_ago_ms", 0)),
        )


@dataclass(frozen=True)
class PartitionRow:
    partition: int
    start: int | None
    end: int | None
    """None: unknown (cluster mode, a partition whose offsets its leader did not give)."""
    rate: float | None
    state: ReplicaState | None = None
    """Leader, replicas, ISR: cluster mode only."""

    @property
    def records(self) -> int:
        if self.start is None or self.end is None:
            return 0
        return max(0, self.end - self.start)


@dataclass(frozen=True)
class TopicRow:
    name: str
    partitions: list[PartitionRow]

    @property
    def records(self) -> int:
        return sum(p.records for p in self.partitions)

    @property
    def rate(self) -> float | None:
        rates = [p.rate for p in self.partitions if p.rate is not None]
        return sum(rates) if rates else None


@dataclass(frozen=True)
class LagRow:
    topic: str
    partition: int
    committed: int | None
    end: int | None
    lag: int | None


@dataclass(frozen=True)
class GroupRow:
    group: str
    lags: list[LagRow]

    @property
    def total_lag(self) -> int:
        return sum(r.lag for r in self.lags if r.lag is not None)


@dataclass(frozen=True)
class View:
    topics: list[TopicRow]
    groups: list[GroupRow] | None
    groups_note: str | None = None
    error: str | None = None
    taken_ms: int | None = None
    throttles: list[ThrottleRow] = field(default_factory=list)
    brokers: list[BrokerRow] | None = None
    """Cluster mode: every broker (alive or not); None for the single broker."""

    @property
    def under_replicated(self) -> list[tuple[str, int, ReplicaState]]:
        """(topic, partition, state) whose ISR is smaller than its replicas, or leaderless."""
        return [
            (t.name, p.partition, p.state)
            for t in self.topics
            for p in t.partitions
            if p.state is not None and (p.state.under_replicated or p.state.offline)
        ]

    def topic(self, name: str) -> TopicRow:
        for t in self.topics:
            if t.name == name:
                return t
        raise KeyError(name)

    def group(self, name: str) -> GroupRow:
        for g in self.groups or []:
            if g.group == name:
                return g
        raise KeyError(name)


EMPTY_VIEW = View(topics=[], groups=[])


class DashboardModel:
    def __init__(self, rate_window_s: float = 5.0):
        self.rate_window_s = rate_window_s
        self._history: deque[Snapshot] = deque()
        self._known_brokers: dict[int, str] = {}  # id -> last address: dead brokers stay shown
        self.view = EMPTY_VIEW

    def observe(self, snap: Snapshot) -> View:
        if snap.error is not None:
            self.view = replace(self.view, error=snap.error)
            return self.view
        # keep one snapshot at least rate_window_s old as the base of the rate
        while len(self._history) >= 2 and snap.at - self._history[1].at >= self.rate_window_s:
            self._history.popleft()
        base = self._history[0] if self._history else None
        self._history.append(snap)
        self.view = compute_view(base, snap, self._known_brokers)
        return self.view


def compute_view(
    base: Snapshot | None, snap: Snapshot, known_brokers: dict[int, str] | None = None
) -> View:
    """Rates from ``base`` to ``snap`` and lag in ``snap``; in cluster mode the brokers
    (``known_brokers``: id -> last address, updated) and each partition's replicas."""
    dt = snap.at - base.at if base is not None else 0.0
    cluster = is_cluster(snap.brokers, snap.replicas)
    keys = set(snap.offsets) | (set(snap.replicas) if cluster else set())
    by_topic: dict[str, list[PartitionRow]] = {}
    for topic, p in sorted(keys):
        start, end = snap.offsets.get((topic, p), (None, None))
        rate = None
        if end is not None and base is not None and dt > 0 and (topic, p) in base.offsets:
            before = base.offsets[(topic, p)][1]
            if end >= before:
                rate = (end - before) / dt
        state = snap.replicas.get((topic, p)) if cluster else None
        by_topic.setdefault(topic, []).append(PartitionRow(p, start, end, rate, state))
    topics = [TopicRow(name, rows) for name, rows in sorted(by_topic.items())]
    groups = None
    if snap.groups is not None:
        groups = []
        for gid, committed in sorted(snap.groups.items()):
            lags = []
            for (topic, p), off in sorted(committed.items()):
                end = snap.offsets.get((topic, p), (None, None))[1]
                if off is not None and off < 0:
                    off = None
                lag = max(0, end - off) if off is not None and end is not None else None
                lags.append(LagRow(topic, p, off, end, lag))
            groups.append(GroupRow(gid, lags))
    throttles = sorted(snap.throttles, key=lambda r: (r.ago_ms, r.client_id, r.quota_type))
    brokers = None
    if cluster:
        known = {} if known_brokers is None else known_brokers
        brokers = broker_rows(snap.brokers or [], snap.controller_id, snap.replicas, known)
    return View(topics, groups, snap.groups_note, None, snap.taken_ms, throttles, brokers)


# -- rendering ----------------------------------------------------------------


def _num(v: int | None) -> str:
    return "–" if v is None else f"{v:,}".replace(",", " ")


def _rate(v: float | None) -> str:
    if v is None:
        return "–"
    return f"{v:,.1f}".replace(",", " ") if v < 100 else f"{v:,.0f}".replace(",", " ")


_TABLE = (
    '<table style="border-collapse:collapse;font-family:var(--jp-code-font-family,monospace);'
    'font-size:12px;margin:4px 0 10px 0">'
)
_TH = '<th style="text-align:{a};padding:2px 10px;border-bottom:1px solid #999">{t}</th>'
_TD = '<td style="text-align:{a};padding:1px 10px{s}">{t}</td>'


def _row(cells: list[tuple[str, str]], bold: bool = False) -> str:
    style = ";font-weight:bold" if bold else ""
    return "<tr>" + "".join(_TD.format(a=a, s=style, t=t) for a, t in cells) + "</tr>"


def _head(cols: list[tuple[str, str]]) -> str:
    return "<tr>" + "".join(_TH.format(a=a, t=t) for a, t in cols) + "</tr>"


def render_html(view: View, title: str = "labkit broker", status: str = "") -> str:
    """The whole dashboard as one HTML fragment (escaped; safe for topic names)."""
    out = [f'<div class="labkit-dashboard-body"><b>{escape(title)}</b>']
    if status:
        out.append(f' <span style="color:#666;font-size:11px">{escape(status)}</span>')
    if view.error:
        out.append(f'<div style="color:#b00020;margin:4px 0">✘ {escape(view.error)}</div>')
    cluster = view.brokers is not None
    if view.brokers is not None:
        out.append(render_brokers_html(view.brokers, _TABLE, _head, _row))
        out.append(render_under_replicated_html(view.under_replicated))
    replica_cols = [("right", _("leader")), ("left", _("replicas")), ("left", _("ISR"))]
    out.append(
        _TABLE
        + _head(
            [
                ("left", _("topic")),
                ("right", pgettext("dashboard column", "partition")),
                ("right", _("log start")),
                ("right", _("log end")),
                ("right", _("records")),
                ("right", _("records/s")),
            ]
            + (replica_cols if cluster else [])
        )
    )
    if not view.topics:
        out.append(_row([("left", "<i>" + escape(_("no topics yet")) + "</i>")]))
    for t in view.topics:
        many = len(t.partitions) > 1
        if many:
            out.append(
                _row(
                    [
                        ("left", escape(t.name)),
                        ("right", _("{n} parts").format(n=len(t.partitions))),
                        ("right", ""),
                        ("right", ""),
                        ("right", _num(t.records)),
                        ("right", _rate(t.rate)),
                    ]
                    + ([("right", ""), ("left", ""), ("left", "")] if cluster else []),
                    bold=True,
                )
            )
        for p in t.partitions:
            out.append(
                _row(
                    [
                        ("left", "" if many else escape(t.name)),
                        ("right", str(p.partition)),
                        ("right", _num(p.start)),
                        ("right", _num(p.end)),
                        ("right", _num(_known_records(p))),
                        ("right", _rate(p.rate)),
                    ]
                    + (_replica_cells(p.state) if cluster else [])
                )
            )
    out.append("</table>")
    out.append("<b>" + escape(_("consumer groups")) + "</b>")
    if view.groups is None:
        out.append(
            f' <span style="color:#666">{escape(view.groups_note or _("not available"))}</span>'
        )
    elif not view.groups:
        out.append(' <span style="color:#666">' + escape(_("none yet")) + "</span>")
    else:
        out.append(
            _TABLE
            + _head(
                [
                    ("left", _("group")),
                    ("left", _("topic")),
                    ("right", pgettext("dashboard column", "partition")),
                    ("right", _("committed")),
                    ("right", _("log end")),
                    ("right", _("lag")),
                ]
            )
        )
        for g in view.groups:
            out.append(
                _row(
                    [
                        ("left", escape(g.group)),
                        ("left", ""),
                        ("right", ""),
                        ("right", ""),
                        ("right", "total"),
                        ("right", _num(g.total_lag)),
                    ],
                    bold=True,
                )
            )
            for r in g.lags:
                out.append(
                    _row(
                        [
                            ("left", ""),
                            ("left", escape(r.topic)),
                            ("right", str(r.partition)),
                            ("right", _num(r.committed)),
                            ("right", _num(r.end)),
                            ("right", _num(r.lag)),
                        ]
                    )
                )
        out.append("</table>")
    if view.throttles:
        out.append(
            "<b>throttled clients</b> "
            '<span style="color:#666;font-size:11px">(client quotas: replies carry '
            "throttle_time_ms; the client waits that long)</span>"
        )
        out.append(
            _TABLE
            + _head(
                [
                    ("left", _("client id")),
                    ("left", _("quota")),
                    ("right", _("bytes/s")),
                    ("right", _("quota bytes/s")),
                    ("right", _("throttle ms")),
                    ("right", _("ago")),
                ]
            )
        )
        for r in view.throttles:
            out.append(
                _row(
                    [
                        ("left", escape(r.client_id)),
                        ("left", r.kind),
                        ("right", _rate(r.byte_rate)),
                        ("right", _rate(r.quota)),
                        ("right", _num(r.throttle_time_ms)),
                        ("right", f"{r.ago_ms / 1000:.1f} s"),
                    ]
                )
            )
        out.append("</table>")
    out.append("</div>")
    return "".join(out)


def _known_records(p: PartitionRow) -> int | None:
    return None if p.start is None or p.end is None else p.records


def _replica_cells(state: ReplicaState | None) -> list[tuple[str, str]]:
    if state is None:
        return [("right", "–"), ("left", "–"), ("left", "–")]
    isr = escape(ids(state.isr))
    if state.under_replicated or state.offline:
        isr = f'<span style="color:#b00020;font-weight:bold">{isr}</span>'
    leader = escape(leader_text(state))
    if state.offline:
        leader = f'<span style="color:#b00020;font-weight:bold">{leader}</span>'
    return [("right", leader), ("left", escape(ids(state.replicas))), ("left", isr)]


def render_text(view: View) -> str:
    """A plain-text version (for terminals, logs and tests)."""
    lines = []
    if view.error:
        lines.append(f"✘ {view.error}")
    cluster = view.brokers is not None
    if view.brokers is not None:
        lines.extend(render_brokers_text(view.brokers))
        lines.append(render_under_replicated_text(view.under_replicated))
    lines.append(
        f"{'TOPIC':<24} {'PART':>4} {'START':>10} {'END':>10} {'RECORDS':>10} {'REC/S':>8}"
        + (f" {'LEADER':>6} {'REPLICAS':<10} {'ISR':<10}" if cluster else "")
    )
    for t in view.topics:
        for p in t.partitions:
            line = (
                f"{t.name:<24} {p.partition:>4} {_num(p.start):>10} {_num(p.end):>10} "
                f"{_num(_known_records(p)):>10} {_rate(p.rate):>8}"
            )
            if cluster:
                s = p.state
                line += (
                    f" {leader_text(s):>6} {ids(s.replicas) if s else '–':<10} "
                    f"{ids(s.isr) if s else '–':<10}"
                )
            lines.append(line)
    if view.groups is None:
        lines.append(f"consumer groups: {view.groups_note or 'not available'}")
    else:
        lines.append(
            f"{'GROUP':<20} {'TOPIC':<24} {'PART':>4} {'COMMITTED':>10} {'END':>10} {'LAG':>8}"
        )
        for g in view.groups:
            for r in g.lags:
                lines.append(
                    f"{g.group:<20} {r.topic:<24} {r.partition:>4} {_num(r.committed):>10} "
                    f"{_num(r.end):>10} {_num(r.lag):>8}"
                )
    if view.throttles:
        lines.append(
            f"{'THROTTLED CLIENT':<24} {'QUOTA':<8} {'BYTES/S':>10} {'QUOTA B/S':>10} "
            f"{'THROTTLE MS':>11} {'AGO':>6}"
        )
        for r in view.throttles:
            lines.append(
                f"{r.client_id:<24} {r.kind:<8} {_rate(r.byte_rate):>10} "
                f"{_rate(r.quota):>10} {_num(r.throttle_time_ms):>11} "
                f"{r.ago_ms / 1000:>5.1f}s"
            )
    return "\n".join(lines)
