"""Translated masters kept in step with the English ones (``labkit notebooks check``).

Theory of operation
-------------------
The English masters are ``instructor/masters/*.ipynb``; a translation lives in a folder
named after its language, ``instructor/masters/pl/``, under the same file name, with
``{"labkit": {"language": "pl"}}`` in its metadata (docs/languages.md). A translation
changes what a student reads and nothing a check or the grader depends on. ``drift``
compares every translated master with its English master and names each difference:

- a master with no translation, or a translation with no English master;
- the metadata's ``labkit.language`` not being the folder's language;
- a different number of code cells, or a code cell's tags (``instructor``) differing;
- a code cell whose code differs *beyond comments and text meant for reading*: both
  cells are parsed and compared as syntax trees after every string meant for reading
  is blanked. A string is meant for reading when it is a docstring, an argument of
  ``print``/``display``/``Markdown``/``HTML``/``input``, a keyword argument named like
  a label (``title=``, ``label=``, ``desc=``, ...), the message of an ``assert`` or of
  a raised exception, a matplotlib title or axis label, or when it holds whitespace (a
  sentence); an f-string meant for reading keeps its ``{expressions}``. Identifier-like
  strings (topic names ``"nb02-flush"``, keys ``"amount"``, ``"utf-8"``) must stay the
  same; so do an ``or``'s strings in a print (``print(x or "none")``). IPython lines
  (``!labkit topics ...``, ``%time``) must be identical but for quoted sentences, and so
  must the solution markers (``### BEGIN SOLUTION``) and where they are;
- the ``nb.check(...)`` calls: the same calls, with the same arguments (strings
  included), in the same order -- so the exercises, their ids and hence their points
  are the same in both languages.

Markdown cells are free: a translation may split or join paragraphs.
"""

from __future__ import annotations

import ast
import copy
import re
from collections.abc import Iterator
from pathlib import Path

import nbformat

from labkit.course.authoring import MARKER, master_files

DEFAULT_LANGUAGE = "en"
READING_CALLS = frozenset(
    {
        "print",
        "display",
        "Markdown",
        "HTML",
        "input",
        "set_title",
        "set_xlabel",
        "set_ylabel",
        "suptitle",
        "title",
        "xlabel",
        "ylabel",
        "legend",
        "text",
        "annotate",
    }
)
READING_KEYWORDS = frozenset(
    {"title", "label", "xlabel", "ylabel", "desc", "description", "help", "tooltip", "msg"}
)
READ = "…"  # what a string meant for reading becomes before the comparison
_IPYTHON_LINE = re.compile(r"^[ \t]*(?:[%!?]|\w+[ \t]*=[ \t]*[%!])")


def language_folders(masters: Path) -> list[Path]:
    """The translations' folders under ``masters``: a sub-folder named like a language."""
    from labkit import i18n

    return sorted(
        p
        for p in masters.iterdir()
        if p.is_dir() and p.name in i18n.LANGUAGES and p.name != DEFAULT_LANGUAGE
    )


def drift(masters: Path) -> list[str]:
    """Every difference between the translated masters under ``masters`` and the English
    ones (empty when they are in step, or when there is no translation folder yet)."""
    if not masters.is_dir():
        return []
    english = {p.name: p for p in masters.glob("*.ipynb")}
    problems = []
    for folder in language_folders(masters):
        translated = {p.name: p for p in master_files(folder)}
        for name in sorted(set(english) - set(translated)):
            problems.append(
                f"{folder / name}: missing: translate {masters / name} (same file name)"
            )
        for name in sorted(set(translated) - set(english)):
            problems.append(f"{translated[name]}: no English master {masters / name}")
        for name in sorted(set(english) & set(translated)):
            problems.extend(compare_files(english[name], translated[name], folder.name))
    return problems


def compare_files(english: Path, translated: Path, language: str) -> list[str]:
    """The differences of one translated master from its English master."""
    return [
        f"{translated}: {problem}"
        for problem in compare(
            nbformat.read(str(english), as_version=4),
            nbformat.read(str(translated), as_version=4),
            language,
        )
    ]


def compare(
    english: nbformat.NotebookNode, translated: nbformat.NotebookNode, language: str
) -> list[str]:
    """What differs between a translation and its English notebook beyond the reading."""
    problems = []
    meta = translated.get("metadata", {}).get("labkit") or {}
    if meta.get("language") != language:
        problems.append(
            f'metadata "labkit": {{"language": {language!r}}} expected, got '
            f"{meta.get('language')!r}"
        )
    en_cells = [c for c in english.cells if c.cell_type == "code"]
    tr_cells = [c for c in translated.cells if c.cell_type == "code"]
    if len(en_cells) != len(tr_cells):
        problems.append(
            f"{len(tr_cells)} code cells, the English master has {len(en_cells)}: "
            "translate the cells, do not add, remove, split or join them"
        )
    en_checks, tr_checks = _check_calls(en_cells), _check_calls(tr_cells)
    if en_checks != tr_checks:
        problems.append(
            f"nb.check calls differ: {tr_checks} here, {en_checks} in English (same "
            "exercises, ids and arguments in both languages)"
        )
    for number, (en, tr) in enumerate(zip(en_cells, tr_cells, strict=False), start=1):
        problem = _compare_cell(en, tr)
        if problem:
            problems.append(f"code cell {number}: {problem}")
    return problems


def _compare_cell(en: nbformat.NotebookNode, tr: nbformat.NotebookNode) -> str | None:
    en_tags = sorted(en.get("metadata", {}).get("tags", []))
    tr_tags = sorted(tr.get("metadata", {}).get("tags", []))
    if en_tags != tr_tags:
        return f"tags {tr_tags}, in English {en_tags}"
    en_source, tr_source = _text(en), _text(tr)
    if _markers(en_source) != _markers(tr_source):
        return "the solution markers (### BEGIN/END ...) differ from the English cell's"
    if _ipython_lines(en_source) != _ipython_lines(tr_source):
        return "the ! or % lines differ from the English cell's"
    en_tree, tr_tree = _tree(en_source), _tree(tr_source)
    if en_tree is None or tr_tree is None:
        return None if en_source == tr_source else "not valid Python (or not the same)"
    if len(en_tree.body) != len(tr_tree.body):
        return "a different number of statements than the English cell"
    for en_stmt, tr_stmt in zip(en_tree.body, tr_tree.body, strict=True):
        if ast.dump(en_stmt) != ast.dump(tr_stmt):
            line = ast.get_source_segment(en_source, en_stmt) or ""
            shown = line.splitlines()[0] if line else "?"
            return (
                f"the code differs beyond comments and text (English line {en_stmt.lineno}: "
                f"{shown.strip()[:80]!r})"
            )
    return None


def _text(cell: nbformat.NotebookNode) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _markers(source: str) -> list[tuple[int, str]]:
    return [(i, line.strip()) for i, line in enumerate(source.splitlines()) if MARKER.match(line)]


_QUOTED_SENTENCE = re.compile(r"""(["'])([^"'\n]*\s[^"'\n]*)\1""")


def _ipython_lines(source: str) -> list[str]:
    """The ! and % lines, a quoted sentence in them blanked (``!echo "hello there"``)."""
    return [
        _QUOTED_SENTENCE.sub(r"\1…\1", line.strip())
        for line in source.splitlines()
        if _IPYTHON_LINE.match(line)
    ]


def _blank_ipython(source: str) -> str:
    return "\n".join(
        re.sub(r"^([ \t]*).*$", r"\1pass", line) if _IPYTHON_LINE.match(line) else line
        for line in source.split("\n")
    )


def _tree(source: str) -> ast.Module | None:
    try:
        tree = ast.parse(_blank_ipython(source))
    except (SyntaxError, ValueError):
        return None
    return _ForReading().visit(tree)


def _check_calls(cells: list[nbformat.NotebookNode]) -> list[str]:
    """Every ``nb.check(...)``/``check(...)`` call, strings included, in order."""
    calls = []
    for cell in cells:
        try:
            tree = ast.parse(_blank_ipython(_text(cell)))
        except (SyntaxError, ValueError):
            continue
        for node in _walk_in_order(tree):
            if isinstance(node, ast.Call) and _name(node.func) == "check":
                calls.append(ast.unparse(node))
    return calls


def _walk_in_order(node: ast.AST) -> Iterator[ast.AST]:
    yield node
    for child in ast.iter_child_nodes(node):
        yield from _walk_in_order(child)


def _name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _has_space(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str) and any(ch.isspace() for ch in node.value)
    if isinstance(node, ast.JoinedStr):
        return any(_has_space(v) for v in node.values if isinstance(v, ast.Constant))
    return False


def _for_reading(node: ast.AST) -> ast.AST:
    """A string meant for reading, blanked: its words go, an f-string's expressions stay."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return ast.Constant(READ)
    if isinstance(node, ast.JoinedStr):
        return ast.JoinedStr(
            [
                ast.FormattedValue(v.value, v.conversion, None)
                for v in node.values
                if isinstance(v, ast.FormattedValue)
            ]
        )
    return node


class _ForReading(ast.NodeTransformer):
    """Blanks every string meant for reading (see the module's docstring)."""

    def _strings_in(self, node: ast.AST) -> ast.AST:
        """Blank the strings directly in ``node`` (an argument): ``"a" + str(x)`` too."""
        if isinstance(node, ast.Constant | ast.JoinedStr):
            return _for_reading(node)
        if isinstance(node, ast.BinOp):
            node.left = self._strings_in(node.left)  # type: ignore[assignment]
            node.right = self._strings_in(node.right)  # type: ignore[assignment]
            return node
        if isinstance(node, ast.IfExp):
            node.body = self._strings_in(node.body)  # type: ignore[assignment]
            node.orelse = self._strings_in(node.orelse)  # type: ignore[assignment]
            return node
        if isinstance(node, ast.BoolOp):  # print(groups or "none")
            node.values = [self._strings_in(v) for v in node.values]  # type: ignore[misc]
            return node
        return self.visit(node)

    def visit_Call(self, node: ast.Call) -> ast.AST:
        node = copy.copy(node)
        node.func = self.visit(node.func)
        if _name(node.func) in READING_CALLS:
            node.args = [self._strings_in(a) for a in node.args]  # type: ignore[misc]
        else:
            node.args = [self.visit(a) for a in node.args]
        for kw in node.keywords:
            kw.value = (
                self._strings_in(kw.value) if kw.arg in READING_KEYWORDS else self.visit(kw.value)
            )
        return node

    def visit_Assert(self, node: ast.Assert) -> ast.AST:
        node.test = self.visit(node.test)
        if node.msg is not None:
            node.msg = self._strings_in(node.msg)  # type: ignore[assignment]
        return node

    def visit_Raise(self, node: ast.Raise) -> ast.AST:
        if isinstance(node.exc, ast.Call):
            node.exc.args = [self._strings_in(a) for a in node.exc.args]  # type: ignore[misc]
            node.exc.func = self.visit(node.exc.func)
        elif node.exc is not None:
            node.exc = self.visit(node.exc)
        return node

    def visit_Expr(self, node: ast.Expr) -> ast.AST:
        if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            return ast.Expr(ast.Constant(READ))  # a docstring or a bare string
        node.value = self.visit(node.value)
        return node

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        return _for_reading(node) if _has_space(node) else node

    def visit_JoinedStr(self, node: ast.JoinedStr) -> ast.AST:
        if _has_space(node):
            return self.visit(_for_reading(node))
        return self.generic_visit(node)
