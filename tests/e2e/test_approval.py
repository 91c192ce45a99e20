"""Approval through the real stack (issue 14 item 3): the agent's command is refused with
exit 75 and a request id, the operator approves it with `gatekeeper approve ID`, then it
succeeds once and only once; every step is in the audit log.

Control: without [approval] the same command simply runs.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from .stack import (
    AGENT_HOME,
    GATEKEEPER,
    POLICY,
    RUN_DIR,
    Stack,
    audit_offset,
    audit_records_since,
    policy_extended,
)

pytestmark = pytest.mark.e2e

APPROVALS = RUN_DIR / "approvals"
REQUESTS = AGENT_HOME / ".gatekeeper" / "requests"
COMMAND = "docker version"


def request_of(result: subprocess.CompletedProcess[bytes]) -> str:
    assert result.returncode == 75, result.stderr
    text = result.stderr.decode()
    assert "approval pending: request " in text
    return text.split("approval pending: request ", 1)[1][:16]


def test_refused_approved_succeeds_once(stack: Stack) -> None:
    assert stack.ssh(COMMAND).returncode == 0  # control: no [approval]
    try:
        with policy_extended(f'\n[approval]\nask = ["version"]\ndir = "{APPROVALS}"\n'):
            offset = audit_offset()
            request = request_of(stack.ssh(COMMAND))
            listed = subprocess.run([str(GATEKEEPER), "approve", "--policy", str(POLICY), "--list"],
                                    capture_output=True, text=True, timeout=60, check=True)
            assert request in listed.stdout
            subprocess.run([str(GATEKEEPER), "approve", "--policy", str(POLICY), request],
                           capture_output=True, text=True, timeout=60, check=True)
            first = stack.ssh(COMMAND)
            assert first.returncode == 0, first.stderr
            assert b"Server" in first.stdout
            assert request_of(stack.ssh(COMMAND)) == request  # once and only once
            steps = [(r["event"], r.get("decision") or r.get("action"), r.get("rule"))
                     for r in audit_records_since(offset)]
            assert steps == [
                ("decision", "ask", "approval-pending"), ("approval", "approve", None),
                ("decision", "allow", "approved"), ("exit", None, None),
                ("decision", "ask", "approval-pending"),
            ]
    finally:
        shutil.rmtree(APPROVALS, ignore_errors=True)
        shutil.rmtree(REQUESTS, ignore_errors=True)
        for used in (AGENT_HOME / ".gatekeeper").glob("used-*"):
            used.unlink()
