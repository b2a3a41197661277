"""``nb.dashboard()``'s cluster view: brokers, leaders, replicas, ISR (pure).

Theory of operation
-------------------
A broker in cluster mode (docs/replication.md) names in its metadata the live brokers
(ids, host:port), the controller, and per partition the leader, the replicas and the ISR.
The dashboard's collector puts them into its ``Snapshot`` (``brokers``, ``controller_id``,
``replicas``); ``is_cluster`` tells a cluster from the single broker (which always answers
one broker, id 0, and every partition on it: its view stays as it was).

A broker that dies leaves the metadata's broker list but not the partitions' replica
lists, so ``broker_rows`` keeps the address of every broker seen before (the model's
memory, ``known``) and lists every id that a replica list names: a dead broker shows as
not alive, with its last address. A partition is under-replicated when its ISR is
smaller than its replicas, offline when it has no leader (-1), as ``kafka-topics.sh
--describe --under-replicated-partitions`` / ``--unavailable-partitions`` count them.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from labkit.i18n import _

TP = tuple[str, int]


@dataclass(frozen=True)
class BrokerInfo:
    """One live broker as metadata names it."""

    node_id: int
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class ReplicaState:
    """A partition's leader (-1: none), replicas and in-sync replicas (ids)."""

    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]

    @property
    def under_replicated(self) -> bool:
        return len(self.isr) < len(self.replicas)

    @property
    def offline(self) -> bool:
        return self.leader < 0


@dataclass(frozen=True)
class BrokerRow:
    node_id: int
    address: str
    """host:port; ``?`` for a broker never seen alive by this dashboard."""
    alive: bool
    controller: bool
    leads: int
    """Partitions (of the topics shown) this broker leads."""


def is_cluster(brokers: list[BrokerInfo] | None, replicas: dict[TP, ReplicaState]) -> bool:
    """True for a broker in cluster mode; the single broker answers one broker, id 0."""
    if brokers is None:
        return False
    if len(brokers) != 1 or brokers[0].node_id != 0:
        return True
    return any(state.replicas not in ((), (0,)) for state in replicas.values())


def broker_rows(
    brokers: list[BrokerInfo],
    controller_id: int | None,
    replicas: dict[TP, ReplicaState],
    known: dict[int, str],
) -> list[BrokerRow]:
    """Every broker alive now, seen before, or named by a replica list; sorted by id.
    Updates ``known`` (id -> last address) with the live ones."""
    for b in brokers:
        known[b.node_id] = b.address
    alive = {b.node_id for b in brokers}
    ids = set(alive) | set(known)
    for state in replicas.values():
        ids.update(state.replicas)
    leads: dict[int, int] = {}
    for state in replicas.values():
        if state.leader >= 0:
            leads[state.leader] = leads.get(state.leader, 0) + 1
    return [
        BrokerRow(i, known.get(i, "?"), i in alive, i == controller_id, leads.get(i, 0))
        for i in sorted(ids)
    ]


def ids(values: tuple[int, ...]) -> str:
    return ",".join(str(v) for v in values) or "–"


def leader_text(state: ReplicaState | None) -> str:
    if state is None:
        return "–"
    return _("none") if state.offline else str(state.leader)


# -- rendering ------------------------------------------------------------------------

_RED = "color:#b00020"


def render_brokers_html(rows: list[BrokerRow], table: str, head, row) -> str:
    """The brokers table (``table``/``head``/``row`` are the dashboard's HTML helpers)."""
    out = ["<b>" + escape(_("brokers")) + "</b>"]
    out.append(
        table
        + head(
            [
                ("right", _("id")),
                ("left", _("host:port")),
                ("left", _("alive")),
                ("left", _("controller")),
                ("right", _("leads")),
            ]
        )
    )
    for b in rows:
        alive = "✔ " + _("yes") if b.alive else f'<span style="{_RED}">✘ {escape(_("no"))}</span>'
        out.append(
            row(
                [
                    ("right", str(b.node_id)),
                    ("left", escape(b.address)),
                    ("left", alive),
                    ("left", "★" if b.controller else ""),
                    ("right", str(b.leads)),
                ]
            )
        )
    out.append("</table>")
    return "".join(out)


def render_under_replicated_html(bad: list[tuple[str, int, ReplicaState]]) -> str:
    title = escape(_("under-replicated partitions"))
    if not bad:
        return f'<div style="margin:2px 0 8px 0"><b>{title}</b>: 0</div>'
    items = ", ".join(
        escape(
            _("{topic}-{partition} (ISR {isr} of {replicas}{offline})").format(
                topic=topic,
                partition=partition,
                isr=ids(state.isr),
                replicas=ids(state.replicas),
                offline=(", " + _("no leader")) if state.offline else "",
            )
        )
        for topic, partition, state in bad
    )
    return f'<div style="margin:2px 0 8px 0;{_RED}"><b>{title}: {len(bad)}</b> — {items}</div>'


def render_brokers_text(rows: list[BrokerRow]) -> list[str]:
    lines = [f"{'BROKER':>6} {'HOST:PORT':<24} {'ALIVE':<5} {'CTRL':<4} {'LEADS':>5}"]
    for b in rows:
        lines.append(
            f"{b.node_id:>6} {b.address:<24} {'yes' if b.alive else 'NO':<5} "
            f"{'*' if b.controller else '':<4} {b.leads:>5}"
        )
    return lines


def render_under_replicated_text(bad: list[tuple[str, int, ReplicaState]]) -> str:
    parts = [
        f"{t}-{p} (isr {ids(s.isr)} of {ids(s.replicas)}{', no leader' if s.offline else ''})"
        for t, p, s in bad
    ]
    return f"under-replicated partitions: {len(bad)}" + (": " + ", ".join(parts) if parts else "")
