"""Every Kafka API the listener bridges to the broker: api key -> its ``Api`` pair.

One table built from the modules that each own a family of APIs (apis.py: metadata and
topics; produce_fetch.py: Produce and Fetch), so adding a family is one line here and
the listener looks in one place. ``codec.SUPPORTED`` must name the same keys (plus
ApiVersions, which the listener answers alone): tests/unit check it.
"""

from __future__ import annotations

from labkit.kafka import apis, produce_fetch

BRIDGED: dict[int, apis.Api] = {
    **apis.BRIDGED,
    **produce_fetch.BRIDGED,
}
