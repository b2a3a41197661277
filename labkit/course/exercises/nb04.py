"""Notebook 04, serializers: the checks of its exercises (rules in ``labkit.course.exercises``).

- ``04.1`` (2 points) A JSON deserializer that survives poison messages
- ``04.2`` (2 points) Send poison messages to a dead-letter topic

How the notebook calls them:

| id   | check call                                              | answer                                  |
|------|---------------------------------------------------------|-----------------------------------------|
| 04.2 | ``nb.check("04.2", dead, topic=DLT, sent=messages)``    | raw values read from the dead-letter topic |

04.1's cases include bytes that are not UTF-8 (``Kraków`` written in Latin-1): a
deserializer that catches only ``json.JSONDecodeError`` lets ``UnicodeDecodeError`` through
and fails. 04.2 compares the answer with the dead-letter topic on the broker, which must
hold exactly the poison messages; ``nb.reset("04.2")`` empties it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping

from labkit.course import broker_checks
from labkit.course.checks import Registry, StudentCodeError, Wrong, call, counted, expect

EXERCISES = Registry()
exercise = EXERCISES.exercise


_DESERIALIZE_CASES = [
    (b'{"tx_id": "TX0001", "amount": 12.5}', {"tx_id": "TX0001", "amount": 12.5}),
    (
        '{"store": "Kraków", "category": "książki"}'.encode(),
        {"store": "Kraków", "category": "książki"},
    ),
    (b"[1, 2, 3]", [1, 2, 3]),
    (b"{not json", None),
    (b"", None),
    (b"\xff\xfe\x00garbage", None),
    ('{"store": "Kraków"}'.encode("latin-1"), None),  # not UTF-8: UnicodeDecodeError
    (b'{"tx_id": "TX0002", "amount": ', None),
]


@exercise("04.1", points=2, title="A JSON deserializer that survives poison messages")
def safe_deserializer(fn):
    """fn(raw: bytes) -> the decoded JSON value, or None when raw is not valid UTF-8 JSON."""
    for raw, want in _DESERIALIZE_CASES:
        try:
            got = call(fn, raw)
        except StudentCodeError as exc:
            if isinstance(exc.__cause__, UnicodeDecodeError):
                raise Wrong(
                    f"for {raw!r} it raised UnicodeDecodeError: bytes that are not valid "
                    "UTF-8 (e.g. text written as Latin-1) are poison too; catch ValueError "
                    "(the parent of json.JSONDecodeError and UnicodeDecodeError) and return None"
                ) from None
            raise Wrong(
                f"for {raw!r} {str(exc).split(';')[0].replace('your function', 'it')}: "
                "catch ValueError (json.JSONDecodeError and UnicodeDecodeError are both "
                "ValueErrors) and return None"
            ) from None
        if want is None:
            expect(got is None, f"for the poison message {raw!r} return None, got {got!r}")
        else:
            expect(
                got == want,
                f"for {raw!r} expected {want!r}, got {got!r}: decode the bytes "
                "as UTF-8 and parse them with json.loads",
            )


def _is_json(raw: bytes) -> bool:
    try:
        json.loads(raw.decode("utf-8"))
    except ValueError:
        return False
    return True


def _raw_values(answer) -> list[bytes]:
    if isinstance(answer, bytes | str):
        raise Wrong("give a list of the dead letters (one per record), not one value")
    result = []
    for item in answer:
        value = item.value if hasattr(item, "value") and not isinstance(item, Mapping) else item
        if isinstance(value, bytearray):
            value = bytes(value)
        if not isinstance(value, bytes):
            raise Wrong(
                f"the dead-letter topic keeps the raw bytes, got {type(value).__name__} "
                f"{value!r:.40}: send record.value unchanged and read it back without "
                "a value_deserializer"
            )
        result.append(value)
    return result


@exercise(
    "04.2",
    points=2,
    title="Send poison messages to a dead-letter topic",
    topics={"nb04-payments-dlt": 1},
)
def dead_letters(answer, *, topic, sent):
    """answer: raw values read back from the dead-letter topic ``topic``; sent: raw values
    sent to the input topic. The broker's dead-letter topic must hold what the answer says."""
    got = Counter(_raw_values(answer))
    stored = Counter(
        r.value or b"" for r in broker_checks.read_topic(broker_checks.full_topic(topic))
    )
    expect(
        got == stored,
        f"your list has {counted(sum(got.values()), 'value')}, the broker's {topic!r} "
        f"holds {counted(sum(stored.values()), 'record')}: send the dead letters to it "
        "(and flush), then read it back from the beginning",
    )
    want = Counter(raw for raw in sent if not _is_json(raw))
    expect(
        got or not want,
        "the dead-letter topic is empty, "
        f"{counted(sum(want.values()), 'poison message')} expected: send "
        "each value your deserializer rejects to it, and flush() before "
        "reading it",
    )
    valid = sorted(raw for raw in got if _is_json(raw))
    expect(
        not valid,
        f"{valid[0] if valid else b''!r} is valid JSON: only messages that "
        "cannot be decoded go to the dead-letter topic",
    )
    unknown = sorted(raw for raw in got if raw not in want)
    expect(
        not unknown,
        f"{unknown[0] if unknown else b''!r} was never sent to the input "
        "topic: read the dead letters of this notebook's topics only",
    )
    extra, missing = got - want, want - got
    expect(
        not extra,
        f"{min(extra) if extra else b''!r} is in the dead-letter topic "
        f"{got[min(extra)] if extra else 0} times: send each poison message once "
        "(run the notebook from the top)",
    )
    expect(
        not missing,
        f"{counted(sum(missing.values()), 'poison message')} missing, e.g. "
        f"{min(missing) if missing else b''!r}: read the input topic to the "
        "end and send every rejected value",
    )
