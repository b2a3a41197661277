"""``labkit init [DIR]``: copy the notebook series out of the installed labkit.

A pip-installed labkit carries the series inside the package (``labkit/_series/``,
put there by setup.py's build step); site-packages is no place to work in, so this
command copies it to a folder of the student's own: ``DIR/notebooks`` (the student
notebooks, the folder ``labkit lab`` opens) and, with ``--instructor``,
``DIR/instructor`` (the masters with their solutions, and the grading example), the
same layout as the repository so ``labkit lab``, ``labkit notebooks build`` and
``labkit grade`` work from DIR with their defaults.

A file that already exists in DIR is never overwritten (it may hold a student's
work); it is counted and named as kept. Running from a checkout or an editable
install, the series is read from the checkout's own ``notebooks/`` and ``instructor/``.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
from pathlib import Path

import labkit
from labkit.cli._common import UsageError

NAME = "init"
HELP = "copy the notebook series into DIR (default: the current folder), ready for `labkit lab`"

SERIES_FILES = ("*.ipynb", "*.md")
PACKAGED_SERIES = Path(labkit.__file__).resolve().parent / "_series"
CHECKOUT = Path(labkit.__file__).resolve().parents[1]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dir",
        nargs="?",
        default=".",
        metavar="DIR",
        help="where to put notebooks/ (and instructor/); created if missing "
        "(default: the current folder)",
    )
    parser.add_argument(
        "--instructor",
        action="store_true",
        help="also copy instructor/: the master notebooks WITH SOLUTIONS and "
        "the grading example (for teachers, not for students)",
    )


def series_root(packaged: Path = PACKAGED_SERIES, checkout: Path = CHECKOUT) -> Path | None:
    """The folder holding ``notebooks/`` and ``instructor/``: the installed copy, or the
    checkout labkit runs from (editable install); None when neither is there."""
    if (packaged / "notebooks").is_dir():
        return packaged
    if (checkout / "pyproject.toml").is_file() and (checkout / "notebooks").is_dir():
        return checkout
    return None


def series_files(folder: Path) -> list[Path]:
    """The notebooks and Markdown files under ``folder``, without Jupyter's checkpoints."""
    found = {
        path
        for pattern in SERIES_FILES
        for path in folder.rglob(pattern)
        if ".ipynb_checkpoints" not in path.parts and path.is_file()
    }
    return sorted(found)


def copy_series(
    source: Path, dest: Path, folders: tuple[str, ...]
) -> tuple[list[Path], list[Path]]:
    """Copy ``folders`` of ``source`` into ``dest``; returns (written, kept) target paths.
    An existing target is kept as it is."""
    written: list[Path] = []
    kept: list[Path] = []
    for folder in folders:
        for path in series_files(source / folder):
            target = dest / path.relative_to(source)
            if target.exists():
                kept.append(target)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            written.append(target)
    return written, kept


def run(args: argparse.Namespace) -> int:
    dest = Path(args.dir).expanduser()
    if dest.exists() and not dest.is_dir():
        raise UsageError(f"{args.dir} is a file; give a folder (it is created if missing)")
    source = series_root()
    if source is None:
        print(
            f"labkit init: error: this installation of labkit ({Path(labkit.__file__).parent}) "
            "has no notebook series. Reinstall it from a wheel or the source distribution "
            "(pip install --force-reinstall labkit-streaming), or clone the repository, "
            "whose notebooks/ folder is the series.",
            file=sys.stderr,
        )
        return 1
    folders = ("notebooks", "instructor") if args.instructor else ("notebooks",)
    try:
        written, kept = copy_series(source, dest, folders)
    except OSError as exc:
        print(f"labkit init: error: cannot write into {dest}: {exc}", file=sys.stderr)
        return 1
    where = ", ".join(str(dest / folder) for folder in folders)
    print(f"copied {len(written)} file(s) into {where}")
    if kept:
        print(
            f"kept {len(kept)} file(s) that were already there, unchanged (yours), e.g. "
            f"{kept[0]}; to get a fresh copy of one, rename or delete it and run this again"
        )
    step = "" if dest.resolve() == Path.cwd().resolve() else f"cd {shlex.quote(str(dest))} && "
    print(f"next: {step}labkit lab   (starts a broker and JupyterLab on {dest / 'notebooks'})")
    return 0
