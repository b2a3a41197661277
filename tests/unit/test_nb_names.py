"""Per-student topic and group names on a broker shared by a class (labkit.nb.names):
sanitizing a name, when the lab counts as shared, the prefix rules, the doctor's line,
and the checks that compare topic names (01.1, 02.1) accepting prefixed names."""

from __future__ import annotations

import io
import re
from types import SimpleNamespace

import pytest

from labkit import nb
from labkit.errors import IllegalArgumentError, IllegalStateError
from labkit.nb import doctor_checks as doctor_module
from labkit.nb import names
from labkit.nb.names import Naming, naming, sanitize

TOPIC_RULE = re.compile(r"[a-zA-Z0-9._-]{1,249}")


def no_user() -> str:
    raise OSError("No username set in the environment")


def os_user(name: str = "jkowalski"):
    return lambda: name


@pytest.fixture
def env(monkeypatch):
    """A clean environment for the naming variables; returns a setter."""
    for var in (names.STUDENT_ENV, names.SHARED_ENV, names.HUB_USER_ENV):
        monkeypatch.delenv(var, raising=False)

    def set_env(**values: str) -> None:
        for key, value in values.items():
            monkeypatch.setenv(key, value)

    return set_env


# -- sanitizing ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("anna", "anna"),
        ("Anna", "anna"),
        ("Łucja Wójcik", "lucja-wojcik"),
        ("Żaneta Gęślą-Źdźbło", "zaneta-gesla-zdzblo"),
        ("Małgorzata Świętochowska", "malgorzata-swietochowska"),
        ("jan.kowalski", "jan-kowalski"),  # no '.': it ends the student part of a name
        ("anna.maria", "anna-maria"),
        ("  bartek  ", "bartek"),
        ("o'brien@uni.edu.pl", "o-brien-uni-edu-pl"),
        ("jan_kowalski", "jan_kowalski"),
        ("Søren Ærø", "soren-aero"),
        ("Straße", "strasse"),
        ("--x--", "x"),
    ],
)
def test_sanitize_keeps_ascii_letters_digits_dash_and_underscore(raw, want):
    assert sanitize(raw) == want


def test_sanitize_caps_the_length_and_never_ends_on_a_dash():
    long = sanitize("a" * 47 + " bcdef" * 20)
    assert len(long) <= names.MAX_STUDENT_CHARS
    assert long == "a" * 47  # the 48th character was a '-' and is dropped


def test_a_name_without_ascii_letters_gets_a_stable_distinct_name():
    first, second = sanitize("王小明"), sanitize("李华")
    assert re.fullmatch(r"student-[0-9a-f]{8}", first)
    assert first == sanitize("王小明") != second


def test_an_empty_name_is_an_error_that_says_what_to_set():
    with pytest.raises(IllegalArgumentError, match="LABKIT_STUDENT"):
        sanitize("   ")


# -- private or shared --------------------------------------------------------------------


def test_the_default_lab_is_private_and_keeps_names_as_written():
    current = naming({}, getuser=os_user())
    assert not current.shared
    assert current.student is None
    assert current.prefix == ""
    assert current.topic("nb03-transactions") == "nb03-transactions"
    assert current.group("nb06-fraud-team") == "nb06-fraud-team"


def test_labkit_student_alone_makes_the_lab_shared():
    current = naming({"LABKIT_STUDENT": "Anna"}, getuser=os_user())
    assert current.shared
    assert current.student == "anna"
    assert current.source == "LABKIT_STUDENT"
    assert current.topic("nb03-alerts") == "anna.nb03-alerts"
    assert current.group("nb06-fraud") == "anna.nb06-fraud"


def test_labkit_shared_without_a_student_uses_the_hub_user_then_the_os_user():
    hub = naming({"LABKIT_SHARED": "1", "JUPYTERHUB_USER": "bartek"}, getuser=os_user("jovyan"))
    assert (hub.student, hub.source) == ("bartek", "JUPYTERHUB_USER")
    assert naming({"LABKIT_SHARED": "yes"}, getuser=os_user("jkowalski")).student == "jkowalski"
    student_wins = naming(
        {"LABKIT_SHARED": "1", "LABKIT_STUDENT": "celina", "JUPYTERHUB_USER": "bartek"},
        getuser=os_user(),
    )
    assert student_wins.student == "celina"


def test_labkit_shared_0_turns_prefixes_off_even_with_a_student():
    current = naming({"LABKIT_SHARED": "0", "LABKIT_STUDENT": "anna"}, getuser=os_user())
    assert not current.shared
    assert current.topic("nb01-rta") == "nb01-rta"


def test_a_bad_shared_flag_or_an_unknown_user_is_a_clear_error():
    with pytest.raises(IllegalArgumentError, match=r"LABKIT_SHARED='maybe'.*1.*0"):
        naming({"LABKIT_SHARED": "maybe"}, getuser=os_user())
    with pytest.raises(IllegalStateError, match="set LABKIT_STUDENT"):
        naming({"LABKIT_SHARED": "1"}, getuser=no_user)


# -- the prefix rules ---------------------------------------------------------------------


def test_prefixing_is_idempotent_so_names_may_pass_through_twice():
    current = Naming("anna", "LABKIT_STUDENT")
    once = current.topic("nb03-alerts")
    assert current.topic(once) == once == "anna.nb03-alerts"
    assert current.group(current.group("nb06-x")) == "anna.nb06-x"


def test_one_students_prefix_never_matches_anothers_topics():
    anna, anna_maria = naming({"LABKIT_STUDENT": "anna"}), naming({"LABKIT_STUDENT": "anna.maria"})
    theirs = anna_maria.topic("nb01-rta")
    assert theirs == "anna-maria.nb01-rta"
    assert not theirs.startswith(anna.topic("nb01-"))  # anna's clean-up leaves it alone


@pytest.mark.parametrize("student", ["Łucja Wójcik", "x" * 300, "王小明", "o'brien@uni.edu"])
def test_prefixed_topic_names_follow_kafkas_rules(student):
    name = naming({"LABKIT_STUDENT": student}).topic("nb10-scoring-group")
    assert TOPIC_RULE.fullmatch(name)
    assert name not in (".", "..")


@pytest.mark.parametrize("bad", ["", "nb03 alerts", "nb03/alerts", ".", "..", "ałerty", None, 3])
def test_an_invalid_topic_name_is_refused_with_the_rule(bad):
    with pytest.raises(IllegalArgumentError, match="topic"):
        Naming(None, "test").topic(bad)


def test_a_name_too_long_once_prefixed_is_refused():
    current = Naming("anna", "LABKIT_STUDENT")
    assert current.topic("t" * 244) == "anna." + "t" * 244  # 249: the limit
    with pytest.raises(IllegalArgumentError, match="250 characters"):
        current.topic("t" * 245)


def test_the_notebook_helpers_read_the_environment_on_each_call(env):
    assert (nb.topic("nb03-alerts"), nb.group("nb06-fraud"), nb.student()) == (
        "nb03-alerts",
        "nb06-fraud",
        None,
    )
    env(LABKIT_STUDENT="Bartek")
    assert (nb.topic("nb03-alerts"), nb.group("nb06-fraud"), nb.student()) == (
        "bartek.nb03-alerts",
        "bartek.nb06-fraud",
        "bartek",
    )


# -- the doctor's line ------------------------------------------------------------------------


def test_the_doctor_shows_the_student_and_prefix_on_a_shared_broker(env):
    env(LABKIT_STUDENT="Anna Nowak")
    result = doctor_module.student_result(["10.0.0.5:9092"])
    assert result.status == doctor_module.OK
    assert "anna-nowak" in result.detail
    assert "'anna-nowak.'" in result.detail


def test_the_doctor_says_private_and_warns_only_for_a_broker_elsewhere(env):
    local = doctor_module.student_result(["localhost:9092"])
    compose = doctor_module.student_result(["broker:9092"])
    assert local.status == compose.status == doctor_module.OK
    assert "as written" in local.detail
    remote = doctor_module.student_result(["lab.example.edu:9092"])
    assert remote.status == doctor_module.WARN
    assert "LABKIT_STUDENT" in remote.fix


def test_the_doctor_fails_the_student_line_for_a_bad_setting(env):
    env(LABKIT_SHARED="maybe")
    result = doctor_module.student_result(["localhost:9092"])
    assert result.status == doctor_module.FAIL
    assert "LABKIT_SHARED" in result.detail


def test_the_doctor_report_includes_the_student_line(env, monkeypatch):
    env(LABKIT_STUDENT="celina")
    monkeypatch.setattr(
        "labkit.nb.doctor_broker._broker_info",
        lambda servers, timeout: {"broker": "labkit", "version": "?"},
    )
    out = io.StringIO()
    report = doctor_module.doctor("127.0.0.1:1", roundtrip=False, file=out)
    assert "student: celina (from LABKIT_STUDENT)" in out.getvalue()
    assert report["student"].status == doctor_module.OK


# -- the checks that compare topic names -----------------------------------------------


def description(topic: str, partitions: int = 4) -> dict:
    return {
        "topic": topic,
        "error_code": 0,
        "partitions": [{"partition": p} for p in range(partitions)],
    }


def metadata(topic: str, count: int = 20) -> list:
    return [SimpleNamespace(topic=topic, partition=0, offset=o) for o in range(count)]


# 01.1 and 02.1 PASS with prefixed names (and with the bare name as topic=) only when the
# broker holds the topic: tests/integration/test_series_a_checks.py
# (test_01_1_and_02_1_pass_with_prefixed_or_bare_names, and on a private broker)


def test_a_topic_without_the_prefix_fails_with_a_hint_naming_it(env):
    env(LABKIT_STUDENT="anna")
    result = nb.evaluate("01.1", description("nb01-payments"), topic=nb.topic("nb01-payments"))
    assert result.status == "FAIL"
    assert "'anna.'" in result.hint
    assert "use nb.topic('nb01-payments')" in result.hint
    result = nb.evaluate("02.1", metadata("nb02-transactions"), topic=nb.topic("nb02-transactions"))
    assert result.status == "FAIL"
    assert "use nb.topic('nb02-transactions')" in result.hint


def test_another_students_topic_does_not_pass(env):
    env(LABKIT_STUDENT="anna")
    result = nb.evaluate("01.1", description("bartek.nb01-payments"), topic="nb01-payments")
    assert result.status == "FAIL"
    assert "bartek.nb01-payments" in result.hint
    assert "'anna.'" not in result.hint


def test_on_a_private_broker_the_names_must_match_exactly(env):
    result = nb.evaluate("01.1", description("anna.nb01-payments"), topic="nb01-payments")
    assert result.status == "FAIL"
