"""The operator's policy workflow on the deployed stack (issue 14).

* `gatekeeper policy check` of the deployed policy, with the installed (non-editable)
  gatekeeper: the must-deny suite ships with the package and every escape is denied.
* `gatekeeper policy test`: the offline verdicts agree with what the real ForceCommand
  does through sshd and the engine, and a deliberately wrong expectation fails (exit 1).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from .stack import GATEKEEPER, POLICY, Stack

pytestmark = pytest.mark.e2e

# (command, expected verdict): each is also sent through real ssh.
CASES = [
    ("docker ps -a", "allow"),
    ("docker version", "allow"),
    ("docker run --privileged gk-busybox true", "deny"),
    ("docker run -v /etc:/x gk-busybox true", "deny"),
    ("docker exec web sh", "deny"),
]


def gatekeeper(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(GATEKEEPER), *args], capture_output=True, text=True, timeout=300, check=False)


def test_policy_check_runs_the_shipped_must_deny_suite(stack: Stack) -> None:
    done = gatekeeper("policy", "check", str(POLICY))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "must-deny: all " in done.stdout and " escapes denied" in done.stdout
    assert "inconclusive" not in done.stderr  # compose renders on the stack: compose cases count


def test_policy_test_agrees_with_the_real_forcecommand(stack: Stack, tmp_path: Path) -> None:
    cases = tmp_path / "cases.jsonl"
    cases.write_text("".join(json.dumps({"command": c, "expect": e}) + "\n" for c, e in CASES))
    done = gatekeeper("policy", "test", str(cases), "--policy", str(POLICY))
    assert done.returncode == 0, done.stdout + done.stderr
    for command, expected in CASES:
        through_ssh = stack.ssh(command)
        denied = through_ssh.returncode == 77 and b"denied" in through_ssh.stderr
        assert ("deny" if denied else "allow") == expected, (command, through_ssh.stderr)
    wrong = tmp_path / "wrong.jsonl"
    flipped = {"command": "docker run --privileged gk-busybox true", "expect": "allow"}
    wrong.write_text(json.dumps(flipped) + "\n")
    failed = gatekeeper("policy", "test", str(wrong), "--policy", str(POLICY))
    assert failed.returncode == 1
    assert "  - expected: allow\n  + got:      deny (rule flag-privileged)" in failed.stdout


def test_policy_suggest_learns_from_the_real_log(stack: Stack, tmp_path: Path) -> None:
    """The stack's own audit log: a denied loopback port on 80 is proposed, the privileged
    attempt beside it never is; the proposal is replayed over the log."""
    from .stack import AUDIT_LOG, audit_offset

    offset = audit_offset()
    assert stack.ssh("docker create -p 127.0.0.1:80:80 gk-busybox true").returncode == 77
    assert stack.ssh("docker create --privileged gk-busybox true").returncode == 77
    log = tmp_path / "recent.jsonl"
    with AUDIT_LOG.open("rb") as whole:
        whole.seek(offset)
        log.write_bytes(whole.read())
    done = gatekeeper("policy", "suggest", "--log", str(log), "--policy", str(POLICY))
    assert done.returncode == 0, done.stderr
    assert '[ports] host_ports += "80"' in done.stdout
    assert "privileged" not in done.stdout.replace("e.g.", "")
    assert "1 deny→allow" in done.stdout
