"""``labkit connect``: run Apache Kafka's Connect worker with connectors, no classpath.

    labkit connect --file-source transactions.jsonl:transactions --file-sink alerts:alerts.txt
    labkit connect my-connector.properties              # any connector config Kafka reads
    labkit connect --distributed --file-source tx.jsonl:transactions

The worker runs until Ctrl-C (a clean stop: its offsets are committed). A standalone
worker keeps source offsets in ``<work dir>/connect.offsets``, so starting it again on
the same work directory goes on where it stopped. The jars come from ``make
kafka-connect`` (labkit.ecosystem.connect says which).
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from pathlib import Path

from labkit.cli._common import UsageError

NAME = "connect"
HELP = "run Kafka Connect (Apache Kafka's worker) with file or other connectors"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bootstrap-server",
        default="localhost:9092",
        help="the broker's Kafka address (default localhost:9092)",
    )
    parser.add_argument(
        "connector_files",
        nargs="*",
        metavar="CONNECTOR.properties",
        help="connector configs (name=, connector.class=, ...)",
    )
    parser.add_argument(
        "--file-source",
        action="append",
        default=[],
        metavar="FILE:TOPIC",
        help="FileStreamSource: each new line of FILE becomes a record of TOPIC",
    )
    parser.add_argument(
        "--file-sink",
        action="append",
        default=[],
        metavar="TOPIC:FILE",
        help="FileStreamSink: each record of TOPIC becomes a line of FILE",
    )
    parser.add_argument(
        "--work-dir",
        default="connect-data",
        help="worker files and the standalone offsets (default ./connect-data)",
    )
    parser.add_argument(
        "--distributed",
        action="store_true",
        help="one distributed worker: configs, offsets and statuses in compacted topics",
    )
    parser.add_argument("--group-id", default="labkit-connect", help="distributed worker group")
    parser.add_argument(
        "--rest-port", type=int, default=8083, help="the worker's REST API port (default 8083)"
    )


def _pair(text: str, flag: str, first: str, second: str) -> tuple[str, str]:
    left, sep, right = text.rpartition(":") if flag == "--file-source" else text.partition(":")
    if not sep or not left or not right:
        raise UsageError(f"{flag} takes {first}:{second}, not {text!r}")
    return left, right


def connectors(args: argparse.Namespace) -> list[dict[str, str]]:
    from labkit.ecosystem.connect import file_sink, file_source, read_properties

    found: list[dict[str, str]] = []
    for text in args.file_source:
        path, topic = _pair(text, "--file-source", "FILE", "TOPIC")
        found.append(file_source(f"file-source-{topic}", path, topic))
    for text in args.file_sink:
        topic, path = _pair(text, "--file-sink", "TOPIC", "FILE")
        found.append(file_sink(f"file-sink-{topic}", topic, path))
    for name in args.connector_files:
        try:
            found.append(read_properties(name))
        except (OSError, ValueError) as exc:
            raise UsageError(str(exc)) from None
    names = [c["name"] for c in found]
    if len(set(names)) != len(names):
        raise UsageError(f"two connectors have one name: {sorted(names)}")
    if not found and not args.distributed:
        raise UsageError(
            "name a connector: --file-source FILE:TOPIC, --file-sink TOPIC:FILE "
            "or a CONNECTOR.properties file"
        )
    return found


def _unreachable(bootstrap: str) -> str | None:
    """Why no broker answers at ``bootstrap`` (its first address), or None."""
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    try:
        with socket.create_connection((host or "localhost", int(port)), timeout=3):
            return None
    except (OSError, ValueError) as exc:
        return f"{exc.__class__.__name__}: {exc}"


def run(args: argparse.Namespace) -> int:
    from labkit.ecosystem.connect import ConnectMissing, ConnectWorker

    # Without this, the worker waits a minute for a broker and then prints a Java trace.
    problem = _unreachable(args.bootstrap_server)
    if problem:
        print(
            f"labkit connect: error: no Kafka broker answers at {args.bootstrap_server} "
            f"({problem}); start one (labkit broker) or pass --bootstrap-server HOST:PORT",
            file=sys.stderr,
        )
        return 1
    worker = ConnectWorker(
        args.bootstrap_server,
        Path(args.work_dir),
        connectors(args),
        mode="distributed" if args.distributed else "standalone",
        group_id=args.group_id,
        rest_port=args.rest_port,
    )
    try:
        worker.start()
    except ConnectMissing as exc:
        print(f"labkit connect: error: {exc}", file=sys.stderr)
        return 1
    except RuntimeError as exc:
        print(f"labkit connect: error: {exc}", file=sys.stderr)
        return 1
    names = ", ".join(c["name"] for c in worker.connectors) or "none yet"
    print(
        f"Kafka Connect ({worker.mode}) on {args.bootstrap_server}: connectors {names} RUNNING; "
        f"REST API {worker.rest_url}; log {worker.log_file}. Ctrl-C stops it.",
        flush=True,
    )
    try:
        while worker.proc is not None and worker.proc.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("stopping the worker (offsets are committed)...", file=sys.stderr, flush=True)
    finally:
        code = worker.proc.poll() if worker.proc is not None else 0
        worker.stop()
    if code:
        print(
            f"labkit connect: the worker exited with {code}:\n{worker.log_tail()}", file=sys.stderr
        )
        return 1
    return 0
