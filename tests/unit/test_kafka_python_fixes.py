"""keep_unfinished_joins_wanted: a coordinator with a join round under way wants the join
(so the next poll applies it); mending twice does not stack; another client is left alone.
The bug itself, on a real broker: tests/integration/test_delegate_unfinished_join.py."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from kafka import KafkaConsumer

from labkit.client.kafka_python_fixes import keep_unfinished_joins_wanted

pytestmark = pytest.mark.usefixtures("kafka_python_garbage")


def test_a_round_under_way_keeps_the_join_wanted_until_applied():
    consumer = KafkaConsumer(bootstrap_servers="127.0.0.1:1", api_version=(2, 5, 0))
    try:
        coordinator = consumer._coordinator
        coordinator.rejoin_needed = False
        unmended = coordinator.need_rejoin()
        assert keep_unfinished_joins_wanted(consumer) is consumer
        coordinator.rejoining = True  # a round started, its assignment not applied yet
        assert coordinator.need_rejoin()
        assert not unmended
        coordinator.rejoining = False
        assert coordinator.need_rejoin() == unmended
        mended = coordinator.need_rejoin
        keep_unfinished_joins_wanted(consumer)
        assert coordinator.need_rejoin is mended
    finally:
        consumer.close()


def test_a_consumer_without_rejoining_is_left_alone():
    consumer = SimpleNamespace(_coordinator=SimpleNamespace(need_rejoin=lambda: False))
    keep_unfinished_joins_wanted(consumer)
    assert consumer._coordinator.need_rejoin() is False
    keep_unfinished_joins_wanted(SimpleNamespace())  # no coordinator at all: nothing to do
