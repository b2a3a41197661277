"""Client quotas, as Kafka has them: ``producer_byte_rate`` and ``consumer_byte_rate``.

Theory of operation
-------------------
**Entities.** A quota belongs to a client id (Kafka's ``--entity-type clients
--entity-name X``) or to the default entity (``--entity-default``, stored as
``None``). For each quota key separately, a client gets its own client id's value,
else the default's, else no quota. Each client id is measured on its own, also
under the default quota (the default is a per-client bound, not a shared one).
Off by default: with no quota configured nothing is measured.

**Measure (Kafka's ``Rate`` over a ``SampledStat``).** Per (key, client id) a
``Rate`` keeps at most ``quota.window.num`` samples (11), each open for
``quota.window.size.seconds`` (1 s) after the record that started it. Samples
older than the full window (11 s) are forgotten. The rate is the sum of the
samples over the time since the oldest one started, but never over less than
``num - 1`` windows (10 s): so a client's first request does not look like a
huge rate, and a new client may send up to ~10 s worth of its quota at once, as
in Kafka.

**Throttle (KIP-13/KIP-219's formula).** After recording a request's bytes
(produce: the record batches received; fetch: the record batches returned), if
the rate is above the quota the throttle time is
``(rate - quota) / quota * window``: how long the client must stay silent for
the rate to fall back to the quota (labkit bounds it to 30 s). The reply carries
it as ``throttle_time_ms`` and the connection is muted that long
(``broker/throttle.py``); nothing is dropped: the records are appended (produce)
or read (fetch) as usual.

**Persistence.** ``quotas.json`` in the data directory (next to
``topics.json``), rewritten atomically (temp file, fsync, rename, fsync of the
directory) on every change, read at start.

**Threads.** Used only by the broker's loop thread; not thread-safe.
"""

from __future__ import annotations

import json
import math
import os
from collections import deque
from pathlib import Path
from typing import Any

from labkit.errors import InvalidConfigurationError, InvalidRequestError
from labkit.log.recovery import fsync_dir

PRODUCER_BYTE_RATE = "producer_byte_rate"
CONSUMER_BYTE_RATE = "consumer_byte_rate"
QUOTA_KEYS = (PRODUCER_BYTE_RATE, CONSUMER_BYTE_RATE)
QUOTA_APIS = frozenset(
    {"describe_client_quotas", "alter_client_quotas", "describe_client_throttles"}
)
CLIENT_ID = "client-id"  # Kafka's entity type name on the wire (the CLI says "clients")
QUOTAS_FILE = "quotas.json"

DEFAULT_WINDOW_NUM = 11  # quota.window.num
DEFAULT_WINDOW_SIZE_S = 1  # quota.window.size.seconds
MAX_QUOTA = 2**63 - 1  # Kafka's Long.MAX_VALUE: "no limit"
MAX_THROTTLE_MS = 30_000  # a client is never told to stay silent longer
MAX_CLIENT_ID_CHARS = 255  # longer ids are measured by their first 255 characters
MAX_SENSORS = 10_000  # measured client ids; beyond, new ids share one sensor
MAX_ENTITIES = 10_000  # client ids with a quota of their own
OVERFLOW_ID = "<other clients>"
MATCH_EXACT, MATCH_DEFAULT, MATCH_ANY = 0, 1, 2  # DescribeClientQuotas match types


class Rate:
    """Bytes per second over a window of samples (Kafka's ``Rate``/``SampledStat``)."""

    __slots__ = ("_num", "_size", "_samples")

    def __init__(self, num: int = DEFAULT_WINDOW_NUM, size_s: float = DEFAULT_WINDOW_SIZE_S):
        self._num = num
        self._size = size_s
        self._samples: deque[list[float]] = deque()  # [start, total], oldest first

    def record(self, value: float, now: float) -> None:
        samples = self._samples
        if not samples or now - samples[-1][0] >= self._size:
            samples.append([now, 0.0])
            if len(samples) > self._num:
                samples.popleft()
        samples[-1][1] += value

    def _purge(self, now: float) -> None:
        expire = self._num * self._size
        samples = self._samples
        while samples and now - samples[0][0] >= expire:
            samples.popleft()

    def window_s(self, now: float) -> float:
        """Seconds the rate is measured over: since the oldest sample, at least
        ``num - 1`` windows."""
        self._purge(now)
        elapsed = now - self._samples[0][0] if self._samples else 0.0
        full = int(elapsed // self._size)
        if full < self._num - 1:
            elapsed += (self._num - 1 - full) * self._size
        return elapsed

    def measure(self, now: float) -> float:
        window = self.window_s(now)
        return sum(s[1] for s in self._samples) / window

    def idle_since(self) -> float:
        return self._samples[-1][0] if self._samples else -math.inf


def throttle_ms(rate: float, quota: float, window_s: float, max_ms: int) -> int:
    """Kafka's throttle time: ``(rate - quota) / quota * window``, in whole ms, 0..max_ms."""
    if rate <= quota:
        return 0
    return min(max_ms, round((rate - quota) / quota * window_s * 1000.0))


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
            self._entities = _read(self._path)

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
            _check_entity_type(comp.get("entity_type"))
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
            entity = _printable(raw)  # echoed in the reply
            try:
                name = _entity_name(raw)
                new_values = _apply_ops(dict(entities.get(name, {})), entry.get("ops"))
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
        if self._path is not None:
            _write(self._path, entities)  # an OSError leaves the quotas as they were
        self._entities = entities
        return out


def _printable(value: Any) -> Any:
    """``value`` if a reply can carry it as JSON text, else its ``ascii()`` form."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError, UnicodeEncodeError):
        return ascii(value)
    return value


def _check_entity_type(entity_type: object) -> None:
    if entity_type != CLIENT_ID:
        raise InvalidRequestError(
            f"labkit has client quotas per client id only (entity type {CLIENT_ID!r}, "
            f"--entity-type clients), not {entity_type!r}"
        )


def _entity_name(entity: object) -> str | None:
    """``{"client-id": "X"}`` -> "X"; ``{"client-id": null}`` (the default) -> None."""
    if not isinstance(entity, dict) or len(entity) != 1:
        raise InvalidRequestError(
            "entity must be {'client-id': name} or {'client-id': null} for the default"
        )
    ((entity_type, name),) = entity.items()
    _check_entity_type(entity_type)
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


def _apply_ops(values: dict[str, float], ops: object) -> dict[str, float]:
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
        good = 1 <= value <= MAX_QUOTA
    else:  # a float must be whole too; huge ints would overflow float math, so ints first
        good = (
            isinstance(value, float)
            and math.isfinite(value)
            and value.is_integer()
            and 1 <= value <= MAX_QUOTA
        )
    if not good:
        raise InvalidRequestError(
            f"{key}={value!r}: a quota is a whole number of bytes per "
            "second, at least 1 (e.g. 1048576 for 1 MiB/s)"
        )
    return float(value)  # type: ignore[arg-type]  # an int or a float: checked above


def _read(path: Path) -> dict[str | None, dict[str, float]]:
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


def _write(path: Path, entities: dict[str | None, dict[str, float]]) -> None:
    clients = {name: values for name, values in entities.items() if name is not None}
    body = json.dumps(
        {"version": 1, "clients": clients, "default": entities.get(None, {})},
        indent=1,
        sort_keys=True,
    ).encode("utf-8")
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(body)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
