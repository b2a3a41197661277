"""``kafka-consumer-groups.sh`` against the real broker: columns, idle members, reset, delete."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from labkit.cli.main import run_command
from labkit.protocol.records import encode_batch
from labkit.testing import RawClient

BIN = Path(sys.executable).parent


def setup_topic(c, topic, partitions, records_per_partition):
    header, _ = c.request(
        "create_topics",
        {"topics": [{"name": topic, "num_partitions": partitions, "replication_factor": 1}]},
    )
    assert header["topics"][0]["error"] == 0
    for p in range(partitions):
        n = records_per_partition
        batch = encode_batch(
            [1_700_000_000_000 + i for i in range(n)], None, [b"v%d" % i for i in range(n)]
        )
        header, _ = c.request(
            "produce", {"acks": 1, "timeout_ms": 5000, "targets": [[topic, p]]}, [batch]
        )
        assert header["results"][0][1] == 0, header


def join(c, group, topic, client_id):
    resp = c.request(
        "join_group",
        {
            "group_id": group,
            "topics": [topic],
            "client_id": client_id,
            "client_host": "/127.0.0.1",
            "session_timeout_ms": 30000,
        },
    )[0]
    assert resp["error"] == 0
    return resp


def beat(c, group, resp):
    return c.request(
        "heartbeat",
        {
            "group_id": group,
            "member_id": resp["member_id"],
            "generation": resp["generation"],
            "owned": resp["assignment"],
        },
    )[0]


def groups_tool(bootstrap, capsys, *argv):
    code = run_command("consumer-groups", ["--bootstrap-server", bootstrap, *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_describe_shows_offsets_lag_members_and_idle_members(shared_broker, unique_topic, capsys):
    bootstrap = shared_broker.bootstrap
    with RawClient(bootstrap) as c:
        setup_topic(c, unique_topic, 2, 10)
        members = [join(c, "tool-describe", unique_topic, f"client-{i}") for i in range(3)]
        for _ in range(3):
            members = [beat(c, "tool-describe", m) for m in members]
        owner = next(m for m in members if m["assignment"])
        c.request(
            "offset_commit",
            {
                "group_id": "tool-describe",
                "member_id": owner["member_id"],
                "generation": owner["generation"],
                "offsets": [[unique_topic, owner["assignment"][0][1], 4, ""]],
            },
        )
        code, out, err = groups_tool(bootstrap, capsys, "--describe", "--group", "tool-describe")
    assert code == 0, err
    lines = [line.split() for line in out.strip().splitlines()]
    assert lines[0] == [
        "GROUP",
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "CONSUMER-ID",
        "HOST",
        "CLIENT-ID",
    ]
    rows = lines[1:]
    assert len(rows) == 3
    committed = [r for r in rows if r[3] == "4"]
    assert len(committed) == 1
    assert committed[0][4:6] == ["10", "6"]
    idle = [r for r in rows if r[1] == "-"]
    assert len(idle) == 1
    assert idle[0][2:6] == ["-", "-", "-", "-"]
    assert {r[7] for r in rows} == {"/127.0.0.1"}

    code, out, _ = groups_tool(
        bootstrap, capsys, "--describe", "--group", "tool-describe", "--members"
    )
    assert code == 0
    counts = sorted(line.split()[-1] for line in out.strip().splitlines()[1:])
    assert counts == ["0", "1", "1"]
    code, out, _ = groups_tool(
        bootstrap, capsys, "--describe", "--group", "tool-describe", "--state"
    )
    assert out.strip().splitlines()[-1].split()[-3:] == ["range", "Stable", "3"]
    code, out, _ = groups_tool(bootstrap, capsys, "--list")
    assert "tool-describe" in out.split()


def test_reset_is_refused_while_active_then_applied(shared_broker, unique_topic, capsys):
    bootstrap = shared_broker.bootstrap
    with RawClient(bootstrap) as c:
        setup_topic(c, unique_topic, 2, 5)
        member = beat(c, "tool-reset", join(c, "tool-reset", unique_topic, "solo"))
        code, out, err = groups_tool(
            bootstrap,
            capsys,
            "--reset-offsets",
            "--group",
            "tool-reset",
            "--topic",
            unique_topic,
            "--to-earliest",
            "--execute",
        )
        assert code == 1
        assert (
            "Error: Assignments can only be reset if the group 'tool-reset' is inactive, "
            "but the current state is Stable."
        ) in err
        c.request("leave_group", {"group_id": "tool-reset", "member_id": member["member_id"]})
        code, out, err = groups_tool(
            bootstrap,
            capsys,
            "--reset-offsets",
            "--group",
            "tool-reset",
            "--topic",
            f"{unique_topic}:1",
            "--to-offset",
            "3",
            "--dry-run",
        )
        assert code == 0
        assert out.strip().splitlines()[-1].split() == [
            "tool-reset",
            unique_topic,
            "1",
            "3",
        ]
        fetched = c.request("offset_fetch", {"group_id": "tool-reset", "partitions": None})[0]
        assert fetched["partitions"] == []  # a dry run changes nothing
        code, out, err = groups_tool(
            bootstrap,
            capsys,
            "--reset-offsets",
            "--group",
            "tool-reset",
            "--topic",
            unique_topic,
            "--to-latest",
            "--execute",
        )
        assert code == 0, err
        fetched = c.request("offset_fetch", {"group_id": "tool-reset", "partitions": None})[0]
        assert [row[:3] for row in fetched["partitions"]] == [
            [unique_topic, 0, 5],
            [unique_topic, 1, 5],
        ]


def test_delete_via_the_installed_script(shared_broker, unique_topic):
    bootstrap = shared_broker.bootstrap
    with RawClient(bootstrap) as c:
        setup_topic(c, unique_topic, 1, 1)
        c.request(
            "offset_commit",
            {
                "group_id": "tool-delete",
                "member_id": "",
                "generation": -1,
                "offsets": [[unique_topic, 0, 1, ""]],
            },
        )
    script = BIN / "kafka-consumer-groups.sh"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "labkit", "consumer-groups"]
    done = subprocess.run(
        [*cmd, "--bootstrap-server", bootstrap, "--delete", "--group", "tool-delete"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "Deletion of requested consumer groups ('tool-delete') was successful." in done.stdout
    missing = subprocess.run(
        [*cmd, "--bootstrap-server", bootstrap, "--describe", "--group", "tool-delete"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1
    assert "Consumer group 'tool-delete' does not exist." in missing.stderr
    again = subprocess.run(
        [*cmd, "--bootstrap-server", bootstrap, "--delete", "--group", "tool-delete"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 1
    assert again.stderr.splitlines() == [
        "Error: Deletion of some consumer groups failed:",
        "* Group 'tool-delete' could not be deleted due to: GroupIdNotFoundError: "
        "The group id does not exist.",
        "See the groups with `labkit consumer-groups --list`.",
    ]
