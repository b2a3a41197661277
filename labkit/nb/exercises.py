"""The course's exercises: one decorated check function each.

Adding an exercise is one function::

    @exercise("03.3", points=2, title="Count alerts per store")
    def alerts_per_store(answer, *, sent):
        expected = ...
        expect(dict(answer) == expected, "count only transactions with amount > 3000")

The first argument is what the student passes to ``nb.check(id, answer, ...)``;
keyword arguments are the context the notebook passes (``sent=``, ``topic=``).
Raise ``Wrong`` (via ``expect``) with a hint that says what to look at; call
student functions through ``call()``. Checks of student *functions* use their own
seeded data, so they are deterministic; checks of *results* (read from a topic)
take what was sent as ``sent=``. Keep each check pure: no broker, no clock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

import labkit.nb.exercises_groups  # noqa: F401 - registers notebook 06's extra checks
import labkit.nb.exercises_intro  # noqa: F401 - registers notebooks 00-05's extra checks
from labkit.nb import exercises_apps  # noqa: F401 - registers notebook 08's checks
from labkit.nb.checks import StudentCodeError, Wrong, call, counted, exercise, expect
from labkit.nb.exercises_ref import (
    alert_line,
    burst_users,
    fraud_score,
    score_cases,
    tumbling_counts,
    tx_ids,
    values,
)
from labkit.nb.generators import CATEGORIES, STORES, sensors, transactions

# -- 00 start here -------------------------------------------------------------------


@exercise("00.1", points=1, title="Warm-up: the four cities of the shop network")
def four_cities(answer):
    """answer: the four store cities (any order), e.g. a list of strings."""
    expect(isinstance(answer, list | tuple | set), f"give a list of strings, got {type(answer).__name__}")
    got = {str(city).strip() for city in answer}
    missing = [c for c in STORES if c not in got]
    extra = sorted(got - set(STORES))
    expect(not extra, f"{extra[0]!r} is not one of the cities; check the spelling "
                      "(Polish letters: Kraków, Gdańsk, Wrocław)" if extra else "")
    expect(not missing, f"{counted(len(missing), 'city')} missing: look at the 'store' field "
                        "of a transaction")


# -- 02 producer ---------------------------------------------------------------------


@exercise("02.1", points=2, title="Send 20 transactions and return their metadata")
def send_and_collect(metadata, *, topic, count=20):
    """metadata: the RecordMetadata of each send, in send order (``future.get()``)."""
    expect(metadata is not None, "your answer is None: collect future.get(timeout=10) of each send in a list")
    items = list(metadata)
    if items and hasattr(items[0], "get") and not hasattr(items[0], "offset"):
        raise Wrong("these are futures, not metadata: call .get(timeout=10) on each future "
                    "to wait for the broker's answer")
    expect(len(items) == count, f"expected {count} RecordMetadata, got {len(items)}: "
                                f"send {count} transactions and keep the metadata of each")
    for item in items:
        expect(all(hasattr(item, a) for a in ("topic", "partition", "offset")),
               f"{type(item).__name__} is not RecordMetadata: keep what future.get() returns")
    topics = {m.topic for m in items}
    expect(topics == {topic}, f"the records went to {sorted(topics)}, not to {topic!r}: "
                              "pass the notebook's topic name to send()")
    places = [(m.partition, m.offset) for m in items]
    expect(all(isinstance(o, int) and o >= 0 for _, o in places),
           "some offsets are not >= 0: use the metadata of acknowledged sends")
    expect(len(set(places)) == len(places), "the same (partition, offset) appears twice: "
                                            "send each transaction once and keep its own metadata")


# -- 03 consumer ---------------------------------------------------------------------


def _alert_cases() -> list[dict]:
    cases = list(transactions(seed=303, count=60, suspicious_share=0.3))
    edge = [("TX9001", 3000.0, "Gdańsk", "odzież"), ("TX9002", 3000.01, "Wrocław", "książki"),
            ("TX9003", 4999.5, "Kraków", "elektronika"), ("TX9004", 4000, "Warszawa", "żywność")]
    for tx_id, amount, store, category in edge:
        cases.append({"tx_id": tx_id, "user_id": "u01", "amount": amount, "store": store,
                      "category": category, "timestamp": "2026-03-02T12:00:00"})
    return cases


@exercise("03.1", points=2, title="Format an alert for amount > 3000")
def format_alert(fn):
    """fn(tx) -> 'ALERT: TX0042 | 2345.67 PLN | Warszawa | elektronika' if amount > 3000, else None."""
    for tx in _alert_cases():
        got = call(fn, dict(tx))
        want = alert_line(tx) if tx["amount"] > 3000 else None
        if want is None:
            expect(got in (None, "", False), f"{tx['tx_id']} has amount {tx['amount']:.2f}, "
                   "which is not > 3000, but your function returned an alert; return None for it")
            continue
        expect(got not in (None, "", False), f"no alert for {tx['tx_id']} with amount "
               f"{tx['amount']:.2f} PLN: alert when amount > 3000")
        expect(isinstance(got, str), f"return the alert as a str, got {type(got).__name__}")
        expect(got.strip() == want, f"for {tx['tx_id']} expected {want!r}, got {got.strip()!r} "
                                    "(amount with 2 decimals, parts separated by ' | ')")


@exercise("03.2", points=2, title="Read the topic and collect the alerts")
def collected_alerts(lines, *, sent):
    """lines: the alert lines printed while reading the topic; sent: the transactions sent."""
    if isinstance(lines, str):
        lines = lines.splitlines()
    got = Counter(str(line).strip() for line in lines if str(line).strip())
    want = Counter(alert_line(tx) for tx in values(sent) if tx["amount"] > 3000)
    extra, missing = got - want, want - got
    if missing and not got:
        raise Wrong(f"no alerts collected, {sum(want.values())} expected: read the topic from "
                    "the beginning (auto_offset_reset='earliest') and stop with consumer_timeout_ms")
    if extra:
        raise Wrong(f"{counted(sum(extra.values()), 'line')} should not be there, e.g. "
                    f"{min(extra)!r}: only amount > 3000, each transaction once")
    if missing:
        raise Wrong(f"{counted(sum(missing.values()), 'alert')} missing, e.g. {min(missing)!r}: "
                    "read every partition from the beginning until no more records come")


# -- 04 serializers ------------------------------------------------------------------

_DESERIALIZE_CASES = [
    (b'{"tx_id": "TX0001", "amount": 12.5}', {"tx_id": "TX0001", "amount": 12.5}),
    ('{"store": "Kraków", "category": "książki"}'.encode(), {"store": "Kraków", "category": "książki"}),
    (b"[1, 2, 3]", [1, 2, 3]),
    (b"{not json", None),
    (b"", None),
    (b"\xff\xfe\x00garbage", None),
    (b'{"tx_id": "TX0002", "amount": ', None),
]


@exercise("04.1", points=2, title="A JSON deserializer that survives poison messages")
def safe_deserializer(fn):
    """fn(raw: bytes) -> the decoded JSON value, or None when raw is not valid UTF-8 JSON."""
    for raw, want in _DESERIALIZE_CASES:
        try:
            got = call(fn, raw)
        except StudentCodeError as exc:
            raise Wrong(f"for {raw!r} {str(exc).split(';')[0].replace('your function', 'it')}: "
                        "catch ValueError (json.JSONDecodeError and UnicodeDecodeError are both "
                        "ValueErrors) and return None") from None
        if want is None:
            expect(got is None, f"for the poison message {raw!r} return None, got {got!r}")
        else:
            expect(got == want, f"for {raw!r} expected {want!r}, got {got!r}: decode the bytes "
                                "as UTF-8 and parse them with json.loads")


# -- 05 partitions and keys ----------------------------------------------------------


def _partitions_by_user(answer) -> dict[str, set]:
    pairs = answer.items() if isinstance(answer, Mapping) else answer
    result: dict[str, set] = {}
    for user, parts in pairs:
        many = parts if isinstance(parts, Iterable) and not isinstance(parts, str | bytes) else [parts]
        result.setdefault(str(user), set()).update(many)
    return result


@exercise("05.1", points=2, title="Key by user_id: one partition per user")
def one_partition_per_user(answer, *, num_partitions=None):
    """answer: {user_id: partitions seen for that user} (or (user_id, partition) pairs)."""
    try:
        seen = _partitions_by_user(answer)
    except (TypeError, ValueError):
        raise Wrong("give a dict {user_id: set of partitions}, built from each send's "
                    "metadata.partition") from None
    expect(len(seen) >= 2, "collect the partitions of at least two users' transactions")
    for user in sorted(seen):
        parts = sorted(seen[user])
        expect(len(parts) == 1, f"{user}'s transactions went to partitions {parts}: send with "
                                "key=tx['user_id'] (bytes, or with a key_serializer)")
    used = set().union(*seen.values())
    if num_partitions is not None:
        bad = sorted(p for p in used if not (isinstance(p, int) and 0 <= p < num_partitions))
        expect(not bad, f"partition {bad[0] if bad else ''} does not exist in a topic with "
                        f"{num_partitions} partitions")
        expect(num_partitions == 1 or len(seen) < 6 or len(used) > 1,
               "every user landed on the same partition: let the key choose the partition "
               "(do not pass partition=...)")


# -- 06 consumer groups, 07 replay -----------------------------------------------------


@exercise("06.1", points=2, title="Two consumer groups each read everything")
def two_groups(answer, *, sent):
    """answer: {group_id: values (or tx_ids) that group read}; sent: the transactions sent."""
    expect(isinstance(answer, Mapping), "give a dict {group_id: list of what that group read}")
    expect(len(answer) >= 2, "read with two different group_ids (e.g. fraud-detection and reporting)")
    want = set(tx_ids(sent))
    for group, read in sorted(answer.items(), key=lambda kv: str(kv[0])):
        got = set(tx_ids(read))
        expect(want <= got, f"group {group!r} read {len(want & got)} of {len(want)} transactions: "
                            "each group has its own offsets; start it from the beginning "
                            "(auto_offset_reset='earliest') with a new group_id")


@exercise("07.1", points=1, title="Replay a topic from the beginning")
def replay(answer, *, sent):
    """answer: the values (or tx_ids) read again after seeking to the beginning."""
    got = Counter(tx_ids(answer))
    want = Counter(tx_ids(sent))
    missing = want - got
    expect(not missing, f"{sum(missing.values())} of {sum(want.values())} records not replayed: "
                        "call seek_to_beginning() before reading again")


# -- 09 live analytics ---------------------------------------------------------------


def _burst_data() -> list[dict]:
    base = datetime(2026, 3, 2, 10, 0, 0)
    events = list(transactions(seed=909, count=240, interval_s=9, start=base,
                               suspicious_share=0.0))
    planted = {"u91": [0, 10, 20, 50], "u92": [0, 30, 60, 90], "u93": [5, 8, 11],
               "u94": [0, 5, 10, 75, 140], "u95": [i * 70 for i in range(8)],
               "u96": [100, 112, 124, 136, 148, 160], "u97": [0, 20, 40, 60]}
    for user, offsets in planted.items():
        for n, off in enumerate(offsets):
            events.append({"tx_id": f"TX{user[1:]}{n:02d}", "user_id": user, "amount": 99.0,
                           "store": "Gdańsk", "category": "książki",
                           "timestamp": (base + timedelta(seconds=300 + off)).isoformat()})
    events.sort(key=lambda tx: (tx["timestamp"], tx["tx_id"]))
    return events


def _user_ids(answer) -> set[str]:
    if isinstance(answer, str):
        raise Wrong("return a collection of user ids, e.g. {'u07', 'u12'}, not one string")
    if isinstance(answer, Mapping):
        answer = answer.keys()
    return {item["user_id"] if isinstance(item, Mapping) else str(item) for item in answer}


@exercise("09.1", points=3, title="Alert when a user makes more than 3 transactions in 60 s")
def bursts(fn):
    """fn(transactions in time order) -> the user_ids that made > 3 transactions within 60 s."""
    data = _burst_data()
    got = _user_ids(call(fn, [dict(tx) for tx in data]))
    strict, inclusive = burst_users(data, 60, inclusive=False), burst_users(data, 60, inclusive=True)
    if got in (strict, inclusive):
        return
    missed = sorted(strict - got)
    if missed:
        user = missed[0]
        times = [tx["timestamp"][11:] for tx in data if tx["user_id"] == user]
        raise Wrong(f"missed {user}, who paid at {', '.join(times[:6])}: keep each user's recent "
                    "timestamps and count those within the last 60 s")
    extra = sorted(got - inclusive)
    raise Wrong(f"flagged {extra[0]}, who never made more than 3 transactions within 60 s: count "
                "per user, only transactions less than 60 s apart")


@exercise("09.2", points=1, title="Count transactions per store")
def per_store(fn):
    """fn(transactions) -> {store: number of transactions}."""
    data = list(transactions(seed=920, count=137))
    got = call(fn, [dict(tx) for tx in data])
    expect(isinstance(got, Mapping), f"return a dict or Counter {{store: count}}, got {type(got).__name__}")
    want = Counter(tx["store"] for tx in data)
    for store in STORES:
        expect(got.get(store) == want[store], f"{store}: expected {want[store]} transactions, "
                                              f"got {got.get(store)!r}")


@exercise("09.3", points=2, title="Count, sum, min and max per category")
def per_category(fn):
    """fn(transactions) -> {category: {"count": n, "sum": s, "min": lo, "max": hi}}."""
    data = list(transactions(seed=930, count=150))
    got = call(fn, [dict(tx) for tx in data])
    expect(isinstance(got, Mapping), f"return a dict {{category: stats}}, got {type(got).__name__}")
    for cat in CATEGORIES:
        amounts = [tx["amount"] for tx in data if tx["category"] == cat]
        want = {"count": len(amounts), "sum": sum(amounts), "min": min(amounts), "max": max(amounts)}
        stats = got.get(cat)
        expect(isinstance(stats, Mapping) and set(want) <= set(stats),
               f"stats for {cat!r} need the keys count, sum, min, max; got {stats!r}")
        for name, value in want.items():
            expect(isinstance(stats[name], int | float) and abs(stats[name] - value) < 0.01,
                   f"{cat}: {name} should be {round(value, 2)}, got {stats[name]!r}")


@exercise("09.4", points=2, title="Tumbling 10-second windows on event time")
def tumbling(fn):
    """fn(readings, size_s) -> {window start (ISO string or datetime): number of readings}."""
    data = list(sensors(seed=940, count=120, late_share=0.25, max_lateness_s=15))
    got = call(fn, [dict(r) for r in data], 10)
    expect(isinstance(got, Mapping), f"return a dict {{window start: count}}, got {type(got).__name__}")
    try:
        counts = {k if isinstance(k, datetime) else datetime.fromisoformat(str(k)): v
                  for k, v in got.items()}
    except ValueError:
        raise Wrong("use the window start as key, e.g. '2026-03-02T08:00:10' or a datetime") from None
    want = tumbling_counts(data, 10)
    for start, n in sorted(want.items()):
        expect(counts.get(start) == n, f"window {start:%H:%M:%S}: expected {n} readings, got "
               f"{counts.get(start, 0)}: put each reading in the window of its own 'time' "
               "(event time), not by when it arrived")
    extra = sorted(set(counts) - set(want))
    expect(not extra, f"there is no reading in window {extra[0] if extra else ''}: windows start "
                      "at multiples of 10 s (08:00:00, 08:00:10, ...)")


# -- 10 fraud pipeline ---------------------------------------------------------------


@exercise("10.1", points=3, title="Score a transaction with rules R1-R3")
def score(fn):
    """fn(tx) -> int: +3 if amount > 3000; +2 if elektronika and amount > 1500; +2 if hour < 6."""
    for tx, why in score_cases():
        got = call(fn, dict(tx))
        want = fraud_score(tx)
        expect(got == want, f"{why}: expected score {want}, got {got!r}")


@exercise("10.2", points=3, title="The alerts topic holds exactly the flagged transactions")
def flagged(alerts, *, sent):
    """alerts: values read from the alerts topic (dicts with tx_id); sent: transactions sent."""
    records = values(alerts)
    want = {tx["tx_id"]: fraud_score(tx) for tx in values(sent) if fraud_score(tx) >= 3}
    got = Counter(tx_ids(records))
    scores = {tx["tx_id"]: fraud_score(tx) for tx in values(sent)}
    extra = sorted(set(got) - set(want))
    expect(not extra, f"{extra[0] if extra else ''} is in alerts but scores "
                      f"{scores.get(extra[0]) if extra else ''}: flag only score >= 3")
    missing = sorted(set(want) - set(got))
    expect(not missing, f"{counted(len(missing), 'flagged transaction')} missing from alerts, e.g. "
                        f"{missing[0] if missing else ''} (score {want.get(missing[0]) if missing else ''})"
                        ": send every transaction with score >= 3 to the alerts topic")
    twice = sorted(k for k, n in got.items() if n > 1)
    expect(not twice, f"{twice[0] if twice else ''} is in alerts {got[twice[0]] if twice else 0} times: "
                      "send each flagged transaction once")
    for record in records:
        if isinstance(record, Mapping) and "score" in record:
            expect(record["score"] == want[record["tx_id"]],
                   f"{record['tx_id']} has score {want[record['tx_id']]}, your alert says "
                   f"{record['score']!r}")
