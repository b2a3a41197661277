"""The layering rules of docs/architecture.md, checked by scanning imports.

Each layer imports only the layers above it; zmq is imported by exactly one
module on each side; only labkit.nb imports the notebook UI libraries. The course
(labkit.course) and the notebook helpers (labkit.nb) meet in one place each way:
the course's exercises use ``labkit.nb.generators`` (and ``labkit.nb.names``, to
accept a student's prefixed topic names; ``labkit.nb._connect``, so that the checks
that ask the broker use the client it needs, labkit's or kafka-python's), and ``nb.check`` (the facade,
``labkit/nb/__init__.py``) loads the course lazily; no import cycle exists
anywhere in labkit, not even through imports inside functions.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "labkit"

# layer -> labkit subpackages it may import (besides itself)
ALLOWED = {
    "errors": set(),
    "_clock": set(),
    "_address": set(),
    # the message catalogues (gettext): what a student or instructor reads, in their language
    "i18n": set(),
    "protocol": {"errors", "_clock", "_address"},
    "log": {"errors", "_clock", "_address", "protocol"},
    # the Kafka listener: beside the broker, started by broker/server.py; it reaches the
    # broker only over the ROUTER socket, never through broker internals or the client
    "kafka": {"errors", "_clock", "_address", "protocol", "log"},
    # cluster mode's ZooKeeper state and the controller's decisions (docs/replication.md);
    # the broker imports it only when started with zookeeper.connect
    "cluster": {"errors", "_clock", "_address"},
    "broker": {"errors", "_clock", "_address", "protocol", "log", "kafka", "cluster"},
    "client": {"errors", "_clock", "_address", "protocol"},
    # the engines product code starts as child processes (a labkit broker, ZooKeeper) and
    # where Apache Kafka's jars are; below nb/, cli/, ecosystem/ and testing/
    "launch": {"errors", "_clock", "_address", "protocol", "client"},
    "cli": {
        "errors",
        "_clock",
        "_address",
        "protocol",
        "log",
        "broker",
        "client",
        "nb",
        "course",
        "launch",
        "i18n",
        "ecosystem",
        "__init__",
    },
    # Java engines on a Kafka broker (docs/ecosystem.md); Connect's jars are Apache
    # Kafka's, located by launch/kafka_jars.py
    "ecosystem": {"errors", "launch"},
    # nb.cluster() (notebook 13) starts ZooKeeper and brokers with launch/
    "nb": {
        "errors",
        "_clock",
        "_address",
        "protocol",
        "client",
        "course",
        "i18n",
        "launch",
        "__init__",
    },
    "course": {"errors", "_clock", "_address", "protocol", "client", "nb", "i18n", "__init__"},
    "testing": {
        "errors",
        "_clock",
        "_address",
        "protocol",
        "log",
        "broker",
        "client",
        "launch",
        "__init__",
    },
}
# test support: what tests use (fake clock, raw client, Apache Kafka as a reference); the
# product never imports it (what the product starts lives in labkit/launch/)
TEST_ONLY = {"testing"}
ZMQ_MODULES = {
    "broker/server.py",
    "client/zmq_bootstrap.py",
    "testing/broker.py",
    "kafka/listener.py",
}
UI_LIBS = {"ipywidgets", "matplotlib", "IPython", "tqdm"}
# the only crossings between course and nb (see the module docstring)
COURSE_MAY_IMPORT_FROM_NB = {"labkit.nb.generators", "labkit.nb.names", "labkit.nb._connect"}
NB_MODULES_IMPORTING_COURSE = {"nb/__init__.py"}


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


@pytest.mark.parametrize(("rel", "layer", "tree"), MODULES, ids=[m[0] for m in MODULES])
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


def test_no_product_layer_may_import_test_support():
    loosened = {layer for layer, allowed in ALLOWED.items() if allowed & TEST_ONLY}
    assert not loosened - TEST_ONLY, (
        f"{sorted(loosened - TEST_ONLY)} may import {sorted(TEST_ONLY)}: product code "
        "uses labkit.launch, never labkit.testing"
    )


def _module_name(rel: str) -> str:
    dotted = "labkit." + rel.removesuffix(".py").replace("/", ".")
    return dotted.removesuffix(".__init__")


MODULE_NAMES = {_module_name(rel) for rel, _, _ in MODULES}


def _top_level_imports(tree, name, *, inside_functions=False):
    """Modules of labkit that ``name`` imports when it is imported (with
    ``inside_functions``, also those its functions import when they run)."""
    package = (
        name if any(m.startswith(name + ".") for m in MODULE_NAMES) else name.rpartition(".")[0]
    )
    for node in tree.body:
        stack = [node]
        while stack:
            item = stack.pop()
            if not inside_functions and isinstance(
                item, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda
            ):
                continue
            if isinstance(item, ast.Import):
                yield from (a.name for a in item.names)
            elif isinstance(item, ast.ImportFrom):
                base = item.module or ""
                if item.level:
                    base = ".".join(
                        package.split(".")[: len(package.split(".")) - item.level + 1]
                        + ([base] if base else [])
                    )
                for alias in item.names:
                    full = f"{base}.{alias.name}"
                    yield full if full in MODULE_NAMES else base
            stack.extend(ast.iter_child_nodes(item))


def test_no_import_cycle_even_through_lazy_imports():
    graph = {}
    for rel, _, tree in MODULES:
        name = _module_name(rel)
        graph[name] = {
            t
            for t in _top_level_imports(tree, name, inside_functions=True)
            if t in MODULE_NAMES and t != name
        }
    state: dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = [*path[path.index(nxt) :], nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


@pytest.mark.parametrize(("rel", "layer", "tree"), MODULES, ids=[m[0] for m in MODULES])
def test_course_and_nb_cross_only_where_allowed(rel, layer, tree):
    name = _module_name(rel)
    imported = set(_imports(tree))
    if layer == "course":
        from_nb = {i for i in imported if i == "labkit.nb" or i.startswith("labkit.nb.")}
        assert from_nb <= COURSE_MAY_IMPORT_FROM_NB, (
            f"{rel} imports {sorted(from_nb - COURSE_MAY_IMPORT_FROM_NB)}; the course may use "
            f"only {sorted(COURSE_MAY_IMPORT_FROM_NB)} from labkit.nb"
        )
    if layer == "nb":
        to_course = {i for i in imported if i.startswith("labkit.course")}
        if rel not in NB_MODULES_IMPORTING_COURSE:
            assert not to_course, (
                f"{rel} imports {sorted(to_course)}; only nb.check loads the course"
            )
        eager = {
            t for t in _top_level_imports(tree, name) if t.startswith("labkit.course.exercises")
        }
        assert not eager, f"{rel} imports the exercises at module level; load them lazily"


def test_the_cycle_check_sees_a_cycle():
    a = ast.parse("import labkit.errors")
    assert list(_top_level_imports(a, "labkit._clock")) == ["labkit.errors"]
    inside = ast.parse("def f():\n    import labkit.errors")
    assert list(_top_level_imports(inside, "labkit._clock")) == []
    assert list(_top_level_imports(inside, "labkit._clock", inside_functions=True)) == [
        "labkit.errors"
    ]
