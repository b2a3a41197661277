"""Each Polish master (instructor/masters/pl/) mirrors its English master cell for cell: the
same cells (type, id, order), the same exercises, and code that differs only in comments and
in strings meant for reading (what print() shows, docstrings, plot titles and labels, bar
names). Any other string -- exercise ids, check arguments, topic and group names, dict keys,
data sent to the broker from Python -- is the same in both, and so is every shell (`!`)
command apart from its '...'-quoted text (the console tools' sample lines). So a check grades
both languages alike, and an edit to one master that is not made to the other fails here.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

from labkit.course import grading

ROOT = Path(__file__).resolve().parents[2]
MASTERS = ROOT / "instructor" / "masters"
PL_NAMES = [p.stem for p in sorted((MASTERS / "pl").glob("*.ipynb"))]
SHELL_LINE = re.compile(r"^(?P<indent>[ \t]*)(?:[%!?]|\w+[ \t]*=[ \t]*[%!])")
SHELL_QUOTED = re.compile(r"'[^']*'")
# strings read by people, not by code: the arguments of these calls and keywords
READABLE_CALLS = {"print", "add"}
READABLE_KEYWORDS = {"title", "xlabel", "ylabel"}
STRING = "<str>"


def _blank_shell(source: str) -> str:
    return "\n".join(
        m["indent"] + "pass" if (m := SHELL_LINE.match(line)) else line
        for line in source.split("\n")
    )


def _shell_lines(source: str) -> list[str]:
    return [SHELL_QUOTED.sub("'…'", line) for line in source.split("\n") if SHELL_LINE.match(line)]


class _Strings(ast.NodeTransformer):
    """Replaces readable strings by a placeholder and keeps every other one, so that two
    cells compare equal exactly when they differ only in readable strings (and comments).
    Readable: a string or f-string's text given straight to print()/add() or as a title or
    axis label, and a docstring; an f-string's {fields}, and any string inside an
    expression (``tx["amount"]``), are code."""

    def _readable(self, node: ast.expr) -> ast.expr:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return ast.Constant(STRING)
        if isinstance(node, ast.JoinedStr):
            fields = [self.visit(v) for v in node.values if isinstance(v, ast.FormattedValue)]
            return ast.JoinedStr(fields)
        if isinstance(node, ast.BoolOp):  # print(groups or "none")
            return ast.BoolOp(node.op, [self._readable(v) for v in node.values])
        return self.visit(node)

    def visit_Call(self, node: ast.Call) -> ast.AST:
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        node.func = self.visit(node.func)
        node.args = [
            self._readable(arg) if name in READABLE_CALLS else self.visit(arg) for arg in node.args
        ]
        for keyword in node.keywords:
            keyword.value = (
                self._readable(keyword.value)
                if keyword.arg in READABLE_KEYWORDS
                else self.visit(keyword.value)
            )
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        if ast.get_docstring(node, clean=False) is not None:
            node.body[0] = ast.Expr(ast.Constant(STRING))
        return self.generic_visit(node)

    visit_ClassDef = visit_FunctionDef  # type: ignore[assignment]


def code_shape(source: str) -> str:
    tree = _Strings().visit(ast.parse(_blank_shell(source)))
    return ast.dump(tree) + "\n" + "\n".join(_shell_lines(source))


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(str(path), as_version=4)


def test_the_comparison_sees_what_matters():
    assert code_shape('print("deleted:", old)') == code_shape('print("usunięte:", old)')
    assert code_shape('def f():\n    """Doc."""\n    return 1') == code_shape(
        'def f():\n    """Dokumentacja."""\n    return 1'
    )
    assert code_shape("x = 1  # why") == code_shape("x = 1  # dlaczego")
    assert code_shape('print(x or "none")') == code_shape('print(x or "brak")')
    for english, polish in [
        ('nb.check("03.1", f)', 'nb.check("03.2", f)'),
        ('TOPIC = nb.topic("nb01-rta")', 'TOPIC = nb.topic("nb01-temat")'),
        ('tx["amount"]', 'tx["kwota"]'),
        ('print(tx["amount"])', 'print(tx["kwota"])'),
        ('print(f"{a}: {b}")', 'print(f"{b}: {a}")'),
        ("print(a, b)", "print(b, a)"),
        ('print(x or "none")', 'print(y or "brak")'),
        ("!labkit topics --list", "!labkit topics --describe"),
    ]:
        assert code_shape(english) != code_shape(polish), (english, polish)


@pytest.mark.parametrize("name", PL_NAMES)
def test_the_polish_master_mirrors_the_english_one(name):
    polish, english = _read(MASTERS / "pl" / f"{name}.ipynb"), _read(MASTERS / f"{name}.ipynb")
    assert polish.metadata.get("labkit") == {"language": "pl"}, (
        f'pl/{name}: add "labkit": {{"language": "pl"}} to the notebook metadata'
    )
    assert [(c.cell_type, c.get("id")) for c in polish.cells] == [
        (c.cell_type, c.get("id")) for c in english.cells
    ], f"pl/{name}: the cells (type, id, order) differ from {name}"
    assert grading.exercise_ids(polish) == grading.exercise_ids(english)
    markdown = [c.source.lower() for c in polish.cells if c.cell_type == "markdown"]
    assert any("## podsumowanie" in text for text in markdown[-3:]), (
        f"pl/{name}: the notebook should end with a '## Podsumowanie' (and what comes next)"
    )
    student = _read(ROOT / "notebooks" / "pl" / f"{name}.ipynb")
    assert student.metadata.get("labkit") == {"language": "pl"}, (
        f"notebooks/pl/{name}.ipynb should keep the master's language: run `labkit notebooks build`"
    )
    for pl_cell, en_cell in zip(polish.cells, english.cells, strict=True):
        if en_cell.cell_type == "code":
            assert code_shape(pl_cell.source) == code_shape(en_cell.source), (
                f"pl/{name}, cell {en_cell.get('id')}: the code differs from the English "
                "master beyond comments and strings meant for reading"
            )
