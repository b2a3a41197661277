"""The ``labkit`` command and the ``kafka-*.sh`` aliases.

Theory of operation: ``COMMANDS`` lists every subcommand as (name, module path,
one-line help). A command's module is imported only when that command runs, so
``labkit --help`` stays fast and never imports Jupyter. A command module exports
``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``.

``run_command`` is the one place that turns failures into what a student sees:
a Kafka error escaping a command is one line on stderr and exit code 1 (no
traceback); Ctrl-C exits quietly with 130, like Kafka's own tools; a command that
needs an optional package (Jupyter for ``lab``) names the package to install.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import sys
from dataclasses import dataclass
from types import ModuleType

from labkit import __version__
from labkit.cli._common import UsageError
from labkit.errors import KafkaError


@dataclass(frozen=True)
class Command:
    name: str
    module: str
    help: str


COMMANDS: tuple[Command, ...] = (
    Command(
        "broker",
        "labkit.cli.broker_cmd",
        "run the broker (default localhost:9092, ZeroMQ on 9192, data in ./data)",
    ),
    Command(
        "topics",
        "labkit.cli.topics",
        "create, list, describe, alter and delete topics (kafka-topics.sh)",
    ),
    Command(
        "console-producer",
        "labkit.cli.console_producer",
        "send one record per line of input to a topic (kafka-console-producer.sh)",
    ),
    Command(
        "console-consumer",
        "labkit.cli.console_consumer",
        "print the records of a topic (kafka-console-consumer.sh)",
    ),
    Command(
        "consumer-groups",
        "labkit.cli.consumer_groups",
        "list, describe and reset consumer groups (kafka-consumer-groups.sh)",
    ),
    Command(
        "delete-records",
        "labkit.cli.delete_records",
        "delete the records of partitions below an offset (kafka-delete-records.sh)",
    ),
    Command(
        "configs",
        "labkit.cli.configs",
        "describe and change client quotas and topic configs (kafka-configs.sh)",
    ),
    Command(
        "kafka-bin",
        "labkit.cli.kafka_bin_cmd",
        "make ~/kafka/bin hold the kafka-*.sh tools (for `kafka/bin/kafka-topics.sh ...`)",
    ),
    Command(
        "generate",
        "labkit.cli.generate_cmd",
        "stream generated events (transactions, sensors) to a topic",
    ),
    Command(
        "notebooks",
        "labkit.cli.notebooks_cmd",
        "build: write student notebooks from instructor masters; check: exit 1 if any is stale",
    ),
    Command("grade", "labkit.cli.grade_cmd", "grade notebooks and print the score"),
    Command(
        "doctor",
        "labkit.cli.doctor_cmd",
        "check this machine and the broker connection, suggest fixes",
    ),
    Command(
        "connect",
        "labkit.cli.connect_cmd",
        "run Kafka Connect (Apache Kafka's worker) with file or other connectors",
    ),
    Command("init", "labkit.cli.init_cmd", "copy the notebook series into a folder of your own"),
    Command("lab", "labkit.cli.lab_cmd", "start a broker and JupyterLab together"),
)

_BY_NAME = {command.name: command for command in COMMANDS}

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CommandUnavailable(Exception):
    """A package the command needs (an optional dependency) is not installed."""


def find_command(name: str) -> Command | None:
    return _BY_NAME.get(name)


def load_command(command: Command) -> ModuleType:
    """Import a command's module. Raises CommandUnavailable naming a missing optional package.

    A module of labkit itself that is missing is a broken install, not a user error: its
    ``ModuleNotFoundError`` propagates (tests/unit/test_cli_main.py imports every command).
    """
    try:
        return importlib.import_module(command.module)
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if not top or top == "labkit" or command.module.startswith(f"{exc.name}."):
            raise
        raise CommandUnavailable(
            f"the '{command.name}' command needs the Python package '{top}', which is not installed. "
            "Install the lab extras: pip install 'labkit-streaming[lab]' "
            "(in a labkit checkout: make venv)."
        ) from exc


def build_parser(module: ModuleType, prog: str) -> argparse.ArgumentParser:
    help_text = getattr(module, "HELP", None)
    parser = argparse.ArgumentParser(prog=prog, description=help_text)
    module.add_arguments(parser)
    return parser


def _error_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or exc.__class__.__name__


def run_command(name: str, argv: list[str], prog: str | None = None) -> int:
    """Parse ``argv`` for command ``name`` and run it; returns the process exit code."""
    command = find_command(name)
    prog = prog or "labkit " + name
    if command is None:
        print(f"labkit: unknown command '{name}'.", file=sys.stderr)
        return EXIT_USAGE
    try:
        module = load_command(command)
    except CommandUnavailable as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    parser = build_parser(module, prog)
    try:
        args = parser.parse_args(argv)
        return int(module.run(args) or 0)
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        print(f"Run `{prog} --help` to see the options.", file=sys.stderr)
        return EXIT_USAGE
    except KafkaError as exc:
        print(f"{prog}: error: {_error_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_OK


def _silence_stdout() -> None:
    # The reader went away (e.g. `| head`); stop Python complaining at exit.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _top_parser() -> argparse.ArgumentParser:
    width = max(len(command.name) for command in COMMANDS)
    listing = "\n".join(f"  {c.name:<{width}}  {c.help}" for c in COMMANDS)
    parser = argparse.ArgumentParser(
        prog="labkit",
        usage="labkit [-h] [--version] <command> [options]",
        description="labkit: a hands-on lab for event streaming with Kafka's model.",
        epilog=f"commands:\n{listing}\n\nRun `labkit <command> --help` for a command's options."
        "\nThe Kafka tool names work too: kafka-topics.sh, kafka-console-producer.sh,"
        "\nkafka-console-consumer.sh, kafka-consumer-groups.sh, kafka-configs.sh,"
        "\nkafka-delete-records.sh.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"labkit {__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``labkit <command> [options]``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-"):
        parser = _top_parser()
        parser.parse_args(argv)  # --help / --version exit here; anything else is an error
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    name, rest = argv[0], argv[1:]
    if find_command(name) is None:
        names = [c.name for c in COMMANDS]
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        print(
            f"labkit: unknown command '{name}'.{hint} Commands: {', '.join(names)}.",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return run_command(name, rest)


def topics_main(argv: list[str] | None = None) -> int:
    """``kafka-topics.sh``."""
    return run_command("topics", _argv(argv), prog="kafka-topics.sh")


def console_producer_main(argv: list[str] | None = None) -> int:
    """``kafka-console-producer.sh``."""
    return run_command("console-producer", _argv(argv), prog="kafka-console-producer.sh")


def console_consumer_main(argv: list[str] | None = None) -> int:
    """``kafka-console-consumer.sh``."""
    return run_command("console-consumer", _argv(argv), prog="kafka-console-consumer.sh")


def consumer_groups_main(argv: list[str] | None = None) -> int:
    """``kafka-consumer-groups.sh``."""
    return run_command("consumer-groups", _argv(argv), prog="kafka-consumer-groups.sh")


def delete_records_main(argv: list[str] | None = None) -> int:
    """``kafka-delete-records.sh``."""
    return run_command("delete-records", _argv(argv), prog="kafka-delete-records.sh")


def configs_main(argv: list[str] | None = None) -> int:
    """``kafka-configs.sh``."""
    return run_command("configs", _argv(argv), prog="kafka-configs.sh")


def _argv(argv: list[str] | None) -> list[str]:
    return list(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
