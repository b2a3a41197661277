"""File descriptors: partitions and client connections share one per-process limit.

Each partition keeps its active segment open (one descriptor; sealed segments are
opened only while read), and each client connection is one socket. At the limit,
libzmq cannot accept a connection and the student only sees silence. So:

- at start the broker raises its soft ``RLIMIT_NOFILE`` to the hard one
  (``raise_open_file_limit``), as a server should;
- a new topic or partition is refused (POLICY_VIOLATION, saying why) when it would
  leave fewer than ``reserve()`` descriptors for connections (``DescriptorGuard``);
- an ``OSError`` of EMFILE/ENFILE is reported as "out of file descriptors", never
  as a disk problem (``out_of_descriptors``), and the server logs it when the count
  gets within ``FD_LOW_WATER`` of the limit (connections are refused then).

Where the OS does not say (no ``resource`` module, no /proc/self/fd or /dev/fd),
the guard lets everything through.
"""

from __future__ import annotations

import errno
import logging
import os
import sys

from labkit.errors import PolicyViolationError

try:
    import resource
except ImportError:  # Windows
    resource = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

MIN_RESERVE = 128  # descriptors always kept for client sockets and the broker's own
RESERVE_FRACTION = 4  # ... or a quarter of the limit, if more
DARWIN_OPEN_MAX = 10240  # macOS refuses an unlimited soft limit (OPEN_MAX)
FD_LOW_WATER = 8  # this close to the limit, connections are being refused


def open_file_limit() -> int | None:
    """The soft RLIMIT_NOFILE, or None when unknown/unlimited."""
    if resource is None:
        return None
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def raise_open_file_limit() -> tuple[int, int] | None:
    """Raise the soft open-file limit to the hard one. Returns (before, after) when it
    changed, None otherwise; never raises (a failure is logged)."""
    if resource is None:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if sys.platform == "darwin" and (hard == resource.RLIM_INFINITY or hard > DARWIN_OPEN_MAX):
        target = DARWIN_OPEN_MAX
    if target != resource.RLIM_INFINITY and soft != resource.RLIM_INFINITY and soft >= target:
        return None
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        log.warning(
            "could not raise the open-file limit from %d to %d (%s); the broker can "
            "hold fewer partitions and connections",
            soft,
            target,
            exc,
        )
        return None
    return soft, target


def open_descriptors() -> int | None:
    """How many descriptors this process has open now, or None when the OS does not say."""
    for path in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(path)) - 1  # minus the one listdir itself used
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                return open_file_limit()  # not even one left to look with
            continue
    return None


def reserve(limit: int) -> int:
    """Descriptors kept for connections under a given limit."""
    return max(MIN_RESERVE, limit // RESERVE_FRACTION)


def out_of_descriptors(exc: BaseException) -> str | None:
    """A student-facing message when ``exc`` is "too many open files", else None."""
    if not isinstance(exc, OSError) or exc.errno not in (errno.EMFILE, errno.ENFILE):
        return None
    limit = open_file_limit()
    at = f" (limit {limit})" if limit is not None else ""
    return (
        f"the broker is out of file descriptors{at}: every partition and every client "
        "connection holds one. Delete topics you no longer need, or raise the broker's "
        "open-file limit (ulimit -n, or ulimits: nofile: in docker-compose.yml) and "
        "restart it"
    )


class DescriptorGuard:
    """Refuses new partitions that would eat into the descriptors kept for connections."""

    def __init__(self, limit=open_file_limit, count=open_descriptors):
        self._limit = limit
        self._count = count

    def check(self, new_partitions: int) -> None:
        """Raises PolicyViolationError when ``new_partitions`` more would leave fewer than
        ``reserve(limit)`` descriptors free."""
        if new_partitions <= 0:
            return
        limit = self._limit()
        used = self._count() if limit is not None else None
        if limit is None or used is None:
            return
        kept = reserve(limit)
        room = limit - kept - used
        if new_partitions > room:
            raise PolicyViolationError(
                f"cannot add {new_partitions} partition(s): the broker has {used} of its "
                f"{limit} file descriptors open and keeps {kept} for client connections "
                f"(each partition holds one). Delete topics you no longer need, or raise "
                "the broker's open-file limit (ulimit -n, or ulimits: nofile: in "
                "docker-compose.yml) and restart it"
            )
