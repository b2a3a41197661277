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
from labkit.broker.listeners import describe
from labkit.broker.server import BrokerServer
from labkit.errors import KafkaError

NAME = "broker"
HELP = "run the labkit broker (Kafka's protocol on its main port, labkit's on ZeroMQ)"

log = logging.getLogger("labkit.broker")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        default="localhost",
        help="address to listen on (default localhost; 0.0.0.0 for all)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=9092,
        help="the main port (default 9092): Kafka's wire protocol, for Kafka clients and "
        "tools and for labkit's own clients, which learn the ZeroMQ port there",
    )
    parser.add_argument(
        "--zmq-port",
        type=int,
        default=None,
        help="labkit's ZeroMQ protocol (default: the main port + 100, 9192; 0 = any free "
        "port; same as --config zmq.port=N)",
    )
    parser.add_argument(
        "--listeners",
        default=None,
        metavar="NAME://HOST:PORT,...",
        help="Kafka's listeners instead of --host/--port, e.g. "
        "INTERNAL://0.0.0.0:9092,EXTERNAL://0.0.0.0:19092 (PLAINTEXT only; same as "
        "--config listeners=...)",
    )
    parser.add_argument(
        "--advertised-listeners",
        default=None,
        metavar="NAME://HOST:PORT,...",
        help="what Metadata tells clients of each listener, e.g. "
        "INTERNAL://broker:9092,EXTERNAL://localhost:9092 (default: the listener's own "
        "address; same as --config advertised.listeners=...)",
    )
    parser.add_argument(
        "--kafka-port",
        type=int,
        default=None,
        help=argparse.SUPPRESS,  # before Kafka took the main port: now one more listener
    )
    parser.add_argument(
        "--broker-id",
        type=int,
        default=None,
        metavar="N",
        help="cluster mode: this broker's id, different for each broker (same as --config "
        "broker.id=N)",
    )
    parser.add_argument(
        "--zookeeper",
        default=None,
        metavar="HOST:PORT[/chroot]",
        help="cluster mode: join the brokers that ZooKeeper at HOST:PORT coordinates (same as "
        "--config zookeeper.connect=...). Brokers register, elect a controller and agree on "
        "each partition's leader; followers copy the leader's log, the ISR and high watermark "
        "are kept, acks=all waits for the ISR (min.insync.replicas). Committed group offsets "
        "are NOT replicated yet (docs/replication.md). Without it: one broker, as always",
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
        for flag, key in (
            ("kafka_port", "kafka.port"),
            ("zmq_port", "zmq.port"),
            ("listeners", "listeners"),
            ("advertised_listeners", "advertised.listeners"),
            ("broker_id", "broker.id"),
            ("zookeeper", "zookeeper.connect"),
        ):
            if getattr(args, flag) is not None:
                overrides[key] = str(getattr(args, flag))
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
    print(startup_line(server.config, "listeners" in overrides), flush=True)
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


def startup_line(config: BrokerConfig, named: bool) -> str:
    """``labkit broker listening on localhost:9092 (Kafka protocol), ZeroMQ on
    localhost:9192, data in ...``; every listener by name when several or ``named``."""
    if len(config.listeners) == 1 and not named:
        kafka = f"{config.host}:{config.port} (Kafka protocol)"
        if config.listeners[0].explicit:
            kafka = f"{config.host}:{config.port} (Kafka protocol, advertised as "
            kafka += f"{config.advertised_host}:{config.advertised_port})"
    else:
        kafka = ", ".join(describe(item, item.port) for item in config.listeners)
    return (
        f"labkit broker listening on {kafka}, ZeroMQ on {config.host}:{config.zmq_port}, "
        f"data in {Path(config.data_dir).resolve()}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="labkit broker", description=HELP)
    add_arguments(parser)
    return run(parser.parse_args(argv))
