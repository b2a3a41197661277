"""``labkit configs`` (``kafka-configs.sh``): describe and change client quotas and topic configs.

Kafka's flags: ``--entity-type clients|topics`` with ``--entity-name X`` or
``--entity-default`` (clients only), or the short forms ``--client X`` and
``--topic X``; then ``--describe``, or ``--alter`` with ``--add-config
'k1=v1,k2=v2'`` and/or ``--delete-config 'k1,k2'``. Client quotas are
``producer_byte_rate`` and ``consumer_byte_rate`` (bytes per second); they take
effect at once and survive a broker restart. Output lines are Kafka's
(``describe_lines`` and ``alter_line`` are pure, for tests).
"""

from __future__ import annotations

import argparse
from typing import Any

from labkit.cli._common import UsageError, add_bootstrap_argument, bootstrap_servers

NAME = "configs"
HELP = "describe and change client quotas and topic configs (kafka-configs.sh)"

QUOTA_KEYS = ("producer_byte_rate", "consumer_byte_rate")
CLIENT_ID = "client-id"
_ENTITY_TYPES = ("clients", "topics", "users", "brokers", "broker-loggers", "ips")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_bootstrap_argument(parser)
    actions = parser.add_mutually_exclusive_group(required=True)
    actions.add_argument("--describe", action="store_true", help="show the configs of an entity")
    actions.add_argument(
        "--alter", action="store_true", help="change configs: --add-config and/or --delete-config"
    )
    parser.add_argument(
        "--entity-type", choices=_ENTITY_TYPES, help="clients (quotas per client id) or topics"
    )
    parser.add_argument("--entity-name", help="the client id or topic name")
    parser.add_argument(
        "--entity-default",
        action="store_true",
        help="the default entity: the quota of every client id without its own",
    )
    parser.add_argument(
        "--client",
        metavar="CLIENT_ID",
        help="short for --entity-type clients --entity-name CLIENT_ID",
    )
    parser.add_argument("--topic", help="short for --entity-type topics --entity-name TOPIC")
    parser.add_argument(
        "--add-config",
        metavar="K=V,K=V",
        help="configs to set, e.g. 'producer_byte_rate=1048576,"
        "consumer_byte_rate=2097152' or 'retention.ms=60000'",
    )
    parser.add_argument(
        "--delete-config",
        metavar="K,K",
        help="configs to remove (a topic's go back to the broker default)",
    )


def _entity(args: argparse.Namespace) -> tuple[str, str | None]:
    """(entity type, name or None for the default/all). Raises UsageError."""
    entity_type, name = args.entity_type, args.entity_name
    for short, kind in ((args.client, "clients"), (args.topic, "topics")):
        if short is not None:
            if entity_type not in (None, kind) or name is not None:
                raise UsageError(
                    f"--{kind[:-1]} cannot be combined with --entity-type/"
                    "--entity-name; use one form"
                )
            entity_type, name = kind, short
    if entity_type is None:
        raise UsageError(
            "say which entity: --entity-type clients --entity-name X "
            "(or --entity-default), or --entity-type topics --entity-name T"
        )
    if entity_type in ("users", "ips"):
        raise UsageError(
            f"labkit has quotas per client id only: use --entity-type clients (not {entity_type})"
        )
    if entity_type in ("brokers", "broker-loggers"):
        raise UsageError(
            "labkit's broker configs are set when it starts: labkit broker --config key=value"
        )
    if args.entity_default:
        if entity_type != "clients":
            raise UsageError("--entity-default is for --entity-type clients")
        if name is not None:
            raise UsageError("give either --entity-name or --entity-default, not both")
    elif args.alter and name is None:
        raise UsageError(
            f"--alter needs --entity-name (or --entity-default for clients) "
            f"with --entity-type {entity_type}"
        )
    return entity_type, name


def parse_add_config(text: str) -> dict[str, str]:
    """Kafka's ``'k1=v1,k2=[a,b],k3=v3'`` -> dict (commas inside [] stay). Raises UsageError."""
    items, depth, current = [], 0, ""
    for ch in text:
        if ch == "," and depth == 0:
            items.append(current)
            current = ""
            continue
        depth += {"[": 1, "]": -1}.get(ch, 0)
        current += ch
    items.append(current)
    out: dict[str, str] = {}
    for item in items:
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(
                f"--add-config {item!r}: write key=value, "
                "e.g. --add-config 'producer_byte_rate=1048576'"
            )
        out[key.strip()] = value.strip().strip("[]")
    if not out:
        raise UsageError("--add-config is empty; e.g. --add-config 'producer_byte_rate=1048576'")
    return out


def parse_delete_config(text: str) -> list[str]:
    keys = [k.strip() for k in text.split(",") if k.strip()]
    if not keys:
        raise UsageError("--delete-config is empty; e.g. --delete-config 'producer_byte_rate'")
    return keys


def quota_ops(add: dict[str, str], delete: list[str]) -> dict[str, float | None]:
    """Checked quota changes for ``alter_client_quotas``. Raises UsageError."""
    ops: dict[str, float | None] = {}
    for key in [*add, *delete]:
        if key not in QUOTA_KEYS:
            raise UsageError(
                f"unknown client quota {key!r}; labkit has "
                f"{', '.join(QUOTA_KEYS)} (bytes per second)"
            )
    for key, value in add.items():
        try:
            number = float(value)
        except ValueError:
            raise UsageError(
                f"{key}={value!r}: a quota is a number of bytes per second, e.g. 1048576"
            ) from None
        ops[key] = int(number) if number.is_integer() else number
    for key in delete:
        ops[key] = None
    return ops


def entity_words(name: str | None) -> str:
    return "the default client-id" if name is None else f"client-id '{name}'"


def describe_lines(entries: list[dict]) -> list[str]:
    """Kafka's text for client quotas: one line per entity."""
    lines = []
    for entry in entries:
        values = ", ".join(f"{k}={float(v)}" for k, v in sorted(entry["values"].items()))
        lines.append(
            f"Quota configs for {entity_words(entry['entity'].get(CLIENT_ID))} are {values}"
        )
    return lines


def alter_line(entity_type: str, name: str | None) -> str:
    if name is None:
        return f"Completed updating default config for {entity_type} in the cluster."
    return f"Completed updating config for {entity_type[:-1]} {name}."


def run(args: argparse.Namespace) -> int:
    entity_type, name = _entity(args)
    if args.describe and (args.add_config or args.delete_config):
        raise UsageError("--add-config/--delete-config go with --alter, not --describe")
    if args.alter and not (args.add_config or args.delete_config):
        raise UsageError("--alter needs --add-config 'k=v' and/or --delete-config 'k'")
    add = parse_add_config(args.add_config) if args.add_config else {}
    delete = parse_delete_config(args.delete_config) if args.delete_config else []
    from labkit import KafkaAdminClient

    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap_servers(args.bootstrap_server), client_id="labkit-configs"
    )
    try:
        if entity_type == "clients":
            return _clients(admin, args, name, add, delete)
        return _topics(admin, args, name, add, delete)
    finally:
        admin.close()


def _clients(
    admin: Any, args: argparse.Namespace, name: str | None, add: dict[str, str], delete: list[str]
) -> int:
    if args.alter:
        ops = quota_ops(add, delete)
        admin.alter_client_quotas([{"entity": {CLIENT_ID: name}, "ops": ops}])
        print(alter_line("clients", name))
        return 0
    if args.entity_default:
        components = [{"entity_type": CLIENT_ID, "match_type": 1}]
    elif name is not None:
        components = [{"entity_type": CLIENT_ID, "match_type": 0, "match": name}]
    else:
        components = None  # every client id, and the default
    entries = admin.describe_client_quotas(components)
    for line in describe_lines(entries):
        print(line)
    if not entries and name is not None:
        print(f"Quota configs for {entity_words(name)} are (none: no quota, not throttled)")
    return 0


def _topics(
    admin: Any, args: argparse.Namespace, name: str | None, add: dict[str, str], delete: list[str]
) -> int:
    from labkit import ConfigResource, ConfigResourceType

    if args.alter:
        changes: dict[str, str | None] = dict(add)
        changes.update({key: None for key in delete})
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, configs=changes)])
        print(alter_line("topics", name))
        return 0
    names = [name] if name is not None else sorted(admin.list_topics())
    answer = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
    for topic in names:
        entries = answer.get("topic", {}).get(topic, {})
        print(f"Dynamic configs for topic {topic} are:")
        for key, entry in sorted(entries.items()):
            if not entry.get("is_default") and entry.get("value") is not None:
                value = entry["value"]
                print(
                    f"  {key}={value} sensitive=false "
                    f"synonyms={{DYNAMIC_TOPIC_CONFIG:{key}={value}}}"
                )
    return 0
