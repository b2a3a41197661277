"""``labkit console-producer`` (``kafka-console-producer.sh``): one record per input line.

Theory of operation: lines are read from stdin as bytes (so any encoding passes
through untouched; a trailing ``\\n`` or ``\\r\\n`` is removed) and each becomes one
record. ``parse_line`` is Kafka's LineMessageReader: with ``parse.key=true`` the text
before the first ``key.separator`` is the key; a line without the separator is
reported on stderr and skipped (Kafka's tool would stop; skipping lets a student
fix the next line). A ``>`` prompt is shown only when stdin is a terminal. At end
of input (Ctrl-D, Ctrl-Z on Windows, end of a pipe) or Ctrl-C the producer is
flushed, so nothing typed is lost. Delivery failures are reported per record.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any, BinaryIO, TextIO

from labkit.cli._common import (
    UsageError,
    acks_value,
    add_bootstrap_argument,
    bootstrap_servers,
    build_client,
    client_kwargs,
    parse_bool,
    parse_key_values,
    read_properties_file,
)
from labkit.errors import KafkaError

NAME = "console-producer"
HELP = "send one record per line of input to a topic (kafka-console-producer.sh)"

PROMPT = ">"
READER_PROPERTIES = ("parse.key", "key.separator", "ignore.error", "null.marker")


@dataclass(frozen=True)
class ReaderOptions:
    """Kafka's LineMessageReader properties."""

    parse_key: bool = False
    key_separator: bytes = b"\t"
    ignore_error: bool = False
    null_marker: bytes | None = None


class LineError(ValueError):
    """A line that cannot become a record (no key separator with parse.key=true)."""


def reader_options(props: dict[str, str]) -> tuple[ReaderOptions, list[str]]:
    """``--property`` values -> (ReaderOptions, names that are not reader properties)."""
    values: dict[str, Any] = {}
    unknown: list[str] = []
    for key, value in props.items():
        if key == "parse.key":
            values["parse_key"] = parse_bool(value)
        elif key == "ignore.error":
            values["ignore_error"] = parse_bool(value)
        elif key == "key.separator":
            if not value:
                raise UsageError(
                    "key.separator must not be empty (e.g. --property key.separator=:)"
                )
            values["key_separator"] = value.encode("utf-8")
        elif key == "null.marker":
            values["null_marker"] = value.encode("utf-8") if value else None
        else:
            unknown.append(key)
    return ReaderOptions(**values), unknown


def strip_newline(raw: bytes) -> bytes:
    """A line without its ``\\n`` / ``\\r\\n`` ending (Java's readLine does the same)."""
    if raw.endswith(b"\n"):
        raw = raw[:-1]
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    return raw


def parse_line(line: bytes, number: int, opts: ReaderOptions) -> tuple[bytes | None, bytes | None]:
    """One input line (without its newline) -> (key, value).

    Raises LineError when ``parse.key`` is on and the separator is missing (unless
    ``ignore.error=true``, which sends the whole line as the value with no key).
    A key or value equal to ``null.marker`` becomes None (a null key / tombstone).
    """
    key: bytes | None = None
    value: bytes | None = line
    if opts.parse_key:
        head, sep, tail = line.partition(opts.key_separator)
        if sep:
            key, value = head, tail
        elif not opts.ignore_error:
            shown = line.decode("utf-8", errors="replace")
            separator = opts.key_separator.decode("utf-8", errors="replace")
            raise LineError(
                f"No key separator found on line number {number}: '{shown}' "
                f"(with parse.key=true write key{separator}value, e.g. jan{separator}45; "
                "this line was not sent)"
            )
    if opts.null_marker is not None:
        if key == opts.null_marker:
            key = None
        if value == opts.null_marker:
            value = None
    return key, value


# -- arguments -----------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--topic", help="the topic to send to (created on first send if missing)")
    add_bootstrap_argument(parser, broker_list=True)
    parser.add_argument(
        "--property",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="line reader setting: parse.key=true, key.separator=:, "
        "ignore.error=true, null.marker=TEXT (repeatable)",
    )
    parser.add_argument(
        "--producer-property",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="producer setting with Kafka's name, e.g. acks=all, linger.ms=5 (repeatable)",
    )
    parser.add_argument(
        "--producer.config",
        dest="producer_config",
        metavar="FILE",
        help="a properties file of producer settings",
    )
    parser.add_argument(
        "--request-required-acks",
        default=None,
        metavar="ACKS",
        help="acks for each request: 0, 1, all or -1 (default: the producer's, 1)",
    )
    parser.add_argument(
        "--sync",
        action="store_true",
        help="wait for each record to be acknowledged before reading the next line",
    )
    parser.add_argument(
        "--timeout",
        type=int,
        default=None,
        metavar="MS",
        help="linger.ms: how long to wait to fill a batch",
    )
    parser.add_argument(
        "--batch-size", type=int, default=None, metavar="N", help="batch.size in bytes"
    )
    parser.add_argument(
        "--request-timeout-ms", type=int, default=None, metavar="MS", help="request.timeout.ms"
    )
    parser.add_argument("--max-block-ms", type=int, default=None, metavar="MS", help="max.block.ms")
    parser.add_argument(
        "--compression-codec",
        default=None,
        metavar="CODEC",
        help="compression.type (none unless your labkit supports others)",
    )


def producer_config(args: argparse.Namespace) -> dict[str, Any]:
    """KafkaProducer keyword arguments for these options. Raises UsageError."""
    props = read_properties_file(args.producer_config, "--producer.config")
    props.update(parse_key_values(args.producer_property, "--producer-property"))
    extra = client_kwargs(props, "--producer-property")
    config: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers(args.bootstrap_server),
        "client_id": "console-producer",
    }
    if args.request_required_acks is not None:
        config["acks"] = acks_value(args.request_required_acks)
    for flag, name in (
        ("timeout", "linger_ms"),
        ("batch_size", "batch_size"),
        ("request_timeout_ms", "request_timeout_ms"),
        ("max_block_ms", "max_block_ms"),
    ):
        value = getattr(args, flag)
        if value is not None:
            if value < 0:
                raise UsageError(f"--{flag.replace('_', '-')} must be 0 or more")
            config[name] = value
    if args.compression_codec and args.compression_codec.lower() != "none":
        config["compression_type"] = args.compression_codec.lower()
    config.update(extra)
    return config


# -- running -------------------------------------------------------------------


class Delivery:
    """Counts records sent, acknowledged and failed; reports failures like Kafka."""

    def __init__(self, topic: str, err: TextIO) -> None:
        self.topic = topic
        self.err = err
        self.sent = 0
        self.failed = 0
        self.rejected = 0

    def on_error(self, key: bytes | None, value: bytes | None):
        def errback(exc: BaseException) -> None:
            self.failed += 1
            key_text = "null" if key is None else f"{len(key)} bytes"
            value_text = "null" if value is None else f"{len(value)} bytes"
            print(
                f"ERROR Error when sending message to topic {self.topic} with key: {key_text}, "
                f"value: {value_text} with error: {exc}",
                file=self.err,
                flush=True,
            )

        return errback


def produce_lines(
    producer: Any,
    topic: str,
    stdin: BinaryIO,
    opts: ReaderOptions,
    delivery: Delivery,
    *,
    prompt: TextIO | None = None,
    sync: bool = False,
) -> None:
    """Send one record per line of ``stdin`` until end of input."""
    number = 0
    while True:
        if prompt is not None:
            prompt.write(PROMPT)
            prompt.flush()
        raw = stdin.readline()
        if not raw:
            if prompt is not None:
                prompt.write("\n")
                prompt.flush()
            return
        number += 1
        try:
            key, value = parse_line(strip_newline(raw), number, opts)
        except LineError as exc:
            delivery.rejected += 1
            print(f"ERROR {exc}", file=delivery.err, flush=True)
            continue
        future = producer.send(topic, value=value, key=key)
        delivery.sent += 1
        future.add_errback(delivery.on_error(key, value))
        if sync:
            try:
                future.get()
            except KafkaError:
                pass  # already reported by the errback


def run(args: argparse.Namespace) -> int:
    if not args.topic:
        raise UsageError("--topic is required, e.g. --topic rta")
    opts, unknown = reader_options(parse_key_values(args.property, "--property"))
    err = sys.stderr
    for name in unknown:
        print(
            f"WARNING: --property {name} is not a line reader property and is ignored "
            f"(known: {', '.join(READER_PROPERTIES)}).",
            file=err,
        )
    config = producer_config(args)

    from labkit import KafkaProducer

    producer = build_client(KafkaProducer, config, "--producer-property/--producer.config")
    delivery = Delivery(args.topic, err)
    interactive = sys.stdin.isatty()
    interrupted = False
    try:
        produce_lines(
            producer,
            args.topic,
            sys.stdin.buffer,
            opts,
            delivery,
            prompt=sys.stdout if interactive else None,
            sync=args.sync,
        )
    except KeyboardInterrupt:
        interrupted = True
        if interactive:
            print(file=sys.stdout)
    finally:
        producer.flush()
        producer.close()
    problems = delivery.failed + delivery.rejected
    if problems:
        print(
            f"{problems} of {delivery.sent + delivery.rejected} lines were not delivered "
            "(see the errors above).",
            file=err,
        )
    if interrupted:
        return 130
    return 1 if problems else 0
