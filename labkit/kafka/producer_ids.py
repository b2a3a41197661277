"""Kafka's InitProducerId (API key 22, v0-4) as the broker's ``init_producer_id``.

Pure functions, as every pair in apis.py. A producer without a transactional id gets
a new producer id with epoch 0 from the broker (Kafka's TransactionCoordinator does
the same for it, ignoring the id and epoch a v3+ request may carry to bump its
epoch: a new id starts every partition's sequences afresh just as well). A
transactional id is refused by the broker with UNSUPPORTED_VERSION (35): labkit has
no transaction coordinator, and 35 is Kafka's answer for what a broker does not
support. InitProducerId's response has no error message field, so the client sees
the code alone (Java's producer: a fatal "Unexpected error in InitProducerIdResponse;
The version of API is not supported.").
"""

from __future__ import annotations

from typing import Any

from kio.index import load_response_schema
from kio.schema.errors import ErrorCode
from kio.schema.types import ProducerId

from labkit.kafka.kio_glue import NO_THROTTLE, error_code, ms

INIT_PRODUCER_ID_KEY = 22


def init_producer_id_to_labkit(request: Any, version: int) -> tuple[str, dict]:
    return "init_producer_id", {
        "transactional_id": request.transactional_id,
        "transaction_timeout_ms": ms(request.transaction_timeout),
    }


def init_producer_id_to_kafka(reply: dict, request: Any, version: int, context: Any) -> Any:
    cls: Any = load_response_schema(INIT_PRODUCER_ID_KEY, version)  # one class per version
    code = reply.get("error", 0)
    error = error_code(code)
    ok = error == ErrorCode.none
    return cls(
        throttle_time=NO_THROTTLE,
        error_code=error,
        producer_id=ProducerId(reply["producer_id"] if ok else -1),
        producer_epoch=reply.get("producer_epoch", 0) if ok else -1,
    )
