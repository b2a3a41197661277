"""NoGroup: the no-op coordinator of a consumer without group_id."""

from __future__ import annotations

import pytest

from labkit.client.coordinator import Coordinator, NoGroup
from labkit.client.metadata import ClusterMetadata
from labkit.client.structs import TopicPartition
from labkit.client.subscription import SubscriptionState
from labkit.errors import IllegalStateError


def no_group(topics=("t",)):
    sub = SubscriptionState("earliest")
    cluster = ClusterMetadata()
    cluster.update({"topics": [{"name": "t", "error": 0, "partitions": [{}, {}, {}]}]}, ["t"], 0.0)
    if topics:
        sub.subscribe(topics=list(topics))
    coordinator: Coordinator = NoGroup(sub, cluster)  # satisfies the protocol (mypy)
    return coordinator, sub


def test_every_partition_of_the_subscribed_topics_is_assigned():
    coordinator, sub = no_group()
    assert coordinator.poll() is True
    assert set(sub.assignment) == {TopicPartition("t", p) for p in range(3)}
    assert coordinator.fetchable() is None  # all of them
    assert coordinator.group_id is None


def test_a_topic_without_metadata_yet_assigns_nothing():
    coordinator, sub = no_group(topics=("unknown",))
    coordinator.poll()
    assert sub.assignment == {}


def test_commits_say_group_id_is_needed_and_nothing_is_committed():
    coordinator, _ = no_group()
    with pytest.raises(IllegalStateError, match="group_id"):
        coordinator.commit_offsets_sync({TopicPartition("t", 0): 1})
    with pytest.raises(IllegalStateError, match="commit_async"):
        coordinator.commit_offsets_async({TopicPartition("t", 0): 1})
    assert coordinator.fetch_committed_offsets([TopicPartition("t", 0)]) == {}
    coordinator.on_unsubscribe()
    coordinator.close()
