"""Glue between labkit's plain values and kio's generated Kafka classes. Pure, no state.

kio has one dataclass per (API, version), each with only that version's fields;
``make`` builds any version's entity from one set of values by keeping the fields its
class has, ``nested`` finds a response's nested entity classes (they live in the
response class's module). ``error_code`` turns a labkit error code into kio's
``ErrorCode`` (UNKNOWN_SERVER_ERROR for a code Kafka does not know: still an error).
``ms`` reads a kio ``i32Timedelta`` (whole milliseconds on the wire) back as an int by
timedelta division, which is exact: ``int(td.total_seconds() * 1000)`` is a float
product and lost a millisecond on values such as 8001. The converters (apis.py,
group_apis.py, producer_ids.py, and the modules that import these from apis.py) share
them; before, each kept its own copy.
"""

from __future__ import annotations

import dataclasses
import datetime
import sys
from typing import Any

from kio.schema.errors import ErrorCode

NO_THROTTLE = datetime.timedelta(0)
_ONE_MS = datetime.timedelta(milliseconds=1)


def make(cls: type, **values: Any) -> Any:
    """An instance of kio's ``cls`` from ``values``, keeping only the fields it has."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in names})


def nested(response_cls: type, name: str) -> type:
    """A nested entity class of the module that defines ``response_cls``."""
    return getattr(sys.modules[response_cls.__module__], name)


def error_code(code: int) -> ErrorCode:
    """kio's ``ErrorCode`` for a labkit error code (Kafka's numbers)."""
    try:
        return ErrorCode(code)
    except ValueError:  # a labkit code Kafka does not know: still an error
        return ErrorCode.unknown_server_error


def ms(value: Any) -> int:
    """A kio i32Timedelta (or a plain int) in whole milliseconds."""
    if isinstance(value, datetime.timedelta):
        return value // _ONE_MS
    return int(value)
