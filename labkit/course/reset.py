"""``nb.reset("10.2")``: start an exercise afresh, without the leftovers of a wrong attempt.

Theory of operation
-------------------
An exercise that writes to topics or commits offsets declares them when it registers
(``@exercise("10.2", ..., topics={"nb10-alerts": 1}, groups=("nb10-scoring-group",))``,
bare names as the notebook writes them). A wrong first attempt leaves its state on the
broker: alerts that should not be there, a group's committed offsets that make the next
run read nothing. ``reset_exercise`` removes exactly that state, and only the student's:

1. every declared group is deleted (with its committed offsets); a group that still has
   members cannot be deleted, so the student is told to close those consumers first;
2. every declared topic is deleted, then re-created empty with the declared number of
   partitions (None: only deleted, for a topic the exercise itself creates) and the
   configs that were set on it (``retention.ms``...: emptied, the topic is otherwise the
   same). Deleting waits until the broker no longer lists the topic, so the create
   cannot collide.

Names get this student's prefix on a shared broker (``labkit.nb.names``), so a reset never
touches another student's topics. The broker's address is the lab's usual one
(``$LABKIT_BOOTSTRAP``, else ``localhost:9092``). Returns what was done, for one line of
output.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from labkit._address import bootstrap_list
from labkit._clock import REAL_CLOCK
from labkit.course.checks import Exercise
from labkit.errors import IllegalArgumentError, IllegalStateError
from labkit.i18n import _
from labkit.nb.names import naming

__all__ = ["ResetReport", "reset_exercise"]

DELETE_WAIT_S = 10.0


@dataclass
class ResetReport:
    exercise: str
    deleted_groups: list[str] = field(default_factory=list)
    emptied_topics: list[str] = field(default_factory=list)
    deleted_topics: list[str] = field(default_factory=list)

    @property
    def line(self) -> str:
        parts = []
        if self.emptied_topics:
            parts.append(_("emptied {topics}").format(topics=", ".join(self.emptied_topics)))
        if self.deleted_topics:
            parts.append(_("deleted {topics}").format(topics=", ".join(self.deleted_topics)))
        if self.deleted_groups:
            parts.append(
                _("deleted the group {groups}").format(groups=", ".join(self.deleted_groups))
            )
        done = "; ".join(parts) or _("nothing to clear")
        return _("RESET {exercise}: {done}. Now run the exercise's cells again.").format(
            exercise=self.exercise, done=done
        )


def reset_exercise(
    ex: Exercise,
    *,
    bootstrap: str | list[str] | None = None,
) -> ResetReport:
    """Delete ``ex``'s declared groups and topics (re-creating the topics empty).

    Raises ``IllegalArgumentError`` for an exercise that declares nothing to reset and
    ``IllegalStateError`` for a group that still has members (its consumers are open) or
    a topic that is still listed after ``DELETE_WAIT_S``; ``KafkaError`` when the broker
    cannot be reached.
    """
    from labkit.client import KafkaAdminClient, NewTopic

    if not ex.has_state:
        raise IllegalArgumentError(
            _(
                "exercise {id} keeps nothing on the broker, so there is nothing to reset: fix the answer and run its cell again"
            ).format(id=ex.id)
        )
    names = naming()
    report = ResetReport(ex.id)
    servers = bootstrap_list(bootstrap)
    with KafkaAdminClient(bootstrap_servers=servers) as admin:
        groups = [names.group(g) for g in ex.groups]
        existing = {g for g, _ in admin.list_consumer_groups()}
        for group, error in admin.delete_consumer_groups([g for g in groups if g in existing]):
            if error.__name__ == "NonEmptyGroupError":
                raise IllegalStateError(
                    _(
                        "the group {group!r} still has consumers: close them first (consumer.close(), or restart the kernel), then nb.reset({id!r}) again"
                    ).format(group=group, id=ex.id)
                )
            if error.__name__ not in ("NoError", "GroupIdNotFoundError"):
                raise IllegalStateError(
                    _("could not delete the group {group!r}: {name}").format(
                        group=group, name=error.__name__
                    )
                )
            report.deleted_groups.append(group)
        topics = {names.topic(t): partitions for t, partitions in ex.topics.items()}
        present = [t for t in topics if t in set(admin.list_topics())]
        fresh = {t: p for t, p in topics.items() if p is not None}
        own_configs = _configs_set_on(admin, [t for t in present if t in fresh])
        if present:
            admin.delete_topics(present, raise_errors=False)
            _wait_gone(admin, present)
        if fresh:
            admin.create_topics(
                [
                    NewTopic(
                        t, num_partitions=p, replication_factor=1, topic_configs=own_configs.get(t)
                    )
                    for t, p in fresh.items()
                ],
                raise_errors=False,
            )
            _wait_listed(admin, list(fresh))
        report.emptied_topics = list(fresh)
        report.deleted_topics = [t for t in present if t not in fresh]
    return report


def _configs_set_on(admin, topics: list[str]) -> dict[str, dict[str, str]]:
    """{topic: the configs set on it (not the broker's defaults)}: an emptied topic keeps
    them, e.g. notebook 11's retention.ms=-1 for alerts whose event time is months old."""
    from labkit.client import ConfigResource, ConfigResourceType

    if not topics:
        return {}
    described = admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, t) for t in topics]
    )["topic"]
    return {
        topic: {
            key: entry["value"]
            for key, entry in configs.items()
            if not entry["default"] and entry["value"] is not None
        }
        for topic, configs in described.items()
    }


def _wait_gone(admin, topics: list[str]) -> None:
    deadline = REAL_CLOCK.monotonic() + DELETE_WAIT_S
    while set(topics) & set(admin.list_topics()):
        if REAL_CLOCK.monotonic() > deadline:
            raise IllegalStateError(
                _(
                    "the broker still lists {sorted_value} {delete_wait_s:.0f} s after deleting them: run nb.reset again"
                ).format(
                    sorted_value=sorted(set(topics) & set(admin.list_topics())),
                    delete_wait_s=DELETE_WAIT_S,
                )
            )
        time.sleep(0.05)  # the broker deletes a topic's files in the background


def _wait_listed(admin, topics: list[str]) -> None:
    deadline = REAL_CLOCK.monotonic() + DELETE_WAIT_S
    while not set(topics) <= set(admin.list_topics()):
        if REAL_CLOCK.monotonic() > deadline:
            raise IllegalStateError(
                _("the broker did not create {topics}: run nb.reset again").format(topics=topics)
            )
        time.sleep(0.05)  # the broker deletes a topic's files in the background
