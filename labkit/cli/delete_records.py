"""``labkit delete-records`` (``kafka-delete-records.sh``): delete a partition's oldest records.

As Kafka's DeleteRecordsCommand: ``--bootstrap-server`` and ``--offset-json-file F``
whose JSON is ``{"partitions": [{"topic": "t", "partition": 0, "offset": 3}],
"version": 1}``; records below each offset go (``-1``: all of them, up to the high
watermark). The output is Kafka's::

    Executing records delete operation
    Records delete operation completed:
    partition: t-0	low_watermark: 3

and ``partition: t-0	error: ...`` for a partition that failed (then the exit code is 1;
Kafka's tool exits 0). ``parse_offset_json`` is pure, for tests; the deleting is
``KafkaAdminClient.delete_records``, one call per partition so each gets its own line.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from labkit.cli._common import (
    CommandError,
    add_bootstrap_argument,
    bootstrap_servers,
    build_client,
    client_kwargs,
    read_properties_file,
    run_reporting,
)
from labkit.errors import KafkaError

NAME = "delete-records"
HELP = "delete the records of partitions below an offset (kafka-delete-records.sh)"

FORMAT_HINT = (
    'The file\'s format: {"partitions": [{"topic": "foo", "partition": 1, "offset": 1}], '
    '"version": 1} (offset -1 deletes every record so far).'
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_bootstrap_argument(parser)
    parser.add_argument(
        "--offset-json-file",
        required=True,
        metavar="FILE",
        help="REQUIRED: the JSON file with an offset per partition. " + FORMAT_HINT,
    )
    parser.add_argument(
        "--command-config",
        metavar="FILE",
        help="a properties file of admin client settings (client.id=..., request.timeout.ms=...)",
    )


def parse_offset_json(text: str) -> list[tuple[str, int, int]]:
    """``[(topic, partition, offset)]`` in file order. Raises CommandError (Kafka's words)."""
    try:
        data = json.loads(text)
    except ValueError:
        raise CommandError("The input string is not a valid JSON", FORMAT_HINT) from None
    if not isinstance(data, dict):
        raise CommandError("The input string is not a valid JSON object", FORMAT_HINT)
    version = data.get("version", 1)
    if version != 1:
        raise CommandError(f"Not supported version field value {version}", FORMAT_HINT)
    partitions = data.get("partitions")
    if not isinstance(partitions, list):
        raise CommandError("Missing partitions field", FORMAT_HINT)
    out: list[tuple[str, int, int]] = []
    for entry in partitions:
        topic = entry.get("topic") if isinstance(entry, dict) else None
        partition = entry.get("partition") if isinstance(entry, dict) else None
        offset = entry.get("offset") if isinstance(entry, dict) else None
        if not isinstance(topic, str) or type(partition) is not int or type(offset) is not int:
            raise CommandError(
                f"each partition needs a string topic and integer partition and offset, "
                f"got {entry!r}",
                FORMAT_HINT,
            )
        out.append((topic, partition, offset))
    duplicates = sorted({f"{t}-{p}" for t, p, _ in out if sum(x[:2] == (t, p) for x in out) > 1})
    if duplicates:
        raise CommandError(
            "Offset json file contains duplicate topic partitions: " + ",".join(duplicates),
            "Give each partition once.",
        )
    return out


def delete(admin: Any, wanted: list[tuple[str, int, int]], out: TextIO) -> bool:
    """Delete and print Kafka's lines; True when every partition succeeded."""
    from labkit import TopicPartition

    print("Executing records delete operation", file=out)
    lines, ok = [], True
    for topic, partition, offset in wanted:
        tp = TopicPartition(topic, partition)
        try:
            low = admin.delete_records({tp: offset})[tp]["low_watermark"]
            lines.append(f"partition: {topic}-{partition}\tlow_watermark: {low}")
        except KafkaError as exc:
            ok = False
            text = " ".join(str(exc.args[0] if exc.args else exc.description).split())
            lines.append(f"partition: {topic}-{partition}\terror: {type(exc).__name__}: {text}")
    print("Records delete operation completed:", file=out)
    for line in lines:
        print(line, file=out)
    return ok


def run(
    args: argparse.Namespace,
    admin: Any = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    out = out or sys.stdout
    failed = False

    def act() -> None:
        nonlocal admin, failed
        try:
            with open(args.offset_json_file, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            raise CommandError(
                f"cannot read {args.offset_json_file}: {exc.strerror}", FORMAT_HINT
            ) from None
        wanted = parse_offset_json(text)
        if admin is None:
            from labkit import KafkaAdminClient

            config = {
                "client_id": "labkit-delete-records",
                **client_kwargs(
                    read_properties_file(args.command_config, "--command-config"),
                    "--command-config",
                ),
                "bootstrap_servers": bootstrap_servers(args.bootstrap_server),
            }
            admin = build_client(KafkaAdminClient, config, "--command-config")
            try:
                failed = not delete(admin, wanted, out)
            finally:
                admin.close()
        else:
            failed = not delete(admin, wanted, out)

    code = run_reporting(act, prefix="Error: ", out=out, err=err)
    return code or (1 if failed else 0)
