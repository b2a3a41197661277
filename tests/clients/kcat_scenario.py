"""The client-matrix scenario for kcat (librdkafka's command-line client), run as a script:

    python kcat_scenario.py BOOTSTRAP TOPIC_PREFIX

prints one JSON transcript on stdout (see kafka_python_scenario.py). Topics are
created by the first produce (the broker's auto.create.topics.enable, on in both).
"""

from __future__ import annotations

import json
import subprocess
import sys

TIMEOUT_S = 60.0


def kcat(bootstrap: str, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        ["kcat", "-b", bootstrap, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"kcat {' '.join(args)} failed ({done.returncode}): {done.stderr}")
    return done.stdout


def main(bootstrap: str, prefix: str) -> dict:
    topic = prefix + "-kcat"
    transcript: dict = {"client": "kcat"}
    lines = "".join(f"user-{i % 3}:{json.dumps({'n': i})}\n" for i in range(8))
    for acks in ("1", "all"):
        kcat(bootstrap, "-P", "-t", topic, "-K:", "-X", f"acks={acks}", "-p", "0", stdin=lines)
    kcat(
        bootstrap, "-P", "-t", topic, "-p", "0", "-z", "gzip", "-H", "source=kcat", stdin="zipped\n"
    )
    fmt = "%p|%o|%k|%s|%h\\n"
    consumed = kcat(bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-f", fmt)
    transcript["consumed"] = consumed.splitlines()
    transcript["from_offset_10"] = kcat(
        bootstrap, "-C", "-t", topic, "-p", "0", "-o", "10", "-e", "-f", "%o\\n"
    ).split()
    transcript["last_two"] = kcat(
        bootstrap, "-C", "-t", topic, "-p", "0", "-o", "-2", "-e", "-f", "%o\\n"
    ).split()
    metadata = json.loads(kcat(bootstrap, "-L", "-t", topic, "-J"))
    [described] = metadata["topics"]
    transcript["metadata"] = [described["topic"], len(described["partitions"])]
    # a balanced consumer group (-G) reads everything once and commits
    group = kcat(bootstrap, "-G", prefix + "-g", "-o", "beginning", "-e", "-f", "%o\\n", topic)
    transcript["group_read"] = sorted(int(o) for o in group.split())
    return transcript


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
