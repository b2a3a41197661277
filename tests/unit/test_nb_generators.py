"""Seeded generators (transactions, sensors) and the EventStream background sender."""

import itertools
import json
import threading
from datetime import datetime, timedelta

import pytest

from labkit import nb
from labkit.nb.generators import CATEGORIES, DEFAULT_START, STORES
from labkit.nb.stream import EventStream, stop_all
from labkit.testing import FakeClock

# -- transactions --------------------------------------------------------------------


def test_transactions_are_deterministic_for_a_seed():
    a = list(nb.transactions(seed=42, count=300))
    b = list(nb.transactions(seed=42, count=300))
    c = list(nb.transactions(seed=43, count=300))
    assert json.dumps(a, ensure_ascii=False) == json.dumps(b, ensure_ascii=False)
    assert a != c


def test_an_endless_stream_starts_like_a_counted_one():
    endless = list(itertools.islice(nb.transactions(seed=1), 50))
    assert endless == list(nb.transactions(seed=1, count=50))


def test_transaction_fields_and_ranges():
    txs = list(nb.transactions(seed=7, count=2000, suspicious_share=0.1))
    assert [tx["tx_id"] for tx in txs[:3]] == ["TX0001", "TX0002", "TX0003"]
    assert txs[-1]["tx_id"] == "TX2000"
    for tx in txs:
        assert set(tx) == {"tx_id", "user_id", "amount", "store", "category", "timestamp"}
        assert tx["user_id"] in {f"u{i:02d}" for i in range(1, 21)}
        assert 5 <= tx["amount"] <= 5000
        assert round(tx["amount"], 2) == tx["amount"]
        assert tx["store"] in STORES
        assert tx["category"] in CATEGORIES
        datetime.fromisoformat(tx["timestamp"])
    assert {tx["store"] for tx in txs} == set(STORES)
    assert {tx["category"] for tx in txs} == set(CATEGORIES)
    assert len({tx["user_id"] for tx in txs}) == 20


def test_timestamps_come_from_start_and_index_not_the_clock():
    start = datetime(2025, 1, 6, 9, 30, 0)
    txs = list(
        nb.transactions(seed=3, count=100, start=start, interval_s=0.5, suspicious_share=0.0)
    )
    for i, tx in enumerate(txs):
        assert datetime.fromisoformat(tx["timestamp"]) == start + timedelta(seconds=i * 0.5)
    assert txs[1]["timestamp"] == "2025-01-06T09:30:00.500"
    whole = next(nb.transactions(seed=3, count=1))
    assert whole["timestamp"] == DEFAULT_START.isoformat()


def test_suspicious_share_and_kinds():
    txs = list(nb.transactions(seed=11, count=6000, suspicious_share=0.05, label=True))
    kinds = [tx["suspicious"] for tx in txs]
    share = sum(k is not None for k in kinds) / len(txs)
    assert 0.035 < share < 0.065
    assert {"large", "night", "burst"} == {k for k in kinds if k}
    for i, tx in enumerate(txs):
        if tx["suspicious"] == "large":
            assert tx["amount"] > 3000
        if tx["suspicious"] == "night":
            assert datetime.fromisoformat(tx["timestamp"]).hour < 6
        else:
            assert datetime.fromisoformat(tx["timestamp"]) == DEFAULT_START + timedelta(seconds=i)
    runs = [
        list(g) for k, g in itertools.groupby(txs, key=lambda t: t["suspicious"]) if k == "burst"
    ]
    for run in runs:
        # back-to-back bursts of two users can touch; each user's part is 4-6 long
        for _, part in itertools.groupby(run, key=lambda t: t["user_id"]):
            assert 4 <= len(list(part)) <= 6 or len(run) > 6


def test_no_suspicious_events_when_share_is_zero():
    txs = list(nb.transactions(seed=5, count=3000, suspicious_share=0.0, label=True))
    assert all(tx["suspicious"] is None for tx in txs)
    assert sum(tx["amount"] > 3000 for tx in txs) < 30  # ordinary purchases are rarely that large


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seed": "42"}, "seed must be an int"),
        ({"suspicious_share": 1.5}, "fraction between 0 and 1"),
        ({"interval_s": 0}, "must be > 0"),
        ({"count": -1}, "count must be"),
        ({"users": 0}, "users must be"),
        ({"start": "2026-01-01"}, "start must be a datetime"),
    ],
)
def test_transactions_reject_bad_arguments(kwargs, message):
    with pytest.raises(nb.IllegalArgumentError, match=message):
        nb.transactions(**kwargs)


# -- sensors -------------------------------------------------------------------------


def test_sensor_readings_fields_ranges_and_determinism():
    a = list(nb.sensors(seed=9, count=1000))
    assert a == list(nb.sensors(seed=9, count=1000))
    for r in a:
        assert set(r) == {"time", "sensor_id", "temperature", "pressure"}
        assert r["sensor_id"] in "abcde"
        assert -100 <= r["temperature"] <= 100
        assert 0 <= r["pressure"] <= 50
    assert {r["sensor_id"] for r in a} == set("abcde")


def test_late_readings_are_stamped_in_the_past_within_the_limit():
    start = datetime(2026, 3, 2, 8, 0, 0)
    readings = list(
        nb.sensors(seed=4, count=2000, late_share=0.2, max_lateness_s=15, start=start, label=True)
    )
    late = [r for r in readings if r["late_by_s"]]
    assert 0.15 < len(late) / len(readings) < 0.25
    for i, r in enumerate(readings):
        on_time = start + timedelta(seconds=i)
        assert datetime.fromisoformat(r["time"]) == on_time - timedelta(seconds=r["late_by_s"])
        assert 0 <= r["late_by_s"] <= 15
    times = [r["time"] for r in readings]
    assert times != sorted(times), "late readings arrive out of order"
    assert not any(r["late_by_s"] for r in nb.sensors(seed=4, count=500, late_share=0, label=True))


def test_sensors_reject_bad_arguments():
    with pytest.raises(nb.IllegalArgumentError, match="late_share"):
        nb.sensors(late_share=-0.1)
    with pytest.raises(nb.IllegalArgumentError, match="max_lateness_s"):
        nb.sensors(max_lateness_s=0)


# -- EventStream ---------------------------------------------------------------------


class RecordingProducer:
    """Stands in for KafkaProducer: records sends; config as kafka-python exposes it."""

    def __init__(self, value_serializer=None, fail_after=None):
        self.config = {"value_serializer": value_serializer, "key_serializer": None}
        self.sent = []
        self.flushes = 0
        self.closed = False
        self.fail_after = fail_after

    def send(self, topic, value=None, key=None):
        if self.fail_after is not None and len(self.sent) >= self.fail_after:
            raise RuntimeError("broker went away")
        self.sent.append((topic, key, value))

    def flush(self, timeout=None):
        self.flushes += 1

    def close(self, timeout=None):
        self.closed = True


def wait_until(condition, limit_s=10.0):
    """Poll ``condition`` (bounded); the tests assert on state, never on elapsed time."""
    pause = threading.Event()
    for _ in range(int(limit_s / 0.01)):
        if condition():
            return
        pause.wait(0.01)
    raise AssertionError("condition not reached")


def stream_threads():
    return [t for t in threading.enumerate() if t.name == "labkit-eventstream"]


def test_stream_sends_every_event_with_keys_and_json_values():
    producer = RecordingProducer()
    events = list(nb.transactions(seed=1, count=25))
    stream = EventStream(producer, "tx", events, rate=None, key="user_id")
    stream.start()
    assert stream.join(timeout=10)
    assert stream.sent == 25
    assert stream.exhausted
    assert not stream.running
    assert [json.loads(v) for _, _, v in producer.sent] == events
    assert [k for _, k, _ in producer.sent] == [e["user_id"].encode() for e in events]
    assert {t for t, _, _ in producer.sent} == {"tx"}
    assert producer.flushes >= 1
    assert not producer.closed


def test_stream_passes_dicts_to_a_producer_with_a_serializer():
    producer = RecordingProducer(value_serializer=nb.json_serializer)
    with EventStream(producer, "tx", nb.transactions(seed=1, count=3), rate=None) as stream:
        stream.join(timeout=10)
    assert [v["tx_id"] for _, _, v in producer.sent] == ["TX0001", "TX0002", "TX0003"]


def test_stop_and_start_resume_the_same_events_without_leaking_threads():
    baseline = len(stream_threads())
    producer = RecordingProducer()
    stream = EventStream(
        producer, "tx", nb.transactions(seed=2), rate=2000.0, key=lambda e: e["store"]
    )
    for _ in range(5):
        before = stream.sent
        stream.start()
        stream.start()  # a second start while running is a no-op
        wait_until(lambda before=before: stream.sent > before)
        stream.stop()
        assert not stream.running
    assert len(stream_threads()) == baseline
    ids = [json.loads(v)["tx_id"] for _, _, v in producer.sent]
    assert ids == [f"TX{i:04d}" for i in range(1, len(ids) + 1)], "no event lost or repeated"
    assert stream.sent == len(ids)


def test_stop_interrupts_a_slow_rate_at_once():
    producer = RecordingProducer()
    stream = EventStream(producer, "tx", nb.transactions(seed=2), rate=0.01).start()
    wait_until(lambda: stream.sent)
    stream.stop(timeout=5)
    assert not stream.running
    assert stream.sent == 1


def test_rate_paces_by_the_injected_clock():
    clock = FakeClock()
    producer = RecordingProducer()
    stream = EventStream(producer, "tx", nb.transactions(seed=2), rate=1.0, clock=clock).start()
    wait_until(lambda: stream.sent)
    clock.advance(2.0)  # events 2 and 3 become due; event 4 is due at +3 s
    wait_until(lambda: stream.sent >= 3)
    stream.stop()
    assert stream.sent == 3


def test_a_failing_send_stops_the_stream_and_join_raises():
    producer = RecordingProducer(fail_after=4)
    stream = EventStream(producer, "tx", nb.transactions(seed=1, count=10), rate=None).start()
    with pytest.raises(RuntimeError, match="broker went away"):
        stream.join(timeout=10)
    assert stream.sent == 4
    assert "failed" in repr(stream)
    with pytest.raises(nb.IllegalStateError, match="create a new EventStream"):
        stream.start()


def test_stream_owns_and_closes_a_producer_it_made(monkeypatch):
    import labkit

    made = []

    def factory(**config):
        made.append(config)
        return RecordingProducer(value_serializer=config["value_serializer"])

    monkeypatch.setattr(labkit, "KafkaProducer", factory, raising=False)
    monkeypatch.setenv("LABKIT_BOOTSTRAP", "broker:9092")
    stream = EventStream(None, "tx", nb.transactions(seed=1, count=2), rate=None).start()
    producer = stream._producer
    stream.join(timeout=10)
    assert made[0]["bootstrap_servers"] == "broker:9092"
    assert producer.closed


def test_stop_all_stops_running_streams():
    streams = [
        EventStream(RecordingProducer(), "tx", nb.transactions(seed=i), rate=50.0).start()
        for i in range(3)
    ]
    assert stop_all() == 3
    assert not any(s.running for s in streams)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate": 0}, "rate is events per second"),
        ({"key": 5}, "key must be a function"),
        ({"topic": ""}, "topic must be"),
    ],
)
def test_stream_rejects_bad_arguments(kwargs, message):
    args = {"topic": "tx", **kwargs}
    with pytest.raises(nb.IllegalArgumentError, match=message):
        EventStream(RecordingProducer(), args.pop("topic"), [], **args)


# -- labkit generate (no broker needed for these) -------------------------------------


def test_generate_dry_run_prints_the_seeded_events(capsys):
    from labkit.cli.main import main

    assert (
        main(["generate", "sensors", "--dry-run", "--count", "4", "--seed", "3", "--late", "0.5"])
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line) for line in lines] == list(nb.sensors(seed=3, late_share=0.5, count=4))


def test_generate_rejects_a_key_the_events_do_not_have(capsys):
    from labkit.cli.main import main

    assert main(["generate", "transactions", "--key", "amount"]) == 2
    assert "can be keyed by tx_id, user_id, store, category" in capsys.readouterr().err


# -- the nb namespace ------------------------------------------------------------------


def test_nb_exposes_the_helpers_of_the_other_modules_lazily():
    import types

    import labkit.nb.doctor_checks as doctor_module  # imported first: nb.doctor stays

    assert nb.LivePlot.__name__ == "LivePlot"
    assert nb.doctor is doctor_module.doctor
    for helper in (nb.doctor, nb.dashboard, nb.progress):  # plain functions, not modules
        assert isinstance(helper, types.FunctionType), helper
    assert nb.Dashboard.__name__ == "Dashboard"
    with pytest.raises(AttributeError):
        nb.no_such_helper  # noqa: B018
