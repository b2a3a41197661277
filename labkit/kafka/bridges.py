"""Every Kafka API the listener bridges to the broker: api key -> its ``Api`` pair.

One table built from the modules that each own a family of APIs (apis.py: metadata and
topics; admin_apis.py: partitions, configs, records; produce_fetch.py: Produce and
Fetch; group_apis.py: the classic consumer-group protocol; topic_partitions.py:
DescribeTopicPartitions), so adding a family is one line here and the listener looks in one place.
``codec.SUPPORTED`` must name the same keys (plus ApiVersions, which the listener
answers alone): tests/unit check it.
"""

from __future__ import annotations

from labkit.kafka import admin_apis, apis, group_apis, produce_fetch, topic_partitions

BRIDGED: dict[int, apis.Api] = {
    **apis.BRIDGED,
    **admin_apis.BRIDGED,
    **produce_fetch.BRIDGED,
    **topic_partitions.BRIDGED,
    **{key: apis.Api(*pair) for key, pair in group_apis.PAIRS.items()},
}
