"""What the group coordinator keeps per group and per member (broker/groups.py).

Theory of operation
-------------------
Plain records, no behaviour beyond what reads them: a ``Member`` holds what it last
reported owning (``owned``) and what it was last told it may own (``sent``), so
``holds`` is what no other member may be given yet (see "Hand-over without overlap"
in broker/groups.py); ``deadline`` is when it expires unless heard from. A
``Group`` holds its generation, assignor, members, the target assignment and the
partition counts it was computed from; ``state`` derives Kafka's group state from
them (Dead is never stored: a deleted group is gone). Not thread-safe: the broker's
loop thread owns them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from labkit.broker.assignors import DEFAULT_ASSIGNOR

TP = tuple[str, int]
EMPTY, PREPARING, STABLE, DEAD = "Empty", "PreparingRebalance", "Stable", "Dead"


@dataclass(slots=True)
class Member:
    member_id: str
    client_id: str
    client_host: str
    topics: frozenset[str]
    assignors: tuple[str, ...]
    session_timeout: float  # seconds
    rebalance_timeout: float  # seconds (max_poll_interval_ms)
    joined_generation: int
    last_seen: float
    owned: frozenset[TP] = frozenset()  # as last reported by the member
    sent: frozenset[TP] = frozenset()  # the assignment it was last told
    generation: int = 0  # the generation it was last told
    revoking_since: float | None = None  # when it was first asked to release something
    due: float = math.inf  # deadline of its live entry in the expiry heap

    def holds(self) -> frozenset[TP]:
        return self.owned | self.sent

    def deadline(self) -> float:
        """When this member expires unless it is heard from (or releases) first."""
        session_end = self.last_seen + self.session_timeout
        if self.revoking_since is None:
            return session_end
        return min(session_end, self.revoking_since + self.rebalance_timeout)


@dataclass(slots=True)
class Group:
    group_id: str
    generation: int = 0
    assignor: str = DEFAULT_ASSIGNOR
    members: dict[str, Member] = field(default_factory=dict)
    target: dict[str, frozenset[TP]] = field(default_factory=dict)
    partition_counts: dict[str, int] = field(default_factory=dict)
    empty_since_ms: int | None = None  # wall clock; None while it has members

    def state(self) -> str:
        if not self.members:
            return EMPTY
        for m in self.members.values():
            t = self.target.get(m.member_id, frozenset())
            if m.sent != t or m.owned != t:
                return PREPARING
        return STABLE

    def subscribed_topics(self) -> set[str]:
        topics: set[str] = set()
        for m in self.members.values():
            topics |= m.topics
        return topics
