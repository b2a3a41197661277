"""Student versions of instructor master notebooks (``labkit notebooks build|check``).

Theory of operation
-------------------
A master holds solutions between nbgrader-compatible markers, each alone on its
line (any number of ``#``)::

    ### BEGIN SOLUTION            ### BEGIN HIDDEN TESTS
    ...solution...                ...checks students never see...
    ### END SOLUTION              ### END HIDDEN TESTS

``student_notebook`` turns a master into the student version:

- a SOLUTION region becomes a stub at the marker's indentation that runs
  without error: ``# YOUR CODE HERE``, then -- if the region defined a function
  -- its signature and docstring with ``...`` as body; if it assigned names that
  code after the region in the same scope reads -- ``name = ...`` for each, so
  the cell that checks ``name`` reports NOT ATTEMPTED instead of a NameError;
  else ``...``. Which names those are is decided on the syntax tree
  (``labkit.course._stubnames``): a local of a function is never stubbed because a
  later cell happens to use the same name, and ``obj[key] = ...`` does not
  replace ``obj``. In a markdown cell the region becomes ``YOUR ANSWER HERE``.
- a HIDDEN TESTS region is removed; a cell left empty by that is dropped, and so
  is any cell tagged ``instructor``.
- outputs and execution counts are cleared; notebook metadata is reduced to the
  kernelspec, language name and ``labkit.language`` (the notebook's human language); cell metadata keeps only ``tags``, ``editable``,
  ``deletable`` and ``jupyter``; cell ids are kept when valid, else derived from
  the cell's position. The JSON is nbformat's (sorted keys, indent 1), so the
  same master always gives the same bytes.

A nested, unclosed, mismatched or inline marker, or a student cell that would no
longer be valid Python (when the master's cell was), is a ``MarkerError`` naming
the notebook, the cell and the line. ``build`` writes ``<out>/<relative path>``
for every ``*.ipynb`` under the masters folder; ``stale`` lists the committed
student versions that differ from what ``build`` would write.
"""

from __future__ import annotations

import ast
import copy
import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nbformat

from labkit.course._stubnames import ReadFirst, bound_names, enclosing_scope
from labkit.errors import IllegalArgumentError

MARKER = re.compile(
    r"^(?P<indent>[ \t]*)#+[ \t]*(?P<edge>BEGIN|END)[ \t]+"
    r"(?P<kind>SOLUTION|HIDDEN TESTS)[ \t]*$"
)
LOOSE_MARKER = re.compile(r"(BEGIN|END)[ \t]+(SOLUTION|HIDDEN TESTS)")
STUB_COMMENT = "# YOUR CODE HERE"
MARKDOWN_STUB = "YOUR ANSWER HERE"
INSTRUCTOR_TAG = "instructor"
KEPT_CELL_METADATA = ("deletable", "editable", "jupyter", "tags")
CELL_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
DEFAULT_KERNELSPEC = {
    "display_name": "Python 3 (ipykernel)",
    "language": "python",
    "name": "python3",
}
_MAGIC_LINE = re.compile(r"^(?P<indent>[ \t]*)(?:[%!?]|\w+[ \t]*=[ \t]*[%!])")


class MarkerError(IllegalArgumentError):
    """A master's solution markers are malformed (names the notebook, cell and line)."""


@dataclass(frozen=True)
class Where:
    notebook: str
    cell: int
    cell_id: str = ""

    def at(self, line: int | None = None) -> str:
        ident = f" (id {self.cell_id})" if self.cell_id else ""
        place = f", line {line}" if line is not None else ""
        return f"{self.notebook}: cell {self.cell}{ident}{place}"


# -- one cell ------------------------------------------------------------------------


def strip_source(source: str, where: Where, *, markdown: bool = False, later_text: str = "") -> str:
    """The student version of one cell's source. Raises ``MarkerError``."""
    lines = source.split("\n")
    out: list[str] = []
    region: tuple[str, int, str] | None = None  # kind, first line number, indent
    body: list[str] = []
    for number, line in enumerate(lines, start=1):
        match = MARKER.match(line)
        if match is None:
            if LOOSE_MARKER.search(line):
                raise MarkerError(
                    f"{where.at(number)}: a marker must be alone on its line, like "
                    f"'### BEGIN SOLUTION'; found {line.strip()!r}"
                )
            (body if region else out).append(line)
            continue
        edge, kind, indent = match["edge"], match["kind"], match["indent"]
        if edge == "BEGIN":
            if region is not None:
                raise MarkerError(
                    f"{where.at(number)}: '### BEGIN {kind}' inside the {region[0]} region "
                    f"that starts on line {region[1]}; markers cannot nest -- close it with "
                    f"'### END {region[0]}' first"
                )
            region, body = (kind, number, indent), []
            continue
        if region is None:
            raise MarkerError(
                f"{where.at(number)}: '### END {kind}' without a '### BEGIN {kind}' before it"
            )
        if kind != region[0]:
            raise MarkerError(
                f"{where.at(number)}: '### END {kind}' closes the {region[0]} "
                f"region that starts on line {region[1]}; use '### END {region[0]}'"
            )
        if kind == "SOLUTION":
            out.extend(
                _markdown_stub(region[2])
                if markdown
                else _code_stub(
                    body, region[2], _reads_after(source, region[1], number, later_text)
                )
            )
        region = None
    if region is not None:
        raise MarkerError(
            f"{where.at(region[1])}: '### BEGIN {region[0]}' is never closed; "
            f"add '### END {region[0]}' at the end of the region"
        )
    return "\n".join(out)


def _markdown_stub(indent: str) -> list[str]:
    return [indent + MARKDOWN_STUB]


def _code_stub(body: list[str], indent: str, read_later: Callable[[str], bool]) -> list[str]:
    stub = [indent + STUB_COMMENT]
    tree = _parse(textwrap.dedent("\n".join(body)))
    statements = tree.body if tree else []
    for node in statements:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            stub.extend(indent + line for line in _function_stub(node).split("\n"))
    stub.extend(f"{indent}{name} = ..." for name in bound_names(statements) if read_later(name))
    if len(stub) == 1:
        stub.append(indent + "...")
    return stub


def _reads_after(source: str, first: int, last: int, later_text: str) -> Callable[[str], bool]:
    """Whether code after lines first..last of ``source``, in their scope, reads a name first.

    Inside a def (or class) that is the rest of its body; at module level the rest
    of the cell and ``later_text`` (the later cells). Code that does not parse even
    with its magics blanked is searched as text for the name instead.
    """

    def mentions(text: str) -> Callable[[str], bool]:
        return lambda name: re.search(rf"\b{re.escape(name)}\b", text) is not None

    tree = _parse(source, magics=True)
    if tree is None:
        return mentions("\n".join(source.split("\n")[last:]) + "\n" + later_text)
    scope = enclosing_scope(tree, first, last)
    reads = ReadFirst(after=last)
    for statement in getattr(scope, "body", []):
        reads.visit(statement)
    if scope is not tree:
        return lambda name: reads.first.get(name, False)
    later = _parse(later_text, magics=True)
    if later is None:
        in_text = mentions(later_text)
        return lambda name: reads.first[name] if name in reads.first else in_text(name)
    reads.after = 0
    for statement in later.body:
        reads.visit(statement)
    return lambda name: reads.first.get(name, False)


def _function_stub(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    fn = copy.deepcopy(node)
    doc = ast.get_docstring(node, clean=False)
    fn.body = [ast.Expr(ast.Constant(doc))] if doc is not None else []
    fn.body.append(ast.Expr(ast.Constant(...)))
    text = ast.unparse(fn)
    head, _, last = text.rpartition("\n")
    return f"{head}\n{last[: len(last) - len(last.lstrip())]}{STUB_COMMENT}\n{last}"


def _blank_magics(source: str) -> str:
    """``source`` with IPython magics and shell lines (``%time``, ``!ls``) made ``pass``."""
    return "\n".join(
        m["indent"] + "pass" if (m := _MAGIC_LINE.match(line)) else line
        for line in source.split("\n")
    )


def _parse(source: str, *, magics: bool = False) -> ast.Module | None:
    try:
        return ast.parse(_blank_magics(source) if magics else source)
    except (SyntaxError, ValueError):
        return None


def _python_ok(source: str) -> SyntaxError | None:
    """None if ``source`` (with IPython magics and shell lines blanked) parses."""
    try:
        ast.parse(_blank_magics(source))
    except SyntaxError as exc:
        return exc
    return None


# -- one notebook --------------------------------------------------------------------


def _source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def student_notebook(master: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    """The student version of a master notebook. Raises ``MarkerError``."""
    cells = master.get("cells", [])
    sources = [_source(c) if c.get("cell_type") == "code" else "" for c in cells]
    student = nbformat.v4.new_notebook()
    kernelspec = dict(master.get("metadata", {}).get("kernelspec") or DEFAULT_KERNELSPEC)
    metadata = {"kernelspec": kernelspec, "language_info": {"name": "python"}}
    language = (master.get("metadata", {}).get("labkit") or {}).get("language")
    if language:  # the kernel gives feedback in it (labkit.i18n reads the notebook's metadata)
        metadata["labkit"] = {"language": language}
    student.metadata = nbformat.NotebookNode(metadata)
    used_ids: set[str] = set()
    for index, cell in enumerate(cells):
        kind = cell.get("cell_type")
        meta = cell.get("metadata", {})
        if INSTRUCTOR_TAG in meta.get("tags", []):
            continue
        where = Where(name, index + 1, str(cell.get("id", "") or ""))
        source = _source(cell)
        later = "\n".join(sources[index + 1 :])
        if kind in ("code", "markdown"):
            new_source = strip_source(source, where, markdown=kind == "markdown", later_text=later)
        else:
            new_source = source
        if source.strip() and not new_source.strip():
            continue
        if kind == "code" and _python_ok(source) is None:
            problem = _python_ok(new_source)
            if problem is not None:
                raise MarkerError(
                    f"{where.at(problem.lineno)}: the student version would not be "
                    f"valid Python ({problem.msg}); put the markers around whole "
                    "statements or a whole block body"
                )
        new = _new_cell(kind, new_source, cell)
        new.metadata = nbformat.NotebookNode(
            {k: copy.deepcopy(meta[k]) for k in KEPT_CELL_METADATA if k in meta}
        )
        cell_id = where.cell_id
        if not CELL_ID.match(cell_id) or cell_id in used_ids:
            cell_id = f"cell-{index + 1}"
        used_ids.add(cell_id)
        new["id"] = cell_id
        student.cells.append(new)
    return student


def _new_cell(kind: str | None, source: str, cell) -> nbformat.NotebookNode:
    if kind == "code":
        return nbformat.v4.new_code_cell(source)
    if kind == "markdown":
        new = nbformat.v4.new_markdown_cell(source)
        if cell.get("attachments"):
            new["attachments"] = copy.deepcopy(cell["attachments"])
        return new
    return nbformat.v4.new_raw_cell(source)


def notebook_text(nb: nbformat.NotebookNode) -> str:
    """The notebook as the JSON text written to disk (deterministic)."""
    return nbformat.writes(nb, version=4) + "\n"


def student_text(master_path: Path, name: str | None = None) -> str:
    """The student version of the master at ``master_path``, as JSON text."""
    master = nbformat.read(str(master_path), as_version=4)
    return notebook_text(student_notebook(master, name or master_path.name))


# -- folders -------------------------------------------------------------------------


def master_files(masters: Path) -> list[Path]:
    """Every master notebook under ``masters`` (a folder or one .ipynb file), sorted."""
    if masters.is_file():
        return [masters]
    if not masters.is_dir():
        raise IllegalArgumentError(
            f"no masters at {masters}: run from the labkit checkout or pass --masters DIR"
        )
    return sorted(p for p in masters.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def _targets(masters: Path, out: Path) -> list[tuple[Path, Path]]:
    if masters.resolve() == out.resolve():
        raise IllegalArgumentError(
            "--out must not be the masters folder: the student versions "
            "would overwrite the solutions"
        )
    base = masters.parent if masters.is_file() else masters
    return [(m, out / m.relative_to(base)) for m in master_files(masters)]


def build(masters: Path, out: Path) -> list[Path]:
    """Write the student version of every master; returns the files written or changed."""
    written = []
    for master, target in _targets(masters, out):
        text = student_text(master, str(master))
        if target.exists() and target.read_bytes() == text.encode("utf-8"):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(text.encode("utf-8"))
        written.append(target)
    return written


def stale(masters: Path, out: Path) -> list[tuple[Path, str]]:
    """(student file, 'missing' | 'out of date') for every student version build would change."""
    problems = []
    for master, target in _targets(masters, out):
        text = student_text(master, str(master))
        if not target.exists():
            problems.append((target, "missing"))
        elif target.read_bytes() != text.encode("utf-8"):
            problems.append((target, "out of date"))
    return problems
