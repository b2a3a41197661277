"""What ``nb.cluster()`` shows, as plain data: one partition's state (``PartitionState``) read
from ZooKeeper's znodes or from a broker's metadata, and the cluster the environment names.
No process, no socket: unit-tested in tests/unit/test_nb_cluster_mode.py."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from labkit.errors import IllegalArgumentError
from labkit.i18n import _

CLUSTER_ENV = "LABKIT_CLUSTER"
ZOOKEEPER_ENV = "LABKIT_ZOOKEEPER"


@dataclass(frozen=True)
class PartitionState:
    """One partition as ``kafka-topics.sh --describe`` shows it (leader -1: none)."""

    topic: str
    partition: int
    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    leader_epoch: int = 0

    def __str__(self) -> str:
        return (
            f"Topic: {self.topic}\tPartition: {self.partition}\tLeader: "
            f"{self.leader if self.leader >= 0 else 'none'}\tReplicas: "
            f"{','.join(map(str, self.replicas))}\tIsr: {','.join(map(str, self.isr))}"
        )


def states_from_znodes(topic: str, read_json: Callable[[str], Any]) -> list[PartitionState]:
    """The partitions of ``topic`` from ZooKeeper's znodes, as Kafka's ZooKeeper mode keeps
    them. ``read_json(path)`` returns a znode's JSON, or None when it does not exist.
    Raises ``IllegalArgumentError`` for a topic that does not exist."""
    assignment = read_json(f"/brokers/topics/{topic}")
    if assignment is None:
        raise IllegalArgumentError(
            _("no topic {topic!r} in this cluster: create it first").format(topic=topic)
        )
    rows = []
    for key, replicas in sorted(assignment["partitions"].items(), key=lambda kv: int(kv[0])):
        state = read_json(f"/brokers/topics/{topic}/partitions/{key}/state") or {}
        rows.append(
            PartitionState(
                topic=topic,
                partition=int(key),
                leader=int(state.get("leader", -1)),
                replicas=tuple(replicas),
                isr=tuple(state.get("isr", ())),
                leader_epoch=int(state.get("leader_epoch", 0)),
            )
        )
    return rows


def states_from_metadata(topic: str, partitions: list[dict]) -> list[PartitionState]:
    """The partitions of ``topic`` from kafka-python's ``describe_topics()`` rows."""
    return [
        PartitionState(
            topic=topic,
            partition=p["partition"],
            leader=p["leader"],
            replicas=tuple(p["replicas"]),
            isr=tuple(p["isr"]),
            leader_epoch=p.get("leader_epoch", 0) or 0,
        )
        for p in sorted(partitions, key=lambda p: p["partition"])
    ]


def existing_cluster(environ: dict[str, str] | None = None) -> tuple[str, str | None] | None:
    """``($LABKIT_CLUSTER, $LABKIT_ZOOKEEPER or None)``, or None when no cluster is named."""
    env = os.environ if environ is None else environ
    servers = (env.get(CLUSTER_ENV) or "").strip()
    if not servers:
        return None
    return servers, (env.get(ZOOKEEPER_ENV) or "").strip() or None
