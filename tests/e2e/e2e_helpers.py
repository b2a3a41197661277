"""Helpers for the end-to-end tests (ports, addresses, processes, polling)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]


def compose_commands() -> list[list[str]]:
    """The compose implementations on this machine: v1 `docker-compose`, v2 `docker compose`."""
    found = []
    if shutil.which("docker-compose"):
        found.append(["docker-compose"])
    if (
        shutil.which("docker")
        and subprocess.run(
            ["docker", "compose", "version"], capture_output=True, timeout=60
        ).returncode
        == 0
    ):
        found.append(["docker", "compose"])
    return found


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(preferred: int | None = None) -> int:
    """``preferred`` when it is free on 127.0.0.1, else any free port."""
    if preferred is not None and port_is_free(preferred):
        return preferred
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def connect_error(host: str, port: int, timeout: float = 2.0) -> Exception | None:
    """None if a TCP connection to host:port succeeds, else the error."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return exc


def own_non_loopback_ipv4() -> list[str]:
    """This machine's own IPv4 addresses other than 127.0.0.0/8 (docker bridges included)."""
    if shutil.which("ip") is None:
        _, _, found = socket.gethostbyname_ex(socket.gethostname())
        return [addr for addr in found if not addr.startswith("127.")]
    out = subprocess.run(
        ["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, timeout=30
    ).stdout
    addresses = []
    for line in out.splitlines():
        fields = line.split()
        if "inet" in fields:
            addr = fields[fields.index("inet") + 1].split("/")[0]
            if not addr.startswith("127."):
                addresses.append(addr)
    return addresses


def processes_mentioning(text: str) -> list[tuple[int, str]]:
    """(pid, command line) of live processes whose command line contains ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        cmdline = raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()
        if text in cmdline and state != "Z":
            found.append((int(entry.name), cmdline))
    return found


def wait_until(predicate, timeout: float, interval: float = 0.5, what: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}", pytrace=False)
        time.sleep(interval)


def broker_answers(address: str, timeout_ms: int = 2000) -> bool:
    """True when a labkit broker at host:port answers api_versions (raw wire, docs/wire.md;
    the ZeroMQ endpoint asked at the main port first, as labkit's client does)."""
    import zmq

    from labkit.client.bootstrap import discover
    from labkit.protocol.frames import build_request, parse_response

    found, _ = discover([address], timeout_ms / 1000, timeout_ms / 1000, "e2e")
    if not found:
        return False
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect("tcp://" + found[0].zmq_address)
        sock.send_multipart(build_request(b"e2e", "api_versions", {}))
        if not sock.poll(timeout_ms):
            return False
        _, header, _ = parse_response(sock.recv_multipart())
        return header.get("error") == 0
    finally:
        sock.close()


def http_status(url: str, timeout: float = 5.0) -> int | None:
    """The HTTP status of GET url (None when nothing answers)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_tree(proc: subprocess.Popen, timeout: float = 30) -> None:
    """Stop ``proc``'s process group and every descendant: SIGTERM, then SIGKILL after ``timeout``.

    ``proc`` leads its own process group (``start_new_session=True``), so its pid is
    its group id. Descendants that
    made their own session (``labkit lab`` starts the broker that way, Jupyter its
    kernels) are collected first and signalled one by one.
    """
    try:
        descendants = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    signal_group(proc.pid, signal.SIGTERM)
    for child in descendants:
        try:
            child.terminate()
        except psutil.NoSuchProcess:
            pass
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        pass
    _, alive = psutil.wait_procs(descendants, timeout=timeout)
    if proc.poll() is None or alive or group_alive(proc.pid):
        signal_group(proc.pid, signal.SIGKILL)
        for child in alive:
            try:
                child.kill()
            except psutil.NoSuchProcess:
                pass
        proc.wait(timeout)
        psutil.wait_procs(alive, timeout=timeout)


def gone(text: str, *ports: int) -> bool:
    """No live process's command line contains ``text`` and every port on 127.0.0.1
    refuses connections. Both: a process on its way out reads as gone (its command line
    empties once its memory is released) a moment before its sockets close."""
    if processes_mentioning(text):
        return False
    return all(connect_error("127.0.0.1", port) is not None for port in ports)


def lab_argv(port: int, lab_port: int, data_dir: Path, notebooks: Path) -> list[str]:
    """`labkit lab` without a browser, on these ports and folders."""
    return [
        sys.executable,
        "-m",
        "labkit",
        "lab",
        "--no-browser",
        "--port",
        str(port),
        "--lab-port",
        str(lab_port),
        "--data-dir",
        str(data_dir),
        "--notebooks",
        str(notebooks),
    ]
