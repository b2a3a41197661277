"""Build hook: the notebook series goes into the wheel as ``labkit/_series/``.

Everything else is declared in pyproject.toml. An installed ``labkit init DIR`` copies
``labkit/_series/notebooks`` (and, with ``--instructor``, ``labkit/_series/instructor``)
out of the package, so a pip-installed labkit has the course without a checkout.
Only notebooks and their Markdown are taken, never checkpoints or data a run left behind.
An editable install (``pip install -e .``, ``make venv``) skips the copy: there
``labkit init`` reads the checkout's own folders.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SERIES_FOLDERS = ("notebooks", "instructor")
SERIES_FILES = ("*.ipynb", "*.md")


class BuildPyWithSeries(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for folder in SERIES_FOLDERS:
            source = ROOT / folder
            if not source.is_dir():  # e.g. the Docker image's dependency layer
                print(f"labkit build: {folder}/ not found; the wheel has no copy of it")
                continue
            for pattern in SERIES_FILES:
                for path in sorted(source.rglob(pattern)):
                    if ".ipynb_checkpoints" in path.parts:
                        continue
                    target = Path(self.build_lib, "labkit", "_series", path.relative_to(ROOT))
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(path, target)


setup(cmdclass={"build_py": BuildPyWithSeries})
