"""Cut one process off the network on loopback, and heal the cut: failure tests' scissors.

Theory of operation
-------------------
All of a test cluster's processes share 127.0.0.1, so an address cannot tell them apart;
a cgroup can. ``NetworkCut()`` makes a cgroup v2 of its own (``labkit-cut-...`` under the
cgroup2 mount); a process started in it (``BrokerProcess(cgroup=cut.path)`` enters it
before it opens a socket: a socket keeps the cgroup it was created in, so moving a
running process would not catch its open connections). ``cut(ports)`` inserts one
iptables rule per port in the OUTPUT chain: drop the TCP segments this cgroup's sockets
send to that destination port. Its requests, its ACKs and its keepalives vanish; the
peer's segments still arrive but are never acknowledged, so the connection stalls as it
would behind a pulled cable (no RST, no FIN: nobody is told). ``heal()`` deletes the
rules and TCP's retransmissions carry on where they stopped. ``cut(port, replies=True)``
drops what the cgroup sends from its own listening port instead (a server's answers), so
both directions can be cut. Other processes, and this
one's traffic to other ports, are untouched. ``close()`` heals and removes the cgroup
(once its processes ended).

Needs root, iptables with the ``cgroup`` match and a cgroup2 mount;
``NetworkCutUnavailable`` says which is missing. The rules are the host's: always
``close()`` (it is a context manager).
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from pathlib import Path

_names = itertools.count()


class NetworkCutUnavailable(RuntimeError):
    """This machine cannot cut one process off (no root, no iptables, no cgroup2)."""


def cgroup2_root() -> Path:
    """Where cgroup v2 is mounted. Raises NetworkCutUnavailable."""
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[2] == "cgroup2":
            return Path(fields[1])
    raise NetworkCutUnavailable("no cgroup2 mount: mount -t cgroup2 none /sys/fs/cgroup/unified")


def unavailable() -> str | None:
    """Why this machine cannot cut a process off, or None when it can."""
    if os.geteuid() != 0 or shutil.which("iptables") is None:
        return "cutting a process off the network needs root and iptables"
    try:
        cgroup2_root()
    except NetworkCutUnavailable as exc:
        return str(exc)
    return None


class NetworkCut:
    """One cgroup's cut (see the module docstring)."""

    def __init__(self, label: str = "process"):
        why = unavailable()
        if why is not None:
            raise NetworkCutUnavailable(why)
        root = cgroup2_root()
        self.name = f"labkit-cut-{label}-{os.getpid()}-{next(_names)}"
        self.path = root / self.name
        self.path.mkdir()
        self._rules: list[list[str]] = []

    def cut(self, *ports: int, replies: bool = False) -> NetworkCut:
        """Drop what the cgroup's processes send to each of ``ports`` on this host (with
        ``replies``: what they send from each of their own listening ``ports``)."""
        for port in ports:
            rule = ["OUTPUT", "-m", "cgroup", "--path", self.name, "-p", "tcp"]
            rule += ["--sport" if replies else "--dport", str(port), "-j", "DROP"]
            _iptables("-I", rule)
            self._rules.append(rule)
        return self

    def heal(self) -> None:
        """Remove the rules: the connections carry on (TCP retransmits)."""
        while self._rules:
            _iptables("-D", self._rules.pop())

    def close(self) -> None:
        self.heal()
        try:
            self.path.rmdir()
        except OSError:
            pass  # a process still runs in it: the empty rule set cuts nothing

    def __enter__(self) -> NetworkCut:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _iptables(action: str, rule: list[str]) -> None:
    done = subprocess.run(["iptables", action, *rule], capture_output=True, text=True)
    if done.returncode != 0:
        raise NetworkCutUnavailable(f"iptables {action} {' '.join(rule)}: {done.stderr.strip()}")
