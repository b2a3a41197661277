"""labkit's message catalogues (labkit/i18n.py, labkit/locale/, docs/languages.md).

The catalogue is complete (every message has a Polish translation with the same
placeholders), in step with the code (`make i18n` was run: the .pot lists exactly what the
code marks, the committed .mo is the compiled .po), every hint a check can give goes
through it, and the language is chosen in the documented order.
"""

from __future__ import annotations

import ast
import gettext
import io
import json
import string
from pathlib import Path

import pytest

from labkit import i18n, nb
from labkit.course import checks

babel = pytest.importorskip("babel")
from babel.messages.extract import extract_from_dir  # noqa: E402
from babel.messages.mofile import write_mo  # noqa: E402
from babel.messages.pofile import read_po  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
LOCALE = ROOT / "labkit" / "locale"
POT = LOCALE / "labkit.pot"
KEYWORDS = {  # as in the Makefile
    "_": None,
    "N_": None,
    "ngettext": (1, 2),
    "counted": (2, 3),
    "pgettext": ((1, "c"), 2),
}
TRANSLATED = [lang for lang in i18n.LANGUAGES if lang != i18n.DEFAULT]


def _catalog(path: Path):
    with open(path, "rb") as handle:
        return read_po(handle)


def _po(lang: str) -> Path:
    return LOCALE / lang / "LC_MESSAGES" / "labkit.po"


def _fields(text: str) -> list[tuple[str, str, str]]:
    """The replacement fields of a str.format template: (name, conversion, spec), sorted.

    A message that is not used as a template (``_("give a dict {a: b}")``) parses the
    same way in both languages as long as the translation keeps its braces."""
    found = []
    for _literal, name, spec, conversion in string.Formatter().parse(text):
        if name is not None:
            found.append((name, conversion or "", spec or ""))
    return sorted(found)


def _ids(messages) -> list:
    return [m.id for m in messages if m.id]


@pytest.mark.parametrize("lang", TRANSLATED)
def test_every_message_has_a_translation(lang):
    pot, po = _catalog(POT), _catalog(_po(lang))
    missing = [m for m in _ids(pot) if m not in po or not po[m].string or po[m].fuzzy]
    assert missing == [], f"untranslated in {lang} (run `make i18n`, then translate): {missing}"
    plural_forms = po.num_plurals
    for m in po:
        if m.id and m.pluralizable:
            assert len(m.string) == plural_forms, m.id
            assert all(m.string), m.id


@pytest.mark.parametrize("lang", TRANSLATED)
def test_placeholders_match_in_both_languages(lang):
    problems = []
    for m in _catalog(_po(lang)):
        if not m.id:
            continue
        ids = m.id if isinstance(m.id, tuple) else (m.id,)
        strings = m.string if isinstance(m.string, tuple) else (m.string,)
        want = _fields(ids[-1])
        for original in ids:
            if _fields(original) != want:
                problems.append((original, "singular and plural differ"))
        for text in strings:
            try:
                got = _fields(text)
            except ValueError as exc:
                problems.append((text, str(exc)))
                continue
            if got != want:
                problems.append((ids[0], f"{want} != {got} in {text!r}"))
    assert problems == []


def test_the_template_lists_exactly_what_the_code_marks():
    in_code = {
        (context, msg)
        for _file, _line, msg, _comments, context in extract_from_dir(
            str(ROOT / "labkit"),
            method_map=[("**.py", "python")],
            keywords=KEYWORDS,
        )
    }
    in_template = {(m.context, m.id) for m in _catalog(POT) if m.id}
    assert in_template == in_code, "run `make i18n` (and translate what is new)"


@pytest.mark.parametrize("lang", TRANSLATED)
def test_the_committed_mo_is_the_compiled_po(lang):
    compiled = io.BytesIO()
    write_mo(compiled, _catalog(_po(lang)))
    compiled.seek(0)
    with open(_po(lang).with_suffix(".mo"), "rb") as handle:
        committed = gettext.GNUTranslations(handle)
    fresh = gettext.GNUTranslations(compiled)
    assert committed._catalog == fresh._catalog, "run `make i18n` to compile the .mo"  # type: ignore[attr-defined]


# -- every hint a check gives is a message of the catalogue ----------------------------

HINT_ARGUMENT = {"expect": 1, "Wrong": 0, "StudentCodeError": 0}


def _unwrapped_hints(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "id", getattr(node.func, "attr", None))
        index = HINT_ARGUMENT.get(name)
        if (
            index is None
            and isinstance(name, str)
            and name.endswith("Error")
            and name != "AttributeError"
        ):
            index = 0  # IllegalArgumentError("...") and friends: a student reads them too
        if index is None or index >= len(node.args):
            continue
        arg = node.args[index]
        texts = [arg.body, arg.orelse] if isinstance(arg, ast.IfExp) else [arg]
        for text in texts:
            literal = isinstance(text, ast.JoinedStr) or (
                isinstance(text, ast.Constant) and isinstance(text.value, str) and text.value
            )
            if literal:
                found.append(f"{path.name}:{text.lineno}")
    return found


def test_every_hint_of_a_check_goes_through_the_catalogue():
    course = ROOT / "labkit" / "course"
    files = [course / "checks.py", course / "broker_checks.py", course / "reset.py"]
    files += sorted((course / "exercises").glob("nb*.py"))
    unwrapped = [where for path in files for where in _unwrapped_hints(path)]
    assert unwrapped == [], f"hints written as plain strings (wrap them in _()): {unwrapped}"


def test_every_error_of_the_notebook_helpers_goes_through_the_catalogue():
    files = sorted((ROOT / "labkit" / "nb").glob("*.py"))
    unwrapped = [where for path in files for where in _unwrapped_hints(path)]
    assert unwrapped == [], f"errors written as plain strings (wrap them in _()): {unwrapped}"


def test_a_notebook_helpers_error_speaks_polish(monkeypatch):
    monkeypatch.setenv("LABKIT_LANG", "pl")
    with pytest.raises(nb.IllegalArgumentError, match="to niepoprawna nazwa tematu"):
        nb.topic("zła nazwa!")


def test_the_class_report_is_in_the_instructors_language(monkeypatch):
    from labkit.course import grade_report
    from labkit.course.grading import ExerciseScore, NotebookGrade

    title = "Warm-up: the four cities of the shop network"  # as the grade log records it
    grades = [
        NotebookGrade(
            "anna",
            "00_start_here.ipynb",
            "00_start_here.ipynb",
            exercises=[ExerciseScore("00.1", title, checks.PASS, 1, 1, "ZALICZONE 00.1 (1/1 pkt)")],
        )
    ]
    monkeypatch.setenv("LABKIT_LANG", "pl")
    page = grade_report.class_report(grades)
    assert '<html lang="pl">' in page
    assert "Rozgrzewka: cztery miasta sieci sklepów" in page
    assert "<th>odsetek zaliczeń</th>" in page
    assert grade_report.table(grades).splitlines()[0].split() == ["student", "00.1", "suma"]
    monkeypatch.setenv("LABKIT_LANG", "en")
    assert title in grade_report.class_report(grades)
    assert grade_report.table(grades).splitlines()[0].split() == ["student", "00.1", "total"]


def test_the_hint_scan_finds_a_plain_string(tmp_path):
    sample = tmp_path / "nb99.py"
    sample.write_text(
        'expect(ok, f"got {x}")\nraise Wrong("no")\nexpect(ok, _("fine"))\n', encoding="utf-8"
    )
    assert _unwrapped_hints(sample) == ["nb99.py:1", "nb99.py:2"]


# -- check feedback in each language ---------------------------------------------------


def test_a_check_speaks_polish_when_the_language_is_polish(monkeypatch, capsys):
    monkeypatch.setenv("LABKIT_LANG", "pl")
    nb.check("00.1", ["Kraków", "Gdańsk"])
    nb.check("00.1", ...)
    nb.check("00.1", ["Warszawa", "Kraków", "Gdańsk", "Wrocław"])
    assert capsys.readouterr().out.splitlines() == [
        "NIEZALICZONE 00.1 (0/1 pkt): brakuje: 2 miasta; zajrzyj do pola 'store' transakcji",
        "BRAK ODPOWIEDZI 00.1 (0/1 pkt): zastąp ... swoją odpowiedzią",
        "ZALICZONE 00.1 (1/1 pkt)",
    ]


def test_the_same_check_speaks_english_in_english(monkeypatch, capsys):
    monkeypatch.setenv("LABKIT_LANG", "en")
    nb.check("00.1", ["Kraków", "Gdańsk"])
    nb.check("00.1", ...)
    nb.check("00.1", ["Warszawa", "Kraków", "Gdańsk", "Wrocław"])
    assert capsys.readouterr().out.splitlines() == [
        "FAIL 00.1 (0/1 points): 2 cities missing: look at the 'store' field of a transaction",
        "NOT ATTEMPTED 00.1 (0/1 points): replace the ... with your answer",
        "PASS 00.1 (1/1 points)",
    ]


def test_the_grade_log_keeps_the_english_status_codes_in_any_language(monkeypatch, tmp_path):
    log = tmp_path / "log.jsonl"
    monkeypatch.setenv("LABKIT_GRADE_LOG", str(log))
    monkeypatch.setenv("LABKIT_LANG", "pl")
    nb.check("00.1", ["Kraków"])
    record = json.loads(log.read_text(encoding="utf-8"))
    assert record["status"] == checks.FAIL
    assert record["message"].startswith("NIEZALICZONE 00.1 (0/1 pkt): brakuje: 3 miasta")


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (1, "1 miasto"),
        (2, "2 miasta"),
        (4, "4 miasta"),
        (5, "5 miast"),
        (12, "12 miast"),
        (22, "22 miasta"),
        (25, "25 miast"),
        (0, "0 miast"),
    ],
)
def test_polish_numbers_take_the_right_of_three_forms(monkeypatch, count, text):
    monkeypatch.setenv("LABKIT_LANG", "pl")
    assert checks.counted(count, "city", "cities") == text


def test_a_polish_reset_offer_and_student_error(monkeypatch):
    monkeypatch.setenv("LABKIT_LANG", "pl")
    result = nb.evaluate("02.2", "30", topic="nb02-flush", sent=30)
    assert result.line.startswith("NIEZALICZONE 02.2 (0/1 pkt): podaj liczbę rekordów jako int")
    assert result.line.endswith(
        "aby zacząć 02.2 od nowa: nb.reset('02.2'), potem ponownie uruchom komórki ćwiczenia"
    )


# -- which language ----------------------------------------------------------------------


def _notebook(path: Path, language: str | None) -> Path:
    metadata = {"labkit": {"language": language}} if language else {}
    path.write_text(
        json.dumps({"cells": [], "metadata": metadata, "nbformat": 4, "nbformat_minor": 5}),
        encoding="utf-8",
    )
    return path


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("LABKIT_LANG", "JPY_SESSION_NAME", "LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_english_when_nothing_says_otherwise(clean_env):
    assert i18n.language() == "en"


def test_the_locale_chooses_when_nothing_else_does(clean_env):
    clean_env.setenv("LANG", "pl_PL.UTF-8")
    assert i18n.language() == "pl"
    clean_env.setenv("LC_ALL", "C.UTF-8")  # LC_ALL wins over LANG: C is no language of labkit
    assert i18n.language() == "en"


def test_labkit_lang_wins_over_the_locale(clean_env):
    clean_env.setenv("LANG", "en_US.UTF-8")
    clean_env.setenv("LABKIT_LANG", "pl")
    assert i18n.language() == "pl"


def test_a_language_labkit_does_not_speak_falls_through(clean_env):
    clean_env.setenv("LABKIT_LANG", "de")
    clean_env.setenv("LANG", "pl_PL.UTF-8")
    assert i18n.language() == "pl"


def test_the_running_notebooks_metadata_wins_over_labkit_lang(clean_env, tmp_path):
    clean_env.setenv("LABKIT_LANG", "en")
    clean_env.setenv("JPY_SESSION_NAME", str(_notebook(tmp_path / "02_producer.ipynb", "pl")))
    assert i18n.language() == "pl"
    clean_env.setenv("JPY_SESSION_NAME", str(_notebook(tmp_path / "en.ipynb", None)))
    assert i18n.language() == "en"  # no language in the metadata: LABKIT_LANG decides
    clean_env.setenv("JPY_SESSION_NAME", str(tmp_path / "gone.ipynb"))
    assert i18n.language() == "en"  # an unreadable notebook is no error


def test_ipykernels_session_name_is_read_too(clean_env, tmp_path, monkeypatch):
    import __main__

    path = _notebook(tmp_path / "pl.ipynb", "pl")
    monkeypatch.setattr(__main__, "__session__", str(path), raising=False)
    assert i18n.language() == "pl"


def test_the_notebook_language_follows_an_edit_of_its_metadata(clean_env, tmp_path):
    path = _notebook(tmp_path / "nb.ipynb", "pl")
    clean_env.setenv("JPY_SESSION_NAME", str(path))
    assert i18n.language() == "pl"
    _notebook(path, "en")
    import os

    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert i18n.language() == "en"


def test_nb_language_wins_over_everything(clean_env, tmp_path):
    clean_env.setenv("JPY_SESSION_NAME", str(_notebook(tmp_path / "nb.ipynb", "en")))
    assert nb.language("pl") == "pl"
    assert nb.language() == "pl"
    assert nb.language("en-GB") == "en"


def test_nb_language_names_the_languages_it_speaks():
    with pytest.raises(nb.IllegalArgumentError, match="en, pl"):
        nb.language("klingon")
