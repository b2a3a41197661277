"""labkit's ``KafkaAdminClient`` on a Kafka broker that is not labkit (client/delegate.py).

kafka-python 3.0's admin client names and shapes some answers differently from
labkit's (which keeps kafka-python 2.x's group methods, docs/client.md): this adapter
gives labkit's names and shapes over kafka-python's calls, so course code, the console
tools and labkit.nb read the same values from either broker. Anything not named here
is forwarded to kafka-python as it is. ``create_topics`` returns once the cluster's
metadata lists the new topics, as labkit's broker answers only then (Kafka answers first,
and a producer right after may not find them). Group calls are tried again on a retriable
error until ``request_timeout_ms``. The client quota methods and
``describe_client_throttles`` are labkit-only and say so.
"""

from __future__ import annotations

import re
import time
from typing import Any

from labkit import errors
from labkit._clock import REAL_CLOCK, Clock
from labkit.client.delegate import Delegating, _build, kafka_python, labkit_error_class, translated
from labkit.client.group_admin import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
    GroupInformation,
    MemberInformation,
)
from labkit.client.structs import OffsetAndMetadata, TopicPartition
from labkit.errors import IncompatibleBrokerVersion, UnsupportedVersionError

RETRY_BACKOFF_S = 0.2  # between tries of a group call that failed with a retriable error
_SET_ON_TOPIC = "DYNAMIC_TOPIC_CONFIG"  # Kafka's config_source of a value set on the topic


def labkit_only(what: str, instead: str) -> IncompatibleBrokerVersion:
    return IncompatibleBrokerVersion(
        f"{what} is labkit-only: it works against a labkit broker, and this one is another "
        f"Kafka broker; {instead}"
    )


class DelegatingAdmin(Delegating):
    """labkit's ``KafkaAdminClient`` on a Kafka broker: kafka-python's, translated."""

    _clock: Clock = REAL_CLOCK  # the group calls' deadline (tests give a FakeClock...)
    _sleep = staticmethod(time.sleep)  # ...and a sleep that advances it)

    def __init__(self, labkit_class: type, **configs: Any):
        self._inner = _build("KafkaAdminClient", labkit_class, configs)
        self.config = self._inner.config
        self._call = translated  # kafka-python call -> labkit values and errors
        self._patience_s = self.config.get("request_timeout_ms", 30000) / 1000

    def _group_call(self, call: Any) -> Any:
        """``call`` translated, tried again on a retriable error until request_timeout_ms: a
        fresh cluster has no group coordinator until ``__consumer_offsets`` exists, and then
        answers NOT_COORDINATOR per group while its partitions load (a call that gets such
        an answer raises it to be tried again)."""
        translated_call = translated(call)

        def again(*args: Any, **kwargs: Any) -> Any:
            deadline = self._clock.monotonic() + self._patience_s
            while True:
                try:
                    return translated_call(*args, **kwargs)
                except errors.KafkaError as exc:
                    if not exc.retriable or self._clock.monotonic() >= deadline:
                        raise
                self._sleep(RETRY_BACKOFF_S)

        return again

    def close(self) -> None:
        self._call(self._inner.close)()

    # -- topics ------------------------------------------------------------------------

    def create_topics(
        self, new_topics, timeout_ms=None, validate_only=False, raise_errors=True
    ) -> dict:
        kafka = kafka_python()
        topics = []
        for name, partitions, replication, configs in _new_topics(new_topics):
            topics.append(
                kafka.admin.NewTopic(
                    name,
                    int(partitions),
                    int(replication),
                    topic_configs={
                        str(k): None if v is None else str(v) for k, v in (configs or {}).items()
                    },
                )
            )
        answer = self._call(self._inner.create_topics)(
            topics, timeout_ms=timeout_ms, validate_only=validate_only, raise_errors=False
        )
        results = _topic_results(answer, raise_errors)
        created = [t["name"] for t in results["topics"] if not t["error_code"]]
        if created and not validate_only:
            # Kafka answers before its metadata lists the topics (a producer right after
            # would not find them); labkit's broker answers after: wait as labkit does.
            wait_ms = timeout_ms or self._patience_s * 1000
            self._call(self._inner.wait_for_topics)(created, timeout_ms=wait_ms)
        return results

    def delete_topics(self, topics, timeout_ms=None, raise_errors=True) -> dict:
        topics = [topics] if isinstance(topics, str) else list(topics)
        answer = self._call(self._inner.delete_topics)(
            topics, timeout_ms=timeout_ms, raise_errors=False
        )
        return _topic_results(answer, raise_errors)

    def create_partitions(
        self, topic_partitions, timeout_ms=None, validate_only=False, raise_errors=True
    ) -> dict:
        kafka = kafka_python()
        wanted = {}
        for name, value in topic_partitions.items():
            count = (
                value.total_count
                if hasattr(value, "total_count")
                else value["count"]
                if isinstance(value, dict)
                else value
            )
            wanted[name] = kafka.admin.NewPartitions(int(count))
        answer = self._call(self._inner.create_partitions)(
            wanted, timeout_ms=timeout_ms, validate_only=validate_only, raise_errors=False
        )
        results = [
            {"name": r.name, "error_code": r.error_code, "error_message": r.error_message}
            for r in getattr(answer, "results", [])
        ]
        return _topic_results({"topics": results}, raise_errors)

    def list_topics(self) -> list[str]:
        return sorted(self._call(self._inner.list_topics)())

    def describe_topics(self, topics=None) -> list[dict]:
        """kafka-python's entries, plus the 2.0 keys labkit's client also gives."""
        topics = [topics] if isinstance(topics, str) else topics
        out = []
        for entry in self._call(self._inner.describe_topics)(topics):
            code = entry.get("error_code", 0)
            if code:
                raise errors.for_code(code)(f"topic '{entry.get('name')}'")
            partitions = []
            for p in sorted(entry.get("partitions", []), key=lambda p: p["partition_index"]):
                partitions.append(
                    {
                        **p,
                        "partition": p["partition_index"],
                        "leader": p["leader_id"],
                        "replicas": p["replica_nodes"],
                        "isr": p["isr_nodes"],
                    }
                )
            out.append({**entry, "topic": entry["name"], "partitions": partitions})
        return out

    def describe_cluster(self) -> dict:
        answer = self._call(self._inner.describe_cluster)()
        for broker in answer.get("brokers", []):
            broker.setdefault("node_id", broker.get("broker_id"))
        return answer

    # -- configs -----------------------------------------------------------------------

    def describe_configs(self, config_resources, include_synonyms: bool = False) -> dict:
        """``{"topic": {name: {key: {"name", "value", "default", "is_default"}}}}`` as on
        labkit; ``default`` is True unless the value was set on the topic."""
        kafka = kafka_python()
        resources = _topic_resources(config_resources)
        asked = [
            kafka.admin.ConfigResource(
                kafka.admin.ConfigResourceType.TOPIC, r.name, list(r.configs or []) or None
            )
            for r in resources
        ]
        answer = self._call(self._inner.describe_configs)(
            asked, include_synonyms=include_synonyms, config_filter="all"
        )
        topics = answer.get("topic", {})
        for resource in resources:
            if resource.name not in topics:
                raise errors.UnknownTopicOrPartitionError(f"topic '{resource.name}'")
        out = {}
        for name, configs in topics.items():
            out[name] = {
                key: {
                    "name": key,
                    "value": data.get("value"),
                    "default": data.get("config_source") != _SET_ON_TOPIC,
                    "is_default": data.get("config_source") != _SET_ON_TOPIC,
                    "config_source": data.get("config_source"),
                }
                for key, data in configs.items()
            }
        return {"topic": out}

    def alter_configs(self, config_resources, validate_only: bool = False) -> dict:
        """Set topic configs incrementally (keys not named keep their value; None
        resets one to its default), as on labkit."""
        kafka = kafka_python()
        delete = kafka.admin.AlterConfigOp.DELETE
        asked = []
        for resource in _topic_resources(config_resources):
            ops = {
                str(k): (delete, None) if v is None else str(v)
                for k, v in (resource.configs or {}).items()
            }
            asked.append(
                kafka.admin.ConfigResource(kafka.admin.ConfigResourceType.TOPIC, resource.name, ops)
            )
        answer = self._call(self._inner.alter_configs)(
            asked, validate_only=validate_only, raise_on_unknown=False, incremental=True
        )
        out = []
        for name, result in answer.get("topic", {}).items():
            if isinstance(result, type) and issubclass(result, Exception):
                raise result(f"alter_configs of topic '{name}'")
            if isinstance(result, Exception):
                raise result
            out.append({"name": name, "error_code": 0, "error_message": None})
        return {"topics": out}

    # -- consumer groups (labkit's, kafka-python 2.x's names) --------------------------

    def list_consumer_groups(self, broker_ids: Any = None) -> list[tuple[str, str]]:
        groups = self._group_call(self._inner.list_groups)()
        return sorted((g["group_id"], g.get("protocol_type") or "consumer") for g in groups)

    def describe_consumer_groups(
        self, group_ids, group_coordinator_id=None, include_authorized_operations=False
    ) -> list[GroupInformation]:
        ids = [group_ids] if isinstance(group_ids, str) else list(group_ids)
        if not ids:
            return []

        def describe() -> list[GroupInformation]:
            answer = translated(self._inner.describe_groups)(ids)
            return [_group(group_id, answer.get(group_id) or {}) for group_id in ids]

        return self._group_call(describe)()

    def list_consumer_group_offsets(
        self, group_id: str, group_coordinator_id: Any = None, partitions: Any = None
    ) -> dict[TopicPartition, OffsetAndMetadata]:
        wanted = None if partitions is None else [TopicPartition(t, p) for t, p in partitions]
        answer = self._group_call(self._inner.list_group_offsets)({group_id: wanted})
        found = {
            TopicPartition(*tp): OffsetAndMetadata(
                max(om.offset, -1), om.metadata if om.offset >= 0 else "", -1
            )
            for tp, om in (answer.get(group_id) or {}).items()
        }
        for tp in wanted or []:
            found.setdefault(tp, OffsetAndMetadata(-1, "", -1))
        return found

    def delete_consumer_groups(self, group_ids, group_coordinator_id=None) -> list[tuple]:
        ids = [group_ids] if isinstance(group_ids, str) else list(group_ids)
        if not ids:
            return []
        outcome: dict[str, Any] = {}  # group -> error class (labkit's) of its latest try

        def delete_pending() -> None:
            pending = [g for g in ids if g not in outcome or outcome[g].retriable]
            answer = translated(self._inner.delete_groups)(pending)
            for group_id in pending:
                outcome[group_id] = _error_class(answer.get(group_id))
            again = [g for g in pending if outcome[g].retriable]
            if again:  # try those again (the others are done: not deleted twice)
                raise outcome[again[0]](f"deleting consumer group '{again[0]}'")

        try:
            self._group_call(delete_pending)()
        except errors.KafkaError as exc:
            if not (exc.retriable and outcome):
                raise  # past request_timeout_ms: the groups' own errors are the answer
        return [(group_id, outcome[group_id]) for group_id in ids]

    def alter_consumer_group_offsets(self, group_id: str, offsets: dict, group_coordinator_id=None):
        rows = {
            TopicPartition(*tp): value
            if isinstance(value, OffsetAndMetadata)
            else OffsetAndMetadata(int(value), "", -1)
            for tp, value in offsets.items()
        }

        def alter() -> dict:
            answer = translated(self._inner.alter_group_offsets)(group_id, rows)
            result = {TopicPartition(*tp): _error_class(e) for tp, e in answer.items()}
            for tp, error in result.items():
                if error is not errors.NoError:  # a retriable one is tried again
                    raise error(f"committing offsets of group '{group_id}' for {tp}")
            return result

        return self._group_call(alter)()

    def delete_group_offsets(self, group_id: str, partitions, group_coordinator_id=None):
        wanted = [TopicPartition(t, p) for t, p in partitions]
        answer = self._group_call(self._inner.delete_group_offsets)(group_id, wanted)
        return {TopicPartition(*tp): _error_class(e) for tp, e in answer.items()}

    # -- labkit-only -------------------------------------------------------------------

    def describe_client_quotas(self, components=None, strict=False) -> list[dict]:
        raise labkit_only(
            "describe_client_quotas",
            "use Kafka's kafka-configs.sh --describe --entity-type clients",
        )

    def alter_client_quotas(self, alterations, validate_only=False, raise_errors=True):
        raise labkit_only(
            "alter_client_quotas", "use Kafka's kafka-configs.sh --alter --entity-type clients"
        )

    def describe_client_throttles(self) -> list[dict]:
        raise labkit_only(
            "describe_client_throttles",
            "Kafka shows throttling as per-client metrics (JMX), not through the admin API",
        )


def _new_topics(value: Any) -> list[tuple]:
    """NewTopic objects, names or ``{name: {...}}`` as (name, partitions, replication,
    configs); -1 lets the broker choose, as in labkit's client."""
    if isinstance(value, str) or hasattr(value, "num_partitions"):
        value = [value]
    if isinstance(value, dict):
        return [
            (
                name,
                d.get("num_partitions", -1),
                d.get("replication_factor", -1),
                d.get("configs"),
            )
            for name, d in value.items()
        ]
    out = []
    for item in value:
        if isinstance(item, str):
            out.append((item, -1, -1, None))
        else:
            out.append(
                (item.name, item.num_partitions, item.replication_factor, item.topic_configs)
            )
    return out


def _topic_results(answer: dict, raise_errors: bool) -> dict:
    """labkit's ``{"topics": [{"name", "error_code", "error_message"}]}``; raises the
    first error as its class with the broker's message, as labkit's client does."""
    topics = [
        {
            "name": t.get("name"),
            "error_code": t.get("error_code", 0),
            "error_message": t.get("error_message"),
        }
        for t in answer.get("topics", [])
    ]
    for entry in topics if raise_errors else []:
        if entry["error_code"]:
            message = entry["error_message"] or f"topic '{entry['name']}'"
            raise errors.for_code(entry["error_code"])(message)
    return {"topics": topics}


def _topic_resources(resources) -> list:
    resources = [resources] if hasattr(resources, "resource_type") else list(resources)
    for resource in resources:
        if resource.resource_type.name != "TOPIC":
            raise UnsupportedVersionError(
                f"labkit's admin client has configs for topics only, not "
                f"{resource.resource_type.name}"
            )
    return resources


def _error_class(value: Any) -> type:
    """kafka-python's per-item result ('OK', an error class or instance) as labkit's class."""
    if value is None or value == "OK":
        return errors.NoError
    if isinstance(value, str):  # "[Error 69] GroupIdNotFoundError: Group g not found."
        code = re.match(r"\[Error (-?\d+)\]", value)
        return errors.for_code(int(code.group(1))) if code else errors.KafkaError
    if isinstance(value, BaseException):
        value = type(value)
    if isinstance(value, type):
        return labkit_error_class(value)
    return errors.KafkaError


def _group(group_id: str, entry: dict) -> GroupInformation:
    state = entry.get("group_state") or ""
    error = _error_class(entry.get("error"))
    if error not in (errors.NoError, errors.GroupIdNotFoundError):
        raise error(f"consumer group '{group_id}' could not be described")
    if error is errors.GroupIdNotFoundError or state == "Dead" or not entry:
        raise errors.GroupIdNotFoundError(
            f"consumer group '{group_id}' is not known to the broker; check the name with "
            "list_consumer_groups()"
        )
    members = []
    for m in entry.get("members", []):
        metadata = m.get("member_metadata") or {}
        assignment = m.get("member_assignment") or {}
        assigned = [
            (a["topic"], sorted(a["partitions"]))
            for a in sorted(assignment.get("assigned_partitions", []), key=lambda a: a["topic"])
        ]
        members.append(
            MemberInformation(
                m.get("member_id", ""),
                m.get("client_id", ""),
                m.get("client_host", ""),
                ConsumerProtocolMemberMetadata(0, list(metadata.get("topics", [])), b""),
                ConsumerProtocolMemberAssignment(0, assigned, b""),
            )
        )
    return GroupInformation(
        0,
        group_id,
        state,
        entry.get("protocol_type", ""),
        entry.get("protocol_data", "") or "",
        members,
        None,
    )
