"""50 parallel ssh sessions through the real sshd, one audit file: not a record lost,
none torn or interleaved (issue 7, item 3, end-to-end half; tests/test_concurrency.py
does the same with 200 ForceCommand processes and no sshd).

sshd's default MaxStartups (10:30:100) drops 30 % of the connections that arrive
while ten others are still unauthenticated, so a burst of 50 would lose sessions
before gatekeeper ever runs. The production snippet is left as it is: this test
starts one more sshd whose config reads a two-line wrapper, `MaxStartups` and then
`Include` of the installed drop-in (/etc/ssh/sshd_config.d/00-gatekeeper.conf, the
shipped file as install.sh put it, its ForceCommand as the stack's own sshd runs it:
the entry script, or the resident client with GK_E2E_FORCECOMMAND=resident), so every
session is a real ForceCommand session, all started at once.

Sessions are mixed: allowed `docker ps` (short, and with a multi-kilobyte --format),
denied `docker exec` (short, and with kilobytes of arguments). Each command carries
its session's token, so every record can be matched to the session that wrote it.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_concurrency import long_format

from .stack import AUDIT_LOG, SNIPPET, SYSTEM_DROP_IN, Daemon, Stack, audit_offset, free_port, start_sshd

pytestmark = pytest.mark.e2e

SESSIONS = 50
EX_NOPERM = 77
TEST_MAX_STARTUPS = "100:30:200"  # test config only: the burst must reach gatekeeper
SESSION_TIMEOUT = 180.0


def session_command(index: int) -> tuple[str, bool]:
    """The command of session `index` (carrying its token) and whether gatekeeper allows it."""
    token = f"gk-load-{index:02d}"
    kind = index % 4
    if kind == 0:
        return f"docker ps -a --filter name={token}", True
    if kind == 1:
        return f"docker exec {token} sh", False
    if kind == 2:  # allowed and long: the decision record is several pages
        return f"docker ps -a --filter name={token} --format '{long_format(2_000 + 300 * index)}'", True
    return f"docker exec {token} " + " ".join(f"arg{n}" for n in range(400 + 20 * index)), False


@pytest.fixture(scope="module")
def burst_sshd(stack: Stack) -> Iterator[int]:
    """One more sshd: the installed drop-in, preceded (in a test-only wrapper) by a higher MaxStartups."""
    wrapper = stack.workdir / "load-snippet.conf"
    wrapper.write_text(f"MaxStartups {TEST_MAX_STARTUPS}\nInclude {SYSTEM_DROP_IN}\n")
    port = free_port()
    daemon: Daemon = start_sshd("sshd-load", stack.workdir, port, wrapper, stack.workdir / "host_ed25519")
    yield port
    daemon.stop()


def start_sessions(stack: Stack, port: int) -> list[tuple[subprocess.Popen[bytes], str, bool]]:
    started = []
    for index in range(SESSIONS):
        command, allowed = session_command(index)
        argv = stack.ssh_argv(command, options=("-T",), port=port)
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        started.append((process, command, allowed))
    return started


def finish(started: list[tuple[subprocess.Popen[bytes], str, bool]]) -> list[tuple[int, bytes, str, bool]]:
    results = []
    for process, command, allowed in started:
        try:
            out, err = process.communicate(timeout=SESSION_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
        results.append((process.returncode, out + err, command, allowed))
    return results


def new_audit_lines(offset: int) -> list[bytes]:
    """Every complete line appended after `offset`; the file must end with a newline."""
    with AUDIT_LOG.open("rb") as log:
        log.seek(offset)
        data = log.read()
    assert data.endswith(b"\n"), "the audit log ends in a partial line"
    return data.splitlines()


def test_parallel_ssh_sessions_keep_every_audit_record_whole(stack: Stack, burst_sshd: int) -> None:
    offset = audit_offset()
    results = finish(start_sessions(stack, burst_sshd))

    for status, output, command, allowed in results:
        assert status == (0 if allowed else EX_NOPERM), (command[:80], output[-500:])

    records = [json.loads(line) for line in new_audit_lines(offset)]  # a torn line fails here
    assert all(isinstance(record, dict) for record in records)
    cli = [r for r in records if r.get("layer") != "api"]  # behind the proxy its own records come too
    decisions = [r for r in cli if r["event"] == "decision"]
    exits = [r for r in cli if r["event"] == "exit"]
    assert len(decisions) == SESSIONS
    assert len(exits) == sum(allowed for _, _, _, allowed in results)
    by_command = {str(r["cmd"]): r for r in decisions}
    exit_of = {r["session"]: r for r in exits}
    for _, _, command, allowed in results:
        record = by_command[command]  # whole, byte for byte: nothing truncated or interleaved
        assert record["decision"] == ("allow" if allowed else "deny")
        if allowed:
            assert exit_of[record["session"]]["exit"] == 0
        else:
            assert record["session"] not in exit_of
    assert len({r["session"] for r in decisions}) == SESSIONS


def test_snippet_is_included_verbatim(stack: Stack) -> None:
    """The load sshd changes MaxStartups only: everything else is the installed drop-in, the
    shipped file but for the ForceCommand program the stack chose."""
    assert "MaxStartups" not in Path(SNIPPET).read_text()
    forced = [line for line in SYSTEM_DROP_IN.read_text().splitlines() if "ForceCommand " not in line]
    assert forced == [line for line in SNIPPET.read_text().splitlines() if "ForceCommand " not in line]
