"""Summarise a py-spy speedscope profile as text (for NOTES.md).

    .venv/bin/py-spy record -r 500 --threads --format speedscope -o p.json -- <command>
    .venv/bin/python benchmarks/profsum.py p.json [--top 25] [--thread NAME]

Per thread: the share of samples in which each function is on the stack
(inclusive) and on top of it (self), with file:line.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter


def summarise(path: str, top: int, thread: str | None) -> str:
    with open(path) as f:
        data = json.load(f)
    frames = data["shared"]["frames"]

    def label(i: int) -> str:
        fr = frames[i]
        where = fr.get("file", "").replace("/work/main/", "").split("site-packages/")[-1]
        return f"{fr['name']} ({where}:{fr.get('line', '?')})"

    out = []
    for prof in data["profiles"]:
        if thread and thread not in prof["name"]:
            continue
        samples, weights = prof["samples"], prof.get("weights") or [1] * len(prof["samples"])
        total = sum(weights)
        if not total:
            continue
        inclusive: Counter = Counter()
        own: Counter = Counter()
        for stack, w in zip(samples, weights, strict=True):
            for i in set(stack):
                inclusive[i] += w
            if stack:
                own[stack[-1]] += w
        out.append(f"== {prof['name']}: {total} samples")
        out.append("   incl%   self%  function")
        for i, w in inclusive.most_common(top):
            out.append(f"  {100 * w / total:6.1f}  {100 * own[i] / total:6.1f}  {label(i)}")
        out.append("  top self:")
        for i, w in own.most_common(12):
            out.append(f"  {100 * w / total:6.1f}  {label(i)}")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--thread", default=None)
    args = parser.parse_args()
    print(summarise(args.path, args.top, args.thread))


if __name__ == "__main__":
    main()
