"""``nb.topic("nb03-alerts")`` and ``nb.group("nb06-fraud")``: a student's own names on a
broker shared by a class.

Theory of operation
-------------------
A notebook names its topics and consumer groups once, at the top, through these helpers,
and then deletes and re-creates "its" topics freely. On a private broker (the default:
docker-compose, ``make lab``) the helpers return the name unchanged. On a broker shared by
a class they put the student's prefix in front (``anna.nb03-alerts``), so that one
student's clean-up never deletes another's topics and consumer groups never collide.

The lab is *shared* when ``LABKIT_SHARED=1``, or when ``LABKIT_SHARED`` is unset and
``LABKIT_STUDENT`` is set; ``LABKIT_SHARED=0`` turns prefixes off whatever else is set.
The student is ``LABKIT_STUDENT``, else ``JUPYTERHUB_USER`` (every JupyterHub user runs
as the same OS user, ``jovyan``, in the common images), else the OS user.

The prefix is the student's name made safe for Kafka's topic names (``[a-zA-Z0-9._-]``,
at most 249 characters): letters without their accents (``Łucja Wójcik`` -> ``lucja-wojcik``),
lower case, anything else a ``-``, at most 48 characters, then a ``.``. The student part
never contains a ``.``, so the first ``.`` ends it and ``anna.`` never matches
``anna.maria.``'s topics. A name that keeps no ASCII letter or digit becomes
``student-<8 hex digits of its SHA-1>`` (stable, and different for different names).

Everything is read from the environment on each call (cheap), so a notebook sees a change
after restarting its kernel, and ``naming(environ, getuser)`` is a pure function for tests.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from labkit.errors import IllegalArgumentError, IllegalStateError
from labkit.i18n import _

__all__ = ["Naming", "group", "naming", "prefix_hint", "same_topic", "sanitize", "student", "topic"]

STUDENT_ENV = "LABKIT_STUDENT"
SHARED_ENV = "LABKIT_SHARED"
HUB_USER_ENV = "JUPYTERHUB_USER"
SEPARATOR = "."
MAX_STUDENT_CHARS = 48
MAX_TOPIC_CHARS = 249  # Kafka's limit

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
# letters that Unicode does not decompose into an ASCII letter plus an accent
_SPECIAL = str.maketrans(
    {
        "ł": "l",
        "Ł": "L",
        "đ": "d",
        "Đ": "D",
        "ø": "o",
        "Ø": "O",
        "ß": "ss",
        "æ": "ae",
        "Æ": "AE",
        "œ": "oe",
        "Œ": "OE",
        "þ": "th",
        "Þ": "TH",
        "ı": "i",
    }
)
_NOT_ALLOWED = re.compile(r"[^a-z0-9_-]+")
_TOPIC_CHARS = re.compile(r"[a-zA-Z0-9._-]+")


def sanitize(raw: str) -> str:
    """``raw`` (a person's or an account's name) as a prefix-safe student name.

    ASCII letters, digits, ``_`` and ``-`` only (no ``.``), lower case, at most 48
    characters, never empty. Raises IllegalArgumentError for an empty name.
    """
    text = str(raw).strip()
    if not text:
        raise IllegalArgumentError(
            _(
                "the student name is empty: set {student_env} to your name, e.g. LABKIT_STUDENT=anna"
            ).format(student_env=STUDENT_ENV)
        )
    ascii_text = (
        unicodedata.normalize("NFKD", text.translate(_SPECIAL))
        .encode("ascii", "ignore")
        .decode("ascii")
    )
    name = _NOT_ALLOWED.sub("-", ascii_text.lower()).strip("-_")
    name = name[:MAX_STUDENT_CHARS].rstrip("-_")
    if not any(c.isalnum() for c in name):
        return "student-" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]
    return name


@dataclass(frozen=True)
class Naming:
    """How this lab names a student's topics and groups (``naming()`` reads it)."""

    student: str | None
    """The sanitized student name on a shared broker; None on a private one."""
    source: str
    """Where the name came from: ``LABKIT_STUDENT``, ``JUPYTERHUB_USER``, ``the OS user``,
    or why there is none."""

    @property
    def shared(self) -> bool:
        return self.student is not None

    @property
    def prefix(self) -> str:
        """``"anna."`` on a shared broker, ``""`` on a private one."""
        return f"{self.student}{SEPARATOR}" if self.student else ""

    def topic(self, name: str) -> str:
        """``name`` with the student's prefix (unchanged on a private broker, or if it has it)."""
        _require_name(name, "topic")
        if not _TOPIC_CHARS.fullmatch(name) or name in (".", ".."):
            raise IllegalArgumentError(
                _(
                    "{name!r} is not a valid topic name: use letters, digits, '.', '_' and '-' only, e.g. nb.topic(\"nb03-alerts\")"
                ).format(name=name)
            )
        full = self._prefixed(name)
        if len(full) > MAX_TOPIC_CHARS:
            raise IllegalArgumentError(
                _(
                    "the topic name {full!r} is {n_full} characters long, {max_topic_chars} at most: choose a shorter name"
                ).format(full=full, n_full=len(full), max_topic_chars=MAX_TOPIC_CHARS)
            )
        return full

    def group(self, name: str) -> str:
        """``name`` (a consumer group id) with the student's prefix, as ``topic()`` does."""
        _require_name(name, "group")
        return self._prefixed(name)

    def _prefixed(self, name: str) -> str:
        # idempotent: names built once at the top may be passed through again
        return name if name.startswith(self.prefix) else self.prefix + name

    def describe(self) -> str:
        """One line for ``nb.doctor()``: who the student is and what the names look like."""
        if not self.shared:
            return f"none, the broker is yours: names are used as written ({self.source})"
        return (
            f"{self.student} (from {self.source}): on this shared broker your topics and "
            f"groups start with {self.prefix!r}"
        )


def _require_name(name: object, what: str) -> None:
    if not isinstance(name, str) or not name:
        raise IllegalArgumentError(
            _(
                'give the {what} name as a non-empty str, e.g. nb.{what}("nb06-fraud"), got {name!r}'
            ).format(what=what, name=name)
        )


def naming(
    environ: Mapping[str, str] | None = None, getuser: Callable[[], str] = getpass.getuser
) -> Naming:
    """The lab's naming, from ``environ`` (default ``os.environ``); see the module docstring.

    Raises IllegalArgumentError for a ``LABKIT_SHARED`` that is neither on nor off, and
    IllegalStateError when the lab is shared but no student name can be found.
    """
    env = os.environ if environ is None else environ
    flag = env.get(SHARED_ENV, "").strip().lower()
    student_set = env.get(STUDENT_ENV, "").strip()
    if flag in _FALSE:
        return Naming(None, f"{SHARED_ENV}={env[SHARED_ENV].strip()}")
    if flag and flag not in _TRUE:
        raise IllegalArgumentError(
            _(
                "{shared_env}={env_item!r} is neither on nor off: set it to 1 for a broker shared by a class, 0 for your own"
            ).format(shared_env=SHARED_ENV, env_item=env[SHARED_ENV])
        )
    if not flag and not student_set:
        return Naming(None, f"{STUDENT_ENV} is not set")
    if student_set:
        return Naming(sanitize(student_set), STUDENT_ENV)
    hub_user = env.get(HUB_USER_ENV, "").strip()
    if hub_user:
        return Naming(sanitize(hub_user), HUB_USER_ENV)
    try:
        user = getuser()
    except (OSError, KeyError, ImportError) as exc:  # no USER/LOGNAME and no passwd entry
        raise IllegalStateError(
            _(
                "{shared_env} is set but the OS user is unknown ({exc}): set {student_env} to your name, e.g. LABKIT_STUDENT=anna"
            ).format(shared_env=SHARED_ENV, exc=exc, student_env=STUDENT_ENV)
        ) from None
    return Naming(sanitize(user), "the OS user")


def topic(name: str) -> str:
    """This notebook's topic ``name``: unchanged on a private broker, ``anna.<name>`` on a
    broker shared by a class (``LABKIT_STUDENT=anna``). Deleting the topics that start with
    ``nb.topic("nb03-")`` then touches only your own."""
    return naming().topic(name)


def group(name: str) -> str:
    """This notebook's consumer group id ``name``, prefixed as ``nb.topic`` does."""
    return naming().group(name)


def student() -> str | None:
    """The student name used as prefix on a shared broker; None on a private broker."""
    return naming().student


# -- for the course's checks: a topic name found in an answer against the notebook's ------


def same_topic(found: object, expected: str, current: Naming | None = None) -> bool:
    """``found`` is the notebook's topic ``expected``, or ``expected`` with this student's
    prefix (a check called with the bare name, ``topic="nb01-payments"``, on a shared broker)."""
    if found == expected:
        return True
    current = current or _naming_or_private()
    return (
        current.shared and isinstance(found, str) and found == _prefixed_or_none(current, expected)
    )


def prefix_hint(found: object, expected: str, current: Naming | None = None) -> str:
    """A hint when ``found`` is ``expected`` without this student's prefix, else ``""``."""
    current = current or _naming_or_private()
    if not (current.shared and isinstance(found, str) and not found.startswith(current.prefix)):
        return ""
    if _prefixed_or_none(current, found) != _prefixed_or_none(current, expected):
        return ""
    return f" (on this shared broker your topics start with {current.prefix!r}: use nb.topic({found!r}))"


def _naming_or_private() -> Naming:
    try:
        return naming()
    except (IllegalArgumentError, IllegalStateError):  # nb.doctor() says what is wrong
        return Naming(None, "unknown")


def _prefixed_or_none(current: Naming, name: str) -> str | None:
    try:
        return current.topic(name)
    except IllegalArgumentError:
        return None
