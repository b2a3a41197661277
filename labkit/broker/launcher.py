"""``labkit broker`` / ``python -m labkit.broker``: flags, logging, signals, exit codes.

At start the soft open-file limit is raised to the hard one (broker/descriptors.py).
Exit codes: 0 after a clean shutdown (SIGINT/SIGTERM), 2 when the broker cannot
start (port taken, data directory in use, bad ``--config``), 1 on a crash.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from labkit.broker.config import BrokerConfig, parse_config_flags
from labkit.broker.descriptors import raise_open_file_limit
from labkit.broker.server import BrokerServer
from labkit.errors import KafkaError

NAME = "broker"
HELP = "run the labkit broker (Kafka-like, on ZeroMQ)"

log = logging.getLogger("labkit.broker")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        default="localhost",
        help="address to listen on (default localhost; 0.0.0.0 for all)",
    )
    parser.add_argument("--port", type=int, default=9092, help="TCP port (default 9092)")
    parser.add_argument(
        "--kafka-port",
        type=int,
        default=None,
        help="also speak Kafka's wire protocol on this TCP port, for Kafka clients and "
        "tools (default: off; same as --config kafka.port=N)",
    )
    parser.add_argument(
        "--data-dir", default="./data", help="directory for topic data (default ./data)"
    )
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="broker setting with Kafka's name, e.g. num.partitions=3 or "
        "log.retention.ms=60000 (repeatable)",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="how much the broker logs to stderr (default INFO)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the broker until SIGINT/SIGTERM. Returns the process exit code."""
    logging.basicConfig(
        level=getattr(logging, args.log_level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    raised = raise_open_file_limit()
    if raised is not None:
        log.info(
            "raised the open-file limit from %d to %d (partitions and connections each hold one)",
            *raised,
        )
    try:
        overrides = parse_config_flags(args.config)
        if args.kafka_port is not None:
            overrides["kafka.port"] = str(args.kafka_port)
        config = BrokerConfig.build(args.host, args.port, args.data_dir, overrides)
        server = BrokerServer(config)
        server.start()
    except KafkaError as exc:
        text = exc.args[0] if exc.args else str(exc)
        print(f"labkit broker: {text}", file=sys.stderr, flush=True)
        return 2
    except OSError as exc:
        print(
            f"labkit broker: cannot use data directory {args.data_dir}: {exc.strerror or exc}",
            file=sys.stderr,
            flush=True,
        )
        return 2

    def _stop(signum, _frame):
        log.info("received %s, shutting down", signal.Signals(signum).name)
        server.request_stop()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    kafka = server.config.kafka_port
    print(
        f"labkit broker listening on {server.config.host}:{server.config.port}, "
        + (f"Kafka protocol on {server.config.host}:{kafka}, " if kafka is not None else "")
        + f"data in {Path(config.data_dir).resolve()}",
        flush=True,
    )
    try:
        server.serve_forever()
    except Exception:  # last resort: say what happened, exit non-zero
        log.exception("the broker stopped because of an unexpected error")
        return 1
    stats = server.stats
    log.info(
        "broker stopped cleanly (%d requests, %d malformed messages dropped, "
        "%d acks=all produces made durable in %d fsync rounds)",
        stats["requests"],
        stats["dropped"],
        stats["synced_produces"],
        stats["fsync_rounds"],
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="labkit broker", description=HELP)
    add_arguments(parser)
    return run(parser.parse_args(argv))
