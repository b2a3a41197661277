"""`make lab` in a fresh clone: it creates the venv, starts the broker and JupyterLab,
and both stop cleanly on Ctrl-C (SIGINT to the terminal's process group) and on a
SIGTERM sent to make alone, leaving no process behind.

The clone is real (`git clone` of this repository's HEAD), so the test covers what a
student gets; the venv it creates comes from pip's cache after the first run. `make`
leads its own process group; each test ends, pass or fail, by stopping that group and
every descendant (SIGTERM, then SIGKILL), so no JupyterLab, kernel or broker outlives it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from e2e_helpers import (
    REPO,
    broker_answers,
    connect_error,
    free_port,
    gone,
    http_status,
    processes_mentioning,
    stop_tree,
    wait_until,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(1200),
    pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs Linux /proc"),
]

FIRST_START_S = 600  # creating the venv (pip) dominates
START_S = 120
STOP_S = 60


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    for tool in ("git", "make"):
        if shutil.which(tool) is None:
            message = f"`{tool}` is not installed"
            if os.environ.get("CI"):
                pytest.fail(message, pytrace=False)
            pytest.skip(message)
    dest = tmp_path_factory.mktemp("fresh") / "labkit"
    subprocess.run(["git", "clone", "-q", str(REPO), str(dest)], check=True, timeout=120)
    yield dest
    for pid, _ in processes_mentioning(str(dest)):  # never leave strays, even on failure
        os.kill(pid, signal.SIGKILL)


class MakeLab:
    def __init__(self, clone: Path, tag: str):
        self.clone = clone
        self.token = "e2e-" + secrets.token_hex(8)
        self.broker_port, self.lab_port = free_port(), free_port()
        self.log_path = clone.parent / f"make-lab-{tag}.log"
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
        env["JUPYTER_TOKEN"] = self.token
        env["LABKIT_LANG"] = "en"  # the English landing page (the default is Polish)
        # the lab makes ~/kafka/bin when there is none: here, in a home of this test's own
        self.home = clone.parent / f"home-{tag}"
        env["LABKIT_KAFKA_BIN"] = str(self.home / "kafka" / "bin")
        lab_args = f"--no-browser --port {self.broker_port} --lab-port {self.lab_port}"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                ["make", "lab", f"LAB_ARGS={lab_args}"],
                cwd=clone,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def __enter__(self) -> MakeLab:
        return self

    def __exit__(self, *exc_info) -> None:
        stop_tree(self.proc, STOP_S)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                pytest.fail(
                    f"make lab exited with {self.proc.returncode}:\n{self.log()}", pytrace=False
                )
            return http_status(f"http://127.0.0.1:{self.lab_port}/api") == 200 and broker_answers(
                f"127.0.0.1:{self.broker_port}", 1000
            )

        try:
            wait_until(ready, timeout, interval=1.0, what="JupyterLab and the broker")
        except pytest.fail.Exception:
            print(self.log())
            raise

    def wait_stopped(self) -> int:
        try:
            return self.proc.wait(STOP_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"make lab did not stop within {STOP_S} s:\n{self.log()}", pytrace=False)

    def assert_nothing_left(self) -> None:
        wait_until(
            lambda: gone(str(self.clone), self.broker_port, self.lab_port),
            10,
            what="every process of the lab (broker, JupyterLab, kernels) to exit",
        )
        assert connect_error("127.0.0.1", self.broker_port) is not None
        assert connect_error("127.0.0.1", self.lab_port) is not None


def _jupyter_env(clone: Path) -> dict[str, str]:
    for pid, cmdline in processes_mentioning(str(clone)):
        if "jupyterlab" in cmdline:
            raw = Path(f"/proc/{pid}/environ").read_bytes()
            return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)
    pytest.fail("no JupyterLab process found", pytrace=False)


def test_make_lab_fresh_clone_then_ctrl_c(clone: Path):
    with MakeLab(clone, "ctrl-c") as lab:
        lab.wait_ready(FIRST_START_S)
        assert (clone / ".venv" / "bin" / "labkit").exists()
        assert (clone / "data").is_dir(), "the broker keeps its data in ./data"

        url = f"http://localhost:{lab.lab_port}/lab/tree/README.ipynb?token={lab.token}"
        wait_until(lambda: url in lab.log(), 15, what="the URL in make's output")
        # JupyterLab serves the notebooks folder, with token auth, and tells notebooks the broker.
        base = f"http://127.0.0.1:{lab.lab_port}"
        assert http_status(f"{base}/api/contents") == 403
        assert http_status(f"{base}/api/contents?token={lab.token}") == 200
        env = _jupyter_env(clone)
        assert env["LABKIT_BOOTSTRAP"] == f"localhost:{lab.broker_port}"
        assert env["PATH"].split(os.pathsep)[0] == str(clone / ".venv" / "bin")
        # The course's `cd ~ && kafka/bin/kafka-topics.sh --list` works: the lab made kafka/bin.
        assert "Kafka's console tools are in" in lab.log()
        listed = subprocess.run(
            [
                "kafka/bin/kafka-topics.sh",
                "--list",
                "--bootstrap-server",
                f"localhost:{lab.broker_port}",
            ],
            cwd=lab.home,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert listed.returncode == 0, listed

        os.killpg(lab.proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        lab.wait_stopped()
        lab.assert_nothing_left()
        assert "stopping JupyterLab and the broker" in lab.log()


def test_make_lab_stops_on_sigterm_to_make(clone: Path):
    with MakeLab(clone, "sigterm") as lab:
        lab.wait_ready(FIRST_START_S)  # the venv usually exists already (first test)
        lab.proc.send_signal(signal.SIGTERM)  # make alone: it passes SIGTERM to labkit lab
        lab.wait_stopped()
        lab.assert_nothing_left()
