"""Timeouts in Kafka requests reach labkit to the millisecond (labkit/kafka/kio_glue.py's ``ms``).

kio reads a Kafka ``i32Timedelta`` field (a whole number of milliseconds on the wire) as
a ``datetime.timedelta``. ``int(td.total_seconds() * 1000)`` turned some of them into one
millisecond less (8001 ms: ``8.001 * 1000 == 8000.999...``); a JoinGroup's session
timeout of 8001 ms reached the coordinator as 8000.
"""

from __future__ import annotations

import dataclasses
import datetime
import typing

import pytest
from kio.index import load_request_schema
from test_kafka_codec import filled_entity, request_frame

from labkit.kafka import codec, group_apis, producer_ids

# values that float arithmetic got wrong, and plain ones (0, Kafka's defaults, i32's max)
AWKWARD_MS = [1001, 8001, 8008, 16003, 2097151, 0, 1, 45000, 300000, 2147483645]


def _with_timeouts(api_key, version, **ms):
    schema = load_request_schema(api_key, version)
    hints = typing.get_type_hints(schema)
    values = {name: hints[name](datetime.timedelta(milliseconds=v)) for name, v in ms.items()}
    request = dataclasses.replace(filled_entity(schema), **values)
    _header, decoded = codec.decode_request(request_frame(api_key, version, body=request))
    return decoded


@pytest.mark.parametrize("ms", AWKWARD_MS)
def test_a_join_groups_timeouts_reach_the_coordinator_to_the_millisecond(ms):
    request = _with_timeouts(11, 5, session_timeout=ms, rebalance_timeout=ms + 2)
    _name, header = group_apis.join_group_to_labkit(request, 5)
    assert (header["session_timeout_ms"], header["rebalance_timeout_ms"]) == (ms, ms + 2)


@pytest.mark.parametrize("ms", AWKWARD_MS)
def test_an_init_producer_ids_transaction_timeout_keeps_every_millisecond(ms):
    request = _with_timeouts(22, 4, transaction_timeout=ms)
    _name, header = producer_ids.init_producer_id_to_labkit(request, 4)
    assert header["transaction_timeout_ms"] == ms
