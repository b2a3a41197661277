"""Notebook 05, partitions and keys: the checks of its exercises (rules in ``labkit.course.exercises``).

- ``05.1`` (2 points) Key by user_id: one partition per user
- ``05.2`` (2 points) Per-key order: each user's transactions in send order

How the notebook calls them:

| id   | check call                                              | answer                                  |
|------|---------------------------------------------------------|-----------------------------------------|
| 05.1 | ``nb.check("05.1", parts, topic=T, num_partitions=3)``  | ``{user_id: partitions from metadata}`` |
| 05.2 | ``nb.check("05.2", per_user, sent=sent)``               | ``{user_id: tx_ids in read order}``     |

05.1 reads the topic on the broker: every key must be in one partition there, and the
answer must name that partition for each user. ``nb.reset("05.1")`` empties the topic
(records sent without keys would stay in it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from labkit.course import broker_checks
from labkit.course.checks import Registry, Wrong, counted, expect
from labkit.course.exercises._ref import tx_ids
from labkit.i18n import N_, _

EXERCISES = Registry()
exercise = EXERCISES.exercise


def _partitions_by_user(answer) -> dict[str, set]:
    pairs = answer.items() if isinstance(answer, Mapping) else answer
    result: dict[str, set] = {}
    for user, parts in pairs:
        many = (
            parts if isinstance(parts, Iterable) and not isinstance(parts, str | bytes) else [parts]
        )
        result.setdefault(str(user), set()).update(many)
    return result


def _judge_partitions(answer, *, num_partitions=None) -> dict[str, set]:
    """The answer's own consistency (pure): one partition per user, partitions that exist."""
    try:
        seen = _partitions_by_user(answer)
    except (TypeError, ValueError):
        raise Wrong(
            _(
                "give a dict {{user_id: set of partitions}}, built from each send's metadata.partition"
            ).format()
        ) from None
    expect(len(seen) >= 2, _("collect the partitions of at least two users' transactions"))
    for user in sorted(seen):
        parts = sorted(seen[user])
        expect(
            len(parts) == 1,
            _(
                "{user}'s transactions went to partitions {parts}: send with key=tx['user_id'] (bytes, or with a key_serializer)"
            ).format(user=user, parts=parts),
        )
    used = set().union(*seen.values())
    if num_partitions is not None:
        bad = sorted(p for p in used if not (isinstance(p, int) and 0 <= p < num_partitions))
        expect(
            not bad,
            _(
                "partition {value} does not exist in a topic with {num_partitions} partitions"
            ).format(value=bad[0] if bad else "", num_partitions=num_partitions),
        )
        expect(
            num_partitions == 1 or len(seen) < 6 or len(used) > 1,
            _(
                "every user landed on the same partition: send with key=tx['user_id'] and let the key choose the partition (do not pass partition=...)"
            ),
        )
    return seen


@exercise(
    "05.1",
    points=2,
    title=N_("Key by user_id: one partition per user"),
    topics={"nb05-by-user": 3},
)
def one_partition_per_user(answer, *, topic, num_partitions=None):
    """answer: {user_id: partitions seen for that user} (or (user_id, partition) pairs).

    The broker's ``topic`` must hold keyed records, each key in one partition, and the
    answer must name the partition the broker has for each user.
    """
    seen = _judge_partitions(answer, num_partitions=num_partitions)
    stored: dict[str, set] = {}
    for record in broker_checks.read_topic(broker_checks.full_topic(topic)):
        key = record.key.decode("utf-8", "replace") if record.key is not None else None
        stored.setdefault(key, set()).add(record.partition)
    expect(
        None not in stored,
        _(
            "the broker's {topic!r} holds records without a key: send with key=tx['user_id']; to start afresh, nb.reset('05.1') empties the topic"
        ).format(topic=topic),
    )
    spread = sorted(k for k, parts in stored.items() if len(parts) > 1)
    expect(
        not spread,
        _(
            "on the broker {value}'s records are in several partitions: keep one key per user (the user_id, always the same bytes)"
        ).format(value=spread[0] if spread else ""),
    )
    for user in sorted(seen):
        expect(
            user in stored,
            _(
                "the broker's {topic!r} has no record with the key {user!r}: send each transaction with key=tx['user_id']"
            ).format(topic=topic, user=user),
        )
        expect(
            seen[user] == stored[user],
            _(
                "{user}'s records are in partition {sorted_stored_item_0} on the broker, your answer says {sorted_seen_item}: take the partition from each send's RecordMetadata"
            ).format(
                user=user,
                sorted_stored_item_0=sorted(stored[user])[0],
                sorted_seen_item=sorted(seen[user], key=str),
            ),
        )


@exercise("05.2", points=2, title=N_("Per-key order: each user's transactions in send order"))
def per_key_order(answer, *, sent):
    """answer: {user_id: that user's tx_ids (or transactions) in the order they were read}."""
    expect(
        isinstance(answer, Mapping),
        _("give a dict {{user_id: list of tx_ids in read order}}, got {name}").format(
            name=type(answer).__name__
        ),
    )
    want: dict[str, list[str]] = {}
    for tx in sent:
        want.setdefault(tx["user_id"], []).append(tx["tx_id"])
    got = {str(user): tx_ids(items) for user, items in answer.items()}
    missing = sorted(set(want) - set(got))
    expect(
        not missing,
        _(
            "{counted} missing, e.g. {value}: read every partition of the topic from the beginning"
        ).format(
            counted=counted(len(missing), "user", "users"), value=missing[0] if missing else ""
        ),
    )
    for user in sorted(want):
        mine, theirs = got[user], want[user]
        expect(
            sorted(mine) == sorted(theirs),
            _(
                "{user}: expected {counted}, got {n_mine}: append each record's tx_id to the list of its user_id, once"
            ).format(
                user=user,
                counted=counted(len(theirs), "transaction", "transactions"),
                n_mine=len(mine),
            ),
        )
        if mine != theirs:
            first = next(i for i, (a, b) in enumerate(zip(mine, theirs, strict=True)) if a != b)
            raise Wrong(
                _(
                    "{user}'s transaction number {value} was {mine_item}, but {theirs_item} was sent before it: keep the order in which the records were read (and read a topic keyed by user_id)"
                ).format(
                    user=user, value=first + 1, mine_item=mine[first], theirs_item=theirs[first]
                )
            )
