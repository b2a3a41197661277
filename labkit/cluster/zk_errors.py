"""ZooKeeper's failures, said in Kafka's terms and with what to do.

A broker that cannot reach ZooKeeper at start gets ``ZooKeeperUnavailable`` (a
configuration error naming the address and how to start ZooKeeper); an admin write from the
broker's loop that ZooKeeper does not answer in ``ADMIN_TIMEOUT_S`` becomes Kafka's
REQUEST_TIMED_OUT (``admin_call``), so a client retries instead of hanging.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from kazoo.exceptions import KazooException, NodeExistsError, NoNodeError
from kazoo.handlers.threading import KazooTimeoutError

from labkit.errors import KafkaConfigurationError, RequestTimedOutError

ADMIN_TIMEOUT_S = 10.0  # an admin write from the broker's loop waits at most this


class ZooKeeperUnavailable(KafkaConfigurationError):
    """ZooKeeper did not answer at ``zookeeper.connect``; the message says what to do."""


def how_to_start(connect: str) -> str:
    return (
        f"Start ZooKeeper first and check zookeeper.connect={connect}: e.g. Apache "
        "ZooKeeper 3.8's `bin/zkServer.sh start`, `docker run -p 2181:2181 zookeeper:3.8`, "
        "or in a labkit checkout `make zookeeper` and labkit.testing.zookeeper "
        "(docs/replication.md). Without --zookeeper, labkit runs as one broker."
    )


@contextlib.contextmanager
def admin_call(what: str) -> Iterator[None]:
    """Turns ZooKeeper's timeouts and connection losses into REQUEST_TIMED_OUT."""
    try:
        yield
    except (NodeExistsError, NoNodeError):
        raise
    except (KazooTimeoutError, KazooException) as exc:
        raise RequestTimedOutError(
            f"ZooKeeper did not answer while {what} ({type(exc).__name__}); "
            "is it running? The broker retries its connection; try again."
        ) from None
