"""``labkit kafka-bin [DIR]``: a ``kafka/bin`` folder with labkit's console tools in it.

Theory of operation
-------------------
Kafka courses run the tools from an unpacked Kafka: ``cd ~ && kafka/bin/kafka-topics.sh
--list --bootstrap-server broker:9092``. labkit installs the same tools under the same
names (pyproject's ``[project.scripts]``, next to the Python that runs labkit); this
command makes ``DIR`` (default ``~/kafka/bin``) hold a symbolic link per tool to the
installed script, so those commands work as printed. Links, not copies: ``ls -l`` shows
where each tool comes from, and a reinstall is picked up at once.

Nothing that is not labkit's is ever replaced. An entry of ``DIR`` is labkit's when it is
a symbolic link named like its target whose target is labkit's console script (or is
gone: the link of a deleted virtualenv). Any other file under a tool's name -- a real
Kafka unpacked there -- stops the command before it changes anything, naming the file.
Running it again refreshes labkit's links (to this installation's scripts).

``labkit lab`` calls ``ensure_for_lab``: it makes ``~/kafka/bin`` when ``~/kafka`` does
not exist, refreshes it when it is labkit's, and otherwise leaves ``~/kafka`` alone.
"""

from __future__ import annotations

import argparse
import os
import sys
import sysconfig
from pathlib import Path

NAME = "kafka-bin"
HELP = (
    "make DIR (default ~/kafka/bin) hold labkit's kafka-*.sh tools, so course commands "
    "like `kafka/bin/kafka-topics.sh --list` work as printed"
)

# The Kafka names of [project.scripts] (a unit test keeps the two lists equal).
TOOLS = (
    "kafka-topics.sh",
    "kafka-console-producer.sh",
    "kafka-console-consumer.sh",
    "kafka-consumer-groups.sh",
    "kafka-configs.sh",
    "kafka-delete-records.sh",
)
DIR_ENV = "LABKIT_KAFKA_BIN"  # `labkit lab`'s default folder; "off" makes none
DEFAULT_DIR = "~/kafka/bin"
_SCRIPT_MARK = b"labkit.cli.main"  # pip's console script imports its entry point
_OFF = ("off", "none", "no", "0", "")


class KafkaBinError(Exception):
    """The folder cannot be made; the message says why and what to do."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dir",
        nargs="?",
        default=DEFAULT_DIR,
        metavar="DIR",
        help=f"the folder to fill (default: {DEFAULT_DIR}); created if missing",
    )


def run(args: argparse.Namespace) -> int:
    directory = Path(args.dir).expanduser()
    try:
        changed = link_tools(directory)
    except KafkaBinError as exc:
        print(f"labkit kafka-bin: error: {exc}", file=sys.stderr)
        return 1
    verb = "made" if changed else "already had"
    print(f"{directory} {verb} labkit's console tools: {', '.join(TOOLS)}")
    print(f"Try: {_try_command(directory)}")
    return 0


def scripts_dirs() -> list[Path]:
    """Where this Python's console scripts may be: its scheme's (a virtualenv's bin/), next
    to the interpreter, the user scheme's (``pip install --user``)."""
    found = [Path(sysconfig.get_path("scripts")), Path(sys.executable).parent]
    try:
        found.append(Path(sysconfig.get_path("scripts", f"{os.name}_user")))
    except KeyError:
        pass
    return found


def installed_tools(scripts: Path | None = None) -> dict[str, Path]:
    """Each tool's installed script. Raises KafkaBinError when one is missing."""
    if scripts is None:
        candidates = scripts_dirs()
        scripts = next(
            (d for d in candidates if all((d / name).is_file() for name in TOOLS)), candidates[0]
        )
    found = {name: scripts / name for name in TOOLS}
    missing = [name for name, path in found.items() if not path.is_file()]
    if missing:
        raise KafkaBinError(
            f"labkit's console tools are not installed in {scripts} (missing: "
            f"{', '.join(missing)}). Install labkit there: pip install 'labkit-streaming[lab]' "
            "(in a labkit checkout: make venv), then run this again with that Python's labkit."
        )
    return found


def is_labkit_link(path: Path) -> bool:
    """True when ``path`` is a link this command made (see the module's docstring)."""
    if not path.is_symlink():
        return False
    target = Path(os.readlink(path))
    if target.name != path.name:
        return False
    if not path.exists():
        return True  # dangling: the virtualenv it pointed into is gone
    try:
        with open(path, "rb") as script:
            return _SCRIPT_MARK in script.read(8192)
    except OSError:
        return False


def conflicts(directory: Path) -> list[Path]:
    """The entries of ``directory`` under a tool's name that are not labkit's links."""
    return [
        directory / name
        for name in TOOLS
        if (directory / name).is_symlink() or (directory / name).exists()
        if not is_labkit_link(directory / name)
    ]


def link_tools(directory: Path, scripts: Path | None = None) -> bool:
    """Make ``directory`` hold a link per tool to the installed scripts; True when it
    changed anything. Raises KafkaBinError (changing nothing) when a tool's name there is
    taken by something not labkit's, when the tools are not installed, or on Windows."""
    if os.name == "nt":
        raise KafkaBinError(
            "kafka/bin's .sh tools are for Linux, macOS and WSL. On Windows run the tools by "
            "name (kafka-topics.sh ... are on the PATH of labkit's virtualenv), or use the "
            "Docker lab (docker-compose up), where ~/kafka/bin exists."
        )
    taken = conflicts(directory)
    if taken:
        raise KafkaBinError(
            f"{', '.join(str(p) for p in taken)} "
            f"{'is' if len(taken) == 1 else 'are'} not labkit's (a Kafka installation?) and "
            "labkit never replaces it. That Kafka's own tools work with labkit's broker too; "
            "for labkit's, give another folder (labkit kafka-bin DIR) or run them by name "
            "(kafka-topics.sh ... are on the PATH of labkit's virtualenv)."
        )
    targets = installed_tools(scripts)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        changed = False
        for name, target in targets.items():
            link = directory / name
            if link.is_symlink() and Path(os.readlink(link)) == target:
                continue
            if link.is_symlink():
                link.unlink()
            link.symlink_to(target)
            changed = True
    except OSError as exc:
        raise KafkaBinError(
            f"cannot write {directory}: {exc.strerror or exc}. Give a folder of your own: "
            "labkit kafka-bin DIR"
        ) from exc
    return changed


def lab_dir(option: str | None) -> Path | None:
    """The folder ``labkit lab`` keeps: ``--kafka-bin``, else ``$LABKIT_KAFKA_BIN``, else
    ``~/kafka/bin``; None when switched off (``off``)."""
    value = option if option is not None else os.environ.get(DIR_ENV, DEFAULT_DIR)
    if value.strip().lower() in _OFF:
        return None
    return Path(value).expanduser()


def ensure_for_lab(directory: Path | None, bootstrap: str = "localhost:9092") -> str | None:
    """``labkit lab``'s part: make or refresh ``directory`` when its parent (``~/kafka``) is
    absent or already labkit's; leave any other ``~/kafka`` alone. Returns what to tell
    the student, or None when there is nothing new. Never raises: the lab starts anyway."""
    if directory is None or os.name == "nt":
        return None  # Windows runs the tools by name; kafka/bin/*.sh is for POSIX shells
    home_kafka = directory.parent
    ours = any(is_labkit_link(directory / name) for name in TOOLS)
    if home_kafka.exists() and not ours:
        return (
            f"{home_kafka} exists and is not labkit's, so it is left alone (labkit's tools "
            "are on the terminals' PATH as kafka-topics.sh ...)"
        )
    try:
        changed = link_tools(directory)
    except KafkaBinError as exc:
        return f"no {directory}: {exc}"
    if not changed:
        return None
    return (
        f"Kafka's console tools are in {directory} too, for course commands such as: "
        f"{_try_command(directory, bootstrap)}"
    )


def _try_command(directory: Path, bootstrap: str | None = None) -> str:
    home = Path.home()
    if directory.parent.parent == home and directory.parent.name == "kafka":
        where = "cd ~ && kafka/bin"
    else:
        where = str(directory)
    bootstrap = bootstrap or os.environ.get("LABKIT_BOOTSTRAP") or "localhost:9092"
    return f"{where}/kafka-topics.sh --list --bootstrap-server {bootstrap.split(',')[0]}"
