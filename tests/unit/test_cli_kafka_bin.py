"""`labkit kafka-bin` and `labkit lab`'s ~/kafka/bin: links to the installed tools, made
and refreshed, never over a file that is not labkit's (a real Kafka unpacked there)."""

from __future__ import annotations

import argparse
import os
import tomllib
from pathlib import Path

import pytest

from labkit.cli import kafka_bin_cmd
from labkit.cli.kafka_bin_cmd import TOOLS, KafkaBinError, ensure_for_lab, lab_dir, link_tools

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(os.name == "nt", reason="kafka/bin's .sh tools: POSIX only")


@pytest.fixture
def scripts(tmp_path) -> Path:
    """A stand-in for a virtualenv's bin/ with labkit's console scripts."""
    folder = tmp_path / "venv" / "bin"
    folder.mkdir(parents=True)
    for name in TOOLS:
        (folder / name).write_text(
            "#!/usr/bin/python\nimport sys\nfrom labkit.cli.main import topics_main\n"
        )
    return folder


def test_tools_are_the_kafka_scripts_pyproject_installs():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert sorted(TOOLS) == sorted(name for name in scripts if name.endswith(".sh"))


def test_links_are_made_then_left_alone_then_refreshed(tmp_path, scripts):
    bin_dir = tmp_path / "home" / "kafka" / "bin"
    assert link_tools(bin_dir, scripts) is True
    for name in TOOLS:
        assert (bin_dir / name).is_symlink()
        assert Path(os.readlink(bin_dir / name)) == scripts / name
    assert link_tools(bin_dir, scripts) is False  # nothing to do
    other = tmp_path / "other-venv" / "bin"
    other.mkdir(parents=True)
    for name in TOOLS:
        (other / name).write_bytes((scripts / name).read_bytes())
    assert link_tools(bin_dir, other) is True  # another installation's labkit: refreshed
    assert Path(os.readlink(bin_dir / "kafka-topics.sh")) == other / "kafka-topics.sh"


def test_a_real_kafka_is_never_replaced(tmp_path, scripts):
    bin_dir = tmp_path / "kafka" / "bin"
    bin_dir.mkdir(parents=True)
    real = bin_dir / "kafka-topics.sh"
    real.write_text(
        '#!/bin/bash\nexec "$(dirname "$0")/kafka-run-class.sh" kafka.admin.TopicCommand "$@"\n'
    )
    with pytest.raises(KafkaBinError, match=r"kafka-topics\.sh is not labkit's"):
        link_tools(bin_dir, scripts)
    assert real.read_text().startswith("#!/bin/bash")
    assert sorted(p.name for p in bin_dir.iterdir()) == ["kafka-topics.sh"]  # nothing added


def test_a_link_to_something_else_is_not_labkits(tmp_path, scripts):
    bin_dir = tmp_path / "kafka" / "bin"
    bin_dir.mkdir(parents=True)
    (tmp_path / "kafka-2.8").mkdir()
    (tmp_path / "kafka-2.8" / "kafka-topics.sh").write_text("#!/bin/bash\n")
    (bin_dir / "kafka-topics.sh").symlink_to(tmp_path / "kafka-2.8" / "kafka-topics.sh")
    with pytest.raises(KafkaBinError, match="not labkit's"):
        link_tools(bin_dir, scripts)


def test_a_dangling_labkit_link_is_replaced(tmp_path, scripts):
    bin_dir = tmp_path / "kafka" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "kafka-topics.sh").symlink_to(tmp_path / "deleted-venv" / "kafka-topics.sh")
    assert link_tools(bin_dir, scripts) is True
    assert (bin_dir / "kafka-topics.sh").resolve() == (scripts / "kafka-topics.sh").resolve()


def test_missing_tools_are_named_with_the_install_command(tmp_path):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    with pytest.raises(KafkaBinError, match=r"pip install 'labkit-streaming\[lab\]'"):
        link_tools(tmp_path / "kafka" / "bin", empty)
    assert not (tmp_path / "kafka").exists()


def test_lab_makes_it_when_kafka_is_absent_and_leaves_a_foreign_one(tmp_path, scripts, monkeypatch):
    monkeypatch.setattr(
        kafka_bin_cmd, "installed_tools", lambda s=None: {n: scripts / n for n in TOOLS}
    )
    fresh = tmp_path / "a" / "kafka" / "bin"
    news = ensure_for_lab(fresh, "localhost:9093")
    assert news is not None
    assert f"{fresh}/kafka-topics.sh --list --bootstrap-server localhost:9093" in news
    assert all((fresh / name).is_symlink() for name in TOOLS)
    assert ensure_for_lab(fresh) is None  # already there: nothing to say

    foreign = tmp_path / "b" / "kafka"
    (foreign / "libs").mkdir(parents=True)
    news = ensure_for_lab(foreign / "bin")
    assert news is not None
    assert "is not labkit's, so it is left alone" in news
    assert not (foreign / "bin").exists()


def test_lab_dir_from_option_env_or_home(monkeypatch, tmp_path):
    monkeypatch.delenv(kafka_bin_cmd.DIR_ENV, raising=False)
    assert lab_dir(None) == Path.home() / "kafka" / "bin"
    monkeypatch.setenv(kafka_bin_cmd.DIR_ENV, str(tmp_path / "k"))
    assert lab_dir(None) == tmp_path / "k"
    assert lab_dir("off") is None
    monkeypatch.setenv(kafka_bin_cmd.DIR_ENV, "off")
    assert lab_dir(None) is None
    assert lab_dir(str(tmp_path / "x")) == tmp_path / "x"


def test_command_reports_and_fails_clearly(tmp_path, capsys):
    bin_dir = tmp_path / "kafka" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "kafka-configs.sh").write_text("#!/bin/sh\n")
    code = kafka_bin_cmd.run(argparse.Namespace(dir=str(bin_dir)))
    assert code == 1
    err = capsys.readouterr().err
    assert "labkit kafka-bin: error:" in err
    assert "kafka-configs.sh is not labkit's" in err
