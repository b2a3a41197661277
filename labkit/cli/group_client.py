"""What ``labkit consumer-groups`` asks the broker, through the client library.

``GroupsClient`` uses ``KafkaAdminClient``'s group methods (kafka-python's names) and a
consumer without a group for log offsets, as Kafka's ConsumerGroupCommand uses its admin
client; it answers with the plain ``Group``/``Member`` values the tool's pure row and
reset functions take. It owns its two clients (``close()``); not thread-safe. On a
cluster the client library routes each request (the group's coordinator, each
partition's leader); a partition without a leader gets no log end (``None``: ``-``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from labkit.errors import GroupIdNotFoundError

TP = tuple[str, int]
EARLIEST, LATEST = -2, -1  # list_offsets' timestamps for the log start and end


@dataclass(frozen=True)
class Member:
    member_id: str
    client_id: str
    host: str
    assignment: tuple[TP, ...]


@dataclass(frozen=True)
class Group:
    group_id: str
    state: str
    assignor: str
    members: tuple[Member, ...]

    @property
    def exists(self) -> bool:
        return self.state != "Dead"


class GroupsClient:
    """The calls this tool makes: KafkaAdminClient's group methods, and a consumer without a
    group for log offsets (Kafka's ConsumerGroupCommand does the same with its admin client)."""

    def __init__(self, servers: list[str], admin: Any = None, consumer: Any = None):
        """``admin``/``consumer``: clients to use instead of new ones (tests)."""
        from labkit import KafkaAdminClient

        self._servers = servers
        self._admin = admin or KafkaAdminClient(
            bootstrap_servers=servers, client_id="labkit-consumer-groups"
        )
        self._consumer: Any = consumer

    def close(self) -> None:
        self._admin.close()
        if self._consumer is not None:
            self._consumer.close()

    @property
    def address(self) -> str:
        return self._servers[0]

    def _offset_reader(self) -> Any:
        if self._consumer is None:
            from labkit import KafkaConsumer

            self._consumer = KafkaConsumer(
                bootstrap_servers=self._servers, group_id=None, client_id="labkit-consumer-groups"
            )
        return self._consumer

    def coordinator(self, group_id: str) -> str:
        """Kafka's COORDINATOR (ID) cell: the group's coordinator as ``host:port (id)``."""
        find = getattr(self._admin, "group_coordinator", None)
        if find is None:  # kafka-python's admin (a Kafka broker that is not labkit)
            return f"{self.address} (0)"
        node, host, port = find(group_id)
        if host is None or port is None:  # one broker: the one asked
            return f"{self.address} ({node})"
        return f"{host}:{port} ({node})"

    def group_ids(self) -> list[str]:
        return [group_id for group_id, _ in self._admin.list_consumer_groups()]

    def list_groups(self) -> list[tuple[str, str]]:
        """(group id, state) of every group."""
        return [(g.group_id, g.state) for g in map(self.describe, self.group_ids())]

    def describe(self, group_id: str) -> Group:
        try:
            (info,) = self._admin.describe_consumer_groups([group_id])
        except GroupIdNotFoundError:
            return Group(group_id, "Dead", "", ())
        members = tuple(
            Member(m.member_id, m.client_id, m.client_host, tuple(m.member_assignment.partitions()))
            for m in info.members
        )
        return Group(group_id, info.state, info.protocol, members)

    def offsets(
        self, group_id: str, partitions: list[TP] | None
    ) -> dict[TP, tuple[int | None, int | None]]:
        """{tp: (committed or None, log-end or None)} (None = every committed partition)."""
        committed = self._admin.list_consumer_group_offsets(group_id, partitions=partitions)
        led = self._led_partitions(sorted({tp.topic for tp in committed}))
        # a partition without a leader (a cluster's brokers down) has no log end to show
        existing = [tp for tp in committed if (tp.topic, tp.partition) in led]
        ends = self._offset_reader().end_offsets(existing) if existing else {}
        return {
            (tp.topic, tp.partition): (c.offset if c.offset >= 0 else None, ends.get(tp))
            for tp, c in committed.items()
        }

    def partition_counts(self, topics: list[str]) -> dict[str, int]:
        return {t["topic"]: len(t["partitions"]) for t in self._described(topics)}

    def _described(self, topics: list[str]) -> list[dict]:
        """describe_topics' rows of the topics that exist."""
        if not topics:
            return []
        return [t for t in self._admin.describe_topics(topics) if not t.get("error_code")]

    def _led_partitions(self, topics: list[str]) -> set[TP]:
        """The partitions of these topics that have a leader now (kafka-python 2.x's or
        3.x's field names; -1: none)."""
        led = set()
        for t in self._described(topics):
            for p in t["partitions"]:
                number = p.get("partition", p.get("partition_index"))
                if p.get("leader", p.get("leader_id", 0)) >= 0:
                    led.add((t["topic"], number))
        return led

    def list_offsets(
        self, partitions: list[TP], timestamp_of: dict[TP, int] | int
    ) -> dict[TP, int]:
        from labkit import TopicPartition

        tps = [TopicPartition(t, p) for t, p in partitions]
        reader = self._offset_reader()
        if timestamp_of == EARLIEST:
            found = reader.beginning_offsets(tps)
        elif timestamp_of == LATEST:
            found = reader.end_offsets(tps)
        else:
            stamps = {
                tp: timestamp_of if isinstance(timestamp_of, int) else timestamp_of[tp]
                for tp in tps
            }
            ends = reader.end_offsets(tps)
            found = {
                tp: ends[tp] if at is None else at.offset
                for tp, at in reader.offsets_for_times(stamps).items()
            }
        return {(tp.topic, tp.partition): offset for tp, offset in found.items()}

    def commit(self, group_id: str, offsets: dict[TP, int]) -> None:
        from labkit import TopicPartition

        self._admin.alter_consumer_group_offsets(
            group_id, {TopicPartition(t, p): o for (t, p), o in sorted(offsets.items())}
        )

    def delete(self, group_ids: list[str]) -> list[tuple[str, type]]:
        """[(group id, error class)] as KafkaAdminClient.delete_consumer_groups answers."""
        # The admin client also logs each failure; this tool prints its own lines instead.
        admin_log = logging.getLogger("labkit.client.group_admin")
        level = admin_log.level
        admin_log.setLevel(logging.ERROR)
        try:
            return self._admin.delete_consumer_groups(group_ids)
        finally:
            admin_log.setLevel(level)
