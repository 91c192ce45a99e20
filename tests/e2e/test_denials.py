"""Denied commands come back as exit 77 with exactly one line on stderr, through real ssh.

Attacks covered: a blocked subcommand (`docker exec`), a global option that
would pick another engine (`-H`), shell chaining (`; id`), a command that is
not docker at all, and the raw API tunnel `docker system dial-stdio`, which is
what `DOCKER_HOST=ssh://ai-worker@host docker ...` sends from a client machine.

Three ways (tests/e2e/conftest.py THREE_WAY). The one-line exit 77 is the CLI layer's;
in layout (b) the ForceCommand vets nothing, so there each attack must simply fail: no
shell runs (no `id` output), another engine's socket is not the agent's, exec is the
proxy's to refuse (its "api" record), and the raw API tunnel is only a pipe to the proxy,
which refuses a privileged container through it.
"""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest

from .stack import AGENT, IMAGE, PROXY_ALONE, Stack, audit_offset, audit_records_since, docker_client
from .test_attack_chains import assert_refused

pytestmark = pytest.mark.e2e

EX_NOPERM = 77

DENIED = {
    "blocked subcommand": "docker exec gk-e2e-ticker sh",
    "blocked by alias": "docker container exec gk-e2e-ticker sh",
    "other engine": "docker -H unix:///var/run/docker.sock ps",
    "shell chaining": "docker ps; id",
    "command substitution": "docker ps $(id)",
    "not docker": "id",
    "absolute docker path": "/usr/bin/docker ps",
    "raw api tunnel": "docker system dial-stdio",
}


@pytest.mark.usefixtures("ticker")  # exec's target: the agent's own running container
@pytest.mark.parametrize("command", DENIED.values(), ids=DENIED.keys())
def test_denied_command_exits_77_with_one_line(stack: Stack, command: str) -> None:
    since = audit_offset()
    result = stack.ssh(command)
    if stack.mode == PROXY_ALONE:  # nothing runs; exec reaches the proxy, which refuses it
        assert b"uid=" not in result.stdout + result.stderr, result
        if "dial-stdio" not in command:  # (b): a pipe to the proxy (test_docker_host_ssh_url_...)
            assert result.returncode != 0, result
        if "exec" in command:
            assert_refused(stack, result, since, rule="api-unvetted")
        return
    assert result.returncode == EX_NOPERM, (result.stdout, result.stderr)
    assert result.stdout == b""
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gatekeeper: denied"), lines


def test_login_without_command_prints_help_and_exits_77(stack: Stack) -> None:
    """An interactive login gets no shell: a short help text and EX_NOPERM."""
    result = stack.ssh(None, options=("-T",), stdin=b"id\n")
    assert result.returncode == (64 if stack.mode == PROXY_ALONE else EX_NOPERM)  # (b): only docker commands
    assert b"docker" in result.stderr
    assert b"uid=" not in result.stdout + result.stderr


def test_docker_host_ssh_url_is_refused_with_a_hint(stack: Stack, tmp_path: Path) -> None:
    """`DOCKER_HOST=ssh://ai-worker@host docker ps` on a client machine runs
    `ssh ... docker system dial-stdio`, a raw API pipe; it must be refused and say
    to use `ssh host docker ...` instead.
    """
    wrapper = tmp_path / "bin" / "ssh"
    wrapper.parent.mkdir()
    base = stack.ssh_argv(None)[1:-1]  # our client options, without host and command
    wrapper.write_text("#!/bin/sh\nexec /usr/bin/ssh " + " ".join(base) + ' "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    env = {
        "PATH": f"{wrapper.parent}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "DOCKER_CONFIG": str(tmp_path / "docker"),
        "DOCKER_HOST": f"ssh://{AGENT}@127.0.0.1:{stack.forcecommand_port}",
    }
    offset = audit_offset()
    if stack.mode == PROXY_ALONE:  # the tunnel is a pipe to the proxy's socket, which vets each request
        attack = [str(docker_client()), "run", "--rm", "--privileged", IMAGE, "true"]
        result = subprocess.run(attack, env=env, capture_output=True, timeout=60, check=False)
        assert_refused(stack, result, offset, rule="flag-privileged")
        return
    result = subprocess.run(
        [str(docker_client()), "ps"], env=env, capture_output=True, timeout=60, check=False
    )
    assert result.returncode != 0
    assert b"gatekeeper: denied" in result.stderr, result.stderr
    ours = result.stderr[result.stderr.index(b"gatekeeper: denied") :]
    assert b"ssh " in ours.split(b"allowed:")[0], ours  # the hint, not docker's own error text
    decisions = [r for r in audit_records_since(offset) if r["event"] == "decision"]
    assert decisions and all(r["decision"] == "deny" for r in decisions), decisions
    assert any("dial-stdio" in str(r["cmd"]) for r in decisions), decisions
