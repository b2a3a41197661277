"""Client quotas: Kafka's windowed rate, the throttle formula, entities, persistence,
and the connection mute (broker/quotas.py, quota_rates.py, throttle.py). Pure, with
FakeClock."""

from __future__ import annotations

import json

import pytest

from labkit.broker import quotas as quotas_module
from labkit.broker.quota_rates import Rate, throttle_ms
from labkit.broker.quotas import (
    CONSUMER_BYTE_RATE,
    MAX_SENSORS,
    OVERFLOW_ID,
    PRODUCER_BYTE_RATE,
    QUOTAS_FILE,
    ClientQuotas,
    client_id_of,
)
from labkit.broker.throttle import ThrottleGate
from labkit.errors import InvalidConfigurationError, InvalidRequestError
from labkit.testing import FakeClock

KB = 1000


def _set(quotas: ClientQuotas, client: str | None, **values) -> list[dict]:
    ops = [
        {"key": k, "remove": True} if v is None else {"key": k, "value": v}
        for k, v in values.items()
    ]
    return quotas.alter([{"entity": {"client-id": client}, "ops": ops}])


# -- the rate -------------------------------------------------------------------------


def test_a_new_rate_is_measured_over_at_least_num_minus_one_windows():
    clock = FakeClock()
    rate = Rate(11, 1)
    rate.record(100 * KB, clock.monotonic())
    # Kafka: a first request must not look like a huge rate -> 10 s at least
    assert rate.window_s(clock.monotonic()) == pytest.approx(10.0)
    assert rate.measure(clock.monotonic()) == pytest.approx(10 * KB)
    clock.advance(10.5)
    assert rate.window_s(clock.monotonic()) == pytest.approx(10.5)


def test_samples_older_than_the_full_window_are_forgotten():
    clock = FakeClock()
    rate = Rate(11, 1)
    rate.record(1000 * KB, clock.monotonic())
    clock.advance(5)
    rate.record(10 * KB, clock.monotonic())
    clock.advance(6.5)  # the first sample is 11.5 s old: gone
    # the oldest left is 6.5 s old: 6 full windows, padded to 10 -> 10.5 s
    assert rate.measure(clock.monotonic()) == pytest.approx(10 * KB / 10.5)


def test_throttle_time_is_kafkas_formula():
    # (observed - quota) / quota * window: 150 KB/s against 100 KB/s over 10 s -> 5 s
    assert throttle_ms(150 * KB, 100 * KB, 10.0, 30_000) == 5000
    assert throttle_ms(100 * KB, 100 * KB, 10.0, 30_000) == 0
    assert throttle_ms(10_000 * KB, 100 * KB, 10.0, 30_000) == 30_000  # bounded


# -- entities ---------------------------------------------------------------------------


def test_off_by_default_nothing_is_measured():
    clock = FakeClock()
    quotas = ClientQuotas(None)
    assert not quotas.active
    assert quotas.record(PRODUCER_BYTE_RATE, "x", 10**9, clock.monotonic()) == 0
    assert quotas.throttles(clock.monotonic()) == []


def test_a_client_ids_own_quota_wins_over_the_default_key_by_key():
    quotas = ClientQuotas(None)
    _set(quotas, None, producer_byte_rate=1000, consumer_byte_rate=2000)
    _set(quotas, "alice", producer_byte_rate=50)
    assert quotas.quota_for(PRODUCER_BYTE_RATE, "alice") == 50
    assert quotas.quota_for(CONSUMER_BYTE_RATE, "alice") == 2000  # from the default
    assert quotas.quota_for(PRODUCER_BYTE_RATE, "bob") == 1000
    _set(quotas, None, producer_byte_rate=None, consumer_byte_rate=None)
    assert quotas.quota_for(PRODUCER_BYTE_RATE, "bob") is None
    assert quotas.describe() == [
        {"entity": {"client-id": "alice"}, "values": {"producer_byte_rate": 50.0}}
    ]


def test_each_client_id_is_measured_on_its_own_under_the_default():
    clock = FakeClock()
    quotas = ClientQuotas(None)
    _set(quotas, None, producer_byte_rate=100 * KB)
    now = clock.monotonic()
    assert quotas.record(PRODUCER_BYTE_RATE, "a", 1500 * KB, now) > 0
    assert quotas.record(PRODUCER_BYTE_RATE, "b", 500 * KB, now) == 0


def test_a_client_over_its_quota_is_throttled_and_others_are_not():
    clock = FakeClock()
    quotas = ClientQuotas(None)
    _set(quotas, "greedy", producer_byte_rate=100 * KB)
    now = clock.monotonic()
    # 1.5 MB at once: 150 KB/s over the 10 s minimum window -> (150-100)/100 * 10 s
    assert quotas.record(PRODUCER_BYTE_RATE, "greedy", 1500 * KB, now) == 5000
    assert quotas.record(PRODUCER_BYTE_RATE, "polite", 1500 * KB, now) == 0
    [row] = quotas.throttles(now)
    assert (row["client_id"], row["quota_type"], row["throttle_time_ms"]) == (
        "greedy",
        PRODUCER_BYTE_RATE,
        5000,
    )
    clock.advance(12)
    assert quotas.throttles(clock.monotonic()) == []  # not throttled in the last window


def test_a_client_that_waits_its_throttle_time_gets_the_quota_in_the_long_run():
    """A client that sends 20 KB requests flat out, each after the previous one's
    throttle time (as Kafka's and labkit's clients do), averages its quota."""
    clock = FakeClock()
    quotas = ClientQuotas(None)
    _set(quotas, "p", producer_byte_rate=100 * KB)
    start = clock.monotonic()
    sent = 0
    while clock.monotonic() - start < 120:
        delay = quotas.record(PRODUCER_BYTE_RATE, "p", 20 * KB, clock.monotonic())
        sent += 20 * KB
        clock.advance(0.005 + delay / 1000)
    rate = sent / (clock.monotonic() - start)
    assert 0.9 * 100 * KB < rate < 1.2 * 100 * KB


def test_bad_quota_requests_get_clear_errors_and_change_nothing():
    quotas = ClientQuotas(None)
    [out] = _set(quotas, "x", producer_byte_rate=0)
    assert out["error"] == InvalidRequestError.errno
    assert "at least 1" in out["message"]
    [out] = _set(quotas, "x", producer_byte_rate=1.5)
    assert "whole number" in out["message"]
    [out] = quotas.alter(
        [{"entity": {"client-id": "x"}, "ops": [{"key": "request_percentage", "value": 10}]}]
    )
    assert "producer_byte_rate" in out["message"]
    [out] = quotas.alter(
        [{"entity": {"user": "x"}, "ops": [{"key": "producer_byte_rate", "value": 10}]}]
    )
    assert "client id" in out["message"]
    [out] = _set(quotas, "\ud800", producer_byte_rate=10)
    assert "UTF-8" in out["message"]
    json.dumps(out, ensure_ascii=False).encode("utf-8")  # the reply stays valid text
    assert not quotas.active
    with pytest.raises(InvalidRequestError, match="match_type"):
        quotas.describe([{"entity_type": "client-id", "match_type": 7}])


def test_describe_filters_like_kafka():
    quotas = ClientQuotas(None)
    _set(quotas, None, producer_byte_rate=1)
    _set(quotas, "a", producer_byte_rate=2)
    _set(quotas, "b", consumer_byte_rate=3)
    names = lambda comps: [e["entity"]["client-id"] for e in quotas.describe(comps)]  # noqa: E731
    assert names(None) == [None, "a", "b"]
    assert names([{"entity_type": "client-id", "match_type": 0, "match": "b"}]) == ["b"]
    assert names([{"entity_type": "client-id", "match_type": 1}]) == [None]
    assert names([{"entity_type": "client-id", "match_type": 2}]) == ["a", "b"]


def test_validate_only_changes_nothing():
    quotas = ClientQuotas(None)
    out = quotas.alter(
        [{"entity": {"client-id": "a"}, "ops": [{"key": "producer_byte_rate", "value": 5}]}],
        validate_only=True,
    )
    assert out[0]["error"] == 0
    assert not quotas.active


# -- persistence ------------------------------------------------------------------------


def test_quotas_survive_a_restart_and_a_damaged_file_says_what_to_do(tmp_path):
    quotas = ClientQuotas(tmp_path)
    _set(quotas, "a", producer_byte_rate=1048576)
    _set(quotas, None, consumer_byte_rate=2048)
    again = ClientQuotas(tmp_path)
    assert again.quota_for(PRODUCER_BYTE_RATE, "a") == 1048576
    assert again.quota_for(CONSUMER_BYTE_RATE, "zz") == 2048
    assert not (tmp_path / (QUOTAS_FILE + ".tmp")).exists()
    (tmp_path / QUOTAS_FILE).write_text(json.dumps({"clients": {"a": {"producer_byte_rate": -3}}}))
    with pytest.raises(InvalidConfigurationError, match="remove it"):
        ClientQuotas(tmp_path)


def test_a_failed_write_leaves_the_quotas_as_they_were(tmp_path):
    quotas = ClientQuotas(tmp_path / "missing-dir")
    with pytest.raises(FileNotFoundError):
        _set(quotas, "a", producer_byte_rate=10)
    assert not quotas.active


# -- hostile input ----------------------------------------------------------------------


def test_client_ids_are_bounded_and_made_printable():
    assert client_id_of({}) == ""
    assert client_id_of({"client_id": 5}) == ""
    assert len(client_id_of({"client_id": "x" * 10_000})) == 255
    assert client_id_of({"client_id": "a\ud800"}).encode("utf-8") == b"a\\ud800"


def test_a_flood_of_client_ids_is_measured_as_one_beyond_the_cap():
    clock = FakeClock()
    quotas = ClientQuotas(None)
    _set(quotas, None, producer_byte_rate=100)
    now = clock.monotonic()
    for i in range(MAX_SENSORS + 50):
        quotas.record(PRODUCER_BYTE_RATE, f"c{i}", 1, now)
    assert len(quotas._sensors) <= MAX_SENSORS + 1
    assert (PRODUCER_BYTE_RATE, OVERFLOW_ID) in quotas._sensors
    clock.advance(12)
    quotas.record(PRODUCER_BYTE_RATE, "late", 1, clock.monotonic())
    assert len(quotas._sensors) == 1  # silent clients were forgotten


# -- the connection mute ------------------------------------------------------------------


def test_a_muted_connection_queues_produce_and_fetch_in_order_until_the_throttle_ends():
    clock = FakeClock()
    gate = ThrottleGate()
    now = clock.monotonic()
    assert gate.admit(b"c", "r0", 10, now)
    gate.mute(b"c", 500, now)
    assert not gate.admit(b"c", "r1", 10, now)
    assert not gate.admit(b"c", "r2", 10, now)
    assert gate.admit(b"other", "o1", 10, now)  # other connections are not muted
    assert gate.due(now) == []
    assert gate.pop_ready(b"c", now) is None
    clock.advance(0.5)
    now = clock.monotonic()
    assert gate.due(now) == [b"c"]
    assert gate.pop_ready(b"c", now) == "r1"
    gate.mute(b"c", 300, now)  # handling r1 throttles again: r2 waits
    assert gate.pop_ready(b"c", now) is None
    assert not gate.admit(b"c", "r3", 10, now)  # behind r2, order kept
    clock.advance(0.3)
    now = clock.monotonic()
    assert gate.due(now) == [b"c"]
    assert [gate.pop_ready(b"c", now), gate.pop_ready(b"c", now)] == ["r2", "r3"]
    assert gate.pop_ready(b"c", now) is None
    assert gate.muted_count == 0
    assert gate.admit(b"c", "r4", 10, now)


def test_a_queued_request_never_waits_past_its_bound_even_while_muted():
    clock = FakeClock()
    gate = ThrottleGate()
    now = clock.monotonic()
    gate.mute(b"c", 60_000, now)
    assert not gate.admit(b"c", "r1", 2.0, now)
    clock.advance(2.0)
    now = clock.monotonic()
    assert gate.next_due() == pytest.approx(now)
    assert gate.due(now) == [b"c"]
    assert gate.pop_ready(b"c", now) == "r1"  # handled (and throttled further) in time


def test_a_flooding_connection_is_not_queued_without_bound():
    gate = ThrottleGate(max_queued=3)
    gate.mute(b"c", 1000, 0.0)
    assert [gate.admit(b"c", i, 10, 0.0) for i in range(5)] == [False, False, False, True, True]


def test_a_fetch_under_a_consumer_quota_asks_for_at_most_the_window_s_worth():
    quotas = ClientQuotas(None, window_num=11, window_size_s=1)
    header = {"client_id": "r", "max_bytes": 52428800, "partitions": []}
    assert quotas.bound_fetch(header) is header  # no quota: untouched
    _set(quotas, "r", consumer_byte_rate=100 * KB)
    assert quotas.bound_fetch(header)["max_bytes"] == 1000 * KB  # 10 windows of 1 s
    other = {**header, "client_id": "other"}
    assert quotas.bound_fetch(other) is other
    small = {**header, "max_bytes": 5}
    assert quotas.bound_fetch(small) is small


def test_the_number_of_client_ids_with_quotas_is_bounded(monkeypatch):
    monkeypatch.setattr(quotas_module, "MAX_ENTITIES", 2)
    quotas = ClientQuotas(None)
    assert [_set(quotas, c, producer_byte_rate=5)[0]["error"] for c in "ab"] == [0, 0]
    [out] = _set(quotas, "c", producer_byte_rate=5)
    assert out["error"] == InvalidRequestError.errno
    assert "--entity-default" in out["message"]
    assert _set(quotas, "a", producer_byte_rate=6)[0]["error"] == 0  # changing one is fine
    assert _set(quotas, None, producer_byte_rate=6)[0]["error"] == 0  # ...and the default
