"""labkit's messages in the student's language: gettext catalogues in ``labkit/locale``.

Theory of operation
-------------------
Every message a student or an instructor reads (check feedback and hints, ``nb.doctor()``,
the dashboard, progress bars, live plots, the grading report) is written in English in the
code and wrapped in ``_()`` (or ``ngettext()`` / ``counted()`` for numbers, ``pgettext()``
when the same English words need two translations); ``make i18n``
extracts them into ``labkit/locale/labkit.pot`` and updates each language's ``.po``; the
compiled ``.mo`` files are committed next to them (a unit test fails when a ``.mo`` is older
than its ``.po``), so a wheel, ``make lab`` and the Docker image have them without Babel.

Messages are translated when they are *shown*, never at import, so one process can
switch language (``nb.language("pl")``). The language is, first to last:

1. ``set_language(code)`` (``nb.language("pl")`` in a notebook);
2. the running notebook's metadata ``{"labkit": {"language": "pl"}}``: JupyterLab starts a
   notebook's kernel with ``JPY_SESSION_NAME`` = the notebook's path (jupyter_server 2),
   so the kernel reads the notebook it belongs to;
3. ``LABKIT_LANG`` (``labkit grade`` and the nbval tests set it from the notebook's
   metadata for each kernel they start);
4. the locale (``LANGUAGE``, ``LC_ALL``, ``LC_MESSAGES``, ``LANG``: ``pl_PL.UTF-8`` is Polish);
5. English.

A code that is not one of ``LANGUAGES`` at a step is skipped (``de`` falls through to
English). Console tools that mimic Kafka's never go through this module: their output
is Kafka's English.
"""

from __future__ import annotations

import functools
import gettext
import json
import os
import sys
from pathlib import Path

DOMAIN = "labkit"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
LANGUAGES = ("en", "pl")
DEFAULT = "en"
LANG_ENV = "LABKIT_LANG"
SESSION_ENV = "JPY_SESSION_NAME"
_LOCALE_ENVS = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")

_chosen: str | None = None


def normalize(code: object) -> str | None:
    """``"pl"``, ``"pl_PL.UTF-8"``, ``"PL-pl"`` -> ``"pl"``; None when not a language of labkit."""
    if not isinstance(code, str):
        return None
    short = code.strip().replace("-", "_").split(".")[0].split("_")[0].lower()
    return short if short in LANGUAGES else None


def set_language(code: str | None) -> str:
    """Use ``code`` from now on in this process (None: back to the automatic choice).

    Raises ValueError naming the languages for a code labkit has no messages in.
    """
    global _chosen
    if code is None:
        _chosen = None
        return language()
    lang = normalize(code)
    if lang is None:
        raise ValueError(
            f"labkit speaks {', '.join(LANGUAGES)}; got {code!r} (e.g. nb.language('pl'))"
        )
    _chosen = lang
    return lang


def notebook_path() -> Path | None:
    """The notebook this kernel runs, as Jupyter told it (None outside a Jupyter kernel)."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__session__", None) or os.environ.get(SESSION_ENV)
    if not isinstance(path, str) or not path.endswith(".ipynb"):
        return None
    return Path(path)


def notebook_language(path: Path) -> str | None:
    """The ``labkit.language`` of a notebook file's metadata (None if absent or unreadable)."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return _metadata_language(str(path), stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _metadata_language(path: str, _mtime_ns: int) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            metadata = json.load(handle).get("metadata", {})
    except (OSError, ValueError, AttributeError):
        return None
    labkit_meta = metadata.get("labkit") if isinstance(metadata, dict) else None
    return normalize(labkit_meta.get("language")) if isinstance(labkit_meta, dict) else None


def _locale_language() -> str | None:
    for name in _LOCALE_ENVS:
        value = os.environ.get(name, "")
        if value:  # the first one set decides, as in gettext (LANGUAGE may list several)
            for code in value.split(":"):
                lang = normalize(code)
                if lang:
                    return lang
            return None
    return None


def language() -> str:
    """The language messages are shown in now (see the module's docstring for the order)."""
    if _chosen:
        return _chosen
    path = notebook_path()
    from_notebook = notebook_language(path) if path else None
    return from_notebook or normalize(os.environ.get(LANG_ENV)) or _locale_language() or DEFAULT


@functools.cache
def translation(lang: str) -> gettext.NullTranslations:
    """The catalogue of ``lang`` (English is the code's own text: no catalogue needed)."""
    if lang == DEFAULT:
        return gettext.NullTranslations()
    return gettext.translation(DOMAIN, LOCALE_DIR, languages=[lang], fallback=True)


def _(message: str) -> str:
    """``message`` in the current language."""
    return translation(language()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """The form of ``singular``/``plural`` for ``n`` in the current language (Polish has three)."""
    return translation(language()).ngettext(singular, plural, n)


def pgettext(context: str, message: str) -> str:
    """``message`` in the current language, told apart from the same English words used
    elsewhere by ``context`` (the dashboard's "partition" column vs "1 partition")."""
    return translation(language()).pgettext(context, message)


def N_(message: str) -> str:
    """Marks ``message`` for extraction only; ``_()`` translates it where it is shown."""
    return message


def counted(count: int, noun: str, plural: str) -> str:
    """``count`` and the noun in the right number: ``1 city``, ``2 cities`` / ``2 miasta``,
    ``5 miast``. ``noun`` and ``plural`` are literal strings (``make i18n`` extracts them)."""
    return f"{count} {ngettext(noun, plural, count)}"
