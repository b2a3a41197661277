"""What ``labkit grade`` writes: the score table, a gradebook CSV, the JSON detail and a
class report in HTML.

Every report starts from ``class_scores``: one row per student, one column per exercise
any student's notebooks were graded on. A student who handed in no notebook with an
exercise gets it as ``MISSING``, 0 of its points -- so every student's maximum is the
same and a missing notebook costs its points instead of shrinking the maximum.
"""

from __future__ import annotations

import csv
import html
import json
from collections import Counter
from dataclasses import asdict
from pathlib import Path

from labkit.course import checks
from labkit.course.grading import NOT_RUN, ExerciseScore, NotebookGrade
from labkit.i18n import N_, _, language

MISSING = "MISSING"
SHORT = {
    checks.PASS: "",
    checks.FAIL: " F",
    checks.NOT_ATTEMPTED: " NA",
    NOT_RUN: " NR",
    MISSING: " M",
}
# The report is in the instructor's language (LABKIT_LANG or `labkit grade --language`);
# the hints inside it are the ones each student saw, in the student's notebook's language.
LEGEND = N_(
    "F = failed, NA = not attempted, NR = the check never ran, "
    "M = missing (no notebook with this exercise handed in)"
)
TOP_HINTS = 3


def columns(grades: list[NotebookGrade]) -> list[str]:
    """Every exercise any notebook was graded on, in id order."""
    return sorted({e.exercise for g in grades for e in g.exercises})


def class_scores(grades: list[NotebookGrade]) -> dict[str, dict[str, ExerciseScore]]:
    """{student: {exercise id: score}} over every exercise of the class.

    A student's score for an exercise is the best over their notebooks; an exercise
    none of their notebooks has is ``MISSING`` with 0 of its maximum points.
    """
    best_max: dict[str, ExerciseScore] = {}
    table: dict[str, dict[str, ExerciseScore]] = {}
    for g in grades:
        row = table.setdefault(g.student, {})
        for e in g.exercises:
            if e.exercise not in row or e.points > row[e.exercise].points:
                row[e.exercise] = e
            if e.exercise not in best_max or e.max_points > best_max[e.exercise].max_points:
                best_max[e.exercise] = e
    for row in table.values():
        for ex_id, known in best_max.items():
            if ex_id not in row:
                row[ex_id] = ExerciseScore(
                    ex_id,
                    known.title,
                    MISSING,
                    0,
                    known.max_points,
                    _("{missing} {exercise}: no notebook with this exercise was handed in").format(
                        missing=MISSING, exercise=ex_id
                    ),
                )
    return table


def totals(scores: dict[str, ExerciseScore]) -> tuple[int, int]:
    return sum(s.points for s in scores.values()), sum(s.max_points for s in scores.values())


def table(grades: list[NotebookGrade]) -> str:
    """The score table: one row per student, one column per exercise, then the total."""
    rows = class_scores(grades)
    cols = columns(grades)
    header = [_("student"), *cols, _("total")]
    body = []
    for student, scores in rows.items():
        cells = [
            f"{scores[c].points}/{scores[c].max_points}{SHORT.get(scores[c].status, ' ?')}"
            for c in cols
        ]
        got, most = totals(scores)
        body.append([student, *cells, f"{got}/{most}"])
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *body]
    ]
    notes = [
        f"{g.student}: {Path(g.notebook).name}: {g.status}: {g.detail}"
        for g in grades
        if g.status not in ("ok", "errors")
    ]
    return "\n".join([*lines, "", _(LEGEND), *notes])


def write_csv(grades: list[NotebookGrade], path: Path) -> None:
    """A gradebook CSV: one row per student, points per exercise, total and maximum."""
    rows = class_scores(grades)
    cols = columns(grades)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow([_("student"), *cols, _("total"), _("max_total")])
        for student, scores in rows.items():
            writer.writerow([student, *(scores[c].points for c in cols), *totals(scores)])


def write_json(grades: list[NotebookGrade], path: Path) -> None:
    """Every notebook's result with each exercise's status and message, and each student's
    totals (missing exercises included)."""
    students = {
        student: dict(
            zip(("points", "max_points"), totals(scores), strict=True),
            missing=sorted(e for e, s in scores.items() if s.status == MISSING),
        )
        for student, scores in class_scores(grades).items()
    }
    data = {
        "notebooks": [dict(asdict(g), points=g.points, max_points=g.max_points) for g in grades],
        "students": students,
    }
    path.write_text(
        json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )


def _hint(message: str) -> str:
    """The hint part of a check line: ``FAIL 03.2 (0/3 points): <hint>`` -> ``<hint>``."""
    return message.split("): ", 1)[1] if "): " in message else message


def exercise_summary(grades: list[NotebookGrade]) -> list[dict]:
    """Per exercise: title, points, how many students passed / failed / did not attempt
    / never ran it / are missing it, the pass rate and the most frequent hints."""
    rows = class_scores(grades)
    summary = []
    for ex_id in columns(grades):
        scores = [r[ex_id] for r in rows.values()]
        status = Counter(s.status for s in scores)
        hints = Counter(_hint(s.message) for s in scores if s.status == checks.FAIL and s.message)
        summary.append(
            {
                "exercise": ex_id,
                "title": scores[0].title,
                "max_points": max(s.max_points for s in scores),
                "students": len(scores),
                "passed": status[checks.PASS],
                "status": dict(status),
                "pass_rate": status[checks.PASS] / len(scores),
                "top_hints": hints.most_common(TOP_HINTS),
            }
        )
    return summary


_STYLE = """
body { font-family: sans-serif; margin: 2em; }
table { border-collapse: collapse; margin-bottom: 2em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.PASS { background: #e6f4ea; } td.FAIL { background: #fde7e7; }
td.MISSING, td.NOT-RUN, td.NOT-ATTEMPTED { background: #fff4e0; }
.bar { background: #4a8; height: 0.8em; display: inline-block; }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def class_report(grades: list[NotebookGrade]) -> str:
    """An HTML page for the instructor: pass rate and most frequent hints per exercise,
    then one row per student (total, and each exercise's result with the hint they saw)."""
    rows = class_scores(grades)
    cols = columns(grades)
    out = [
        "<!doctype html>",
        f'<html lang="{language()}"><head><meta charset="utf-8">'
        f"<title>{_e(_('labkit class report'))}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{_e(_('Class report'))}</h1>",
        "<p>"
        + _e(
            _("{students} students, {notebooks} notebooks graded, {exercises} exercises.").format(
                students=len(rows), notebooks=len(grades), exercises=len(cols)
            )
        )
        + "</p>",
        f"<h2>{_e(_('Exercises'))}</h2>",
        "<table><tr>"
        + "".join(
            f"<th>{_e(h)}</th>"
            for h in (
                _("exercise"),
                _("title"),
                _("points"),
                _("passed"),
                _("pass rate"),
                _("other results"),
                _("most frequent hints"),
            )
        )
        + "</tr>",
    ]
    for ex in exercise_summary(grades):
        others = ", ".join(
            f"{_e(k)}: {n}" for k, n in sorted(ex["status"].items()) if k != checks.PASS
        )
        hints = "".join(f"<li>{_e(h)} <b>({n}&times;)</b></li>" for h, n in ex["top_hints"])
        rate = round(100 * ex["pass_rate"])
        out.append(
            f"<tr><td>{_e(ex['exercise'])}</td><td>{_e(_(ex['title']))}</td>"
            f"<td>{ex['max_points']}</td><td>{ex['passed']}/{ex['students']}</td>"
            f'<td><span class="bar" style="width:{rate}px"></span> {rate}%</td>'
            f"<td>{others}</td><td><ul>{hints}</ul></td></tr>"
        )
    out.append(
        f"</table><h2>{_e(_('Students'))}</h2><table><tr>"
        f"<th>{_e(_('student'))}</th><th>{_e(_('total'))}</th>"
    )
    out.extend(f"<th>{_e(c)}</th>" for c in cols)
    out.append(f"<th>{_e(_('notes'))}</th></tr>")
    for student, scores in rows.items():
        got, most = totals(scores)
        notes = "; ".join(
            f"{Path(g.notebook).name}: {g.status}: {g.detail}"
            for g in grades
            if g.student == student and g.status not in ("ok", "errors")
        )
        cells = "".join(
            f'<td class="{_e(scores[c].status.replace(" ", "-"))}" '
            f'title="{_e(scores[c].message)}">{scores[c].points}/{scores[c].max_points}'
            f"{_e(SHORT.get(scores[c].status, ' ?'))}</td>"
            for c in cols
        )
        out.append(
            f"<tr><td>{_e(student)}</td><td>{got}/{most}</td>{cells}<td>{_e(notes)}</td></tr>"
        )
    out.append(
        f"</table><p>{_e(_(LEGEND))}. {_e(_('Hover a cell for the hint the student saw.'))}</p>"
    )
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def write_html(grades: list[NotebookGrade], path: Path) -> None:
    path.write_text(class_report(grades), encoding="utf-8")
