"""The package a user installs: the wheel built from this checkout, in a clean venv.

`python -m build` builds the sdist and then the wheel from it, as a release does, from a
copy of the checkout (so the build leaves nothing in it). The wheel goes with its lab
extras into a fresh venv (no system site-packages; pip fetches the dependencies from
the index or its cache). Everything then runs from that venv, in a folder outside the
checkout and without PYTHONPATH, so the code under test is the installed one:

- `labkit lab --help`, `labkit --version` and the Kafka-named console scripts;
- `labkit broker` starts and answers a produce/consume round trip made with the
  installed client and read back with the installed `kafka-console-consumer.sh`;
- `labkit init` copies the series out of the package, and 00_start_here runs top to
  bottom with nbclient in the venv's own kernel against that broker.

The install dominates the time. On a 2-CPU VM with a fast network the whole module took
2 min 31 s at load ~6 (build 10 s, venv 9 s, pip install of the wheel with [lab] 110 s)
and 4 min 43 s at load ~10 (31 s, 24 s, 186 s).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from e2e_helpers import REPO, broker_answers, free_port, stop_tree, wait_until

DIST_NAME = "labkit-streaming"
BUILD_S = 300
INSTALL_S = 600
RUN_S = 120

# The first test's timeout covers the module fixture: build, venv and install.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(BUILD_S + INSTALL_S + 300)]

# What a source checkout holds besides the package and the series; not needed to build.
NOT_BUILD_INPUT = (
    ".git",
    ".venv",
    "venv",
    "data",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".ipynb_checkpoints",
    "benchmarks",
    "tests",
)

# Run by the venv's python: send one record with the installed client, read it back.
ROUND_TRIP = """
import sys
from labkit import KafkaAdminClient, KafkaConsumer, KafkaProducer, NewTopic
address, topic = sys.argv[1], sys.argv[2]
admin = KafkaAdminClient(bootstrap_servers=[address])
admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
admin.close()
producer = KafkaProducer(bootstrap_servers=[address])
meta = producer.send(topic, key=b"k", value=b"hello from the wheel").get(timeout=30)
producer.close()
consumer = KafkaConsumer(topic, bootstrap_servers=[address], auto_offset_reset="earliest",
                         consumer_timeout_ms=15000)
values = [record.value for record in consumer]
consumer.close()
print(meta.offset, values)
"""

# Run by the venv's python: execute a notebook in the venv's own kernel, save the result.
RUN_NOTEBOOK = """
import sys
from pathlib import Path
import nbclient, nbformat
source, result = Path(sys.argv[1]), Path(sys.argv[2])
notebook = nbformat.read(source, as_version=4)
nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3",
                        resources={"metadata": {"path": str(source.parent)}}).execute()
nbformat.write(notebook, result)
"""


class Installed:
    """A venv holding the wheel with its lab extras, and a way to run its programs."""

    def __init__(self, venv: Path, home: Path, wheel: Path):
        self.venv, self.home, self.wheel = venv, home, wheel
        self.bin = venv / "bin"

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "VIRTUAL_ENV", "LABKIT_BOOTSTRAP", "JUPYTER_TOKEN")
        }
        env["PATH"] = str(self.bin) + os.pathsep + env.get("PATH", "")  # as if activated
        env["JUPYTER_DATA_DIR"] = str(self.home / "jupyter-data")  # no user kernelspecs
        env.update(extra)
        return env

    def run(self, *argv: str, timeout: float = RUN_S, **extra_env: str) -> str:
        result = subprocess.run(
            [str(self.bin / argv[0]), *argv[1:]],
            cwd=self.home,
            env=self.env(**extra_env),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        assert result.returncode == 0, (
            f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
        return result.stdout + result.stderr


def _timed(what: str, argv: list[str], timeout: float, **kwargs) -> None:
    started = time.monotonic()
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)
    assert result.returncode == 0, (
        f"{what} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    )
    print(f"{what}: {time.monotonic() - started:.0f} s")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*NOT_BUILD_INPUT))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    _timed(
        "python -m build",
        [sys.executable, "-m", "build", "--outdir", str(work / "dist"), str(source)],
        BUILD_S,
        env=env,
    )
    wheels = list((work / "dist").glob("*.whl"))
    assert len(wheels) == 1, wheels
    assert wheels[0].name.startswith("labkit_streaming-"), wheels
    assert list((work / "dist").glob("labkit_streaming-*.tar.gz")), "no sdist was built"
    venv = work / "venv"
    _timed("python -m venv", [sys.executable, "-m", "venv", str(venv)], RUN_S, env=env)
    _timed(
        "pip install wheel[lab]",
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", f"{wheels[0]}[lab]"],
        INSTALL_S,
        env=env,
    )
    home = work / "home"  # outside the checkout: `import labkit` cannot find its sources
    home.mkdir()
    return Installed(venv, home, wheels[0])


def test_the_installed_package_is_the_wheel(installed: Installed):
    out = installed.run(
        "python",
        "-c",
        "import importlib.metadata as m, labkit; "
        f"print(labkit.__file__, labkit.__version__, m.version({DIST_NAME!r}))",
    )
    path, module_version, dist_version = out.split()
    assert Path(path).is_relative_to(installed.venv), f"labkit imported from {path}"
    assert module_version == dist_version
    meta = installed.run(
        "python",
        "-c",
        "import importlib.metadata as m, json; "
        f"d = m.metadata({DIST_NAME!r}); "
        "print(json.dumps({k: d.get_all(k) for k in d.keys()}))",
    )
    fields = json.loads(meta)
    assert fields["License-Expression"] == ["MIT"]
    assert fields["Requires-Python"] == [">=3.11"]
    assert any(c.startswith("Programming Language :: Python :: 3.11") for c in fields["Classifier"])
    licenses = list(
        installed.venv.glob(
            "lib/python*/site-packages/labkit_streaming-*.dist-info/licenses/LICENSE"
        )
    )
    assert licenses
    assert "MIT License" in licenses[0].read_text()


def test_the_wheel_speaks_polish(installed: Installed):
    """The compiled message catalogue is in the wheel (labkit/locale/pl/LC_MESSAGES)."""
    out = installed.run(
        "python",
        "-c",
        "from labkit import nb; nb.check('00.1', ...); nb.language('en'); nb.check('00.1', ...)",
        LABKIT_LANG="pl",
    )
    assert out.splitlines() == [
        "BRAK ODPOWIEDZI 00.1 (0/1 pkt): zastąp ... swoją odpowiedzią",
        "NOT ATTEMPTED 00.1 (0/1 points): replace the ... with your answer",
    ]


def test_console_scripts_and_lab_help(installed: Installed):
    assert f"labkit {installed.wheel.name.split('-')[1]}" in installed.run("labkit", "--version")
    help_text = installed.run("labkit", "lab", "--help")
    assert "--notebooks" in help_text
    assert "--lab-port" in help_text
    assert "init" in installed.run("labkit", "--help")
    for script in (
        "kafka-topics.sh",
        "kafka-console-producer.sh",
        "kafka-console-consumer.sh",
        "kafka-consumer-groups.sh",
    ):
        assert "--bootstrap-server" in installed.run(script, "--help")


@pytest.fixture(scope="module")
def broker(installed: Installed):
    """`labkit broker` from the venv, on a free port; yields its address."""
    port = free_port()
    log_path = installed.home / "broker.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                str(installed.bin / "labkit"),
                "broker",
                "--port",
                str(port),
                "--data-dir",
                str(installed.home / "data"),
            ],
            cwd=installed.home,
            env=installed.env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until(
            lambda: proc.poll() is not None or broker_answers(f"127.0.0.1:{port}", 500),
            60,
            what="the installed broker",
        )
        assert proc.poll() is None, log_path.read_text()
        yield f"localhost:{port}"
    finally:
        stop_tree(proc)


def test_broker_round_trip_with_the_installed_client(installed: Installed, broker: str):
    out = installed.run("python", "-c", ROUND_TRIP, broker, "wheel-check")
    assert out.strip().endswith("0 [b'hello from the wheel']"), out
    consumed = installed.run(
        "kafka-console-consumer.sh",
        "--bootstrap-server",
        broker,
        "--topic",
        "wheel-check",
        "--from-beginning",
        "--max-messages",
        "1",
    )
    assert "hello from the wheel" in consumed


def test_init_then_the_first_notebook_runs(installed: Installed, broker: str):
    out = installed.run("labkit", "init", "course")
    course = installed.home / "course"
    assert "labkit lab" in out  # the next step
    assert (course / "notebooks" / "00_start_here.ipynb").is_file()
    assert (course / "notebooks" / "README.ipynb").is_file()
    assert (course / "notebooks" / "pl" / "README.ipynb").is_file()  # the Polish series
    assert not (course / "instructor").exists(), "solutions only with --instructor"
    installed.run("labkit", "init", "course", "--instructor")
    assert (course / "instructor" / "masters" / "10_fraud_pipeline.ipynb").is_file()

    source = course / "notebooks" / "00_start_here.ipynb"
    result = installed.home / "00_start_here.run.ipynb"
    installed.run(
        "python", "-c", RUN_NOTEBOOK, str(source), str(result), timeout=300, LABKIT_BOOTSTRAP=broker
    )
    cells = [c for c in json.loads(result.read_text())["cells"] if c["cell_type"] == "code"]
    errors = [o for c in cells for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert not errors, errors
    text = "\n".join("".join(o.get("text", "")) for c in cells for o in c.get("outputs", []))
    assert "all checks passed" in text, text
    assert f"answers at {broker}" in text
    assert str(installed.venv) in text, "the notebook's kernel must import the installed labkit"
    assert "NOT ATTEMPTED" in text  # a student's copy: the exercises are still open
    assert "labkit: a hands-on lab" in text  # `!labkit --help` found the venv's command
