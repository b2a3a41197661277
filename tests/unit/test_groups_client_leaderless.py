"""``labkit consumer-groups --describe`` during a cluster outage, without sockets: a
partition without a leader shows ``-`` for its log end and lag, and its log end is not
asked (the client would wait its whole request timeout for a leader that is not coming)."""

from __future__ import annotations

import argparse
import io

from labkit.cli.consumer_groups import GroupsClient, add_arguments, run
from labkit.client.group_admin import GroupInformation
from labkit.client.structs import OffsetAndMetadata, TopicPartition


class Admin:
    """describe_topics as labkit's admin answers it: t-1's only replica is down."""

    def describe_consumer_groups(self, group_ids):
        return [GroupInformation(0, group_ids[0], "Empty", "consumer", "", [], None)]

    def list_consumer_group_offsets(self, group_id, partitions=None):
        return {TopicPartition("t", p): OffsetAndMetadata(2, "", -1) for p in (0, 1)}

    def describe_topics(self, topics):
        rows = [
            {"partition": 0, "leader": 1, "replicas": [1], "isr": [1]},
            {"partition": 1, "leader": -1, "replicas": [3], "isr": [3]},
        ]
        return [{"topic": "t", "error_code": 0, "partitions": rows}]

    def close(self):
        pass


class Consumer:
    def __init__(self):
        self.asked = []

    def end_offsets(self, tps):
        self.asked.extend(tps)
        return {tp: 10 for tp in tps}

    def close(self):
        pass


def test_describe_shows_dashes_for_a_partition_without_a_leader_and_does_not_ask_it():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--bootstrap-server", "b:9092", "--describe", "--group", "g"])
    consumer = Consumer()
    out = io.StringIO()
    assert run(args, GroupsClient(["b:9092"], Admin(), consumer), out=out) == 0
    rows = [line.split()[:6] for line in out.getvalue().splitlines() if line.startswith("g ")]
    assert rows == [["g", "t", "0", "2", "10", "8"], ["g", "t", "1", "2", "-", "-"]]
    assert consumer.asked == [TopicPartition("t", 0)]
