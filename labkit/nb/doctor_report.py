"""The doctor's report: one ``Result`` line per check, and the ``Report`` that prints them.

Theory of operation
-------------------
A check returns a ``Result``: its name (a key: ``report["broker"]``; shown translated
through ``CHECK_NAMES``), a status (``OK``, ``FAIL``, ``WARN``, ``SKIP``), one line of
detail, and for a failure or a warning ``fix``, the exact next step for a student. A
``Report`` is the list of them in the order they ran; ``format`` prints ✔/✘/! lines (or
OK/FAIL/WARN where the console cannot print those symbols), each fix under its line after
an arrow, and a last line that counts the problems. Plain data, no I/O: the checks live in
``doctor_checks`` (the machine, the runner) and ``doctor_broker`` (the broker).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from labkit.i18n import N_, _, ngettext

OK, FAIL, WARN, SKIP = "ok", "fail", "warn", "skip"
_SYMBOLS = {OK: "✔", FAIL: "✘", WARN: "!", SKIP: "–"}
_ASCII = {OK: "OK  ", FAIL: "FAIL", WARN: "WARN", SKIP: "SKIP"}
# The checks' names are keys (report["broker"]); these are how they are shown.
CHECK_NAMES = {
    name: name
    for name in (
        N_("Python"),
        N_("labkit"),
        N_("broker"),
        N_("student"),
        N_("round trip"),
        N_("console tools"),
        N_("notebook packages"),
    )
}


@dataclass
class Result:
    name: str
    status: str
    detail: str
    fix: str | None = None

    @property
    def ok(self) -> bool:
        return self.status != FAIL


@dataclass
class Report:
    results: list[Result] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def failures(self) -> list[Result]:
        return [r for r in self.results if r.status == FAIL]

    def __getitem__(self, name: str) -> Result:
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(name)

    def format(self, ascii_only: bool = False) -> str:
        symbols = _ASCII if ascii_only else _SYMBOLS
        arrow = "->" if ascii_only else "→"
        lines = []
        for r in self.results:
            lines.append(f"{symbols[r.status]} {_(CHECK_NAMES.get(r.name, r.name))}: {r.detail}")
            if r.fix and r.status in (FAIL, WARN):
                lines.extend(
                    f"    {arrow} {part}" if i == 0 else f"      {part}"
                    for i, part in enumerate(r.fix.splitlines())
                )
        n_fail = len(self.failures)
        lines.append(
            _("all checks passed")
            if not n_fail
            else ngettext(
                "{n} problem found: do what the {arrow} lines say, then run the doctor again",
                "{n} problems found: do what the {arrow} lines say, then run the doctor again",
                n_fail,
            ).format(n=n_fail, arrow=arrow)
        )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<doctor: {len(self.results) - len(self.failures)} ok, {len(self.failures)} failed>"
