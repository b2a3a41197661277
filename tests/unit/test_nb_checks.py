"""nb.check: the one-line results, grading mode, and every course exercise with a
right, a wrong and a not-attempted answer."""

import json
from collections import Counter, defaultdict, deque
from datetime import datetime, timedelta
from types import SimpleNamespace

import pytest

from labkit import nb
from labkit.course import checks
from labkit.course.checks import CheckFailed, Registry, expect
from labkit.course.exercises._ref import alert_line, fraud_score
from labkit.nb import evaluate
from labkit.nb.generators import transactions


@pytest.fixture(autouse=True)
def _no_grading(monkeypatch):
    monkeypatch.delenv("LABKIT_GRADING", raising=False)
    monkeypatch.delenv("LABKIT_GRADE_LOG", raising=False)


@pytest.fixture
def demo():
    """A registry of this test's own (the course's is never edited)."""
    registry = Registry()

    @registry.exercise("t.1", points=2, title="Test exercise")
    def _check(answer, *, limit):
        expect(answer == limit, f"expected {limit}")

    return registry


def status(registry, exercise_id, answer, **context):
    return registry.evaluate(exercise_id, answer, **context).status


# -- the machinery -----------------------------------------------------------------


def test_pass_fail_and_not_attempted_lines(demo, capsys):
    demo.check("t.1", 3, limit=3)
    demo.check("t.1", 4, limit=3)
    demo.check("t.1", ..., limit=3)
    assert capsys.readouterr().out.splitlines() == [
        "PASS t.1 (2/2 points)",
        "FAIL t.1 (0/2 points): expected 3",
        "NOT ATTEMPTED t.1 (0/2 points): replace the ... with your answer",
    ]


def test_check_returns_none_so_the_cell_shows_one_line(demo, capsys):
    assert demo.check("t.1", 3, limit=3) is None


@pytest.mark.parametrize("placeholder", [..., [...], (1, ...), {"a": ...}, {...}])
def test_placeholders_count_as_not_attempted(demo, placeholder):
    assert status(demo, "t.1", placeholder, limit=3) == "NOT ATTEMPTED"


def test_stub_functions_count_as_not_attempted(demo):
    def stub(tx):
        """Return the alert."""
        # YOUR CODE HERE
        ...

    def with_pass(tx):
        pass

    def real(tx):
        return "x"

    assert status(demo, "t.1", stub, limit=3) == "NOT ATTEMPTED"
    assert status(demo, "t.1", with_pass, limit=3) == "NOT ATTEMPTED"
    assert status(demo, "t.1", real, limit=3) == "FAIL"


def test_exception_inside_a_check_is_a_one_line_fail():
    registry = Registry()

    @registry.exercise("t.crash", points=1, title="crashes")
    def _check(answer):
        return answer["missing"]

    result = registry.evaluate("t.crash", {"a": 1})
    assert result.status == "FAIL"
    assert "KeyError" in result.line
    assert "\n" not in result.line


def test_student_function_error_names_it():
    def broken(tx):
        raise ValueError("boom\nsecond line")

    result = evaluate("10.1", broken)
    assert result.status == "FAIL"
    assert "your function raised ValueError: boom second line" in result.line


def test_missing_context_says_how_to_call(capsys):
    nb.check("03.2", ["ALERT: x"])
    out = capsys.readouterr().out
    assert out.startswith("FAIL 03.2 (0/2 points): call it as nb.check('03.2', answer, sent=...)")
    assert out.count("\n") == 1


def test_unknown_exercise_names_the_known_ids():
    with pytest.raises(nb.IllegalArgumentError, match=r"no exercise '99\.9'.*02\.1"):
        nb.check("99.9", 1)


def test_duplicate_registration_is_refused(demo):
    with pytest.raises(nb.IllegalArgumentError, match="already registered"):

        @demo.exercise("t.1", points=1, title="again")
        def _other(answer):
            pass


def test_grading_mode_raises_one_line_and_logs(demo, monkeypatch, tmp_path, capsys):
    log = tmp_path / "grade.jsonl"
    monkeypatch.setenv("LABKIT_GRADING", "1")
    monkeypatch.setenv("LABKIT_GRADE_LOG", str(log))
    demo.check("t.1", 3, limit=3)
    with pytest.raises(CheckFailed) as failed:
        demo.check("t.1", 5, limit=3)
    with pytest.raises(CheckFailed, match=r"^NOT ATTEMPTED t.1"):
        demo.check("t.1", ..., limit=3)
    assert str(failed.value) == "FAIL t.1 (0/2 points): expected 3"
    assert failed.value._render_traceback_() == ["FAIL t.1 (0/2 points): expected 3"]
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["exercise"], r["status"], r["points"], r["max_points"]) for r in records] == [
        ("t.1", "PASS", 2, 2),
        ("t.1", "FAIL", 0, 2),
        ("t.1", "NOT ATTEMPTED", 0, 2),
    ]
    assert len(capsys.readouterr().out.splitlines()) == 3


def test_every_course_exercise_has_a_title_and_points():
    ids = [e.id for e in nb.all_exercises()]
    for needed in ["02.1", "03.1", "03.2", "04.1", "05.1", "09.1", "10.1", "10.2"]:
        assert needed in ids
    assert all(e.points >= 1 and e.title for e in nb.all_exercises())


# -- the course's exercises --------------------------------------------------------


def assert_outcomes(exercise_id, right, wrong, hint_part, **context):
    assert evaluate(exercise_id, right, **context).status == "PASS"
    result = evaluate(exercise_id, wrong, **context)
    assert result.status == "FAIL", result.line
    assert hint_part in result.line
    assert evaluate(exercise_id, ..., **context).status == "NOT ATTEMPTED"


def test_00_1_four_cities():
    assert_outcomes(
        "00.1",
        ["Gdańsk", "Warszawa", "Kraków", "Wrocław"],
        ["Warszawa", "Krakow", "Gdańsk", "Wrocław"],
        "spelling",
    )


def metadata(topic, partition, offset):
    return SimpleNamespace(topic=topic, partition=partition, offset=offset)


def test_02_1_metadata_of_twenty_sends():
    """Wrong answers the check sees without the broker; the right one: test_series_a_checks."""
    right = [metadata("tx-02", i % 3, i // 3) for i in range(20)]
    assert "expected 20 RecordMetadata" in evaluate("02.1", right[:19], topic="tx-02").line
    futures = [SimpleNamespace(get=lambda timeout=None: None) for _ in range(20)]
    assert "call .get(timeout=10)" in evaluate("02.1", futures, topic="tx-02").line
    wrong_topic = [metadata("rta", i % 3, i // 3) for i in range(20)]
    assert "not to 'tx-02'" in evaluate("02.1", wrong_topic, topic="tx-02").line
    doubled = right[:10] + right[:10]
    assert "appears twice" in evaluate("02.1", doubled, topic="tx-02").line
    assert evaluate("02.1", [...], topic="tx-02").status == "NOT ATTEMPTED"


def test_03_1_format_alert():
    def right(tx):
        if tx["amount"] > 3000:
            return (
                f"ALERT: {tx['tx_id']} | {tx['amount']:.2f} PLN | {tx['store']} | {tx['category']}"
            )
        return None

    def inclusive(tx):
        return right(dict(tx, amount=tx["amount"] + 0.001)) if tx["amount"] >= 3000 else None

    def one_decimal(tx):
        line = right(tx)
        return line.replace(f"{tx['amount']:.2f}", f"{tx['amount']}") if line else None

    assert_outcomes("03.1", right, inclusive, "not > 3000")
    assert "2 decimals" in evaluate("03.1", one_decimal).line

    def stub(tx):
        # YOUR CODE HERE
        ...

    assert evaluate("03.1", stub).status == "NOT ATTEMPTED"


def test_03_2_collected_alerts():
    sent = list(transactions(seed=5, count=200))
    right = [alert_line(tx) for tx in sent if tx["amount"] > 3000]
    assert right, "the data set must contain alerts"
    assert_outcomes("03.2", list(reversed(right)), right[1:], "1 alert missing", sent=sent)
    too_many = [*right, alert_line(sent[0])]
    assert "should not be there" in evaluate("03.2", too_many, sent=sent).line
    assert "from the beginning" in evaluate("03.2", [], sent=sent).line
    assert evaluate("03.2", "\n".join(right), sent=sent).status == "PASS"


def test_04_1_safe_deserializer():
    def right(raw):
        try:
            return json.loads(raw.decode("utf-8"))
        except ValueError:
            return None

    def unguarded(raw):
        return json.loads(raw)

    def ascii_only(raw):
        try:
            return json.loads(raw.decode("ascii"))
        except ValueError:
            return None

    assert_outcomes("04.1", right, unguarded, "catch ValueError")
    assert "decode the bytes as UTF-8" in evaluate("04.1", ascii_only).line


def test_05_1_one_partition_per_user():
    """The answer's own consistency (pure); against the broker: test_series_a_checks."""
    from labkit.course.exercises.nb05 import _judge_partitions

    right = {f"u{i:02d}": {i % 3} for i in range(1, 21)}
    assert _judge_partitions(right, num_partitions=3) == right
    pairs = [(f"u{i:02d}", i % 3) for i in range(1, 21)] * 2
    assert _judge_partitions(pairs, num_partitions=3) == right
    ctx = {"topic": "nb05-by-user", "num_partitions": 3}
    wrong = dict(right, u03={0, 2})
    assert "u03's transactions went to partitions [0, 2]" in evaluate("05.1", wrong, **ctx).line
    all_zero = {f"u{i:02d}": [0, 0] for i in range(1, 21)}
    assert "same partition" in evaluate("05.1", all_zero, **ctx).line
    assert "does not exist" in evaluate("05.1", {"u01": 5, "u02": 1}, **ctx).line
    assert evaluate("05.1", ..., **ctx).status == "NOT ATTEMPTED"


def reference_bursts(txs, inclusive):
    recent, flagged = defaultdict(deque), set()
    for tx in txs:
        now = datetime.fromisoformat(tx["timestamp"])
        q = recent[tx["user_id"]]
        q.append(now)
        while (now - q[0]) > timedelta(seconds=60) or (
            not inclusive and now - q[0] == timedelta(seconds=60)
        ):
            q.popleft()
        if len(q) > 3:
            flagged.add(tx["user_id"])
    return flagged


def test_09_3_bursts():
    def total_count(txs):
        return {u for u, n in Counter(tx["user_id"] for tx in txs).items() if n > 3}

    assert_outcomes("09.3", lambda txs: reference_bursts(txs, False), total_count, "flagged")
    assert evaluate("09.3", lambda txs: sorted(reference_bursts(txs, True))).status == "PASS"
    missed = evaluate("09.3", lambda txs: reference_bursts(txs, False) - {"u96"})
    assert "missed u96" in missed.line


def test_09_1_per_store():
    def right(txs):
        return Counter(tx["store"] for tx in txs)

    def off_by_one(txs):
        counts = right(txs)
        counts["Gdańsk"] -= 1
        return counts

    assert_outcomes("09.1", right, off_by_one, "Gdańsk: expected")


def test_09_2_per_category():
    def right(txs):
        stats = {}
        for tx in txs:
            s = stats.setdefault(tx["category"], {"count": 0, "sum": 0.0, "min": 1e9, "max": 0.0})
            s["count"] += 1
            s["sum"] += tx["amount"]
            s["min"] = min(s["min"], tx["amount"])
            s["max"] = max(s["max"], tx["amount"])
        return stats

    def no_min(txs):
        stats = right(txs)
        for s in stats.values():
            del s["min"]
        return stats

    assert_outcomes("09.2", right, no_min, "need the keys count, sum, min, max")


def test_09_4_tumbling_windows():
    def by_event_time(readings, size_s):
        counts = Counter()
        for r in readings:
            t = datetime.fromisoformat(r["time"])
            start = t - timedelta(seconds=t.second % size_s)
            counts[start.isoformat()] += 1
        return counts

    def by_arrival(readings, size_s):
        counts = Counter()
        first = datetime.fromisoformat(readings[0]["time"])
        for i, _ in enumerate(readings):
            counts[(first + timedelta(seconds=(i // size_s) * size_s)).isoformat()] += 1
        return counts

    assert_outcomes("09.4", by_event_time, by_arrival, "event time")


def test_10_1_score():
    def off_by_one_hour(tx):
        s = fraud_score(tx)
        hour = datetime.fromisoformat(tx["timestamp"]).hour
        return s + 2 if hour == 6 else s

    assert_outcomes("10.1", fraud_score, off_by_one_hour, "06:00:00")

    def greater_equal(tx):
        return (
            (3 if tx["amount"] >= 3000 else 0) + fraud_score(tx) - (3 if tx["amount"] > 3000 else 0)
        )

    assert "exactly 3000.00" in evaluate("10.1", greater_equal).line


@pytest.mark.parametrize(
    ("count", "noun", "plural", "text"),
    [
        (1, "city", "cities", "1 city"),
        (2, "city", "cities", "2 cities"),
        (0, "city", "cities", "0 cities"),
        (1, "poison message", "poison messages", "1 poison message"),
        (3, "poison message", "poison messages", "3 poison messages"),
        (2, "child", "children", "2 children"),
    ],
)
def test_counted_puts_the_noun_in_the_right_number(count, noun, plural, text, monkeypatch):
    monkeypatch.setenv("LABKIT_LANG", "en")
    assert checks.counted(count, noun, plural) == text


@pytest.mark.parametrize(
    ("answer", "text"),
    [
        (["Gdańsk", "Warszawa", "Kraków"], "1 city missing"),
        (["Gdańsk", "Warszawa"], "2 cities missing"),
    ],
)
def test_00_1_says_how_many_cities_are_missing_in_correct_english(answer, text):
    result = evaluate("00.1", answer)
    assert result.status == "FAIL"
    assert text in result.line, result.line
    assert "(s)" not in result.line


def test_course_feedback_has_no_singular_plural_placeholders():
    import importlib
    import inspect

    from labkit.course import exercises

    for name in exercises.NOTEBOOKS:
        module = importlib.import_module(f"labkit.course.exercises.{name}")
        source = inspect.getsource(module)
        assert "(s)" not in source, module.__name__
        assert " city missing" not in source, module.__name__


def test_the_course_registry_holds_every_notebook_module_and_importing_one_registers_nothing():
    import importlib

    from labkit.course import exercises

    course = exercises.load()
    per_module = [
        importlib.import_module(f"labkit.course.exercises.{name}").EXERCISES
        for name in exercises.NOTEBOOKS
    ]
    assert len(course) == sum(len(r) for r in per_module)
    for name, registry in zip(exercises.NOTEBOOKS, per_module, strict=True):
        assert registry.all(), f"{name} has no exercise"
        assert {ex.id[:2] for ex in registry.all()} == {name[2:4]}, name  # nb06b: 06.x
    assert exercises.load() is not course  # a fresh registry each time, nothing global


def test_nb_exercise_registers_next_to_the_course(capsys):
    @nb.exercise("t.nb", points=1, title="an instructor's own check")
    def _check(answer):
        expect(answer == 42, "not 42")

    nb.check("t.nb", 42)
    assert capsys.readouterr().out.strip() == "PASS t.nb (1/1 points)"
    assert "t.nb" in {ex.id for ex in nb.all_exercises()}


def test_03_1_an_empty_string_or_false_is_not_none():
    """Issue 18.4: "" used to be accepted for None."""

    def right(tx):
        return alert_line(tx) if tx["amount"] > 3000 else None

    assert "returned '': return None" in evaluate("03.1", lambda tx: right(tx) or "").line
    assert "returned False: return None" in evaluate("03.1", lambda tx: right(tx) or False).line
    assert evaluate("03.1", right).status == "PASS"


def test_04_1_catching_only_json_errors_fails_on_bytes_that_are_not_utf8():
    """Issue 18.4: the lesson is about UnicodeDecodeError too (Latin-1 text)."""

    def json_errors_only(raw):
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return None

    result = evaluate("04.1", json_errors_only)
    assert result.status == "FAIL"
    assert "UnicodeDecodeError" in result.line
    assert "catch ValueError" in result.line
