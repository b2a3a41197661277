"""The layering rules of docs/architecture.md, checked by scanning imports.

Each layer imports only the layers above it; zmq is imported by exactly one
module on each side; only labkit.nb imports the notebook UI libraries.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "labkit"

# layer -> labkit subpackages it may import (besides itself)
ALLOWED = {
    "errors": set(),
    "_clock": set(),
    "protocol": {"errors", "_clock"},
    "log": {"errors", "_clock", "protocol"},
    "broker": {"errors", "_clock", "protocol", "log"},
    "client": {"errors", "_clock", "protocol"},
    "cli": {"errors", "_clock", "protocol", "log", "broker", "client", "nb", "testing", "__init__"},
    "nb": {"errors", "_clock", "protocol", "client", "__init__"},
    "testing": {"errors", "_clock", "protocol", "log", "broker", "client", "__init__"},
}
ZMQ_MODULES = {"broker/server.py", "client/transport.py", "testing/broker.py"}
UI_LIBS = {"ipywidgets", "matplotlib", "IPython", "tqdm"}


def _modules():
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        layer = rel.parts[0].removesuffix(".py")
        yield rel.as_posix(), layer, ast.parse(path.read_text(encoding="utf-8"))


def _imports(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module
            if node.module == "labkit":
                for alias in node.names:
                    # `from labkit import errors` imports a layer; `from labkit import
                    # KafkaProducer` imports the package's public surface (__init__).
                    is_layer = alias.name in ALLOWED
                    yield "labkit." + (alias.name if is_layer else "__init__")


MODULES = list(_modules())


@pytest.mark.parametrize("rel, layer, tree", MODULES, ids=[m[0] for m in MODULES])
def test_module_respects_layers(rel, layer, tree):
    if layer == "__init__" or layer == "__main__":
        return
    allowed = ALLOWED.get(layer)
    assert allowed is not None, f"{rel}: unknown layer {layer!r}; add it to ALLOWED"
    for name in _imports(tree):
        parts = name.split(".")
        if parts[0] == "labkit" and len(parts) > 1 and parts[1] != layer:
            target = parts[1]
            assert target in allowed, f"{rel} imports {name}: layer {layer} may not import {target}"
        if parts[0] == "zmq":
            assert rel in ZMQ_MODULES, f"{rel} imports zmq; only {sorted(ZMQ_MODULES)} may"
        if parts[0] in UI_LIBS:
            assert layer == "nb", f"{rel} imports {parts[0]}; only labkit.nb may"
