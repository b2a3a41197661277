"""``labkit topics`` (``kafka-topics.sh``): create, list, describe, alter and delete topics.

Theory of operation: the options are checked first (``validate``), then one
KafkaAdminClient does the work. Output and error lines follow Kafka's TopicCommand
("Created topic rta.", "Error while executing topic command : Topic 'rta' already
exists.") with one more line that says what to do. ``--describe`` prints Kafka's
layout (``describe_lines``, a pure function) plus two labkit extras at the end of
each partition line: ``LogStartOffset`` and ``LogEndOffset``. As in Kafka, ``--topic``
is a regular expression for --list, --describe, --alter and --delete.

Size: ~510 lines, one module on purpose: it is one command (Kafka's TopicCommand) whose
actions share the argument checks and the output formats; the describe layout is already a
pure function here.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from typing import Any

from labkit.cli._common import (
    CommandError,
    UsageError,
    add_bootstrap_argument,
    bootstrap_servers,
    client_kwargs,
    kafka_error_text,
    parse_key_values,
    read_properties_file,
    run_reporting,
)
from labkit.errors import (
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
    for_code,
)

NAME = "topics"
HELP = "create, list, describe, alter and delete topics (kafka-topics.sh)"

ERROR_PREFIX = "Error while executing topic command : "
NO_TOPIC_ID = "AAAAAAAAAAAAAAAAAAAAAA"  # Kafka's rendering of the zero UUID: "no topic id"


class TopicCommandError(CommandError):
    """A failure reported as Kafka's TopicCommand does, plus a hint line; exit code 1."""


@dataclass(frozen=True)
class PartitionInfo:
    partition: int
    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    log_start: int | None = None
    log_end: int | None = None


@dataclass(frozen=True)
class TopicInfo:
    name: str
    partitions: tuple[PartitionInfo, ...]
    configs: dict[str, str] = field(default_factory=dict)
    topic_id: str | None = None
    internal: bool = False

    @property
    def replication_factor(self) -> int:
        return len(self.partitions[0].replicas) if self.partitions else 0


# -- pure helpers ------------------------------------------------------------------


def _ids(values: tuple[int, ...]) -> str:
    return ",".join(str(v) for v in values)


def header_line(topic: TopicInfo) -> str:
    """Kafka's ``--describe`` line for a topic."""
    configs = ",".join(f"{k}={v}" for k, v in sorted(topic.configs.items()))
    return (
        f"Topic: {topic.name}\tTopicId: {topic.topic_id or NO_TOPIC_ID}\t"
        f"PartitionCount: {len(topic.partitions)}\t"
        f"ReplicationFactor: {topic.replication_factor}\tConfigs: {configs}"
    )


def partition_line(topic: TopicInfo, p: PartitionInfo) -> str:
    """Kafka's ``--describe`` line for a partition, plus labkit's log start/end offsets."""
    leader = "none" if p.leader is None or p.leader < 0 else str(p.leader)
    line = (
        f"\tTopic: {topic.name}\tPartition: {p.partition}\tLeader: {leader}\t"
        f"Replicas: {_ids(p.replicas)}\tIsr: {_ids(p.isr)}"
    )
    if p.log_start is not None and p.log_end is not None:
        line += f"\tLogStartOffset: {p.log_start}\tLogEndOffset: {p.log_end}"
    return line


def describe_lines(topic: TopicInfo) -> list[str]:
    """Kafka's ``--describe`` text for one topic (a header line, then one per partition)."""
    ordered = sorted(topic.partitions, key=lambda p: p.partition)
    return [header_line(topic)] + [partition_line(topic, p) for p in ordered]


def select_topics(names: list[str], pattern: str | None) -> list[str]:
    """The names ``--topic`` selects, sorted: all when None, else Kafka's regex full match."""
    if pattern is None:
        return sorted(names)
    try:
        regex = re.compile(pattern)
    except re.error:
        return [pattern] if pattern in names else []
    return sorted(n for n in names if n == pattern or regex.fullmatch(n))


def is_internal(name: str) -> bool:
    return name.startswith("__")


def collision_warning(name: str) -> str | None:
    """Kafka's warning for names with both kinds of metric-unsafe characters in mind."""
    if "." in name or "_" in name:
        return (
            "WARNING: Due to limitations in metric names, topics with a period ('.') or "
            "underscore ('_') could collide. To avoid issues it is best to use either, "
            "but not both."
        )
    return None


# -- arguments ---------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_mutually_exclusive_group(required=True)
    actions.add_argument("--create", action="store_true", help="create a topic")
    actions.add_argument("--list", action="store_true", help="list the topic names")
    actions.add_argument(
        "--describe", action="store_true", help="show partitions, leaders, configs and offsets"
    )
    actions.add_argument(
        "--alter", action="store_true", help="add partitions and/or change configs of a topic"
    )
    actions.add_argument("--delete", action="store_true", help="delete a topic and its data")
    add_bootstrap_argument(parser)
    parser.add_argument(
        "--topic",
        metavar="TOPIC",
        help="the topic (a regular expression for --list/--describe/--alter/--delete)",
    )
    parser.add_argument(
        "--partitions",
        type=int,
        metavar="N",
        help="number of partitions (--create; --alter can only increase it)",
    )
    parser.add_argument(
        "--replication-factor",
        type=int,
        metavar="R",
        help="replicas of each partition (default: the broker's default.replication.factor; "
        "one broker: 1; brokers in cluster mode: up to their number; followers copy the "
        "leader's records)",
    )
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="topic config, e.g. retention.ms=60000 (repeatable)",
    )
    parser.add_argument(
        "--delete-config",
        action="append",
        default=[],
        metavar="KEY",
        help="with --alter: reset this config to the broker default (repeatable)",
    )
    parser.add_argument(
        "--if-not-exists", action="store_true", help="with --create: do nothing if the topic exists"
    )
    parser.add_argument(
        "--if-exists",
        action="store_true",
        help="with --alter/--delete/--describe: do nothing if the topic is missing",
    )
    parser.add_argument(
        "--exclude-internal",
        action="store_true",
        help="leave out internal topics (names starting with __)",
    )
    parser.add_argument(
        "--topics-with-overrides",
        action="store_true",
        help="with --describe: only topics whose configs differ from the defaults",
    )
    parser.add_argument(
        "--under-replicated-partitions",
        action="store_true",
        help="with --describe: only partitions whose Isr is smaller than Replicas",
    )
    parser.add_argument(
        "--unavailable-partitions",
        action="store_true",
        help="with --describe: only partitions without a leader",
    )
    parser.add_argument(
        "--command-config", metavar="FILE", help="a properties file of admin client settings"
    )


def validate(args: argparse.Namespace) -> None:
    """Kafka's option rules. Raises UsageError."""
    if (args.create or args.alter or args.delete) and not args.topic:
        raise UsageError(
            "--topic is required with --create, --alter and --delete, e.g. --topic rta"
        )
    if args.partitions is not None and not (args.create or args.alter):
        raise UsageError("--partitions can only be used with --create or --alter")
    if args.partitions is not None and args.partitions < 1:
        raise UsageError("the partitions must be greater than 0")
    if args.replication_factor is not None:
        if not args.create:
            raise UsageError("--replication-factor can only be used with --create")
        if not 1 <= args.replication_factor <= 32767:
            raise UsageError("the replication factor must be between 1 and 32767 inclusive")
    if args.config and not (args.create or args.alter):
        raise UsageError("--config can only be used with --create or --alter")
    if args.delete_config and not args.alter:
        raise UsageError("--delete-config can only be used with --alter")
    if args.if_not_exists and not args.create:
        raise UsageError("--if-not-exists can only be used with --create")
    if args.if_exists and not (args.alter or args.delete or args.describe):
        raise UsageError("--if-exists can only be used with --alter, --delete or --describe")
    if args.alter and args.partitions is None and not args.config and not args.delete_config:
        raise UsageError("--alter needs --partitions N, --config KEY=VALUE or --delete-config KEY")
    parse_key_values(args.config, "--config")


# -- the admin client (kafka-python's KafkaAdminClient API) ------------------------


def admin_connect(servers: list[str], extra: dict[str, Any]) -> Any:
    from labkit import KafkaAdminClient

    return KafkaAdminClient(bootstrap_servers=servers, client_id="labkit-topics", **extra)


def admin_close(admin: Any) -> None:
    admin.close()


admin_error_text = kafka_error_text


def admin_list_topics(admin: Any) -> list[str]:
    return list(admin.list_topics())


def admin_create_topic(
    admin: Any,
    name: str,
    partitions: int | None,
    replication_factor: int | None,
    configs: dict[str, str],
) -> None:
    from labkit import NewTopic

    topic = NewTopic(
        name=name,
        num_partitions=-1 if partitions is None else partitions,
        # -1: the broker's default.replication.factor (1 on a single broker), as Kafka
        replication_factor=-1 if replication_factor is None else replication_factor,
        topic_configs=configs,
    )
    admin.create_topics([topic])


def admin_delete_topic(admin: Any, name: str) -> None:
    admin.delete_topics([name])


def _described(admin: Any, names: list[str]) -> list[dict]:
    """``describe_topics`` entries (kafka-python 2.0's dict keys); raises a topic's error."""
    topics = []
    for item in admin.describe_topics(names):
        if item.get("error_code"):
            raise for_code(item["error_code"])(f"topic '{item['topic']}'")
        topics.append(item)
    return topics


def admin_partition_count(admin: Any, name: str) -> int | None:
    for item in _described(admin, [name]):
        if item["topic"] == name:
            return len(item["partitions"])
    return None


def admin_add_partitions(admin: Any, name: str, total: int) -> None:
    from labkit import NewPartitions

    admin.create_partitions({name: NewPartitions(total_count=total)})


def admin_alter_configs(admin: Any, name: str, configs: dict[str, str | None]) -> None:
    from labkit import ConfigResource, ConfigResourceType

    admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, configs=configs)])


def admin_config_overrides(admin: Any, names: list[str]) -> dict[str, dict[str, str]]:
    """Each topic's configs that differ from the broker defaults.

    labkit's ``describe_configs`` answers ``{"topic": {name: {key: {"value", "is_default"}}}}``.
    """
    from labkit import ConfigResource, ConfigResourceType

    result: dict[str, dict[str, str]] = {name: {} for name in names}
    if not names:
        return result
    answer = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
    for name, entries in answer.get("topic", {}).items():
        for key, entry in entries.items():
            if name in result and not entry.get("is_default") and entry.get("value") is not None:
                result[name][key] = str(entry["value"])
    return result


def admin_describe(admin: Any, names: list[str], servers: list[str]) -> list[TopicInfo]:
    """Metadata, config overrides and log start/end offsets of these topics, sorted by name."""
    raw = {item["topic"]: item for item in _described(admin, names)}
    overrides = admin_config_overrides(admin, sorted(raw))
    # the client asks each partition's leader (cluster mode); one without a leader (a dead
    # broker's, see --unavailable-partitions) has no offsets to show
    offsets = _log_offsets(
        servers,
        {
            name: [p["partition"] for p in item["partitions"] if p.get("leader", -1) >= 0]
            for name, item in raw.items()
        },
    )
    topics = []
    for name in sorted(raw):
        partitions = []
        for p in raw[name]["partitions"]:
            start, end = offsets.get((name, p["partition"]), (None, None))
            partitions.append(
                PartitionInfo(
                    partition=p["partition"],
                    leader=p.get("leader", -1),
                    replicas=tuple(p.get("replicas", ())),
                    isr=tuple(p.get("isr", ())),
                    log_start=start,
                    log_end=end,
                )
            )
        topics.append(
            TopicInfo(
                name=name,
                partitions=tuple(partitions),
                configs=overrides.get(name, {}),
                topic_id=raw[name].get("topic_id"),
                internal=bool(raw[name].get("is_internal", False)),
            )
        )
    return topics


def _log_offsets(
    servers: list[str], partitions: dict[str, list[int]]
) -> dict[tuple[str, int], tuple[int, int]]:
    """(log start, log end) per partition, read by a consumer without a group."""
    from labkit import KafkaConsumer, TopicPartition

    tps = [TopicPartition(t, p) for t, ps in partitions.items() for p in ps]
    if not tps:
        return {}
    consumer = KafkaConsumer(bootstrap_servers=servers, group_id=None, client_id="labkit-topics")
    try:
        starts = consumer.beginning_offsets(tps)
        ends = consumer.end_offsets(tps)
    finally:
        consumer.close()
    return {
        (tp.topic, tp.partition): (starts[tp], ends[tp])
        for tp in tps
        if tp in starts and tp in ends
    }


# -- actions ----------------------------------------------------------------------


def _create(admin: Any, args: argparse.Namespace, out) -> None:
    configs = parse_key_values(args.config, "--config")
    warning = collision_warning(args.topic)
    if warning:
        print(warning, file=out)
    try:
        admin_create_topic(admin, args.topic, args.partitions, args.replication_factor, configs)
    except TopicAlreadyExistsError:
        if args.if_not_exists:
            return
        raise TopicCommandError(
            f"Topic '{args.topic}' already exists.",
            f"Add --if-not-exists to ignore this, or see it with --describe --topic {args.topic}.",
        ) from None
    print(f"Created topic {args.topic}.", file=out)


def _matching(admin: Any, args: argparse.Namespace) -> list[str]:
    names = [n for n in admin_list_topics(admin) if not (args.exclude_internal and is_internal(n))]
    chosen = select_topics(names, args.topic)
    if args.topic is not None and not chosen and not args.if_exists and not args.list:
        raise TopicCommandError(
            f"Topic '{args.topic}' does not exist as expected",
            "Run `labkit topics --list` to see the topics (names are case-sensitive), "
            "or add --if-exists.",
        )
    return chosen


def _list(admin: Any, args: argparse.Namespace, out) -> None:
    for name in _matching(admin, args):
        print(name, file=out)


def _describe(admin: Any, args: argparse.Namespace, out) -> None:
    names = _matching(admin, args)
    if not names:
        return
    for topic in admin_describe(admin, names, args.bootstrap_servers_list):
        if args.topics_with_overrides and not topic.configs:
            continue
        if not (args.under_replicated_partitions or args.unavailable_partitions):
            for line in describe_lines(topic):
                print(line, file=out)
            continue
        # Kafka prints only the matching partition lines for these filters.
        for p in sorted(topic.partitions, key=lambda p: p.partition):
            under = len(p.isr) < len(p.replicas)
            unavailable = p.leader is None or p.leader < 0
            if (args.under_replicated_partitions and under) or (
                args.unavailable_partitions and unavailable
            ):
                print(partition_line(topic, p), file=out)


def _delete(admin: Any, args: argparse.Namespace, out) -> None:
    for name in _matching(admin, args):
        try:
            admin_delete_topic(admin, name)
        except UnknownTopicOrPartitionError:
            if not args.if_exists:
                raise TopicCommandError(
                    f"Topic '{name}' does not exist as expected",
                    "Run `labkit topics --list` to see the topics.",
                ) from None
            continue
        print(f"Deleted topic {name}.", file=out)


def _alter(admin: Any, args: argparse.Namespace, out) -> None:
    configs: dict[str, str | None] = dict(parse_key_values(args.config, "--config"))
    for key in args.delete_config:
        configs[key.strip()] = None
    for name in _matching(admin, args):
        if args.partitions is not None:
            current = admin_partition_count(admin, name)
            if current is not None and args.partitions <= current:
                raise TopicCommandError(
                    f"The number of partitions for a topic can only be increased. Topic {name} "
                    f"currently has {current} partitions, {args.partitions} would not be an increase.",
                    "Kafka never removes partitions; to start over, delete and re-create the topic.",
                )
            admin_add_partitions(admin, name, args.partitions)
            print(f"Topic {name} now has {args.partitions} partitions.", file=out)
        if configs:
            admin_alter_configs(admin, name, configs)
            shown = ", ".join(
                f"{k}={v}" if v is not None else f"{k} (default)" for k, v in configs.items()
            )
            print(f"Updated config for topic {name}: {shown}.", file=out)


ACTIONS = {
    "create": _create,
    "list": _list,
    "describe": _describe,
    "alter": _alter,
    "delete": _delete,
}


def run(args: argparse.Namespace) -> int:
    validate(args)
    servers = bootstrap_servers(args.bootstrap_server)
    args.bootstrap_servers_list = servers
    extra = client_kwargs(
        read_properties_file(args.command_config, "--command-config"), "--command-config"
    )
    action = next(name for name in ACTIONS if getattr(args, name))
    admin = None

    def act() -> None:
        nonlocal admin
        admin = admin_connect(servers, extra)
        ACTIONS[action](admin, args, sys.stdout)

    try:
        return run_reporting(act, prefix=ERROR_PREFIX, error_on_stdout=True)
    finally:
        if admin is not None:
            admin_close(admin)
