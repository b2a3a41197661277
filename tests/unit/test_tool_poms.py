"""The Maven POMs under tools/ (Apache Kafka's, ZooKeeper's, Connect's and Spark's jars),
checked in a second instead of by a CI job minutes later: each is well-formed XML with no
``--`` inside a comment (Maven refused tools/zookeeper/pom.xml over a ``--brokers`` in its
comment), and each has what the Makefile's ``mvn -f tools/<x>/pom.xml ... -D<name>=...
dependency:copy-dependencies`` recipe relies on: a default for each property the recipe
passes (the Makefile's own version, so a hand-run ``mvn`` fetches the same jars), every
``${...}`` it uses defined, and dependencies to copy."""

from __future__ import annotations

import importlib
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAKEFILE = ROOT / "Makefile"
POMS = sorted(ROOT.glob("tools/*/pom.xml"))
NS = {"m": "http://maven.apache.org/POM/4.0.0"}
PREFIX = "{http://maven.apache.org/POM/4.0.0}"  # ElementTree's spelling of the namespace
# -D flags of the recipes that are maven-dependency-plugin parameters, not POM properties
DEPENDENCY_PLUGIN_PARAMETERS = {"includeScope", "excludeTransitive", "outputDirectory"}
# ${...} that Maven defines itself
BUILT_IN_PROPERTY = re.compile(r"(project|env|settings|maven)\.|basedir$")


def comment_problems(text: str) -> list[str]:
    """XML forbids ``--`` inside a comment and a comment body ending in ``-``."""
    problems = []
    for match in re.finditer(r"<!--(.*?)-->", text, re.DOTALL):
        body = match.group(1)
        if "--" in body or body.endswith("-"):
            line = text.count("\n", 0, match.start()) + 1
            problems.append(f"line {line}: '--' inside an XML comment (Maven refuses the POM)")
    return problems


def pom_problems(text: str) -> list[str]:
    """Why Maven would refuse this POM text before fetching anything (empty: none)."""
    problems = comment_problems(text)
    try:
        ET.fromstring(text)
    except ET.ParseError as exc:
        problems.append(f"not well-formed XML: {exc}")
    return problems


def _variables(text: str) -> dict[str, str]:
    """The Makefile's ``VAR := value`` lines, each value with the variables before it
    expanded."""
    variables: dict[str, str] = {}
    for name, value in re.findall(r"^([A-Z_]+)\s*:=\s*(\S+)\s*$", text, re.MULTILINE):
        variables[name] = re.sub(
            r"\$\((\w+)\)", lambda m: variables.get(m.group(1), m.group(0)), value
        )
    return variables


VARIABLES = _variables(MAKEFILE.read_text(encoding="utf-8"))


def _recipes() -> dict[str, dict[str, str]]:
    """pom path -> the -D name=value flags of the Makefile's mvn command for it, with the
    Makefile's ``VAR := value`` variables expanded."""
    text = MAKEFILE.read_text(encoding="utf-8")
    recipes = {}
    for command in re.findall(r"^\t(mvn .*?)(?<!\\)$", text, re.MULTILINE | re.DOTALL):
        pom = re.search(r"-f (\S+)", command)
        assert pom, f"Makefile: mvn without -f: {command!r}"
        flags = dict(re.findall(r"-D([\w.]+)=(\S+)", command))
        recipes[pom.group(1)] = {
            name: re.sub(r"\$\((\w+)\)", lambda m: VARIABLES.get(m.group(1), m.group(0)), value)
            for name, value in flags.items()
        }
    return recipes


RECIPES = _recipes()


def test_the_makefile_fetches_with_every_pom_and_only_with_these():
    assert len(RECIPES) >= 4, RECIPES  # the parsing above found the recipes
    assert set(RECIPES) == {p.relative_to(ROOT).as_posix() for p in POMS}


@pytest.mark.parametrize("pom", POMS, ids=[p.parent.name for p in POMS])
def test_pom_is_well_formed_with_no_double_hyphen_in_a_comment(pom):
    assert pom_problems(pom.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("pom", POMS, ids=[p.parent.name for p in POMS])
def test_pom_has_what_the_makefile_recipe_relies_on(pom):
    text = pom.read_text(encoding="utf-8")
    project = ET.fromstring(text)
    assert project.tag == PREFIX + "project"
    assert project.findtext("m:modelVersion", namespaces=NS) == "4.0.0"
    # nothing to build: the recipe only copies the dependencies
    assert project.findtext("m:packaging", namespaces=NS) == "pom"
    defaults = {
        el.tag.removeprefix(PREFIX): (el.text or "").strip()
        for el in project.findall("m:properties/*", NS)
    }
    flags = RECIPES[pom.relative_to(ROOT).as_posix()]
    for name, value in flags.items():
        if name in DEPENDENCY_PLUGIN_PARAMETERS:
            continue
        assert name in defaults, f"{pom}: the Makefile passes -D{name} but <properties> lacks it"
        assert defaults[name] == value, (
            f"{pom}: <{name}> is {defaults[name]!r}, the Makefile's is {value!r}"
        )
        assert "${" + name + "}" in text, f"{pom}: -D{name} is passed but ${{{name}}} is unused"
    for used in set(re.findall(r"\$\{([^}]+)\}", text)):
        assert used in defaults or BUILT_IN_PROPERTY.match(used), f"{pom}: ${{{used}}} undefined"
    dependencies = project.findall("m:dependencies/m:dependency", NS)
    assert dependencies, f"{pom}: no dependencies for dependency:copy-dependencies"
    for dependency in dependencies:
        for field in ("groupId", "artifactId", "version"):
            assert dependency.findtext(f"m:{field}", namespaces=NS), f"{pom}: a {field} is missing"


@pytest.mark.parametrize(
    "comment",
    [
        "<!-- started by labkit lab --brokers 3 -->",
        "<!-- ends in a hyphen --->",
        "<!-- one\n     -- per line -->",
    ],
)
def test_the_checker_refuses_a_double_hyphen_in_a_comment(comment):
    text = f'<?xml version="1.0"?>\n{comment}\n<project/>\n'
    problems = pom_problems(text)
    assert any("'--' inside an XML comment" in p and "line 2" in p for p in problems), problems
    assert any("not well-formed" in p for p in problems), problems  # the parser agrees


def test_the_checker_refuses_the_zookeeper_pom_with_last_sessions_comment(tmp_path):
    text = (ROOT / "tools/zookeeper/pom.xml").read_text(encoding="utf-8")
    broken = text.replace("no-Docker lab cluster", "no-Docker lab cluster (labkit lab --brokers)")
    assert broken != text
    copy = tmp_path / "pom.xml"
    copy.write_text(broken, encoding="utf-8")
    assert pom_problems(copy.read_text(encoding="utf-8")) != []
    assert pom_problems("<!-- a - b -->\n<project/>") == []  # single hyphens are fine


# Makefile variable -> where labkit looks for those jars (module, function) and the
# environment variable that points it elsewhere
JAR_FOLDERS = {
    "KAFKA_LIBS": ("labkit.launch.kafka_jars", "libs_dir", "LABKIT_APACHE_KAFKA_LIBS"),
    "ZOOKEEPER_LIBS": ("labkit.launch.zookeeper", "libs_dir", "LABKIT_ZOOKEEPER_LIBS"),
    "CONNECT_LIBS": ("labkit.ecosystem.connect", "connect_libs_dir", "LABKIT_KAFKA_CONNECT_LIBS"),
    "SPARK_JARS": ("labkit.ecosystem.spark", "jars_dir", "LABKIT_SPARK_KAFKA_JARS"),
}


@pytest.mark.parametrize("variable", sorted(JAR_FOLDERS))
def test_labkit_looks_for_the_jars_where_the_makefile_puts_them(variable, monkeypatch):
    """A version bumped in the Makefile (and its POM) but not in labkit's "keep in step"
    constant would fetch jars that labkit never finds."""
    module_name, function, env = JAR_FOLDERS[variable]
    monkeypatch.delenv(env, raising=False)
    where = getattr(importlib.import_module(module_name), function)()
    assert where == ROOT / VARIABLES[variable]
