"""``labkit consumer-groups`` and ``labkit topics --describe`` on a real cluster: one
ZooKeeper, three labkit broker processes, a topic whose partitions are led by different
brokers, a group that committed offsets.

Every partition's offsets live on its leader: the tools must ask each leader (as Kafka's
kafka-consumer-groups.sh does through its admin client), whichever broker they were
bootstrapped from.
"""

from __future__ import annotations

import pytest

from labkit.cli.main import run_command
from labkit.client import (
    KafkaAdminClient,
    KafkaConsumer,
    KafkaProducer,
    NewTopic,
    OffsetAndMetadata,
    TopicPartition,
)
from labkit.cluster.offsets_topic import DEFAULT_PARTITIONS, OFFSETS_TOPIC, partition_for
from tests.integration.cluster_helpers import partition_states, running_cluster, wait_for, zk_client

pytestmark = pytest.mark.timeout(240)

TOPIC = "clicks"
RECORDS = {0: 5, 1: 7, 2: 9}  # records written to each partition (its log end)
COMMITTED = {0: 2, 1: 7, 2: 4}  # what the group committed


@pytest.fixture(scope="module")
def cluster(zookeeper):
    """Three brokers and TOPIC (3 partitions, RF 3, led by three brokers) with RECORDS;
    yields ({broker id: BrokerProcess}, {partition: leader id})."""
    with running_cluster(zookeeper) as brokers:
        admin = KafkaAdminClient(bootstrap_servers=brokers[1].bootstrap)
        try:
            admin.create_topics([NewTopic(TOPIC, len(RECORDS), 3)])
        finally:
            admin.close()
        with zk_client(zookeeper) as zk:
            states = wait_for(
                "every partition with a leader and a full ISR",
                lambda: (
                    s
                    if len(s := partition_states(zk, TOPIC)) == len(RECORDS)
                    and all(sorted(v.get("isr", [])) == [1, 2, 3] for v in s.values())
                    else None
                ),
            )
        leaders = {p: s["leader"] for p, s in states.items()}
        assert sorted(leaders.values()) == [1, 2, 3], f"not led by three brokers: {leaders}"
        producer = KafkaProducer(bootstrap_servers=brokers[1].bootstrap, acks="all")
        try:
            for partition, count in RECORDS.items():
                for i in range(count):
                    producer.send(TOPIC, f"r{i}".encode(), partition=partition)
            producer.flush(60)
        finally:
            producer.close()
        yield brokers, leaders


def commit(bootstrap: str, group: str, offsets: dict[int, int]) -> None:
    """The group commits ``offsets`` ({partition: offset}) and leaves (no members)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    try:
        consumer.assign([TopicPartition(TOPIC, p) for p in offsets])
        consumer.commit(
            {TopicPartition(TOPIC, p): OffsetAndMetadata(o, "", -1) for p, o in offsets.items()}
        )
    finally:
        consumer.close()


def tool(capsys, name: str, bootstrap: str, *argv: str) -> tuple[int, str, str]:
    code = run_command(name, ["--bootstrap-server", bootstrap, *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def offset_columns(out: str, group: str) -> dict[int, list[str]]:
    """--describe's rows of ``group``: {partition: [CURRENT-OFFSET, LOG-END-OFFSET, LAG]}."""
    rows = [line.split() for line in out.splitlines() if line.startswith(group + " ")]
    return {int(r[2]): r[3:6] for r in rows}


def test_describe_shows_every_partitions_offsets_and_lag_from_any_broker(cluster, capsys):
    brokers, _leaders = cluster
    commit(brokers[2].bootstrap, "describe-lag", COMMITTED)
    expected = {
        p: [str(COMMITTED[p]), str(RECORDS[p]), str(RECORDS[p] - COMMITTED[p])] for p in RECORDS
    }
    for broker_id, broker in brokers.items():  # each leads one partition, not the others
        code, out, err = tool(
            capsys, "consumer-groups", broker.bootstrap, "--describe", "--group", "describe-lag"
        )
        assert (code, err) == (0, ""), f"bootstrapped from broker {broker_id}: {out}"
        assert "Consumer group 'describe-lag' has no active members." in out
        assert offset_columns(out, "describe-lag") == expected, f"from broker {broker_id}:\n{out}"


def test_describe_state_names_the_groups_coordinator_from_any_broker(zookeeper, cluster, capsys):
    brokers, _leaders = cluster
    group = "describe-state"
    commit(brokers[1].bootstrap, group, COMMITTED)
    with zk_client(zookeeper) as zk:
        offsets_partition = partition_for(group, DEFAULT_PARTITIONS)
        coordinator = partition_states(zk, OFFSETS_TOPIC)[offsets_partition]["leader"]
    for broker in brokers.values():
        code, out, err = tool(
            capsys, "consumer-groups", broker.bootstrap, "--describe", "--group", group, "--state"
        )
        assert (code, err) == (0, ""), out
        (row,) = [line.split() for line in out.splitlines() if line.startswith(group + " ")]
        # Kafka's "host:port (id)"; the ids of the other brokers' rows would be wrong
        assert row[1].endswith(f":{brokers[coordinator].port}"), out
        assert row[2:] == [f"({coordinator})", "-", "Empty", "0"], out


def test_reset_offsets_to_earliest_latest_and_by_shift_from_any_broker(cluster, capsys):
    brokers, _leaders = cluster
    group = "reset-everywhere"
    commit(brokers[3].bootstrap, group, COMMITTED)
    bootstrap = brokers[1].bootstrap
    reset = ["--reset-offsets", "--group", group, "--topic", TOPIC, "--execute"]

    code, out, err = tool(capsys, "consumer-groups", bootstrap, *reset, "--to-latest")
    assert (code, err) == (0, ""), out
    code, out, err = tool(capsys, "consumer-groups", bootstrap, "--describe", "--group", group)
    assert offset_columns(out, group) == {p: [str(n), str(n), "0"] for p, n in RECORDS.items()}

    code, out, err = tool(capsys, "consumer-groups", bootstrap, *reset, "--shift-by", "-3")
    assert (code, err) == (0, ""), out
    code, out, err = tool(capsys, "consumer-groups", bootstrap, "--describe", "--group", group)
    assert offset_columns(out, group) == {p: [str(n - 3), str(n), "3"] for p, n in RECORDS.items()}

    code, out, err = tool(capsys, "consumer-groups", bootstrap, *reset, "--to-earliest")
    assert (code, err) == (0, ""), out
    code, out, err = tool(capsys, "consumer-groups", bootstrap, "--describe", "--group", group)
    assert offset_columns(out, group) == {p: ["0", str(n), str(n)] for p, n in RECORDS.items()}


def test_list_and_delete_a_group_coordinated_anywhere(cluster, capsys):
    brokers, _leaders = cluster
    groups = [f"listed-{i}" for i in range(4)]  # their coordinators: whichever brokers
    for group in groups:
        commit(brokers[1].bootstrap, group, {0: 1})
    bootstrap = brokers[2].bootstrap
    code, out, err = tool(capsys, "consumer-groups", bootstrap, "--list")
    assert (code, err) == (0, "")
    assert set(groups) <= set(out.split())
    code, out, err = tool(
        capsys,
        "consumer-groups",
        bootstrap,
        "--delete",
        *[a for g in groups for a in ("--group", g)],
    )
    assert (code, err) == (0, ""), out
    assert "was successful" in out
    code, out, err = tool(capsys, "consumer-groups", bootstrap, "--list")
    assert not set(groups) & set(out.split())


def test_topics_describe_shows_each_partitions_log_offsets(cluster, capsys):
    brokers, leaders = cluster
    code, out, err = tool(capsys, "topics", brokers[3].bootstrap, "--describe", "--topic", TOPIC)
    assert (code, err) == (0, ""), out
    lines = [
        line.split() for line in out.splitlines() if "Partition:" in line and "Leader:" in line
    ]
    found = {
        int(line[line.index("Partition:") + 1]): (
            int(line[line.index("Leader:") + 1]),
            line[line.index("LogStartOffset:") + 1] if "LogStartOffset:" in line else None,
            line[line.index("LogEndOffset:") + 1] if "LogEndOffset:" in line else None,
        )
        for line in lines
    }
    assert found == {p: (leaders[p], "0", str(n)) for p, n in RECORDS.items()}, out
