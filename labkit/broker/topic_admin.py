"""The topic admin APIs: create/delete topics, create partitions, describe/alter
configs, delete records.

Theory of operation
-------------------
``TopicAdmin`` is mixed into ``Handlers`` (broker/handlers.py), which routes these
APIs here and turns a raised error into a reply; it uses the handlers' ``registry``,
``config`` and ``descriptors``. Each topic (partition) is answered alone, in order, as
in Kafka: one bad name never fails the others. A change is made in the registry at
once; the reply says which topics changed (``topics_changed``, ``changed_topics``) so
the loop re-checks parked fetches and groups rebalance, and the loop holds it for the
flusher's round that makes it durable (broker/flusher.py). Pure: no sockets.
"""

from __future__ import annotations

from typing import Any

from labkit.broker import delete_records as records_api
from labkit.broker.config import BrokerConfig
from labkit.broker.descriptors import DescriptorGuard
from labkit.broker.replies import Reply, error_of, list_field
from labkit.broker.topics import TopicRegistry
from labkit.errors import InvalidRequestError


class TopicAdmin:
    """The topic admin handlers (a mixin of ``Handlers``: the attributes below are its)."""

    registry: TopicRegistry
    config: BrokerConfig
    descriptors: DescriptorGuard
    cluster: Any  # broker/cluster_sync.py's ClusterSync in cluster mode, else None

    @staticmethod
    def _outcome(name: Any, exc: BaseException | None) -> dict:
        if exc is None:
            return {"name": name, "error": 0, "message": None}
        code, text = error_of(exc)
        return {"name": name, "error": code, "message": text}

    def create_topics(self, header: dict, payloads: list) -> Reply:
        validate_only = header.get("validate_only", False) is True
        out = []
        changed: list[str] = []
        for spec in list_field(header, "topics"):
            if not isinstance(spec, dict):
                raise InvalidRequestError("each topic must be an object with a 'name'")
            name = spec.get("name")
            try:
                count = spec.get("num_partitions", -1)
                if type(count) is int and isinstance(name, str) and self.registry.get(name) is None:
                    self.descriptors.check(self.config.num_partitions if count == -1 else count)
                if self.cluster is not None:
                    self._create_in_cluster(name, count, spec, validate_only)
                    out.append(self._outcome(name, None))
                    assert isinstance(name, str)  # created: a valid topic name
                    if not validate_only:
                        changed.append(name)
                    continue
                self.registry.create(
                    name,
                    count,
                    spec.get("replication_factor", 1),
                    spec.get("configs"),
                    validate_only=validate_only,
                )
                out.append(self._outcome(name, None))
                assert isinstance(name, str)  # create() accepted it: a valid topic name
                if not validate_only:
                    changed.append(name)
            except Exception as exc:  # noqa: BLE001
                out.append(self._outcome(name, exc))
        return Reply(
            {"error": 0, "topics": out}, topics_changed=not validate_only, changed_topics=changed
        )

    def _create_in_cluster(self, name: Any, count: Any, spec: dict, validate_only: bool) -> None:
        """Cluster mode: checked here, written to ZooKeeper (the controller elects the
        leaders), then this broker's local log; the others create theirs from ZooKeeper."""
        from labkit.broker.cluster_sync import split_replication_configs

        configs = spec.get("configs") or {}
        local, _replication = split_replication_configs(configs)
        factor = spec.get("replication_factor", -1)
        self.registry.create(name, count, 1, local, validate_only=True)
        total = self.config.num_partitions if count in (-1, None) else count
        self.cluster.create_topic(
            name, total, factor, {k: str(v) for k, v in configs.items()}, validate_only
        )
        if not validate_only:
            self.registry.create(name, total, 1, local)

    def delete_topics(self, header: dict, payloads: list) -> Reply:
        out = []
        changed = []
        for name in list_field(header, "topics"):
            try:
                if self.cluster is not None:  # the controller deletes it; then every broker
                    self.cluster.delete_topic(name)
                    out.append(self._outcome(name, None))
                    continue
                self.registry.delete(name)
                out.append(self._outcome(name, None))
                changed.append(name)
            except Exception as exc:  # noqa: BLE001
                out.append(self._outcome(name, exc))
        return Reply({"error": 0, "topics": out}, topics_changed=True, changed_topics=changed)

    def create_partitions(self, header: dict, payloads: list) -> Reply:
        wanted = header.get("topics")
        if not isinstance(wanted, dict):
            raise InvalidRequestError("field 'topics' must be an object of topic -> new count")
        validate_only = header.get("validate_only", False) is True
        out = []
        changed = []
        for name, total in wanted.items():
            try:
                topic = self.registry.get(name) if isinstance(name, str) else None
                if topic is not None and type(total) is int:
                    self.descriptors.check(total - len(topic.partitions))
                if self.cluster is not None:
                    self.registry.create_partitions(name, total, validate_only=True)
                    if not validate_only:
                        self.cluster.add_partitions(name, total)
                self.registry.create_partitions(name, total, validate_only=validate_only)
                out.append(self._outcome(name, None))
                if not validate_only:
                    changed.append(name)
            except Exception as exc:  # noqa: BLE001
                out.append(self._outcome(name, exc))
        return Reply(
            {"error": 0, "topics": out}, topics_changed=not validate_only, changed_topics=changed
        )

    def describe_configs(self, header: dict, payloads: list) -> Reply:
        wanted = header.get("topics")
        names = self.registry.names() if wanted is None else list_field(header, "topics")
        out = []
        for name in names:
            try:
                configs = self.registry.describe_configs(name)
                if self.cluster is not None:  # and those kept in ZooKeeper
                    configs = sorted(
                        configs + self.cluster.replication_configs(name),
                        key=lambda row: row["name"],
                    )
                out.append({**self._outcome(name, None), "configs": configs})
            except Exception as exc:  # noqa: BLE001
                out.append({**self._outcome(name, exc), "configs": []})
        return Reply({"error": 0, "topics": out})

    def alter_configs(self, header: dict, payloads: list) -> Reply:
        wanted = header.get("topics")
        if not isinstance(wanted, dict):
            raise InvalidRequestError("field 'topics' must be an object of topic -> configs")
        validate_only = header.get("validate_only", False) is True
        replace = header.get("replace", False) is True  # Kafka's AlterConfigs (whole set)
        out = []
        for name, changes in wanted.items():
            try:
                self.registry.alter_configs(
                    name, changes, validate_only=validate_only, replace=replace
                )
                out.append(self._outcome(name, None))
            except Exception as exc:  # noqa: BLE001
                out.append(self._outcome(name, exc))
        return Reply({"error": 0, "topics": out})

    def delete_records(self, header: dict, payloads: list) -> Reply:
        """labkit/broker/delete_records.py; parked fetches below a new start get answered."""
        answer, moved, unsaved = records_api.delete_records(self.registry, header, error_of)
        return Reply(answer, topics_changed=moved, log_starts=unsaved or None)
