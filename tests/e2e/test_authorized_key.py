"""`gatekeeper authorized-key` through the real sshd: the key-swap attack and its fix.

Attack: an IPv6 scope id in `--from` carrying a quote and a second key. The old
code printed it back verbatim, so sshd read the *attacker's* key from the line,
with only `restrict,from=` in front of it and no command=: in key-option mode a
shell as the agent (root, through the docker group). The control replays the old
line in the key-option sshd's key file and logs in with the other key; then the
command refuses the same input, and its real line admits only the right key.

Not three ways (tests/e2e/conftest.py THREE_WAY): the operator's command and sshd's reading
of its line are tested; the layout in front of the engine changes neither.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_authorized_key import old_line

from .stack import GATEKEEPER, Stack, make_keypair

pytestmark = pytest.mark.e2e


@pytest.fixture
def key_file(stack: Stack) -> Iterator[Path]:
    """The key-option sshd's key file (no ForceCommand there), restored after the test."""
    original = stack.keyoption_keys.read_text()
    yield stack.keyoption_keys
    stack.keyoption_keys.write_text(original)


def authorized_key(stack: Stack, *options: str) -> subprocess.CompletedProcess[str]:
    argv = [str(GATEKEEPER), "authorized-key", f"{stack.client_key}.pub", *options]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def public_key(path: Path) -> str:
    return " ".join(Path(f"{path}.pub").read_text().split()[:2])


def attacker_key(tmp_path: Path) -> Path:
    """A key whose base64 has no "/" (ipaddress reads "/" as the prefix length):
    about every other key qualifies, so the attacker just makes a few."""
    for attempt in range(64):
        key = make_keypair(tmp_path / f"other_ed25519_{attempt}", "attacker")
        if "/" not in public_key(key):
            return key
    raise AssertionError("no key without '/' in 64 tries")


def test_scope_id_cannot_swap_the_key(stack: Stack, key_file: Path, tmp_path: Path) -> None:
    other = attacker_key(tmp_path)
    crafted = f'127.0.0.1,fe80::%x" {public_key(other)} c'
    # Control: the line the old code printed for this input gives the other key a shell.
    key_file.write_text(old_line(public_key(stack.client_key), crafted) + "\n")
    shell = stack.ssh("id -un; echo no-gatekeeper-here", key=other, port=stack.keyoption_port)
    assert shell.stdout == b"ai-worker\nno-gatekeeper-here\n", shell.stderr
    # Now: refused, nothing printed.
    refused = authorized_key(stack, "--from", crafted)
    assert (refused.returncode, refused.stdout) == (64, "")
    assert "scope id" in refused.stderr
    # The honest line: the agent's key gets gatekeeper, the other key nothing.
    printed = authorized_key(stack, "--from", "127.0.0.1")
    assert printed.returncode == 0, printed.stderr
    key_file.write_text(printed.stdout)
    assert stack.ssh("docker images", port=stack.keyoption_port).returncode == 0
    assert stack.ssh("id", key=other, port=stack.keyoption_port).returncode == 255


def test_ipv4_mapped_from_is_refused_with_a_hint(stack: Stack, key_file: Path) -> None:
    # Control: sshd compares an IPv4 client as IPv4, so a mapped address never matches.
    key_file.write_text(old_line(public_key(stack.client_key), "::ffff:127.0.0.1") + "\n")
    locked_out = stack.ssh("docker images", port=stack.keyoption_port)
    assert locked_out.returncode == 255 and b"Permission denied" in locked_out.stderr
    refused = authorized_key(stack, "--from", "::ffff:127.0.0.1")
    assert (refused.returncode, refused.stdout) == (64, "")
    assert "dotted quad" in refused.stderr
