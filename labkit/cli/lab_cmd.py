"""``labkit lab``: a broker in the background and JupyterLab on the notebooks.

Theory of operation
-------------------
``run`` is a small supervisor of two child processes, each started in its own
session (process group), so a Ctrl-C in the terminal reaches only this process,
which then stops the children in order: JupyterLab first (it shuts down its
kernels and terminals), then the broker (it closes its logs cleanly). Each gets
SIGTERM, then SIGKILL after ``STOP_GRACE_S``. SIGINT, SIGTERM and SIGHUP all mean
"stop everything"; so does JupyterLab exiting (File > Shut Down).

1. The broker. ``--broker HOST:PORT`` (docker-compose's ``lab`` service) uses an
   external broker and only waits for it. Otherwise a broker already answering on
   ``127.0.0.1:--port`` is reused and left running at exit; a port held by
   something else stops the command with the fix; else ``labkit broker`` is
   started (``--data-dir``, listening on 127.0.0.1 only) and waited for.
2. JupyterLab gets ``LABKIT_BOOTSTRAP`` (the broker's address), the notebooks
   folder as its root, token auth (``$JUPYTER_TOKEN`` or a fresh random token),
   terminals, and no port retries: a taken port is reported with its fix rather
   than silently moved. ``notebooks/README.ipynb``, when present, is the landing page.
   Without ``--notebooks`` and ``./notebooks`` it opens the current folder, and says
   so when that has no notebook (``labkit init`` copies the series out of the package).
   The lab's language (``--language``, else ``LABKIT_LANG``, else Polish: the course's)
   picks the landing page (``notebooks/pl/README.ipynb`` for Polish, when present, with
   a link to the English series) and JupyterLab's own menus: a settings directory of this
   run holds the installation's ``overrides.json`` (the Docker image's) plus the locale
   of ``@jupyterlab/translation-extension:plugin`` (``pl_PL``, from the language pack
   ``jupyterlab-language-pack-pl-PL`` of the lab extras). It is a default: a student who
   picks another language in Settings > Language keeps it. The kernels need no language:
   every notebook of the series names its own in its metadata (``labkit.i18n``).
3. While waiting, the supervisor prints the URL once JupyterLab answers and warns
   once if the broker it started dies.

Only the main thread touches the children; signal handlers just set an event.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from pathlib import Path

from labkit._clock import REAL_CLOCK, Clock
from labkit.cli._common import UsageError

NAME = "lab"
HELP = "start the broker in the background and JupyterLab on the notebooks; Ctrl-C stops both"

BROKER_WAIT_S = 30.0
LAB_WAIT_S = 120.0
STOP_GRACE_S = 10.0
POLL_S = 0.25
LANDING_PAGE = "README.ipynb"
COURSE_LANGUAGE = "pl"  # the course is taught in Polish; `--language en` for English
# labkit's language -> JupyterLab's locale (a language pack, except English)
JUPYTERLAB_LOCALES = {"en": "en", "pl": "pl_PL"}
TRANSLATION_PLUGIN = "@jupyterlab/translation-extension:plugin"
_IS_WINDOWS = os.name == "nt"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--notebooks",
        metavar="DIR",
        default=None,
        help="the folder JupyterLab opens (default: ./notebooks if it "
        "exists, else the current folder)",
    )
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        default="data",
        help="where the broker keeps its topics (default: ./data)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=9092,
        help="the broker's main port on 127.0.0.1 (default: 9092; Kafka's protocol; its "
        "ZeroMQ port is this + 100)",
    )
    parser.add_argument(
        "--broker",
        metavar="HOST:PORT",
        default=None,
        help="use the broker at HOST:PORT instead of starting one",
    )
    parser.add_argument(
        "--lab-port", type=int, default=8888, help="JupyterLab's port (default: 8888)"
    )
    parser.add_argument(
        "--ip",
        default="127.0.0.1",
        help="the address JupyterLab listens on (default: 127.0.0.1, this machine only)",
    )
    parser.add_argument(
        "--language",
        choices=sorted(JUPYTERLAB_LOCALES),
        default=None,
        help="the lab's language: its landing page and JupyterLab's menus (default: "
        f"LABKIT_LANG, else {COURSE_LANGUAGE})",
    )
    parser.add_argument(
        "--kafka-bin",
        metavar="DIR",
        default=None,
        help="the folder of Kafka's console tools for course commands like "
        "`cd ~ && kafka/bin/kafka-topics.sh`: made when its parent does not exist, refreshed "
        "when it is labkit's, never touched otherwise (default: LABKIT_KAFKA_BIN, else "
        "~/kafka/bin; `off` for none)",
    )
    parser.add_argument("--url-port", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser tab")


class LabError(Exception):
    """Something the student must fix before the lab can start; the message says what."""


class _Stopped(Exception):
    """A stop signal arrived while starting up."""


def run(args: argparse.Namespace) -> int:
    """Run broker + JupyterLab until JupyterLab exits or a stop signal arrives.

    Returns 0 after a clean stop, 1 (with the fix on stderr) when the lab cannot
    start: a port is taken, the broker does not come up, JupyterLab is missing.
    Raises UsageError for bad option values.
    """
    _check_port_arg("--port", args.port)
    _check_port_arg("--lab-port", args.lab_port)
    notebooks = _notebooks_dir(args.notebooks)
    language = lab_language(args.language)
    settings = tempfile.TemporaryDirectory(prefix="labkit-lab-settings-")
    stop = threading.Event()
    previous = _install_stop_handlers(stop)
    broker_proc: subprocess.Popen | None = None
    lab_proc: subprocess.Popen | None = None
    try:
        _check_port_free(args.ip, args.lab_port, _lab_port_hint(args.lab_port))
        bootstrap, broker_proc = _start_or_find_broker(args, stop)
        _offer_kafka_bin(args.kafka_bin, bootstrap)
        token = os.environ.get("JUPYTER_TOKEN", "").strip() or secrets.token_hex(16)
        argv = _jupyter_argv(args, notebooks, language)
        argv.append(f"--LabApp.app_settings_dir={lab_settings(Path(settings.name), language)}")
        lab_proc = _spawn(argv, _lab_env(bootstrap, token), cwd=notebooks)
        page = _start_page(notebooks, language)
        url = f"http://{_url_host(args.ip)}:{args.url_port or args.lab_port}{page}"
        return _supervise(args, lab_proc, broker_proc, bootstrap, f"{url}?token={token}", stop)
    except LabError as exc:
        print(f"labkit lab: error: {exc}", file=sys.stderr, flush=True)
        return 1
    except _Stopped:
        _say("stopped")
        return 0
    finally:
        _stop_child(lab_proc, "JupyterLab")
        _stop_child(broker_proc, "the broker")
        _restore_handlers(previous)
        settings.cleanup()


# -- the broker ---------------------------------------------------------------


def _start_or_find_broker(
    args: argparse.Namespace, stop: threading.Event, clock: Clock = REAL_CLOCK
) -> tuple[str, subprocess.Popen | None]:
    if args.broker:
        bootstrap = args.broker.strip()
        _say(f"using the broker at {bootstrap}")
        if not _wait_for_broker(bootstrap, None, stop, clock):
            if stop.is_set():
                raise _Stopped()
            raise LabError(
                f"no broker answers at {bootstrap} after {BROKER_WAIT_S:.0f} s. Is it running? "
                "With Docker: `docker-compose ps` and `docker-compose logs broker`."
            )
        return bootstrap, None
    bootstrap = f"localhost:{args.port}"
    if broker_answers(f"127.0.0.1:{args.port}", 2.0):
        _say(
            f"a broker is already running on {bootstrap}; using it (it keeps running after "
            "the lab stops)"
        )
        return bootstrap, None
    _check_port_free(
        "127.0.0.1",
        args.port,
        f"Port {args.port} is taken by a program that is not a labkit broker. "
        "(Is `docker-compose up` running? Its broker publishes this port: `docker-compose down`.) "
        f"Stop that program, or use another port: `labkit lab --port {args.port + 1}` "
        f"(with make: make lab LAB_ARGS='--port {args.port + 1}').",
    )
    data_dir = Path(args.data_dir).resolve()
    _say(f"starting the broker on {bootstrap} (data in {data_dir})")
    argv = [
        sys.executable,
        "-m",
        "labkit",
        "broker",
        "--host",
        "127.0.0.1",
        "--port",
        str(args.port),
        "--data-dir",
        str(data_dir),
    ]
    proc = _spawn(argv, dict(os.environ))
    if not _wait_for_broker(f"127.0.0.1:{args.port}", proc, stop, clock):
        code = proc.poll()
        _stop_child(proc, "the broker")
        if stop.is_set():
            raise _Stopped()
        why = (
            f"it exited with code {code} (its messages are above)"
            if code is not None
            else f"it did not answer within {BROKER_WAIT_S:.0f} s"
        )
        raise LabError(
            f"the broker did not start: {why}. Try it alone to see why: "
            f"labkit broker --port {args.port} --data-dir {data_dir}"
        )
    return bootstrap, proc


def _wait_for_broker(
    address: str, proc: subprocess.Popen | None, stop: threading.Event, clock: Clock
) -> bool:
    deadline = clock.monotonic() + BROKER_WAIT_S
    while not stop.is_set() and clock.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        if broker_answers(address, 1.0):
            return True
        stop.wait(POLL_S)
    return False


def broker_answers(address: str, timeout_s: float) -> bool:
    """True when a labkit broker at ``host:port`` answers api_versions within ``timeout_s``."""
    from labkit.client.probe import broker_answers as answers

    return answers(address, timeout_s, client_id="labkit-lab")


def _offer_kafka_bin(option: str | None, bootstrap: str) -> None:
    """~/kafka/bin for the course's `kafka/bin/kafka-topics.sh ...` (labkit kafka-bin)."""
    from labkit.cli import kafka_bin_cmd

    news = kafka_bin_cmd.ensure_for_lab(kafka_bin_cmd.lab_dir(option), bootstrap)
    if news:
        _say(news)


# -- JupyterLab ---------------------------------------------------------------


def lab_language(chosen: str | None) -> str:
    """``--language``, else ``LABKIT_LANG`` when labkit speaks it, else the course's."""
    from labkit import i18n

    return chosen or i18n.normalize(os.environ.get(i18n.LANG_ENV)) or COURSE_LANGUAGE


def lab_settings(folder: Path, language: str) -> Path:
    """JupyterLab's app settings directory for this run, in ``folder``: the installation's
    own (its ``overrides.json``, e.g. the Docker image's) with the UI's locale added."""
    try:
        from jupyterlab.commands import get_app_dir

        installed = Path(get_app_dir()) / "settings"
    except ImportError:  # reported by _jupyter_argv
        installed = None
    if installed is not None and installed.is_dir():
        shutil.copytree(installed, folder, dirs_exist_ok=True)
    path = folder / "overrides.json"
    overrides = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    overrides.setdefault(TRANSLATION_PLUGIN, {})["locale"] = JUPYTERLAB_LOCALES[language]
    path.write_text(json.dumps(overrides, indent=2) + "\n", encoding="utf-8")
    return folder


def _jupyter_argv(args: argparse.Namespace, notebooks: Path, language: str = "en") -> list[str]:
    try:
        import jupyterlab  # noqa: F401  (only to say what is missing)
    except ImportError:
        raise LabError(
            "JupyterLab is not installed. Install the lab extras: "
            "pip install 'labkit-streaming[lab]' (in a checkout: `make lab` does "
            "it)."
        ) from None
    argv = [
        sys.executable,
        "-m",
        "jupyterlab",
        f"--ServerApp.ip={args.ip}",
        f"--ServerApp.port={args.lab_port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={notebooks}",
        "--ServerApp.terminals_enabled=True",
    ]
    if args.no_browser:
        argv.append("--ServerApp.open_browser=False")
    argv.append(f"--LabApp.default_url={_start_page(notebooks, language)}")
    if not _IS_WINDOWS:
        # A plain interactive shell: Jupyter would start a login shell when its output
        # is not a terminal (Docker, a log file), and /etc/profile resets PATH, hiding
        # the console tools of a virtualenv. Terminals open in the notebooks folder.
        shell = os.environ.get("SHELL") or shutil.which("bash") or "/bin/sh"
        argv.append("--ServerApp.terminado_settings=" + json.dumps({"shell_command": [shell]}))
    if not _IS_WINDOWS and os.geteuid() == 0:
        argv.append("--ServerApp.allow_root=True")  # containers and CI run as root
    return argv


def _lab_env(bootstrap: str, token: str) -> dict[str, str]:
    env = dict(os.environ)
    env["LABKIT_BOOTSTRAP"] = bootstrap
    env["JUPYTER_TOKEN"] = token
    # Terminals and `!labkit ...` cells find the console tools of this installation
    # even when the virtualenv is not activated.
    scripts = str(Path(sys.executable).parent)
    env["PATH"] = scripts + os.pathsep + env.get("PATH", "")
    return env


def _lab_answers(ip: str, port: int) -> bool:
    host = "127.0.0.1" if ip in ("0.0.0.0", "", "*") else ip
    if ":" in host:
        host = f"[{host}]"
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/api", timeout=1.0):
            return True
    except (OSError, urllib.error.URLError, ValueError):
        return False


def _lab_port_hint(port: int) -> str:
    return (
        f"Port {port} is taken: another JupyterLab is probably running (`jupyter server list` "
        "shows it; the docker-compose lab uses it too: `docker-compose down`). Stop it, or "
        f"use another port: `labkit lab --lab-port {port + 1}` "
        f"(with make: make lab LAB_ARGS='--lab-port {port + 1}')."
    )


# -- supervision ----------------------------------------------------------------


def _supervise(
    args: argparse.Namespace,
    lab: subprocess.Popen,
    broker: subprocess.Popen | None,
    bootstrap: str,
    url: str,
    stop: threading.Event,
    clock: Clock = REAL_CLOCK,
) -> int:
    announced = False
    broker_warned = False
    deadline = clock.monotonic() + LAB_WAIT_S
    while not stop.is_set():
        code = lab.poll()
        if code is not None:
            if not announced:
                raise LabError(
                    f"JupyterLab exited with code {code} before it was ready "
                    "(its messages are above)."
                )
            _say("JupyterLab has stopped")
            return 0 if code in (0, -signal.SIGTERM, -signal.SIGINT) else code
        if not announced and _lab_answers(args.ip, args.lab_port):
            announced = True
            _announce(args, bootstrap, url)
        elif not announced and clock.monotonic() > deadline:
            _say(
                f"JupyterLab has not answered on port {args.lab_port} after "
                f"{LAB_WAIT_S:.0f} s; still waiting (its messages are above)"
            )
            deadline = float("inf")
        if broker is not None and not broker_warned and broker.poll() is not None:
            broker_warned = True
            _say(
                f"WARNING: the broker stopped (exit code {broker.returncode}); notebooks "
                f"cannot reach {bootstrap}. Stop the lab (Ctrl-C) and start it again."
            )
        stop.wait(POLL_S)
    _say(
        "stopping JupyterLab and the broker ..."
        if broker is not None
        else "stopping JupyterLab ..."
    )
    return 0


def _start_page(notebooks: Path, language: str = "en") -> str:
    """The page the lab opens on: the landing notebook of the lab's language when there is
    one (``pl/README.ipynb``), else the English one, else the file browser."""
    for landing in (f"{language}/{LANDING_PAGE}", LANDING_PAGE):
        if (notebooks / landing).is_file():
            return f"/lab/tree/{landing}"
    return "/lab"


def _url_host(ip: str) -> str:
    return "localhost" if ip in ("0.0.0.0", "127.0.0.1", "localhost", "", "*") else ip


def _announce(args: argparse.Namespace, bootstrap: str, url: str) -> None:
    lines = [
        "",
        "=" * 72,
        "  labkit lab is ready. Open this URL in your browser:",
        "",
        f"      {url}",
        "",
        f"  Notebooks reach the broker at {bootstrap} (LABKIT_BOOTSTRAP).",
        "  Stop with Ctrl-C: the broker stops too."
        if not args.broker
        else "  Stop with `docker-compose down` (your notebooks stay in ./notebooks).",
        "=" * 72,
        "",
    ]
    print("\n".join(lines), file=sys.stderr, flush=True)


def _spawn(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.Popen:
    if _IS_WINDOWS:
        flags = subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]
        return subprocess.Popen(argv, env=env, cwd=cwd, creationflags=flags)
    return subprocess.Popen(argv, env=env, cwd=cwd, start_new_session=True)


def _stop_child(proc: subprocess.Popen | None, what: str) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        _say(f"{what} did not stop within {STOP_GRACE_S:.0f} s; killing it")
        proc.kill()
        proc.wait()


def _install_stop_handlers(stop: threading.Event) -> dict[int, object]:
    def handler(signum: int, frame: object) -> None:
        stop.set()

    previous: dict[int, object] = {}
    names = ("SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK")
    for sig in (getattr(signal, name) for name in names if hasattr(signal, name)):
        previous[sig] = signal.signal(sig, handler)
    return previous


def _restore_handlers(previous: dict[int, object]) -> None:
    for sig, old in previous.items():
        signal.signal(sig, old)  # type: ignore[arg-type]


# -- small checks -----------------------------------------------------------------


def _notebooks_dir(value: str | None) -> Path:
    if value:
        path = Path(value).expanduser().resolve()
        if not path.is_dir():
            raise UsageError(f"--notebooks {value}: no such folder")
        return path
    default = Path("notebooks")
    if default.is_dir():
        return default.resolve()
    if not any(Path(".").glob("*.ipynb")):
        _say(
            "no ./notebooks folder here, so JupyterLab opens the current folder. To get the "
            "notebook series: `labkit init DIR`, then `cd DIR` and `labkit lab` again."
        )
    return Path(".").resolve()


def _check_port_arg(flag: str, port: int) -> None:
    if not 0 < port < 65536:
        raise UsageError(f"{flag} must be between 1 and 65535, got {port}")


def _check_port_free(host: str, port: int, hint: str) -> None:
    bind_host = "0.0.0.0" if host in ("", "*") else host
    with socket.socket(socket.AF_INET6 if ":" in bind_host else socket.AF_INET) as sock:
        if not _IS_WINDOWS:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((bind_host, port))
        except OSError:
            raise LabError(hint) from None


def _say(text: str) -> None:
    print(f"labkit lab: {text}", file=sys.stderr, flush=True)
