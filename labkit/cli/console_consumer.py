"""``labkit console-consumer`` (``kafka-console-consumer.sh``): print a topic's records.

Theory of operation: one KafkaConsumer polls in a loop and each record is written
to stdout by ``format_record``, which reproduces Kafka's DefaultMessageFormatter
(``CreateTime:1700000000000<sep>Partition:0<sep>Offset:5<sep>key<sep>value``, the
separator being ``key.separator``, tab by default). The loop ends after
``--max-messages``, after ``--timeout-ms`` with no record, or on Ctrl-C; in every
case "Processed a total of N messages" goes to stderr, as Kafka's tool does.

Without ``--group`` the consumer has no group (``group_id=None``): it reads every
partition of the topic and commits nothing, like Kafka's throwaway console group.
Time for ``--timeout-ms`` comes from an injected clock.

Size: ~460 lines: one console tool with Kafka's formatter properties; the record loop and
the formatting are kept together so the output follows Kafka's ConsoleConsumer line for
line.
"""

from __future__ import annotations

import argparse
import select
import sys
from dataclasses import dataclass
from typing import Any, TextIO

from labkit._clock import REAL_CLOCK, Clock
from labkit.cli._common import (
    UsageError,
    add_bootstrap_argument,
    bootstrap_servers,
    build_client,
    client_kwargs,
    decode_text,
    parse_bool,
    parse_key_values,
    read_properties_file,
)

NAME = "console-consumer"
HELP = "print the records of a topic (kafka-console-consumer.sh)"

POLL_MS = 200
TIMESTAMP_TYPES = {0: "CreateTime", 1: "LogAppendTime"}
# Properties of Kafka's DefaultMessageFormatter that are read but have no effect here.
IGNORED_PROPERTIES = frozenset({"key.deserializer", "value.deserializer", "headers.deserializer"})
DEFAULT_FORMATTERS = frozenset(
    {
        "kafka.tools.DefaultMessageFormatter",
        "org.apache.kafka.tools.consumer.DefaultMessageFormatter",
    }
)


@dataclass(frozen=True)
class FormatOptions:
    """What each printed line holds: Kafka's ``--property`` names, with Kafka's defaults."""

    print_timestamp: bool = False
    print_key: bool = False
    print_offset: bool = False
    print_partition: bool = False
    print_headers: bool = False
    print_value: bool = True
    key_separator: str = "\t"
    line_separator: str = "\n"
    headers_separator: str = ","
    null_literal: str = "null"


_BOOL_PROPS = {
    "print.timestamp": "print_timestamp",
    "print.key": "print_key",
    "print.offset": "print_offset",
    "print.partition": "print_partition",
    "print.headers": "print_headers",
    "print.value": "print_value",
}
_TEXT_PROPS = {
    "key.separator": "key_separator",
    "line.separator": "line_separator",
    "headers.separator": "headers_separator",
    "null.literal": "null_literal",
}


def format_options(props: dict[str, str]) -> tuple[FormatOptions, list[str]]:
    """``--property`` values -> (FormatOptions, names that are not formatter properties)."""
    values: dict[str, Any] = {}
    unknown: list[str] = []
    for key, value in props.items():
        if key in _BOOL_PROPS:
            values[_BOOL_PROPS[key]] = parse_bool(value)
        elif key in _TEXT_PROPS:
            values[_TEXT_PROPS[key]] = value
        elif key not in IGNORED_PROPERTIES:
            unknown.append(key)
    return FormatOptions(**values), unknown


def _timestamp_text(record: Any) -> str:
    kind = TIMESTAMP_TYPES.get(getattr(record, "timestamp_type", None))
    timestamp = getattr(record, "timestamp", None)
    if kind is None or timestamp is None or timestamp < 0:
        return "NO_TIMESTAMP"
    return f"{kind}:{timestamp}"


def _headers_text(record: Any, opts: FormatOptions) -> str:
    headers = getattr(record, "headers", None) or []
    if not headers:
        return "NO_HEADERS"
    return opts.headers_separator.join(
        f"{decode_text(key, opts.null_literal)}:{decode_text(value, opts.null_literal)}"
        for key, value in headers
    )


def format_record(record: Any, opts: FormatOptions) -> str:
    """One record as Kafka's DefaultMessageFormatter prints it (line separator included).

    Fields in Kafka's order: timestamp, partition, offset, headers, key, value; each
    followed by ``key.separator``, the last one by ``line.separator``. Bytes are shown
    as UTF-8 (U+FFFD for invalid bytes); a null key or value as ``null.literal``.
    """
    fields: list[str] = []
    if opts.print_timestamp:
        fields.append(_timestamp_text(record))
    if opts.print_partition:
        fields.append(f"Partition:{record.partition}")
    if opts.print_offset:
        fields.append(f"Offset:{record.offset}")
    if opts.print_headers:
        fields.append(_headers_text(record, opts))
    if opts.print_key:
        fields.append(decode_text(record.key, opts.null_literal))
    if opts.print_value:
        fields.append(decode_text(record.value, opts.null_literal))
    if not fields:
        return ""
    return opts.key_separator.join(fields) + opts.line_separator


def processed_line(count: int) -> str:
    """Kafka's closing line (Kafka says "1 messages" too)."""
    return f"Processed a total of {count} messages"


# -- arguments -----------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--topic", help="the topic to read")
    parser.add_argument(
        "--include",
        "--whitelist",
        dest="include",
        metavar="REGEX",
        help="read every topic whose name matches this regular expression",
    )
    add_bootstrap_argument(parser)
    parser.add_argument(
        "--from-beginning",
        action="store_true",
        help="start at the oldest record instead of waiting for new ones",
    )
    parser.add_argument(
        "--max-messages", type=int, default=None, metavar="N", help="exit after printing N records"
    )
    parser.add_argument(
        "--timeout-ms",
        type=int,
        default=None,
        metavar="MS",
        help="exit when no record arrives for this many milliseconds",
    )
    parser.add_argument(
        "--partition", type=int, default=None, metavar="P", help="read only this partition"
    )
    parser.add_argument(
        "--offset",
        default=None,
        metavar="earliest|latest|N",
        help="with --partition: where to start (default latest)",
    )
    parser.add_argument(
        "--group",
        default=None,
        metavar="GROUP",
        help="consume as a member of this consumer group (commits offsets)",
    )
    parser.add_argument(
        "--property",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="formatter setting: print.key, print.partition, print.offset, "
        "print.timestamp, print.headers, print.value, key.separator, "
        "line.separator, headers.separator, null.literal (repeatable)",
    )
    parser.add_argument(
        "--consumer-property",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="consumer setting with Kafka's name, e.g. fetch.max.wait.ms=100 (repeatable)",
    )
    parser.add_argument(
        "--consumer.config",
        dest="consumer_config",
        metavar="FILE",
        help="a properties file of consumer settings",
    )
    parser.add_argument(
        "--formatter",
        default=None,
        metavar="CLASS",
        help="accepted for compatibility; labkit always uses DefaultMessageFormatter",
    )
    parser.add_argument(
        "--skip-message-on-error",
        action="store_true",
        help="accepted for compatibility (labkit prints every record)",
    )


@dataclass(frozen=True)
class StartPosition:
    """Where an assigned partition starts: 'earliest', 'latest' or an offset."""

    kind: str
    offset: int | None = None


def parse_offset(text: str | None, from_beginning: bool) -> StartPosition:
    """``--offset`` as Kafka reads it. Raises UsageError for anything else."""
    if text is None:
        return StartPosition("earliest" if from_beginning else "latest")
    value = text.strip().lower()
    if value in ("earliest", "latest"):
        return StartPosition(value)
    if value.isdigit():
        return StartPosition("offset", int(value))
    raise UsageError(
        f"--offset must be 'earliest', 'latest' or a non-negative number, got {text!r}"
    )


def validate(args: argparse.Namespace) -> None:
    """Kafka's rules for combining the options. Raises UsageError."""
    if not args.topic and not args.include:
        raise UsageError("--topic is required (or --include REGEX), e.g. --topic rta")
    if args.topic and args.include:
        raise UsageError("give either --topic or --include, not both")
    if args.offset is not None and args.partition is None:
        raise UsageError("the partition is required when offset is specified (add --partition 0)")
    if args.offset is not None and args.from_beginning:
        raise UsageError("options from-beginning and offset cannot be specified together")
    if args.partition is not None and args.group:
        raise UsageError("options group and partition cannot be specified together")
    if args.partition is not None and args.include:
        raise UsageError("--partition needs --topic, not --include")
    if args.partition is not None and args.partition < 0:
        raise UsageError("--partition must be 0 or more")
    if args.max_messages is not None and args.max_messages < 0:
        raise UsageError("--max-messages must be 0 or more")
    if args.timeout_ms is not None and args.timeout_ms < 0:
        raise UsageError("--timeout-ms must be 0 or more")


def consumer_config(args: argparse.Namespace) -> dict[str, Any]:
    """KafkaConsumer keyword arguments for these options. Raises UsageError on conflicts."""
    props = read_properties_file(args.consumer_config, "--consumer.config")
    props.update(parse_key_values(args.consumer_property, "--consumer-property"))
    extra = client_kwargs(props, "--consumer-property")
    group = args.group
    if "group_id" in extra:
        if group and extra["group_id"] != group:
            raise UsageError("the group ids given with --group and group.id do not match")
        group = str(extra.pop("group_id"))
    reset = "earliest" if args.from_beginning else "latest"
    if "auto_offset_reset" in extra:
        if args.from_beginning and extra["auto_offset_reset"] != "earliest":
            raise UsageError(
                "can't give --from-beginning together with "
                f"auto.offset.reset={extra['auto_offset_reset']}"
            )
        reset = str(extra.pop("auto_offset_reset"))
    config: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers(args.bootstrap_server),
        "client_id": "console-consumer",
        "group_id": group or None,
        "auto_offset_reset": reset,
        "enable_auto_commit": bool(group),
    }
    config.update(extra)
    return config


# -- running -------------------------------------------------------------------


class Progress:
    """How many records were printed so far (read by the closing line, even after Ctrl-C)."""

    def __init__(self) -> None:
        self.count = 0
        self.timed_out = False


def consume(
    consumer: Any,
    out: TextIO,
    opts: FormatOptions,
    progress: Progress,
    *,
    max_messages: int | None = None,
    timeout_ms: int | None = None,
    clock: Clock = REAL_CLOCK,
    poll_ms: int = POLL_MS,
) -> None:
    """Poll and print until ``max_messages`` records, or ``timeout_ms`` without one."""
    last_record = clock.monotonic()
    polled = False
    while max_messages is None or progress.count < max_messages:
        wait = poll_ms
        if timeout_ms is not None:
            left_ms = timeout_ms - round((clock.monotonic() - last_record) * 1000.0)
            if left_ms <= 0 and polled:
                progress.timed_out = True
                return
            wait = max(0, min(poll_ms, left_ms))
        polled = True
        room = None if max_messages is None else max_messages - progress.count
        batches = consumer.poll(timeout_ms=wait, max_records=room)
        printed = 0
        for records in batches.values():
            for record in records:
                if max_messages is not None and progress.count >= max_messages:
                    break
                progress.count += 1  # counted first: Ctrl-C right after a write still counts it
                printed += 1
                out.write(format_record(record, opts))
        if printed:
            out.flush()
            last_record = clock.monotonic()
        elif reader_gone(out):
            raise BrokenPipeError("the program reading the output has exited")


def reader_gone(stream: TextIO) -> bool:
    """True when ``stream`` is a pipe whose reader has exited (e.g. ``| head -3``).

    Without this check an idle consumer would wait forever: a closed pipe is only
    noticed on the next write. POSIX only; elsewhere always False.
    """
    if not hasattr(select, "poll"):
        return False
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(event & (select.POLLERR | select.POLLHUP) for _fd, event in poller.poll(0))


def _start(consumer: Any, args: argparse.Namespace, err: TextIO) -> None:
    from labkit import TopicPartition

    if args.include:
        consumer.subscribe(pattern=args.include)
        return
    known = consumer.topics()
    if args.partition is None:
        if args.topic not in known:
            print(
                f"Topic '{args.topic}' does not exist yet; waiting for records "
                "(producing to it creates it, or use `labkit topics --create`).",
                file=err,
            )
        consumer.subscribe([args.topic])
        return
    if args.topic not in known:
        raise UsageError(
            f"topic '{args.topic}' does not exist; create it with "
            f"`labkit topics --create --topic {args.topic}` or produce to it first"
        )
    partitions = sorted(consumer.partitions_for_topic(args.topic) or [])
    if args.partition not in partitions:
        raise UsageError(
            f"topic '{args.topic}' has no partition {args.partition} "
            f"(it has {len(partitions)}: {', '.join(map(str, partitions))})"
        )
    start = parse_offset(args.offset, args.from_beginning)
    tp = TopicPartition(args.topic, args.partition)
    consumer.assign([tp])
    if start.kind == "earliest":
        consumer.seek_to_beginning(tp)
    elif start.kind == "latest":
        consumer.seek_to_end(tp)
    else:
        consumer.seek(tp, start.offset)


def _prepare_stdout(out: TextIO) -> None:
    reconfigure = getattr(out, "reconfigure", None)
    if reconfigure is not None:
        try:
            reconfigure(errors="replace")
        except (ValueError, OSError):
            pass


def run(args: argparse.Namespace) -> int:
    validate(args)
    if args.offset is not None:
        parse_offset(args.offset, args.from_beginning)  # reject a bad --offset before connecting
    opts, unknown = format_options(parse_key_values(args.property, "--property"))
    err, out = sys.stderr, sys.stdout
    for name in unknown:
        print(
            f"WARNING: --property {name} is not a formatter property and is ignored "
            "(known: " + ", ".join(sorted([*_BOOL_PROPS, *_TEXT_PROPS])) + ").",
            file=err,
        )
    if args.formatter and args.formatter not in DEFAULT_FORMATTERS:
        print(
            f"WARNING: --formatter {args.formatter} is not supported; "
            "using DefaultMessageFormatter.",
            file=err,
        )
    config = consumer_config(args)
    _prepare_stdout(out)

    from labkit import KafkaConsumer

    consumer = build_client(KafkaConsumer, config, "--consumer-property/--consumer.config")
    try:
        _start(consumer, args, err)
    except BaseException:
        consumer.close()
        raise
    progress = Progress()
    try:
        consume(
            consumer,
            out,
            opts,
            progress,
            max_messages=args.max_messages,
            timeout_ms=args.timeout_ms,
        )
        if progress.timed_out:
            print(
                f"No message received for {args.timeout_ms} ms (--timeout-ms); stopping.", file=err
            )
    finally:
        try:
            out.flush()
        finally:
            print(processed_line(progress.count), file=err)
            err.flush()
            consumer.close()
    return 0
