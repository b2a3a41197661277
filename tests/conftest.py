"""Shared fixtures: real broker processes on free ports with temporary data directories.

``broker``        a fresh broker for one test (function scope, data in tmp_path)
``shared_broker`` one broker for the whole session; tests that use it pick unique
                  topic names (see ``unique_topic``) and must not restart it.
"""

from __future__ import annotations

import gc
import itertools
import os
import threading
import time
import warnings

import pytest

from labkit.testing import BrokerProcess

_topic_counter = itertools.count()

# `labkit lab` makes ~/kafka/bin when there is none (labkit/cli/kafka_bin_cmd.py): not in
# the home of whoever runs the tests. A test of it sets LABKIT_KAFKA_BIN to a folder of its own.
os.environ.setdefault("LABKIT_KAFKA_BIN", "off")


@pytest.fixture(autouse=True)
def _messages_in_english(monkeypatch):
    """Every test reads labkit's messages in English whatever the machine's locale (or the
    notebook a test runs inside) says; tests of other languages set LABKIT_LANG themselves."""
    from labkit import i18n

    monkeypatch.setenv(i18n.LANG_ENV, "en")
    monkeypatch.delenv(i18n.SESSION_ENV, raising=False)
    i18n.set_language(None)
    yield
    i18n.set_language(None)


@pytest.fixture
def broker(tmp_path):
    with BrokerProcess(data_dir=tmp_path / "broker-data") as proc:
        yield proc


@pytest.fixture(scope="session")
def shared_broker(tmp_path_factory):
    with BrokerProcess(data_dir=tmp_path_factory.mktemp("shared-broker")) as proc:
        yield proc


@pytest.fixture
def unique_topic(request):
    """A topic name no other test in this session uses."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name)[:80]
    return f"{base}-{next(_topic_counter)}"


@pytest.fixture(scope="session")
def apache_kafka():
    """Apache Kafka itself (one KRaft node), the reference labkit is compared with.

    Needs Java 17 and the jars from ``make apache-kafka`` (``make test`` fetches them);
    without them the tests that use it fail with the command to run, they do not skip.
    """
    from labkit.testing.apache_kafka import ApacheKafka, ApacheKafkaMissing

    try:
        kafka = ApacheKafka().start()
    except ApacheKafkaMissing as exc:
        pytest.fail(str(exc))
    try:
        yield kafka
    finally:
        kafka.stop()


@pytest.hookimpl(tryfirst=True)
def pytest_unconfigure(config):
    """The session's last collection, before pytest reports what finalizers raised.

    kafka-python 3.0.12 keeps the socket of a connect the broker refused (a broker that
    a test killed and restarts) in a suspended coroutine frame of kafka/net/inet.py that
    outlives the client and ``kafka_python_garbage``; only this last collection frees it,
    and its "unclosed socket" ResourceWarning would fail the whole run. Every other
    warning still fails it.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "unclosed <socket.socket", ResourceWarning)
        gc.collect()


@pytest.fixture(scope="module")
def zookeeper():
    """Apache ZooKeeper itself (one standalone server), for cluster mode's tests.

    Needs Java and the jars from ``make zookeeper`` (``make test`` fetches them). Without
    them the tests that use it skip with the command to run; under CI (CI=true) they fail,
    so a missing download never passes unseen.
    """
    from labkit.testing.zookeeper import zookeeper_for_tests

    with zookeeper_for_tests() as server:
        yield server


@pytest.fixture
def kafka_python_garbage():
    """For tests with kafka-python clients: collect what they leave behind here.

    kafka-python 3.0.12 can drop a socket it was still connecting when its client closes
    (kafka/net/manager.py ``_connect``), and its I/O thread may hold it a moment longer.
    Under warnings-as-errors, the ResourceWarning would land in whichever test runs when
    the garbage collector next runs (it failed a notebook test in CI). Wait for
    kafka-python's I/O threads to end, then collect with that one warning ignored.
    """
    yield
    deadline = time.monotonic() + 5
    for thread in threading.enumerate():
        if thread.name.startswith("kafka-io-"):
            thread.join(max(0.0, deadline - time.monotonic()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
