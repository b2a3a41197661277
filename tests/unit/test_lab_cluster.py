"""`labkit lab --brokers N`'s decisions without processes: ports, ids, folders, topic
defaults, and the errors that say what to do."""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

import pytest

from labkit.cli import lab_cluster, lab_cmd
from labkit.cli._common import UsageError
from labkit.cli.lab_supervisor import LabError


def test_plan_puts_broker_1_where_the_single_broker_lab_is(tmp_path: Path):
    cluster = lab_cluster.plan(3, 9092, 2181, tmp_path)
    assert [(b.broker_id, b.port) for b in cluster.brokers] == [(1, 9092), (2, 9093), (3, 9094)]
    assert [b.data_dir for b in cluster.brokers] == [tmp_path / f"broker-{i}" for i in (1, 2, 3)]
    assert cluster.zookeeper_dir == tmp_path / "zookeeper"
    assert cluster.bootstrap == "localhost:9092,localhost:9093,localhost:9094"
    assert cluster.zookeeper_connect == "127.0.0.1:2181"
    ports = [p for p, _what in lab_cluster.ports_to_check(cluster)]
    assert sorted(ports) == [2181, 9092, 9093, 9094, 9192, 9193, 9194]


@pytest.mark.parametrize(
    ("brokers", "rf", "min_isr"), [(1, "1", "1"), (2, "2", "1"), (3, "3", "2"), (5, "3", "2")]
)
def test_topic_defaults_survive_one_broker_down(tmp_path: Path, brokers, rf, min_isr):
    defaults = lab_cluster.plan(brokers, 9092, 2181, tmp_path).topic_defaults()
    assert defaults == {"default.replication.factor": rf, "min.insync.replicas": min_isr}


def test_broker_argv_joins_zookeeper_with_its_id_port_and_folder(tmp_path: Path):
    cluster = lab_cluster.plan(3, 9300, 2182, tmp_path)
    argv = cluster.broker_argv(cluster.brokers[1])
    joined = " ".join(argv)
    assert "--broker-id 2 " in joined
    assert "--port 9301 " in joined
    assert "--zookeeper 127.0.0.1:2182 " in joined
    assert f"--data-dir {tmp_path / 'broker-2'} " in joined
    assert "--config default.replication.factor=3" in joined
    assert "--config min.insync.replicas=2" in joined
    assert "--config zookeeper.session.timeout.ms=6000" in joined  # as the compose profile
    assert "--host 127.0.0.1" in joined  # this machine only


def test_zookeeper_config_keeps_its_data_in_the_lab(tmp_path: Path):
    cfg = lab_cluster.zookeeper_config(tmp_path / "zookeeper", 2181)
    text = cfg.read_text()
    assert f"dataDir={tmp_path / 'zookeeper' / 'data'}" in text
    assert "clientPort=2181" in text
    assert "clientPortAddress=127.0.0.1" in text
    assert "admin.enableServer=false" in text  # no HTTP server on 8080


def test_missing_zookeeper_jars_say_make_zookeeper(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("LABKIT_ZOOKEEPER_LIBS", str(tmp_path / "nothing"))
    cluster = lab_cluster.ClusterPlan([], 0, tmp_path)
    with pytest.raises(LabError, match=r"make zookeeper.*make lab-cluster"):
        lab_cluster.start(cluster, threading.Event())


class _FakeChild:
    returncode = None

    def poll(self):
        return None


def test_zookeeper_and_the_brokers_all_start_through_the_supervisors_spawn(
    tmp_path: Path, monkeypatch
):
    """_spawn gives each child its own session and kills it with a killed `labkit lab`
    (tests/integration/test_launch_parent_death.py); a bare Popen would do neither."""
    started = []

    def spawn(argv, env, cwd=None, **popen_kwargs):
        started.append(argv)
        return _FakeChild()

    def popen(*args, **kwargs):
        raise AssertionError(f"started with a bare Popen, without _spawn: {args[0]}")

    monkeypatch.setattr(lab_cluster, "_spawn", spawn)
    monkeypatch.setattr(lab_cluster.subprocess, "Popen", popen)
    monkeypatch.setattr(lab_cluster, "_zookeeper_libs", lambda: tmp_path / "libs")
    monkeypatch.setattr(lab_cluster, "_zookeeper_serves", lambda port: True)
    monkeypatch.setattr(lab_cluster, "_registered", lambda address, brokers: True)
    monkeypatch.setattr(lab_cluster, "ports_to_check", lambda cluster: [])  # none taken
    cluster = lab_cluster.plan(2, 9092, 2181, tmp_path)
    children = lab_cluster.start(cluster, threading.Event())
    assert [name for name, _proc in children] == ["ZooKeeper", "broker 1", "broker 2"]
    assert "org.apache.zookeeper.server.ZooKeeperServerMain" in started[0]
    assert [argv[:4] for argv in started[1:]] == [[sys.executable, "-m", "labkit", "broker"]] * 2


def _args(**kw) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    lab_cmd.add_arguments(parser)
    argv = []
    for key, value in kw.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    return parser.parse_args(argv)


def test_brokers_and_broker_together_are_refused():
    with pytest.raises(UsageError, match="pick one"):
        lab_cmd._check_brokers_arg(_args(brokers=3, broker="broker:9092"))


@pytest.mark.parametrize("brokers", [0, 10])
def test_brokers_out_of_range_is_refused(brokers):
    with pytest.raises(UsageError, match="between 1 and 9"):
        lab_cmd._check_brokers_arg(_args(brokers=brokers))


def test_supervisor_warning_says_the_cluster_goes_on():
    from labkit.cli import lab_supervisor

    text = lab_supervisor._stopped_warning("broker 2", -9, "localhost:9092,...", 4)
    assert "broker 2 stopped" in text
    assert "other brokers go on" in text
    zookeeper = lab_supervisor._stopped_warning("ZooKeeper", 1, "localhost:9092,...", 4)
    assert "can no longer elect leaders" in zookeeper
    assert "Ctrl-C" in zookeeper
    single = lab_supervisor._stopped_warning("the broker", 1, "localhost:9092", 1)
    assert "notebooks cannot reach localhost:9092" in single


def test_an_external_cluster_needs_every_broker_to_answer(monkeypatch):
    answering = {"broker-1:9092", "broker-3:9092"}
    asked = []

    def answers(address, timeout_s):
        asked.append(address)
        return address in answering

    monkeypatch.setattr(lab_cmd, "broker_answers", answers)
    monkeypatch.setattr(lab_cmd, "BROKER_WAIT_S", 0.3)
    args = _args(broker="broker-1:9092, broker-2:9092,broker-3:9092")
    with pytest.raises(LabError, match=r"no broker answers at broker-2:9092 "):
        lab_cmd._start_or_find_broker(args, threading.Event())
    assert asked[0] == "broker-1:9092"
    answering.add("broker-2:9092")
    bootstrap, proc = lab_cmd._start_or_find_broker(args, threading.Event())
    assert (bootstrap, proc) == ("broker-1:9092, broker-2:9092,broker-3:9092", None)
    assert asked[-1] == "broker-3:9092"
