"""Three real labkit brokers on one real ZooKeeper, and ways to read what ZooKeeper holds."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

from labkit.testing import BrokerProcess

SESSION_TIMEOUT_MS = 4000  # short, so failovers in tests take seconds (Kafka's default: 18000)


def start_cluster(
    zookeeper, ids=(1, 2, 3), extra: dict | None = None, cgroups: dict | None = None
) -> dict[int, BrokerProcess]:
    """``cgroups``: broker id -> the cgroup it runs in (labkit/testing/netcut.py)."""
    brokers = {}
    try:
        for broker_id in ids:
            config = {
                "broker.id": str(broker_id),
                "zookeeper.connect": zookeeper.connect,
                "zookeeper.session.timeout.ms": str(SESSION_TIMEOUT_MS),
                **(extra or {}),
            }
            cgroup = (cgroups or {}).get(broker_id)
            brokers[broker_id] = BrokerProcess(config=config, cgroup=cgroup).start()
    except BaseException:
        stop_cluster(brokers)
        raise
    return brokers


def stop_cluster(brokers: dict[int, BrokerProcess]) -> None:
    for broker in brokers.values():
        if broker.pid is not None:  # a test may leave one stopped (SIGSTOP): let it go on
            with contextlib.suppress(ProcessLookupError):
                os.kill(broker.pid, signal.SIGCONT)
        broker.close()


@contextlib.contextmanager
def running_cluster(zookeeper, **options):
    """``start_cluster(zookeeper, **options)``, stopped afterwards whatever happened."""
    brokers = start_cluster(zookeeper, **options)
    try:
        yield brokers
    finally:
        stop_cluster(brokers)


@contextlib.contextmanager
def zk_client(zookeeper):
    from kazoo.client import KazooClient

    client = KazooClient(hosts=zookeeper.connect)
    client.start(timeout=10)
    try:
        yield client
    finally:
        client.stop()
        client.close()


def read_json(client, path: str):
    data, _stat = client.get(path)
    return json.loads(data)


def controller_id(client) -> int | None:
    if client.exists("/controller") is None:
        return None
    try:
        return read_json(client, "/controller")["brokerid"]
    except Exception:  # noqa: BLE001 - it may vanish between exists and get
        return None


def partition_states(client, topic: str) -> dict[int, dict]:
    assignment = read_json(client, f"/brokers/topics/{topic}")["partitions"]
    states = {}
    for key in assignment:
        path = f"/brokers/topics/{topic}/partitions/{key}/state"
        if client.exists(path):
            states[int(key)] = read_json(client, path)
    return states


def wait_for(what: str, check, timeout: float = 20.0, interval: float = 0.05):
    """Poll ``check()`` until it returns something truthy; that value. Raises AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def labkit_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "labkit", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
