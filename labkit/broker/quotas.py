"""Client quotas, as Kafka has them: ``producer_byte_rate`` and ``consumer_byte_rate``.

Theory of operation
-------------------
**Entities.** A quota belongs to a client id (Kafka's ``--entity-type clients
--entity-name X``) or to the default entity (``--entity-default``, stored as
``None``). For each quota key separately, a client gets its own client id's value,
else the default's, else no quota. Each client id is measured on its own, also
under the default quota (the default is a per-client bound, not a shared one).
Off by default: with no quota configured nothing is measured.

**Measure and throttle** (``broker/quota_rates.py``): per (key, client id) a
``Rate`` over ``quota.window.num`` samples of ``quota.window.size.seconds``;
after a request's bytes are recorded, a client over its quota gets Kafka's
throttle time, carried in the reply as ``throttle_time_ms``, and its connection
is muted that long (``broker/throttle.py``); nothing is dropped.

**Persistence.** ``quotas.json`` in the data directory (next to ``topics.json``),
read at start and written in *rounds*: a change takes effect in memory at once and
``version`` moves; ``begin_round`` (loop thread) snapshots the table,
``QuotaRound.run`` (the broker's flusher thread) writes it, ``finish_round`` (loop
thread) records what is durable. The broker sets ``deferred`` and answers an alter
only after the round that wrote it (``broker/flusher.py``), so the loop never fsyncs.
A failed write reverts the table to what the file holds, unless a later change is
waiting for the next round (which then writes both). Otherwise (``deferred`` False:
tools, tests) ``alter`` runs its round before returning and raises the OSError. The
file's format, the entity names and quota values an admin may send, and
``QuotaRound`` are in ``broker/quota_entities.py``.

**Threads.** Used only by the broker's loop thread, except ``QuotaRound.run``
(the flusher thread), which touches only its own snapshot: a table is never
changed in place, each change builds a new one.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from labkit.broker.quota_entities import (
    CLIENT_ID,
    MAX_CLIENT_ID_CHARS,
    QuotaRound,
    apply_ops,
    check_entity_type,
    entity_name,
    printable,
    read_entities,
)
from labkit.broker.quota_entities import CONSUMER_BYTE_RATE as CONSUMER_BYTE_RATE
from labkit.broker.quota_entities import PRODUCER_BYTE_RATE as PRODUCER_BYTE_RATE
from labkit.broker.quota_rates import DEFAULT_WINDOW_NUM, DEFAULT_WINDOW_SIZE_S, Rate, throttle_ms
from labkit.errors import InvalidRequestError
from labkit.protocol.messages import QUOTA_APIS as QUOTA_APIS  # the server routes these here

QUOTAS_FILE = "quotas.json"

MAX_THROTTLE_MS = 30_000  # a client is never told to stay silent longer
MAX_SENSORS = 10_000  # measured client ids; beyond, new ids share one sensor
MAX_ENTITIES = 10_000  # client ids with a quota of their own
OVERFLOW_ID = "<other clients>"
MATCH_EXACT, MATCH_DEFAULT, MATCH_ANY = 0, 1, 2  # DescribeClientQuotas match types


class _Sensor:
    __slots__ = ("rate", "last_throttle_ms", "throttled_at", "total_throttle_ms")

    def __init__(self, rate: Rate):
        self.rate = rate
        self.last_throttle_ms = 0
        self.throttled_at = -math.inf
        self.total_throttle_ms = 0


def client_id_of(header: dict) -> str:
    """The client id a request names (Kafka's request header field); "" when absent.
    Text that is not valid UTF-8 is escaped so replies that show it stay valid."""
    value = header.get("client_id")
    if not isinstance(value, str):
        return ""
    value = value[:MAX_CLIENT_ID_CHARS]
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


class ClientQuotas:
    """The configured quotas, the per-client rates, and the three quota APIs."""

    def __init__(
        self,
        data_dir: Path | None,
        window_num: int = DEFAULT_WINDOW_NUM,
        window_size_s: float = DEFAULT_WINDOW_SIZE_S,
    ):
        self._path = None if data_dir is None else Path(data_dir) / QUOTAS_FILE
        self.window_num = window_num
        self.window_size_s = window_size_s
        self.max_throttle_ms = MAX_THROTTLE_MS
        self._entities: dict[str | None, dict[str, float]] = {}
        self._sensors: dict[tuple[str, str], _Sensor] = {}
        self._next_sweep = -math.inf
        if self._path is not None:
            self._entities = read_entities(self._path)
        self.deferred = False  # the broker sets True: its flusher thread runs the rounds
        self.version = 0  # bumped by every change
        self._saved = self._entities  # what quotas.json holds
        self._saved_version = 0
        self._dirty = False  # changed since the last round began

    @property
    def pending(self) -> bool:
        """Whether a change waits for a round to begin."""
        return self._dirty

    @property
    def unsaved(self) -> bool:
        """Whether some change is not durable yet (waiting, or in a running round)."""
        return self.version != self._saved_version

    def begin_round(self) -> QuotaRound | None:
        """Loop thread: the table to write, or None when nothing changed."""
        if not self._dirty or self._path is None:
            return None
        self._dirty = False
        return QuotaRound(self._path, self.version, self._entities)

    def finish_round(self, round_: QuotaRound) -> Exception | None:
        """Loop thread: record what the round made durable; its error, if any."""
        if round_.error is None:
            self._saved, self._saved_version = round_.entities, round_.version
        elif self.version == round_.version:  # nothing newer: back to what the file holds
            self._entities, self._saved_version = self._saved, self.version
        return round_.error

    @property
    def active(self) -> bool:
        """True when any quota is configured (only then is anything measured)."""
        return bool(self._entities)

    def quota_for(self, key: str, client_id: str) -> float | None:
        own = self._entities.get(client_id)
        if own is not None and key in own:
            return own[key]
        default = self._entities.get(None)
        return None if default is None else default.get(key)

    def bound_fetch(self, header: dict) -> dict:
        """A fetch of a client with a consumer quota asks for at most what the quota
        allows over the measuring window (as Kafka bounds it), so one reply cannot
        carry many seconds' worth at once. At least one batch is still returned."""
        quota = self.quota_for(CONSUMER_BYTE_RATE, client_id_of(header))
        if quota is None:
            return header
        cap = max(1, int(quota * (self.window_num - 1) * self.window_size_s))
        max_bytes = header.get("max_bytes")
        if type(max_bytes) is int and max_bytes <= cap:
            return header
        return {**header, "max_bytes": cap}

    # -- measuring ---------------------------------------------------------------

    def record(self, key: str, client_id: str, nbytes: int, now: float) -> int:
        """Count ``nbytes`` for a client; return how long to hold its reply (ms)."""
        quota = self.quota_for(key, client_id)
        if quota is None:
            return 0
        sensor = self._sensor(key, client_id, now)
        sensor.rate.record(nbytes, now)
        rate = sensor.rate.measure(now)
        delay = throttle_ms(rate, quota, sensor.rate.window_s(now), self.max_throttle_ms)
        if delay:
            sensor.last_throttle_ms = delay
            sensor.throttled_at = now
            sensor.total_throttle_ms += delay
        return delay

    def _sensor(self, key: str, client_id: str, now: float) -> _Sensor:
        sensor = self._sensors.get((key, client_id))
        if sensor is not None:
            return sensor
        if now >= self._next_sweep or len(self._sensors) >= MAX_SENSORS:
            self._sweep(now)
        if len(self._sensors) >= MAX_SENSORS:
            client_id = OVERFLOW_ID  # a flood of client ids is measured as one
            sensor = self._sensors.get((key, client_id))
            if sensor is not None:
                return sensor
        sensor = self._sensors[(key, client_id)] = _Sensor(
            Rate(self.window_num, self.window_size_s)
        )
        return sensor

    def _sweep(self, now: float) -> None:
        """Forget clients silent for a full window: their rate would be 0 anyway."""
        full = self.window_num * self.window_size_s
        self._next_sweep = now + full
        idle = [
            k
            for k, s in self._sensors.items()
            if now - s.rate.idle_since() >= full and now - s.throttled_at >= full
        ]
        for k in idle:
            del self._sensors[k]

    def throttles(self, now: float) -> list[dict[str, Any]]:
        """Clients throttled within the last full window, most recent first."""
        full = self.window_num * self.window_size_s
        rows = []
        for (key, client_id), sensor in self._sensors.items():
            ago = now - sensor.throttled_at
            if ago >= full:
                continue
            quota = self.quota_for(key, client_id)
            rows.append(
                {
                    "client_id": client_id,
                    "quota_type": key,
                    "byte_rate": round(sensor.rate.measure(now), 1),
                    "quota": quota,
                    "throttle_time_ms": sensor.last_throttle_ms,
                    "throttled_ago_ms": int(ago * 1000),
                }
            )
        rows.sort(key=lambda r: (r["throttled_ago_ms"], r["client_id"], r["quota_type"]))
        return rows

    # -- the APIs ------------------------------------------------------------------

    def handle(self, api: str, header: dict, now: float) -> dict[str, Any]:
        """Answer one quota API request. Raises KafkaError (the server turns it into
        an error reply)."""
        if api == "describe_client_quotas":
            return {
                "error": 0,
                "entries": self.describe(
                    header.get("components"), header.get("strict", False) is True
                ),
            }
        if api == "alter_client_quotas":
            entries = header.get("entries")
            if not isinstance(entries, list):
                raise InvalidRequestError(
                    "field 'entries' must be a list of {'entity': ..., 'ops': [...]}"
                )
            return {
                "error": 0,
                "entries": self.alter(entries, header.get("validate_only", False) is True),
            }
        return {
            "error": 0,
            "window_ms": int(self.window_num * self.window_size_s * 1000),
            "clients": self.throttles(now),
        }

    def describe(self, components: Any = None, strict: bool = False) -> list[dict[str, Any]]:
        """Kafka's DescribeClientQuotas over client-id entities."""
        if components is None:
            components = []
        if not isinstance(components, list):
            raise InvalidRequestError("field 'components' must be a list of filters")
        wanted: tuple[str, str | None] | None = None  # None = any entity
        for comp in components:
            if not isinstance(comp, dict):
                raise InvalidRequestError(
                    "each component must be an object with entity_type, match_type and match"
                )
            check_entity_type(comp.get("entity_type"))
            match_type = comp.get("match_type", MATCH_ANY)
            if match_type == MATCH_EXACT:
                match = comp.get("match")
                if not isinstance(match, str):
                    raise InvalidRequestError("match_type 0 (exact) needs a client id in 'match'")
                wanted = ("exact", match)
            elif match_type == MATCH_DEFAULT:
                wanted = ("default", None)
            elif match_type == MATCH_ANY:
                wanted = ("any", None)
            else:
                raise InvalidRequestError(
                    f"match_type must be 0 (exact), 1 (default) or "
                    f"2 (any client id), got {match_type!r}"
                )
        out = []
        for name, values in sorted(
            self._entities.items(), key=lambda item: (item[0] is not None, item[0] or "")
        ):
            if wanted is not None:
                kind, match = wanted
                if (
                    (kind == "exact" and name != match)
                    or (kind == "default" and name is not None)
                    or (kind == "any" and name is None)
                ):
                    continue
            out.append({"entity": {CLIENT_ID: name}, "values": dict(values)})
        return out

    def alter(self, entries: list, validate_only: bool = False) -> list[dict[str, Any]]:
        """Kafka's AlterClientQuotas: per entity, set or remove keys. Each entity
        succeeds or fails on its own; the file is rewritten once."""
        out = []
        entities = dict(self._entities)
        for entry in entries:
            raw = entry.get("entity") if isinstance(entry, dict) else None
            entity = printable(raw)  # echoed in the reply
            try:
                name = entity_name(raw)
                new_values = apply_ops(dict(entities.get(name, {})), entry.get("ops"))
                if (
                    new_values
                    and name is not None
                    and name not in entities
                    and len(entities) >= MAX_ENTITIES
                ):
                    raise InvalidRequestError(
                        f"already {MAX_ENTITIES} client ids have quotas of their own; remove "
                        "some, or set one for all with --entity-default"
                    )
                if new_values:
                    entities[name] = new_values
                else:
                    entities.pop(name, None)
                out.append({"entity": entity, "error": 0, "message": None})
            except InvalidRequestError as exc:
                out.append(
                    {
                        "entity": entity,
                        "error": InvalidRequestError.errno,
                        "message": str(exc.args[0]),
                    }
                )
        if validate_only or entities == self._entities:
            return out
        self._entities = entities
        self.version += 1
        if self._path is None:
            self._saved_version = self.version  # nothing to write
        else:
            self._dirty = True
            self._run_inline()
        return out

    def _run_inline(self) -> None:
        """Without a flusher: write now; an OSError leaves the quotas as they were."""
        if self.deferred:
            return
        round_ = self.begin_round()
        if round_ is not None:
            round_.run()
            error = self.finish_round(round_)
            if error is not None:
                raise error
