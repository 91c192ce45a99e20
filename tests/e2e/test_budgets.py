"""[budgets] through the real stack (issue 14 item 4).

Control: with no budget, four `docker ps` in a row all run. With commands_per_minute = 3
the fourth is refused (rule budget-commands) with the time it refills, and audited; the
ledger sits in the state dir, the agent's private top-level dot entry, 0600.

Not three ways (tests/e2e/conftest.py THREE_WAY): commands_per_minute counts the CLI layer's
commands; layout (b) has no commands, only API requests, and there the proxy counts
[budgets] containers_per_hour, pulls_per_day and builds_per_day itself
(test_proxy_hardening).
"""

from __future__ import annotations

import stat

import pytest

from .stack import AGENT_HOME, Stack, audit_offset, audit_records_since, policy_extended

pytestmark = pytest.mark.e2e

STATE_DIR = AGENT_HOME / ".gatekeeper"


def test_the_fourth_command_of_the_minute_is_refused(stack: Stack) -> None:
    for ledger in STATE_DIR.glob("budget-*"):
        ledger.unlink()
    control = [stack.ssh("docker ps").returncode for _ in range(4)]
    assert control == [0, 0, 0, 0]
    try:
        with policy_extended("\n[budgets]\ncommands_per_minute = 3\n"):
            offset = audit_offset()
            codes = [stack.ssh("docker ps") for _ in range(4)]
            assert [c.returncode for c in codes] == [0, 0, 0, 77], codes[-1].stderr
            assert b"(rule budget-commands)" in codes[-1].stderr
            assert b"refills at" in codes[-1].stderr
            denied = [r for r in audit_records_since(offset) if r.get("rule") == "budget-commands"]
            assert len(denied) == 1
            [ledger] = STATE_DIR.glob("budget-*")
            assert stat.S_IMODE(ledger.stat().st_mode) == 0o600
    finally:
        for ledger in STATE_DIR.glob("budget-*"):
            ledger.unlink()
