"""Which names a solution region's stub must keep defined (for ``labkit.course.authoring``).

A SOLUTION region that binds ``name`` gets ``name = ...`` in its stub only when code
after the region, *in the same scope*, reads ``name`` before binding it again:

- ``bound_names`` -- the plain names a region's statements bind in their own scope
  (``x = ``, ``x: T = ``, ``x += ``, ``(x := ...)``, ``with ... as x``), also inside
  ``if``/``for``/``while``/``with``/``try`` blocks, but not inside a nested ``def``,
  ``class``, ``lambda`` or comprehension (their names are local there), and not the
  ``obj`` of ``obj.attr = ...`` or ``obj[key] = ...`` (that changes an object that
  already exists; ``obj = ...`` would throw it away).
- ``enclosing_scope`` -- the innermost ``def``/``class`` around the region's lines,
  or the module. Inside a function only the rest of that function can see its
  locals; at module level the rest of the cell and every later cell can.
- ``ReadFirst`` -- walks code after the region in execution order (an assignment's
  value before its target, a loop's iterable before its variable) and records,
  per name, whether it is first read or first bound. A nested function, lambda or
  comprehension reads the names it does not bind itself.

Names are found with ``ast``, never by matching text, so ``tx.total``, ``"total"`` or
a ``total`` in a comment are not uses of ``total``.
"""

from __future__ import annotations

import ast

_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def _target_names(target: ast.expr) -> list[str]:
    """Names a target binds: ``x``, ``x, (y, *z)``; not ``obj.attr`` or ``obj[key]``."""
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, ast.Tuple | ast.List):
        return [name for element in target.elts for name in _target_names(element)]
    if isinstance(target, ast.Starred):
        return _target_names(target.value)
    return []


def bound_names(statements: list[ast.stmt]) -> list[str]:
    """Names the statements bind by assignment in their own scope, in order, no repeats."""
    names: list[str] = []
    pending: list[ast.AST] = list(reversed(statements))
    while pending:
        node = pending.pop()
        found: list[str] = []
        if isinstance(node, ast.Assign):
            found = [n for target in node.targets for n in _target_names(target)]
        elif isinstance(node, ast.AnnAssign | ast.AugAssign | ast.NamedExpr):
            found = _target_names(node.target)
        elif isinstance(node, ast.withitem) and node.optional_vars is not None:
            found = _target_names(node.optional_vars)
        names.extend(n for n in found if n not in names)
        if not isinstance(node, _SCOPES + _COMPREHENSIONS):
            pending.extend(reversed(list(ast.iter_child_nodes(node))))
    return names


def enclosing_scope(tree: ast.Module, first_line: int, last_line: int) -> ast.AST:
    """The innermost def/class whose body holds lines first_line..last_line, else ``tree``."""
    scope: ast.AST = tree
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            and node.lineno < first_line
            and (node.end_lineno or 0) > last_line
            and node.lineno > getattr(scope, "lineno", 0)
        ):
            scope = node
    return scope


def _locals_of(node: ast.AST) -> set[str]:
    """Names a function, lambda, class or comprehension binds itself (parameters too)."""
    names = {
        n.id
        for n in ast.walk(node)
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store | ast.Del)
    }
    args = getattr(node, "args", None)
    if isinstance(args, ast.arguments):
        every = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
        names.update(a.arg for a in every if a is not None)
    return names


class ReadFirst(ast.NodeVisitor):
    """``first[name]`` is True when code after line ``after`` reads ``name`` before binding it."""

    def __init__(self, after: int = 0) -> None:
        self.after = after
        self.first: dict[str, bool] = {}

    def note(self, name: str, read: bool, line: int) -> None:
        if line > self.after:
            self.first.setdefault(name, read)

    def visit_Name(self, node: ast.Name) -> None:
        self.note(node.id, isinstance(node.ctx, ast.Load), node.lineno)

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        for target in node.targets:
            self.visit(target)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)
        self.visit(node.target)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if isinstance(node.target, ast.Name):
            self.note(node.target.id, True, node.lineno)
        else:
            self.visit(node.target)
        self.visit(node.value)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)
        self.visit(node.target)

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        self.visit(node.iter)
        self.visit(node.target)
        for statement in [*node.body, *node.orelse]:
            self.visit(statement)

    visit_AsyncFor = visit_For

    def _inner_scope(self, node: ast.AST, body: list[ast.AST]) -> None:
        mine = _locals_of(node)
        for part in body:
            for sub in ast.walk(part):
                if (
                    isinstance(sub, ast.Name)
                    and isinstance(sub.ctx, ast.Load)
                    and sub.id not in mine
                ):
                    self.note(sub.id, True, sub.lineno)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for outside in [*node.decorator_list, *node.args.defaults, *node.args.kw_defaults]:
            if outside is not None:
                self.visit(outside)
        self._inner_scope(node, node.body)
        self.note(node.name, False, node.lineno)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for outside in [*node.decorator_list, *node.bases, *node.keywords]:
            self.visit(outside)
        self._inner_scope(node, node.body)
        self.note(node.name, False, node.lineno)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        for default in [*node.args.defaults, *node.args.kw_defaults]:
            if default is not None:
                self.visit(default)
        self._inner_scope(node, [node.body])

    def _comprehension(self, node: ast.AST) -> None:
        generators = node.generators  # type: ignore[attr-defined]
        self.visit(generators[0].iter)  # evaluated in the enclosing scope
        inside: list[ast.AST] = []
        for number, generator in enumerate(generators):
            inside.extend([generator.iter] if number else [])
            inside.extend(generator.ifs)
        inside.extend(
            getattr(node, part) for part in ("elt", "key", "value") if hasattr(node, part)
        )
        self._inner_scope(node, inside)

    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _comprehension
