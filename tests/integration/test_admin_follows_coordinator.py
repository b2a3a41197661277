"""labkit's KafkaAdminClient and ``labkit consumer-groups`` reach each group's coordinator:
a real ZooKeeper and three real labkit brokers (setup: test_client_leaders.py). Two
groups whose coordinators are different brokers are altered, read, described, listed and
deleted from a third broker. (A module of its own: the ZooKeeper fixture is per module,
and a fresh cluster on an old ZooKeeper would inherit ``__consumer_offsets``.)"""

from __future__ import annotations

import pytest

from labkit.client import KafkaAdminClient, TopicPartition
from labkit.client.group_admin import NoError
from labkit.client.structs import OffsetAndMetadata
from tests.integration.cluster_helpers import labkit_cli, wait_for
from tests.integration.test_client_leaders import cluster, create  # noqa: F401 (fixture)
from tests.integration.test_offsets_failover import find_coordinator

pytestmark = pytest.mark.slow  # a ZooKeeper and three brokers

ADMIN_TOPIC = "coordinator-admin"


def test_admin_and_consumer_groups_tool_go_to_each_groups_coordinator(zookeeper, cluster):  # noqa: F811
    create(cluster[1], ADMIN_TOPIC)
    by_coordinator: dict[int, str] = {}
    for i in range(40):  # two groups of different coordinators
        group = f"admin-{i}"
        answer = wait_for(
            "a coordinator",
            lambda g=group: (a := find_coordinator(cluster[1], g)).get("error") == 0 and a,
            timeout=30,
        )
        by_coordinator.setdefault(answer["node_id"], group)
        if len(by_coordinator) == 2:
            break
    (first_node, first), (_, second) = sorted(by_coordinator.items())
    bootstrap_id = next(i for i in cluster if i != first_node)
    admin = KafkaAdminClient(bootstrap_servers=cluster[bootstrap_id].bootstrap)
    try:
        tp = TopicPartition(ADMIN_TOPIC, 0)
        for n, group in enumerate((first, second)):
            admin.alter_consumer_group_offsets(group, {tp: OffsetAndMetadata(5 + n, "", -1)})
        assert admin.list_consumer_group_offsets(first)[tp].offset == 5
        assert admin.list_consumer_group_offsets(second)[tp].offset == 6
        assert {first, second} <= {g for g, _ in admin.list_consumer_groups()}
        described = admin.describe_consumer_groups([first, second])
        assert [d.group for d in described] == [first, second]
        # the tool's group calls (not --offsets: its log-end column asks list_offsets of
        # the bootstrap broker before any metadata, a partition-leader matter)
        bootstrap = cluster[bootstrap_id].bootstrap
        listed = labkit_cli("consumer-groups", "--bootstrap-server", bootstrap, "--list")
        assert listed.returncode == 0, listed.stderr
        assert {first, second} <= set(listed.stdout.split()), listed.stdout
        state = labkit_cli(
            "consumer-groups",
            "--bootstrap-server",
            bootstrap,
            "--describe",
            "--state",
            "--group",
            first,
        )
        assert state.returncode == 0, state.stderr
        assert first in state.stdout, state.stdout
        assert admin.delete_consumer_groups([first, second]) == [
            (first, NoError),
            (second, NoError),
        ]
        assert not {first, second} & {g for g, _ in admin.list_consumer_groups()}
    finally:
        admin.close()
