"""A mend for a kafka-python 3.0.12 bug that leaves a group member owning nothing.

kafka-python 3.0.12 applies the assignment of a JoinGroup/SyncGroup round only inside the
``poll()`` that awaits it. A ``poll(timeout_ms=200)`` that times out mid-round leaves the
round running; when the round was started by a metadata change (the usual first rebalance
of a consumer that joined before it knew its topic's partitions), the next ``poll()`` sees
nothing to rejoin, so the finished round is never applied and the member owns no partition
for good: it reads nothing, on Apache Kafka and on labkit alike.

``keep_unfinished_joins_wanted(consumer)`` makes the consumer's coordinator want the join
while a round is under way (kafka-python's ``rejoining``, set from the round's start until
its assignment is applied), so the next ``poll()`` or iteration step awaits and applies it,
as it does for a round that ``rejoin_needed`` started. labkit's ``DelegatingConsumer`` does
it for every consumer it builds; tests and students' own code that use plain kafka-python
consumers in a group call it once after building one. It changes nothing on the wire.

Duck-typed, so that importing it needs no kafka-python; on another kafka-python (no
``rejoining`` attribute) it does nothing.
"""

from __future__ import annotations

from typing import Any


def keep_unfinished_joins_wanted(consumer: Any) -> Any:
    """Mend ``consumer`` (a kafka-python ``KafkaConsumer``) in place; return it."""
    coordinator: Any = getattr(consumer, "_coordinator", None)
    need_rejoin = getattr(coordinator, "need_rejoin", None)
    if need_rejoin is None or not hasattr(coordinator, "rejoining"):
        return consumer  # another kafka-python: nothing to mend
    if getattr(need_rejoin, "mends_unfinished_joins", False):
        return consumer  # mended already

    def need_rejoin_until_applied() -> bool:
        return bool(coordinator.rejoining) or need_rejoin()

    need_rejoin_until_applied.mends_unfinished_joins = True  # type: ignore[attr-defined]
    coordinator.need_rejoin = need_rejoin_until_applied
    return consumer
