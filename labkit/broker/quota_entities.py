"""The configured client quotas as data: entity names, quota values, ``quotas.json``.

Theory of operation
-------------------
A quota belongs to a client id (``{"client-id": "X"}``) or to the default entity
(``{"client-id": null}``, kept as ``None``); each has a value per key
(``producer_byte_rate``, ``consumer_byte_rate``): a whole number of bytes per
second, at least 1 (``check_quota_value``). ``entity_name`` and ``apply_ops`` check
what an AlterClientQuotas request sends and raise INVALID_REQUEST (42) saying what
is allowed; ``printable`` makes an entity safe to echo in a JSON reply.

``quotas.json`` holds the table: ``{"version": 1, "clients": {id: {key: value}},
"default": {key: value}}``, rewritten atomically (``log.recovery.write_atomically``)
by ``QuotaRound.run`` on the broker's flusher thread, from a snapshot the loop
thread took (a table is never changed in place, so the snapshot needs no lock);
``read_entities`` reads it at start and refuses a damaged file with a message
saying how to fix it. Pure functions and one record: ``ClientQuotas``
(broker/quotas.py) keeps the state.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labkit.errors import InvalidConfigurationError, InvalidRequestError
from labkit.log.recovery import write_atomically

PRODUCER_BYTE_RATE = "producer_byte_rate"
CONSUMER_BYTE_RATE = "consumer_byte_rate"
QUOTA_KEYS = (PRODUCER_BYTE_RATE, CONSUMER_BYTE_RATE)
CLIENT_ID = "client-id"  # Kafka's entity type name on the wire (the CLI says "clients")
MAX_QUOTA = 2**63 - 1  # Kafka's Long.MAX_VALUE: "no limit"
MAX_CLIENT_ID_CHARS = 255  # longer ids are measured by their first 255 characters


@dataclass
class QuotaRound:
    """One write of quotas.json: a snapshot of the table (broker/quotas.py, "Persistence")."""

    path: Path
    version: int
    entities: dict[str | None, dict[str, float]]
    error: Exception | None = None

    def run(self) -> None:
        """Flusher thread: write the snapshot; a failure is recorded, never raised."""
        try:
            write_entities(self.path, self.entities)
        except OSError as exc:
            self.error = exc


def printable(value: Any) -> Any:
    """``value`` if a reply can carry it as JSON text, else its ``ascii()`` form."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError, UnicodeEncodeError):
        return ascii(value)
    return value


def check_entity_type(entity_type: object) -> None:
    if entity_type != CLIENT_ID:
        raise InvalidRequestError(
            f"labkit has client quotas per client id only (entity type {CLIENT_ID!r}, "
            f"--entity-type clients), not {entity_type!r}"
        )


def entity_name(entity: object) -> str | None:
    """``{"client-id": "X"}`` -> "X"; ``{"client-id": null}`` (the default) -> None."""
    if not isinstance(entity, dict) or len(entity) != 1:
        raise InvalidRequestError(
            "entity must be {'client-id': name} or {'client-id': null} for the default"
        )
    ((entity_type, name),) = entity.items()
    check_entity_type(entity_type)
    if name is None:
        return None
    if not isinstance(name, str) or len(name) > MAX_CLIENT_ID_CHARS:
        raise InvalidRequestError(
            f"a client id must be text of at most {MAX_CLIENT_ID_CHARS} characters, got {name!r}"
        )
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequestError("a client id must be valid UTF-8 text") from None
    return name


def apply_ops(values: dict[str, float], ops: object) -> dict[str, float]:
    if not isinstance(ops, list):
        raise InvalidRequestError("field 'ops' must be a list of {key, value, remove}")
    for op in ops:
        if not isinstance(op, dict):
            raise InvalidRequestError("each op must be an object {key, value, remove}")
        key = op.get("key")
        if key not in QUOTA_KEYS:
            raise InvalidRequestError(f"unknown quota {key!r}; labkit has {', '.join(QUOTA_KEYS)}")
        if op.get("remove", False) is True:
            values.pop(key, None)
            continue
        values[key] = check_quota_value(key, op.get("value"))
    return values


def check_quota_value(key: str, value: object) -> float:
    """A byte rate is a whole number of bytes per second, at least 1."""
    if isinstance(value, int) and not isinstance(value, bool):
        if 1 <= value <= MAX_QUOTA:
            return float(value)
    # a float must be whole too; huge ints would overflow float math, so ints first
    elif (
        isinstance(value, float)
        and math.isfinite(value)
        and value.is_integer()
        and 1 <= value <= MAX_QUOTA
    ):
        return value
    raise InvalidRequestError(
        f"{key}={value!r}: a quota is a whole number of bytes per "
        "second, at least 1 (e.g. 1048576 for 1 MiB/s)"
    )


def read_entities(path: Path) -> dict[str | None, dict[str, float]]:
    """The client quotas in ``path`` by client id (None: the default entity)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    try:
        body = json.loads(raw)
        entities: dict[str | None, dict[str, float]] = {}
        for name, values in body["clients"].items():
            entities[name] = {
                k: check_quota_value(k, v) for k, v in values.items() if k in QUOTA_KEYS
            }
        if body.get("default"):
            entities[None] = {
                k: check_quota_value(k, v) for k, v in body["default"].items() if k in QUOTA_KEYS
            }
    except (ValueError, TypeError, KeyError, AttributeError, InvalidRequestError) as exc:
        raise InvalidConfigurationError(
            f"{path} is damaged ({exc}); fix or remove it (removing it forgets every client quota)"
        ) from None
    return {name: values for name, values in entities.items() if values}


def write_entities(path: Path, entities: dict[str | None, dict[str, float]]) -> None:
    clients = {name: values for name, values in entities.items() if name is not None}
    body = json.dumps(
        {"version": 1, "clients": clients, "default": entities.get(None, {})},
        indent=1,
        sort_keys=True,
    ).encode("utf-8")
    write_atomically(path, body)
