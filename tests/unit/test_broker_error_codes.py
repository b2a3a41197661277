"""The broker names the errors it answers with (``Errors.X.errno``), never a bare number."""

from __future__ import annotations

import ast
from pathlib import Path

import labkit.broker

BROKER = Path(labkit.broker.__file__).parent


def _raw_codes(tree: ast.AST) -> list[int]:
    """Line numbers of ``{"error": <nonzero number>}`` and ``return <nonzero number>, text``."""
    lines = []
    for node in ast.walk(tree):
        values = []
        if isinstance(node, ast.Dict):
            values = [
                v
                for k, v in zip(node.keys, node.values, strict=True)
                if isinstance(k, ast.Constant) and k.value == "error"
            ]
        elif isinstance(node, ast.Return) and isinstance(node.value, ast.Tuple):
            values = node.value.elts[:1]
        for value in values:
            if isinstance(value, ast.UnaryOp) and isinstance(value.op, ast.USub):
                value = value.operand
            if isinstance(value, ast.Constant) and type(value.value) is int and value.value:
                lines.append(value.lineno)
    return lines


def test_no_bare_error_numbers_in_the_broker():
    found = {
        path.name: lines
        for path in sorted(BROKER.glob("*.py"))
        if (lines := _raw_codes(ast.parse(path.read_text())))
    }
    assert found == {}, "use labkit.errors' classes: SomeError.errno"
