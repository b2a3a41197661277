"""The translated masters stay in step with the English ones (labkit/course/translations.py).

The checker is tried on small notebooks written here: a faithful translation passes, and
each kind of drift (a changed check argument, exercise id, topic name, statement, magic
line, solution marker, missing cell, missing translation, wrong metadata) is named. The
repository's own masters are checked too, once instructor/masters/pl/ exists.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from labkit.cli import main as cli
from labkit.course import authoring, translations

ROOT = Path(__file__).resolve().parents[2]
MASTERS = ROOT / "instructor" / "masters"

EN_CODE = [
    '"""Notebook 02: the producer."""\n'
    "from labkit import KafkaProducer, nb\n"
    'TOPIC = nb.topic("nb02-transactions")  # the topic of this notebook\n'
    'print("the topic is", TOPIC)\n'
    'nb.doctor(title="Is the broker up?")',
    "!labkit topics --create --topic nb02-transactions --partitions 3\n"
    "producer = KafkaProducer(bootstrap_servers=nb.bootstrap_servers())\n"
    "# send twenty transactions\n"
    "sent = 0\n"
    "for tx in nb.transactions(seed=2, count=20):\n"
    '    producer.send(TOPIC, key=tx["user_id"].encode("utf-8"), value=b"x")\n'
    "    sent += 1\n"
    'print(f"sent {sent} records to {TOPIC}")\n'
    'assert sent == 20, f"expected 20, sent {sent}"',
    "### BEGIN SOLUTION\n"
    "producer.flush()\n"
    "in_topic = sent\n"
    "### END SOLUTION\n"
    'nb.check("02.2", in_topic, topic=TOPIC, sent=20)',
]

PL_CODE = [
    '"""Notatnik 02: producent."""\n'
    "from labkit import KafkaProducer, nb\n"
    'TOPIC = nb.topic("nb02-transactions")  # temat tego notatnika\n'
    'print("temat to", TOPIC)\n'
    'nb.doctor(title="Czy broker działa?")',
    "!labkit topics --create --topic nb02-transactions --partitions 3\n"
    "producer = KafkaProducer(bootstrap_servers=nb.bootstrap_servers())\n"
    "# wyślij dwadzieścia transakcji\n"
    "sent = 0\n"
    "for tx in nb.transactions(seed=2, count=20):\n"
    '    producer.send(TOPIC, key=tx["user_id"].encode("utf-8"), value=b"x")\n'
    "    sent += 1\n"
    'print(f"wysłano {sent} rekordów do {TOPIC}")\n'
    'assert sent == 20, f"oczekiwano 20, wysłano {sent}"',
    "### BEGIN SOLUTION\n"
    "producer.flush()  # wyślij bufor\n"
    "in_topic = sent\n"
    "### END SOLUTION\n"
    'nb.check("02.2", in_topic, topic=TOPIC, sent=20)',
]


def notebook(code: list[str], language: str | None, markdown: str) -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    if language:
        nb.metadata["labkit"] = {"language": language}
    nb.cells = [new_markdown_cell(markdown)]
    for source in code:
        nb.cells += [new_code_cell(source), new_markdown_cell(markdown)]
    return nb


def masters_with(tmp_path: Path, pl_code: list[str] | None = None, language="pl") -> Path:
    masters = tmp_path / "masters"
    (masters / "pl").mkdir(parents=True)
    nbformat.write(notebook(EN_CODE, None, "## The producer"), str(masters / "02_producer.ipynb"))
    nbformat.write(
        notebook(PL_CODE if pl_code is None else pl_code, language, "## Producent\n\nTekst."),
        str(masters / "pl" / "02_producer.ipynb"),
    )
    return masters


def changed(cell: int, old: str, new: str) -> list[str]:
    code = list(PL_CODE)
    assert old in code[cell]
    code[cell] = code[cell].replace(old, new)
    return code


def test_a_faithful_translation_has_no_drift(tmp_path):
    assert translations.drift(masters_with(tmp_path)) == []


def test_no_translation_folder_is_no_drift(tmp_path):
    masters = tmp_path / "masters"
    masters.mkdir()
    nbformat.write(notebook(EN_CODE, None, "x"), str(masters / "02_producer.ipynb"))
    assert translations.drift(masters) == []


@pytest.mark.parametrize(
    ("cell", "old", "new", "named"),
    [
        (2, 'nb.check("02.2"', 'nb.check("02.3"', "nb.check calls differ"),  # exercise id
        (2, "sent=20)", "sent=21)", "nb.check calls differ"),  # a check argument
        (0, '"nb02-transactions"', '"nb02-transakcje"', "code cell 1: the code differs"),
        (1, '"utf-8"', '"latin-1"', "code cell 2: the code differs"),  # an identifier-like string
        (1, "count=20", "count=30", "code cell 2: the code differs"),
        (1, "    sent += 1\n", "    sent += 1\n    sent += 0\n", "code cell 2: the code differs"),
        (1, "--partitions 3", "--partitions 4", "code cell 2: the ! or % lines differ"),
        (2, "### END SOLUTION\n", "", "code cell 3: the solution markers"),
    ],
)
def test_each_kind_of_drift_is_named(tmp_path, cell, old, new, named):
    problems = translations.drift(masters_with(tmp_path, changed(cell, old, new)))
    assert any(named in p for p in problems), problems


def test_an_ors_words_and_a_quoted_shell_sentence_may_be_translated(tmp_path):
    """``print(x or "none")`` and ``!echo "hello there"`` are text; the names are not."""
    en, pl = list(EN_CODE), list(PL_CODE)
    en[0] += '\nprint("deleted:", old or "nothing")\n!echo "hello from a notebook"'
    pl[0] += '\nprint("usunięto:", old or "nic")\n!echo "pozdrowienia z notatnika"'
    masters = masters_with(tmp_path, pl)
    nbformat.write(notebook(en, None, "## The producer"), str(masters / "02_producer.ipynb"))
    assert translations.drift(masters) == []
    pl[0] = pl[0].replace("old or", "new or").replace("!echo", "!printf")
    nbformat.write(notebook(pl, "pl", "## Producent"), str(masters / "pl" / "02_producer.ipynb"))
    problems = translations.drift(masters)
    assert any("the ! or % lines differ" in p for p in problems), problems


def test_a_missing_code_cell_is_drift(tmp_path):
    problems = translations.drift(masters_with(tmp_path, PL_CODE[:2]))
    assert any("2 code cells, the English master has 3" in p for p in problems), problems


def test_the_metadata_must_name_the_folders_language(tmp_path):
    problems = translations.drift(masters_with(tmp_path, language=None))
    assert any("\"language\": 'pl'" in p for p in problems), problems


def test_a_missing_or_extra_translation_is_drift(tmp_path):
    masters = masters_with(tmp_path)
    nbformat.write(notebook(EN_CODE, None, "x"), str(masters / "03_consumer.ipynb"))
    nbformat.write(notebook(PL_CODE, "pl", "x"), str(masters / "pl" / "99_extra.ipynb"))
    problems = translations.drift(masters)
    assert any("pl/03_consumer.ipynb: missing" in p for p in problems), problems
    assert any("99_extra.ipynb: no English master" in p for p in problems), problems


def test_notebooks_build_and_check_cover_both_languages(tmp_path, capsys):
    masters = masters_with(tmp_path)
    out = tmp_path / "notebooks"
    assert cli.main(["notebooks", "build", "--masters", str(masters), "--out", str(out)]) == 0
    student = nbformat.read(str(out / "pl" / "02_producer.ipynb"), as_version=4)
    assert student.metadata["labkit"] == {"language": "pl"}  # the kernel speaks Polish
    assert "producer.flush()" not in "".join(c.source for c in student.cells)
    assert (out / "02_producer.ipynb").exists()
    assert authoring.stale(masters, out) == []
    assert cli.main(["notebooks", "check", "--masters", str(masters), "--out", str(out)]) == 0
    (out / "pl" / "02_producer.ipynb").unlink()
    assert cli.main(["notebooks", "check", "--masters", str(masters), "--out", str(out)]) == 1
    assert "pl/02_producer.ipynb: missing" in capsys.readouterr().err


def test_notebooks_check_fails_on_translation_drift(tmp_path, capsys):
    masters = masters_with(tmp_path, changed(2, "sent=20)", "sent=21)"))
    out = tmp_path / "notebooks"
    cli.main(["notebooks", "build", "--masters", str(masters), "--out", str(out)])
    capsys.readouterr()
    assert cli.main(["notebooks", "check", "--masters", str(masters), "--out", str(out)]) == 1
    assert "nb.check calls differ" in capsys.readouterr().err


def test_the_repositorys_translations_are_in_step():
    """Bites once instructor/masters/pl/ exists: every English master needs its translation,
    and each translation must be in step (until then there is nothing to compare)."""
    assert translations.drift(MASTERS) == []
