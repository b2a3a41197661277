"""Reading nbval's report of one graded notebook: which cells failed and why, and how the
run as a whole ended (ok, errors, timeout, crashed)."""

from __future__ import annotations

import re

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_SECTION = re.compile(r"^_{3,} .*::Cell (\d+) _{3,}$", re.M)


def cell_errors(output: str) -> dict[int, str]:
    """{code cell number (from 0): one line saying why it failed} from nbval's report."""
    text = _ANSI.sub("", output)
    marks = list(_SECTION.finditer(text))
    errors = {}
    ends = [m.start() for m in marks[1:]] + [len(text)] * bool(marks)
    for mark, end in zip(marks, ends, strict=True):
        section = text[mark.end() : end]
        section = section.split("\n=====", 1)[0]
        lines = [line.strip() for line in section.splitlines() if line.strip()]
        reason = next(
            (
                line.split(":", 1)[1].strip()
                for line in lines
                if line.startswith(f"Cell {mark[1]}:")
            ),
            "",
        )
        last = lines[-1] if lines else ""
        if "Timeout" in reason or not last or last == "Traceback:":
            errors[int(mark[1])] = reason or "failed"
        else:
            errors[int(mark[1])] = last[:300]
    return errors


def run_status(
    output: str, returncode: int | None, killed: bool, notebook_timeout: float
) -> tuple[str, str]:
    """(status, detail) of one notebook's run: ok, errors, timeout or crashed."""
    if killed:
        return "timeout", f"stopped after {notebook_timeout:g} s for the whole notebook"
    text = output
    if returncode == 0:
        return "ok", ""
    if "Kernel died" in text or "Kernel dead" in text or "Failed to interrupt kernel" in text:
        return "crashed", "the kernel died or could not be interrupted; later cells did not run"
    if "Timeout of" in text:
        cells = sorted({int(n) for n in re.findall(r"::Cell (\d+)", text)})
        return "timeout", "a cell ran too long and was interrupted" + (
            f" (failing cells: {', '.join(map(str, cells))})" if cells else ""
        )
    if returncode == 1:
        return "errors", "some cells raised (failed checks count here too)"
    tail = " ".join(text.strip().splitlines()[-3:])[-300:]
    return "crashed", f"pytest exited with code {returncode}: {tail}"
