"""Helpers shared by the console tools: flags every tool has, ``key=value`` options.

Kafka's tools take client settings as Java property names (``--producer-property
acks=all``, ``--consumer-property fetch.max.wait.ms=100``); the labkit client takes
kafka-python's keyword names (``acks='all'``, ``fetch_max_wait_ms=100``).
``client_kwargs`` translates one into the other so course commands work as written.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from typing import Any, TextIO

from labkit._address import BOOTSTRAP_ENV, DEFAULT_BOOTSTRAP, bootstrap_list
from labkit.errors import KafkaConfigurationError, KafkaError


class UsageError(Exception):
    """Bad command-line input: printed as one line with a hint, exit code 2."""


class CommandError(Exception):
    """A tool's failure as Kafka's tool words it, plus a hint line saying what to do; exit 1."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


def kafka_error_text(exc: KafkaError) -> str:
    """The error's own message (Kafka's tools print it without the class name), on one line."""
    if exc.args:
        text = " ".join(str(exc.args[0]).split())
    else:
        text = getattr(exc, "description", None) or ""
    return text or exc.__class__.__name__


def run_reporting(
    action: Callable[[], None],
    *,
    prefix: str,
    out: TextIO | None = None,
    err: TextIO | None = None,
    error_on_stdout: bool = False,
) -> int:
    """Run ``action``; a CommandError or Kafka error becomes ``prefix`` + one line (and the
    hint) and exit code 1, after what was already printed to ``out``. The error line goes
    where the Kafka tool puts it (``kafka-topics.sh``: stdout, most others: stderr); the
    hint, labkit's own addition, always goes to stderr."""
    out, err = out or sys.stdout, err or sys.stderr
    where = out if error_on_stdout else err
    try:
        action()
    except CommandError as exc:
        print(prefix + str(exc), file=where)
        out.flush()
        if exc.hint:
            print(exc.hint, file=err)
        return 1
    except KafkaError as exc:
        print(prefix + kafka_error_text(exc), file=where)
        out.flush()
        return 1
    return 0


def default_bootstrap() -> str:
    """``$LABKIT_BOOTSTRAP`` when set, else ``localhost:9092`` (the client's default too)."""
    return ",".join(bootstrap_list())


def add_bootstrap_argument(parser: argparse.ArgumentParser, *, broker_list: bool = False) -> None:
    """Add ``--bootstrap-server`` (and the old ``--broker-list`` spelling if asked)."""
    flags = ["--bootstrap-server"]
    if broker_list:
        flags.append("--broker-list")
    parser.add_argument(
        *flags,
        dest="bootstrap_server",
        metavar="HOST:PORT",
        default=None,
        help="the broker to connect to, e.g. localhost:9092; several may be given "
        f"comma-separated (default: ${BOOTSTRAP_ENV} or {DEFAULT_BOOTSTRAP})",
    )


def bootstrap_servers(value: str | None) -> list[str]:
    """The ``--bootstrap-server`` value as kafka-python's list of ``host:port`` strings."""
    if value is not None and value.strip(" ,") == "":
        raise UsageError("--bootstrap-server is empty; give host:port, e.g. localhost:9092")
    return bootstrap_list(value)


def parse_key_values(items: list[str] | None, flag: str) -> dict[str, str]:
    """``["a=1", "b=x=y"]`` -> ``{"a": "1", "b": "x=y"}`` (later repeats win).

    Raises UsageError for an item without ``=`` or with an empty key.
    """
    result: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(
                f"{flag} expects key=value, got {item!r} (for example: {flag} print.key=true)"
            )
        result[key] = value
    return result


def parse_bool(value: str) -> bool:
    """Kafka's rule for boolean properties: ``true`` in any case is true, anything else false."""
    return value.strip().lower() == "true"


_INT = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(\d+\.\d*|\.\d+)$")


def _coerce(value: str) -> object:
    text = value.strip()
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if _INT.match(text):
        return int(text)
    if _FLOAT.match(text):
        return float(text)
    return text


def acks_value(value: str) -> int | str:
    """Kafka's ``acks`` spellings (``all``, ``-1``, ``0``, ``1``) -> kafka-python's (``'all'``, 0, 1)."""
    text = value.strip().lower()
    if text in ("all", "-1"):
        return "all"
    if text in ("0", "1"):
        return int(text)
    raise UsageError(f"acks must be 0, 1, all or -1, got {value!r}")


def client_kwargs(props: dict[str, str], flag: str) -> dict[str, object]:
    """Java-style client properties -> kafka-python keyword arguments.

    ``linger.ms=5`` -> ``linger_ms=5``; numbers and true/false become int/float/bool;
    ``acks`` accepts ``all``/``-1``/``0``/``1``. ``bootstrap.servers`` becomes a list.
    Raises UsageError for an ``acks`` value Kafka would also reject.
    """
    kwargs: dict[str, object] = {}
    for key, value in props.items():
        name = key.strip().replace(".", "_").replace("-", "_")
        if not name.isidentifier():
            raise UsageError(f"{flag}: {key!r} is not a client setting name")
        if name == "acks":
            kwargs[name] = acks_value(value)
        elif name == "bootstrap_servers":
            kwargs[name] = bootstrap_servers(value)
        elif name in (
            "group_id",
            "client_id",
            "auto_offset_reset",
            "compression_type",
            "isolation_level",
            "security_protocol",
        ):
            kwargs[name] = value.strip()
        else:
            kwargs[name] = _coerce(value)
    return kwargs


def read_properties_file(path: str | None, flag: str) -> dict[str, str]:
    """A Java ``.properties`` file (``key=value`` lines, ``#`` comments) as a dict.

    Raises UsageError if the file cannot be read or a line has no ``=``/``:``.
    """
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        raise UsageError(f"{flag}: cannot read {path} ({exc.strerror})") from exc
    result: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text[0] in "#!":
            continue
        match = re.match(r"^([^=:\s]+)\s*[=:]\s*(.*)$", text)
        if not match:
            raise UsageError(f"{flag}: line {number} of {path} is not key=value: {line!r}")
        result[match.group(1)] = match.group(2)
    return result


def decode_text(data: bytes | None, null: str = "null") -> str:
    """Bytes as UTF-8 text for printing (U+FFFD for invalid bytes); None as ``null``."""
    if data is None:
        return null
    if isinstance(data, str):
        return data
    return bytes(data).decode("utf-8", errors="replace")


def build_client(factory: Any, config: dict[str, Any], flags: str) -> Any:
    """``factory(**config)``; a rejected setting is re-raised naming the flags it came from.

    Raises KafkaConfigurationError (and whatever ``factory`` raises, e.g. NoBrokersAvailable).
    """
    try:
        return factory(**config)
    except KafkaConfigurationError as exc:
        detail = " ".join(str(exc.args[0] if exc.args else exc).split())
        raise KafkaConfigurationError(
            f"{detail} Settings given with {flags} use Kafka's names (linger.ms, "
            "fetch.max.wait.ms, ...), which labkit turns into kafka-python's "
            "(linger_ms, fetch_max_wait_ms); check that the name exists for this client."
        ) from None
