"""Every decision is recorded, a refused attempt too: red team, session 4.

sshd hands the ForceCommand a command of up to ~256 KiB; the words refuse anything over
16384 characters, but the record of that refusal carried the whole command, and the
proxy's audit intake takes records of at most 64 KiB. So an attempt padded past that
was refused (exit 75) and left no line in the log, nor in syslog: probing unrecorded.
Now such a command is recorded by its head, length and SHA-256 (gatekeeper.audit).

Layouts (a) and (c), not (b): the record under test is the CLI layer's, and layout (b)'s
ForceCommand vets and records nothing (the proxy records each API request it gets, framing
refusals included: tests/test_proxy_framing.py, tests/test_proxy_guards.py).
"""

from __future__ import annotations

import hashlib
import json

import pytest

from gatekeeper import audit
from gatekeeper.proxy.intake import MAX_RECORD

from .stack import CLI_ALONE, IMAGE, LAYERED, PROXY_SOCKET, Stack, audit_offset, audit_records_since
from .test_api_attacks import RAW_CLIENT, as_agent

pytestmark = [
    pytest.mark.e2e,
    # Layout (b)'s ForceCommand vets and records nothing: the CLI layer's records are (a) and (c).
    pytest.mark.parametrize("stack", [LAYERED, CLI_ALONE], indirect=True, scope="module"),
]

EX_NOPERM = 77


def test_a_command_too_long_to_record_whole_is_recorded(stack: Stack) -> None:
    command = f"docker run --privileged {IMAGE} echo " + "x" * 100_000
    # The control: the record as it was made (the whole command) is refused by the intake.
    fields = audit.exact_command_fields(command)
    whole = audit.encode({"v": audit.RECORD_VERSION, "event": "decision", **fields})
    assert len(whole) > MAX_RECORD
    post = [str(PROXY_SOCKET), "POST", "/_gatekeeper/audit", whole]
    refused = as_agent(["/usr/bin/python3", "-I", "-c", RAW_CLIENT, *post], {"PATH": "/bin"})
    assert refused.stdout[:1] == "4", refused  # 413: not written

    offset = audit_offset()
    result = stack.ssh(command)
    assert result.returncode == EX_NOPERM, result.stderr
    assert b"(rule shell-syntax)" in result.stderr
    decisions = [record for record in audit_records_since(offset) if record.get("event") == "decision"]
    assert len(decisions) == 1, decisions
    record = decisions[0]
    assert record["decision"] == "deny" and record["rule"] == "shell-syntax"
    assert record["cmd_sha256"] == hashlib.sha256(command.encode()).hexdigest()
    assert record["cmd_length"] == len(command)
    assert str(record["cmd"]).startswith("docker run --privileged")
    assert len(json.dumps(record)) < MAX_RECORD
