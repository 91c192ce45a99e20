"""Each attempt leaves exactly one decision record naming the client address and key.

Forensics after an incident rest on this: which key, from where, asked for
what, and what we decided. Denied attempts (not docker at all, sftp, a bare
login) are the ones that matter most and must be recorded too.

Not three ways (tests/e2e/conftest.py THREE_WAY): these are the CLI layer's records of its
sessions; layout (b)'s ForceCommand records nothing, and there the proxy records each API
request itself (layer "api", uid from SO_PEERCRED: test_audit_writer, test_attack_chains).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from .stack import AGENT, AUDIT_LOG, IMAGE, Stack, audit_offset, audit_records_since

pytestmark = pytest.mark.e2e

ATTEMPTS = {
    "allowed": ("docker ps", "allow", 0),
    "allowed non-zero": (f"docker run --rm {IMAGE} sh -c 'exit 3'", "allow", 3),
    "denied": ("docker exec gk-e2e-ticker sh", "deny", None),
    "not docker": ("cat /etc/shadow", "deny", None),
    "no command": (None, "deny", None),
}


@pytest.mark.parametrize(("command", "decision", "exit_status"), ATTEMPTS.values(), ids=ATTEMPTS.keys())
def test_one_record_per_attempt(
    stack: Stack, command: str | None, decision: str, exit_status: int | None
) -> None:
    offset = audit_offset()
    stack.ssh(command, options=("-T",))
    records = audit_records_since(offset)
    decisions = [r for r in records if r["event"] == "decision"]
    assert len(decisions) == 1, records
    record = decisions[0]
    assert record["decision"] == decision
    assert record["cmd"] == (command or "")
    assert record["user"] == AGENT
    assert record["key"] == stack.fingerprint()
    assert_client_is_loopback(str(record["client"]), stack.forcecommand_port)
    exits = [r for r in records if r["event"] == "exit"]
    if exit_status is None:
        assert exits == []
    else:
        assert [(r["session"], r["exit"]) for r in exits] == [(record["session"], exit_status)]


def assert_client_is_loopback(client: str, server_port: int) -> None:
    """SSH_CONNECTION: client address, client port, server address, server port."""
    address, port, server, served_port = client.split()
    assert (address, server, served_port) == ("127.0.0.1", "127.0.0.1", str(server_port))
    assert 0 < int(port) < 65536


def test_sftp_attempt_is_recorded(stack: Stack) -> None:
    offset = audit_offset()
    argv = [
        "sftp",
        *stack.client_options(),
        "-P",
        str(stack.forcecommand_port),
        "-b",
        "-",
        f"{AGENT}@127.0.0.1",
    ]
    subprocess.run(argv, input=b"ls\n", capture_output=True, timeout=60, check=False)
    decisions = [r for r in audit_records_since(offset) if r["event"] == "decision"]
    assert [r["decision"] for r in decisions] == ["deny"]
    assert "sftp" in str(decisions[0]["cmd"])


@pytest.fixture
def unwritable_audit_log() -> Iterator[None]:
    """The audit log nobody may write, its writer (the proxy, root) included: immutable."""
    subprocess.run(["chattr", "+i", str(AUDIT_LOG)], check=True)
    yield
    subprocess.run(["chattr", "-i", str(AUDIT_LOG)], check=True)


@pytest.mark.usefixtures("unwritable_audit_log")
def test_unwritable_audit_log_denies_everything(stack: Stack) -> None:
    """Nothing runs unrecorded: if the record can't be written, the command is refused (75)."""
    result = stack.ssh("docker ps")
    assert result.returncode == 75
    assert result.stdout == b""
    assert len(result.stderr.splitlines()) == 1
