"""200 SSH sessions at the same instant, one audit file: not a record lost,
none torn or interleaved.

Every session appends its decision line (and, when allowed, its exit line)
with one write(2) on an O_APPEND descriptor. Some commands are about 12 KB
(a long --format, many --filter flags), so a line is several pages long: a
writer that split its record, or buffered it through stdio, would interleave
here. All processes are released at once from a barrier (a shell waiting on
its stdin) so their writes really do overlap.
"""

from __future__ import annotations

import json
import subprocess

from tests.conftest import REPO, Deployment, gatekeeper_command

SESSIONS = 200
EX_NOPERM = 77


def long_format(size: int) -> str:
    fields = ["{{.ID}}", "{{.Names}}", "{{.Image}}", "{{.Status}}", "{{json .Labels}}"]
    text = ""
    while len(text) < size:
        text += " " + fields[len(text) % len(fields)]
    return text


def session_command(index: int) -> tuple[str, bool]:
    """The command of session `index` and whether it is allowed."""
    kind = index % 6
    if kind == 0:
        return "docker exec web sh", False
    if kind == 1:
        return f"docker ps -a --format '{long_format(12_000)}'", True
    if kind == 2:
        filters = " ".join(f"--filter name=service-{n}" for n in range(12_000 // 25))
        return f"docker ps {filters}", True
    if kind == 3:  # long and refused: the whole string is still recorded
        return "docker exec " + " ".join(f"arg{n}" for n in range(2_000)), False
    if kind == 4:  # refused after screening: control characters become escapes, lines grow
        return "docker ps --format '" + "\x01\x1b[31m" * 500 + "'", False
    return "docker ps", True


def release_at_once(deployment: Deployment) -> list[tuple[subprocess.Popen[bytes], str, bool]]:
    barrier = 'read go && exec "$@"'
    started = []
    for index in range(SESSIONS):
        command, allowed = session_command(index)
        env = {"PATH": "/usr/bin:/bin", "SSH_ORIGINAL_COMMAND": command,
               "SSH_CONNECTION": f"127.0.0.1 {20000 + index} 127.0.0.1 22"}
        process = subprocess.Popen(
            ["/bin/sh", "-c", barrier, "sh", *gatekeeper_command(), "--policy", str(deployment.policy)],
            env=env, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        started.append((process, command, allowed))
    for process, _, _ in started:
        assert process.stdin is not None
        process.stdin.write(b"go\n")
        process.stdin.close()
    return started


def test_200_concurrent_sessions_leave_exact_whole_records(deployment: Deployment) -> None:
    deployment.docker.write_text("#!/bin/sh\nexit 0\n")
    sessions = release_at_once(deployment)
    for index, (process, _, allowed) in enumerate(sessions):
        assert process.wait(timeout=300) == (0 if allowed else EX_NOPERM), f"session {index}"

    raw = deployment.audit.read_bytes()
    assert raw.endswith(b"\n")
    records = [json.loads(line) for line in raw.decode("ascii").split("\n")[:-1]]
    expected_lines = SESSIONS + sum(allowed for _, _, allowed in sessions)
    assert len(records) == expected_lines

    decisions = {r["client"]: r for r in records if r["event"] == "decision"}
    exits = {r["session"]: r for r in records if r["event"] == "exit"}
    assert len(decisions) == SESSIONS
    assert len(exits) == expected_lines - SESSIONS
    for index, (_, command, allowed) in enumerate(sessions):
        decision = decisions[f"127.0.0.1 {20000 + index} 127.0.0.1 22"]
        assert decision["cmd"] == command
        assert decision["decision"] == ("allow" if allowed else "deny")
        if allowed:
            assert exits[decision["session"]]["exit"] == 0
        else:
            assert decision["session"] not in exits


def test_long_commands_are_within_the_accepted_length() -> None:
    """The load above exercises the long commands we accept, not the length refusal."""
    from gatekeeper.words import MAX_COMMAND_LENGTH

    lengths = [len(session_command(index)[0]) for index in range(6)]
    assert 10_000 < max(lengths) <= MAX_COMMAND_LENGTH
