"""``labkit lab``: a broker in the background and JupyterLab on the notebooks.

Theory of operation
-------------------
``run`` checks the options, picks the broker, then starts JupyterLab and waits under
the supervisor (``lab_supervisor``: the children, the stop signals, the stop order);
JupyterLab's command line, environment, settings and language are ``lab_jupyter``'s.

1. The broker. ``--broker HOST:PORT`` (docker-compose's ``lab`` service) uses an
   external broker and only waits for it. Otherwise a broker already answering on
   ``127.0.0.1:--port`` is reused and left running at exit; a port held by
   something else stops the command with the fix; else ``labkit broker`` is
   started (``--data-dir``, listening on 127.0.0.1 only) and waited for. With
   ``--brokers N``: ZooKeeper and N brokers in cluster mode (``lab_cluster``), never
   reused, each waited for; notebooks get all N addresses.
2. JupyterLab's port is checked free before anything starts (a taken port is reported
   with its fix). Without ``--notebooks`` and ``./notebooks`` the lab opens the current
   folder, and says so when that has no notebook (``labkit init`` copies the series out
   of the package).
3. Then ``lab_supervisor._supervise`` waits until JupyterLab exits or a stop signal
   arrives; ``run``'s ``finally`` stops JupyterLab, then the broker(s) it started
   (then ZooKeeper).
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from labkit._clock import REAL_CLOCK, Clock
from labkit.cli import lab_cluster
from labkit.cli._common import UsageError
from labkit.cli.lab_jupyter import (
    COURSE_LANGUAGE,
    JUPYTERLAB_LOCALES,
    _jupyter_argv,
    _lab_env,
    _start_page,
    _url_host,
    lab_language,
    lab_settings,
)
from labkit.cli.lab_supervisor import (
    POLL_S,
    LabError,
    _check_port_free,
    _install_stop_handlers,
    _restore_handlers,
    _say,
    _spawn,
    _stop_child,
    _Stopped,
    _supervise,
)

NAME = "lab"
HELP = "start the broker in the background and JupyterLab on the notebooks; Ctrl-C stops both"

BROKER_WAIT_S = 30.0


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
        default=None,
        help="where the broker keeps its topics (default: ./data; with --brokers: "
        "./data-cluster, one folder per broker and ZooKeeper's)",
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
        help="use the broker at HOST:PORT (or HOST:PORT,HOST:PORT,...: a cluster's brokers) "
        "instead of starting one",
    )
    parser.add_argument(
        "--brokers",
        type=int,
        metavar="N",
        default=None,
        help="cluster mode: start ZooKeeper and N brokers (ids 1..N on --port, --port+1, "
        "...; data in DATA_DIR/broker-<id>; replication factor min(N, 3) by default; "
        'needs Java and `make zookeeper`; docs/replication.md, "The lab")',
    )
    parser.add_argument(
        "--zookeeper-port",
        type=int,
        default=lab_cluster.ZOOKEEPER_PORT,
        help=f"with --brokers: ZooKeeper's port on 127.0.0.1 (default: {lab_cluster.ZOOKEEPER_PORT})",
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


def run(args: argparse.Namespace) -> int:
    """Run broker + JupyterLab until JupyterLab exits or a stop signal arrives.

    Returns 0 after a clean stop, 1 (with the fix on stderr) when the lab cannot
    start: a port is taken, the broker does not come up, JupyterLab is missing.
    Raises UsageError for bad option values.
    """
    _check_port_arg("--port", args.port)
    _check_port_arg("--lab-port", args.lab_port)
    _check_brokers_arg(args)
    if args.data_dir is None:
        args.data_dir = "data-cluster" if args.brokers else "data"
    notebooks = _notebooks_dir(args.notebooks)
    language = lab_language(args.language)
    settings = tempfile.TemporaryDirectory(prefix="labkit-lab-settings-")
    stop = threading.Event()
    previous = _install_stop_handlers(stop)
    services: list[tuple[str, subprocess.Popen]] = []
    lab_proc: subprocess.Popen | None = None
    try:
        _check_port_free(args.ip, args.lab_port, _lab_port_hint(args.lab_port))
        env_extra: dict[str, str] = {}
        if args.brokers:
            cluster = lab_cluster.plan(
                args.brokers, args.port, args.zookeeper_port, Path(args.data_dir).resolve()
            )
            services = lab_cluster.start(cluster, stop)
            bootstrap = cluster.bootstrap
            env_extra["LABKIT_ZOOKEEPER"] = cluster.zookeeper_connect
        else:
            bootstrap, broker_proc = _start_or_find_broker(args, stop)
            if broker_proc is not None:
                services = [("the broker", broker_proc)]
        _offer_kafka_bin(args.kafka_bin, bootstrap)
        token = os.environ.get("JUPYTER_TOKEN", "").strip() or secrets.token_hex(16)
        argv = _jupyter_argv(args, notebooks, language)
        argv.append(f"--LabApp.app_settings_dir={lab_settings(Path(settings.name), language)}")
        lab_proc = _spawn(argv, {**_lab_env(bootstrap, token), **env_extra}, cwd=notebooks)
        page = _start_page(notebooks, language)
        url = f"http://{_url_host(args.ip)}:{args.url_port or args.lab_port}{page}"
        return _supervise(args, lab_proc, services, bootstrap, f"{url}?token={token}", stop)
    except LabError as exc:
        print(f"labkit lab: error: {exc}", file=sys.stderr, flush=True)
        return 1
    except _Stopped:
        _say("stopped")
        return 0
    finally:
        _stop_child(lab_proc, "JupyterLab")
        lab_cluster.stop_all(services)
        _restore_handlers(previous)
        settings.cleanup()


# -- the broker ---------------------------------------------------------------


def _start_or_find_broker(
    args: argparse.Namespace, stop: threading.Event, clock: Clock = REAL_CLOCK
) -> tuple[str, subprocess.Popen | None]:
    if args.broker:
        bootstrap = args.broker.strip()
        _say(f"using the broker at {bootstrap}")
        # HOST:PORT or a list (the cluster profile's three brokers): each must answer.
        for address in (a.strip() for a in bootstrap.split(",") if a.strip()):
            if not _wait_for_broker(address, None, stop, clock):
                if stop.is_set():
                    raise _Stopped()
                raise LabError(
                    f"no broker answers at {address} after {BROKER_WAIT_S:.0f} s. Is it "
                    "running? With Docker: `docker-compose ps` and `docker-compose logs`."
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


# -- small checks -----------------------------------------------------------------


def _lab_port_hint(port: int) -> str:
    return (
        f"Port {port} is taken: another JupyterLab is probably running (`jupyter server list` "
        "shows it; the docker-compose lab uses it too: `docker-compose down`). Stop it, or "
        f"use another port: `labkit lab --lab-port {port + 1}` "
        f"(with make: make lab LAB_ARGS='--lab-port {port + 1}')."
    )


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


def _check_brokers_arg(args: argparse.Namespace) -> None:
    if args.brokers is None:
        return
    if not 1 <= args.brokers <= 9:
        raise UsageError(f"--brokers must be between 1 and 9, got {args.brokers}")
    if args.broker:
        raise UsageError(
            "--brokers starts its own brokers; --broker uses one that runs elsewhere: pick one"
        )
    _check_port_arg("--zookeeper-port", args.zookeeper_port)
    _check_port_arg("--port + --brokers + 100", args.port + args.brokers - 1 + 100)
