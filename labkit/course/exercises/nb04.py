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
from labkit.i18n import N_, _

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


@exercise("04.1", points=2, title=N_("A JSON deserializer that survives poison messages"))
def safe_deserializer(fn):
    """fn(raw: bytes) -> the decoded JSON value, or None when raw is not valid UTF-8 JSON."""
    for raw, want in _DESERIALIZE_CASES:
        try:
            got = call(fn, raw)
        except StudentCodeError as exc:
            if isinstance(exc.__cause__, UnicodeDecodeError):
                raise Wrong(
                    _(
                        "for {raw!r} it raised UnicodeDecodeError: bytes that are not valid UTF-8 (e.g. text written as Latin-1) are poison too; catch ValueError (the parent of json.JSONDecodeError and UnicodeDecodeError) and return None"
                    ).format(raw=raw)
                ) from None
            raise Wrong(
                _(
                    "for {raw!r} {str_exc_split_0_replace}: catch ValueError (json.JSONDecodeError and UnicodeDecodeError are both ValueErrors) and return None"
                ).format(
                    raw=raw,
                    str_exc_split_0_replace=str(exc).split(";")[0].replace("your function", "it"),
                )
            ) from None
        if want is None:
            expect(
                got is None,
                _("for the poison message {raw!r} return None, got {got!r}").format(
                    raw=raw, got=got
                ),
            )
        else:
            expect(
                got == want,
                _(
                    "for {raw!r} expected {want!r}, got {got!r}: decode the bytes as UTF-8 and parse them with json.loads"
                ).format(raw=raw, want=want, got=got),
            )


def _is_json(raw: bytes) -> bool:
    try:
        json.loads(raw.decode("utf-8"))
    except ValueError:
        return False
    return True


def _raw_values(answer) -> list[bytes]:
    if isinstance(answer, bytes | str):
        raise Wrong(_("give a list of the dead letters (one per record), not one value"))
    result = []
    for item in answer:
        value = item.value if hasattr(item, "value") and not isinstance(item, Mapping) else item
        if isinstance(value, bytearray):
            value = bytes(value)
        if not isinstance(value, bytes):
            raise Wrong(
                _(
                    "the dead-letter topic keeps the raw bytes, got {name} {value!r:.40}: send record.value unchanged and read it back without a value_deserializer"
                ).format(name=type(value).__name__, value=value)
            )
        result.append(value)
    return result


@exercise(
    "04.2",
    points=2,
    title=N_("Send poison messages to a dead-letter topic"),
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
        _(
            "your list has {counted}, the broker's {topic!r} holds {counted2}: send the dead letters to it (and flush), then read it back from the beginning"
        ).format(
            counted=counted(sum(got.values()), "value", "values"),
            topic=topic,
            counted2=counted(sum(stored.values()), "record", "records"),
        ),
    )
    want = Counter(raw for raw in sent if not _is_json(raw))
    expect(
        got or not want,
        _(
            "the dead-letter topic is empty, {counted} expected: send each value your deserializer rejects to it, and flush() before reading it"
        ).format(counted=counted(sum(want.values()), "poison message", "poison messages")),
    )
    valid = sorted(raw for raw in got if _is_json(raw))
    expect(
        not valid,
        _(
            "{value!r} is valid JSON: only messages that cannot be decoded go to the dead-letter topic"
        ).format(value=valid[0] if valid else b""),
    )
    unknown = sorted(raw for raw in got if raw not in want)
    expect(
        not unknown,
        _(
            "{value!r} was never sent to the input topic: read the dead letters of this notebook's topics only"
        ).format(value=unknown[0] if unknown else b""),
    )
    extra, missing = got - want, want - got
    expect(
        not extra,
        _(
            "{value!r} is in the dead-letter topic {value2} times: send each poison message once (run the notebook from the top)"
        ).format(value=min(extra) if extra else b"", value2=got[min(extra)] if extra else 0),
    )
    expect(
        not missing,
        _(
            "{counted} missing, e.g. {value!r}: read the input topic to the end and send every rejected value"
        ).format(
            counted=counted(sum(missing.values()), "poison message", "poison messages"),
            value=min(missing) if missing else b"",
        ),
    )
