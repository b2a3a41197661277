"""Cluster mode's broker settings (Kafka's names) and that single-broker mode never loads
kazoo."""

from __future__ import annotations

import subprocess
import sys

import pytest

from labkit.broker.cluster_sync import split_replication_configs
from labkit.broker.config import BrokerConfig
from labkit.errors import InvalidConfigurationError, KafkaConfigurationError


def test_cluster_settings_have_kafkas_names_and_defaults():
    single = BrokerConfig.build()
    assert single.zookeeper_connect is None
    assert single.zookeeper_session_timeout_ms == 18_000
    assert single.unclean_leader_election_enable is False
    config = BrokerConfig.build(
        overrides={
            "broker.id": "2",
            "zookeeper.connect": "localhost:2181,other:2182/labkit",
            "zookeeper.session.timeout.ms": "4000",
            "default.replication.factor": "3",
            "min.insync.replicas": "2",
            "unclean.leader.election.enable": "true",
        }
    )
    assert config.broker_id == 2
    assert config.zookeeper_connect == "localhost:2181,other:2182/labkit"
    assert config.zookeeper_session_timeout_ms == 4000
    assert config.default_replication_factor == 3
    assert config.min_insync_replicas == 2
    assert config.unclean_leader_election_enable is True


def test_cluster_mode_needs_a_broker_id():
    with pytest.raises(KafkaConfigurationError, match="add --broker-id N"):
        BrokerConfig.build(overrides={"zookeeper.connect": "localhost:2181"})


@pytest.mark.parametrize("bad", ["localhost", "localhost:x", ":2181", "host:0/labkit"])
def test_a_bad_zookeeper_address_says_the_form(bad):
    with pytest.raises(KafkaConfigurationError, match=r"HOST:PORT\[,HOST:PORT...\]\[/chroot\]"):
        BrokerConfig.build(overrides={"broker.id": "1", "zookeeper.connect": bad})


def test_replication_over_one_needs_cluster_mode():
    with pytest.raises(KafkaConfigurationError, match="needs several brokers"):
        BrokerConfig.build(overrides={"default.replication.factor": "3"})


def test_replication_topic_configs_are_checked_and_kept_apart():
    local, replication = split_replication_configs(
        {"retention.ms": "5000", "min.insync.replicas": "2"}
    )
    assert local == {"retention.ms": "5000"}
    assert replication == {"min.insync.replicas": "2"}
    with pytest.raises(InvalidConfigurationError, match="use a number >= 1"):
        split_replication_configs({"min.insync.replicas": "0"})
    with pytest.raises(InvalidConfigurationError, match="use true or false"):
        split_replication_configs({"unclean.leader.election.enable": "maybe"})


def test_single_broker_mode_never_imports_kazoo():
    code = (
        "import sys\n"
        "from labkit.broker.launcher import main\n"
        "from labkit.broker.server import BrokerServer\n"
        "import labkit.cli.main, labkit.client\n"
        "sys.exit(1 if any(m == 'kazoo' or m.startswith('kazoo.') or m.startswith('labkit.cluster')"
        " for m in sys.modules) else 0)\n"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
