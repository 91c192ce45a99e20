"""authorized_keys `restrict,command="..."` alone confines the key, and ForceCommand wins over it.

The second sshd of the stack reads the snippet without its ForceCommand line,
so only the key line printed by `gatekeeper authorized-key` stands in the way.
Attacks: a host whose sshd_config lacks the ForceCommand (a NixOS module not
applied, a drop-in not included) must still give the agent nothing but
gatekeeper; and a key line with a weaker command= must not beat ForceCommand.

Not three ways (tests/e2e/conftest.py THREE_WAY): the subject is which command sshd runs for
the key; what that command then lets through is the subject of the three-way modules.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .stack import GATEKEEPER, PRECEDENCE_MARKER, Stack, audit_offset, audit_records_since

pytestmark = pytest.mark.e2e


def test_allowed_command_runs_through_gatekeeper(stack: Stack) -> None:
    result = stack.ssh("docker images", port=stack.keyoption_port)
    assert result.returncode == 0, result.stderr
    assert b"gk-busybox" in result.stdout


def test_denied_command_is_refused(stack: Stack) -> None:
    result = stack.ssh("docker exec gk-e2e-ticker sh", port=stack.keyoption_port)
    assert result.returncode == 77
    assert result.stderr.startswith(b"gatekeeper: denied")


def test_restrict_refuses_forwarding_and_pty(stack: Stack) -> None:
    """`restrict` must cover what the snippet's forwarding settings cover."""
    options = ("-N", "-o", "ExitOnForwardFailure=yes", "-R", "127.0.0.1:0:127.0.0.1:22")
    forward = subprocess.run(
        stack.ssh_argv(None, options=options, port=stack.keyoption_port),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert forward.returncode == 255
    pty = stack.ssh("docker ps", options=("-o", "LogLevel=INFO", "-tt"), port=stack.keyoption_port)
    assert b"PTY allocation request failed" in pty.stderr


def test_forcecommand_wins_over_key_command(stack: Stack) -> None:
    """The precedence key's own command= is an echo: under ForceCommand, gatekeeper runs instead."""
    forced = stack.ssh("docker images", key=stack.precedence_key)
    assert b"gk-busybox" in forced.stdout and PRECEDENCE_MARKER.encode() not in forced.stdout
    key_only = stack.ssh("docker images", key=stack.precedence_key, port=stack.keyoption_port)
    assert key_only.stdout.strip() == PRECEDENCE_MARKER.encode()


@pytest.fixture
def replaced_authorized_keys(stack: Stack) -> Iterator[Path]:
    """The key-option sshd's key file, restored after the test."""
    original = stack.keyoption_keys.read_text()
    yield stack.keyoption_keys
    stack.keyoption_keys.write_text(original)


def authorized_key_line(stack: Stack, *options: str) -> str:
    """The operator command exactly as the README shows it."""
    argv = [str(GATEKEEPER), "authorized-key", f"{stack.client_key}.pub", *options]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
    return result.stdout


def test_operator_command_line_with_name_is_recorded(stack: Stack, replaced_authorized_keys: Path) -> None:
    replaced_authorized_keys.write_text(
        authorized_key_line(stack, "--name", "e2e-profile", "--from", "127.0.0.1")
    )
    offset = audit_offset()
    result = stack.ssh("docker ps", port=stack.keyoption_port)
    assert result.returncode == 0, result.stderr
    decisions = [r for r in audit_records_since(offset) if r["event"] == "decision"]
    assert [r["profile"] for r in decisions] == ["e2e-profile"]


def test_operator_command_from_is_enforced(stack: Stack, replaced_authorized_keys: Path) -> None:
    """from= in our line is parsed by the real sshd: a key pinned elsewhere cannot log in from here."""
    replaced_authorized_keys.write_text(authorized_key_line(stack, "--from", "192.0.2.0/24"))
    result = stack.ssh("docker ps", port=stack.keyoption_port)
    assert result.returncode == 255
    assert b"Permission denied" in result.stderr
