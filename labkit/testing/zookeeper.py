"""ZooKeeper for tests: ``zookeeper_for_tests``; the server itself, ``ZooKeeperServer``,
lives in labkit/launch/zookeeper.py (``nb.cluster()`` starts it too) and is re-exported here."""

from __future__ import annotations

import contextlib
import os

from labkit.launch.zookeeper import (
    CACHE_ENV,
    VERSION,
    ZooKeeperMissing,
    ZooKeeperServer,
    four_letter_word,
    libs_dir,
    require,
)

__all__ = [
    "CACHE_ENV",
    "VERSION",
    "ZooKeeperMissing",
    "ZooKeeperServer",
    "four_letter_word",
    "libs_dir",
    "require",
    "zookeeper_for_tests",
]


@contextlib.contextmanager
def zookeeper_for_tests():
    """A started ``ZooKeeperServer`` for a test, closed afterwards. Without Java or the
    jars of ``make zookeeper`` the test skips with the command to run, and fails under CI
    (CI=true) so that a missing download never passes unseen."""
    import pytest

    try:
        server = ZooKeeperServer().start()
    except ZooKeeperMissing as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.close()
