"""The `labkit` entry point: registry, lazy imports, and how failures reach the student."""

import importlib.util
import subprocess
import sys
import textwrap

import pytest

from labkit import __version__
from labkit.cli import main as cli_main
from labkit.cli.main import COMMANDS, Command, main


@pytest.fixture
def command_dir(tmp_path, monkeypatch):
    """A directory on sys.path for throwaway command modules, registered under test names."""
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = dict(cli_main._BY_NAME)
    monkeypatch.setattr(cli_main, "_BY_NAME", registry)

    def add(name, module, source=None):
        if source is not None:
            (tmp_path / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        registry[name] = Command(name, module, "test command")

    return add


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"labkit {__version__}"


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert command.name in out
        assert command.help in out


def test_no_arguments_prints_usage_and_fails(capsys):
    assert main([]) == 2
    assert "commands:" in capsys.readouterr().err


def test_unknown_command_suggests_the_close_one(capsys):
    assert main(["topcs", "--list"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'topcs'" in err
    assert "Did you mean 'topics'?" in err


def test_registry_names_the_expected_commands():
    names = [c.name for c in COMMANDS]
    assert names[:5] == [
        "broker",
        "topics",
        "console-producer",
        "console-consumer",
        "consumer-groups",
    ]
    assert {"generate", "notebooks", "grade", "doctor", "lab"} <= set(names)
    assert len(names) == len(set(names))


@pytest.mark.parametrize("command", COMMANDS, ids=[c.name for c in COMMANDS])
def test_every_command_module_follows_the_command_contract(command):
    module = importlib.import_module(command.module)  # a typo in COMMANDS fails here
    assert command.name == module.NAME
    assert isinstance(module.HELP, str)
    assert "\n" not in module.HELP
    assert callable(module.add_arguments)
    assert callable(module.run)


def test_missing_dependency_names_the_package(command_dir, capsys):
    command_dir(
        "needy",
        "labkit_test_needy",
        """
        import labkit_test_dependency_that_is_not_installed
        NAME = "needy"
    """,
    )
    assert main(["needy"]) == 1
    err = capsys.readouterr().err
    assert "labkit_test_dependency_that_is_not_installed" in err
    assert "pip install" in err


RAISING = """
    from labkit.cli._common import UsageError
    from labkit.errors import NoBrokersAvailable
    NAME = "raiser"
    HELP = "raises what it is told to"
    def add_arguments(parser):
        parser.add_argument("what")
    def run(args):
        if args.what == "kafka":
            raise NoBrokersAvailable("no broker at localhost:9092.\\nStart one: labkit broker")
        if args.what == "interrupt":
            raise KeyboardInterrupt
        if args.what == "usage":
            raise UsageError("--topic is required")
        if args.what == "pipe":
            raise BrokenPipeError
        return 7
"""


@pytest.mark.parametrize(
    ("what", "code"), [("kafka", 1), ("interrupt", 130), ("usage", 2), ("ok", 7)]
)
def test_failures_become_exit_codes(command_dir, capsys, what, code):
    command_dir("raiser", "labkit_test_raiser", RAISING)
    assert main(["raiser", what]) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if what == "kafka":
        assert err.count("\n") == 1, "a Kafka error is one line"
        assert "NoBrokersAvailable: no broker at localhost:9092. Start one: labkit broker" in err
    if what == "interrupt":
        assert err == ""
    if what == "usage":
        assert "--topic is required" in err
        assert "--help" in err


def test_bad_arguments_exit_2_with_usage(command_dir, capsys):
    command_dir("raiser", "labkit_test_raiser", RAISING)
    with pytest.raises(SystemExit) as info:
        main(["raiser"])
    assert info.value.code == 2
    assert "usage: labkit raiser" in capsys.readouterr().err


def test_kafka_aliases_use_the_kafka_program_name(capsys):
    with pytest.raises(SystemExit):
        cli_main.topics_main(["--help"])
    assert capsys.readouterr().out.startswith("usage: kafka-topics.sh")


def test_help_does_not_import_command_modules():
    code = textwrap.dedent("""
        import sys
        from labkit.cli.main import main
        try:
            main(["--help"])
        except SystemExit:
            pass
        heavy = [m for m in sys.modules if m.startswith(("labkit.cli.", "labkit.client", "zmq",
                 "jupyter", "ipywidgets", "matplotlib"))]
        print(sorted(heavy))
    """)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == "['labkit.cli._common', 'labkit.cli.main']"


def test_python_dash_m_labkit_runs_main():
    result = subprocess.run(
        [sys.executable, "-m", "labkit", "--version"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert result.stdout.strip() == f"labkit {__version__}"
