"""The three layouts of issue 12 item 3, each through the real sshd, proxy and engine.

Runs in every layout (tests/e2e/conftest.py, THREE_WAY):
  (a) cli+proxy:   gatekeeper's ForceCommand, docker through `gatekeeper proxy` (the deployment);
  (b) proxy-alone: a ForceCommand that vets nothing (tests/e2e/unvetted_forcecommand.py) + proxy;
  (c) cli-alone:   gatekeeper's ForceCommand on the engine's socket, the agent in group docker.

* The agent's account reaches the engine's own socket only in (c) (control), and the
  proxy's socket in every layout; `gatekeeper doctor` warns exactly in (c).
* An everyday command works in all three, an engine-level escape is refused in all three.
* The attack corpus itself (test_attack_chains.py and the other THREE_WAY modules of
  tests/e2e/conftest.py) runs in all three layouts on its own.
* The one exception of (b): the docker CLI, unvetted, writes files the agent names
  client-side as the agent (`--cidfile`, `--iidfile`), dot files of the home included.
  They are the agent's own, inert: no root owns them, no set-id bit, and nothing runs them
  at the next login on either sshd. In (a) and (c) the CLI layer refuses to write them.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import subprocess
from pathlib import Path

import pytest

from .stack import (
    AGENT,
    AGENT_HOME,
    AS_AGENT,
    CLI_ALONE,
    DOCKER_SOCKET,
    GATEKEEPER,
    IMAGE,
    PROXY_ALONE,
    PROXY_SOCKET,
    Stack,
)
from .test_planted_home_files import SHELL_PAYLOAD

pytestmark = pytest.mark.e2e

CONNECT = "import socket, sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1])"


def agent_connects(path: Path) -> bool:
    """Whether a process of the agent's account (its login groups) can connect to `path`."""
    probe = subprocess.run([*AS_AGENT, "/usr/bin/python3", "-c", CONNECT, str(path)],
                           capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    return probe.returncode == 0


def test_the_engine_socket_is_the_agents_only_in_the_old_layout(stack: Stack) -> None:
    assert agent_connects(PROXY_SOCKET)
    assert agent_connects(DOCKER_SOCKET) == (stack.mode == CLI_ALONE)


def test_doctor_warns_exactly_when_the_engine_socket_is_reachable(stack: Stack) -> None:
    config = stack.workdir / "sshd-forcecommand.conf"
    argv = [str(GATEKEEPER), "doctor", "--json", "--sshd-config", str(config)]
    report = json.loads(subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False).stdout)
    access = [check for check in report["checks"] if check["name"] == "engine access"]
    assert [check["status"] for check in access] == ["warn" if stack.mode == CLI_ALONE else "ok"], access


def test_everyday_command_works(stack: Stack) -> None:
    result = stack.ssh(f"docker run --rm {IMAGE} echo hello")
    assert (result.returncode, result.stdout) == (0, b"hello\n"), result.stderr


def test_privileged_container_is_refused(stack: Stack) -> None:
    result = stack.ssh(f"docker run --rm --privileged {IMAGE} true")
    assert stack.refused(result), result.stderr
    if stack.mode == PROXY_ALONE:
        assert b"gatekeeper: denied" in result.stderr  # the proxy's 403, printed by the docker CLI


# The CLI writes these itself, as the agent, after the engine answered: dot files of the home
# that a login could read if anything on the login path read the home.
CLIENT_WRITES = {
    "run --cidfile": f"docker run --rm --cidfile {AGENT_HOME}/.bash_login {IMAGE} true",
    "build --iidfile": f"docker build -q --iidfile {AGENT_HOME}/.zshenv {AGENT_HOME}/work/gk-iid",
}


@pytest.mark.parametrize("command", CLIENT_WRITES.values(), ids=CLIENT_WRITES.keys())
def test_client_side_writes_are_inert(stack: Stack, restored_home: Path, markers: Path, command: str) -> None:
    context = AGENT_HOME / "work" / "gk-iid"
    context.mkdir(exist_ok=True)
    (context / "Dockerfile").write_text(f"FROM {IMAGE}\n")
    os.chown(context, *agent_ids())
    written = AGENT_HOME / command.split(f"{AGENT_HOME}/")[1].split(maxsplit=1)[0]
    result = stack.ssh(command, timeout=120)
    if stack.mode != PROXY_ALONE:
        assert stack.refused(result), result.stderr
        assert not written.exists()
        return
    assert result.returncode == 0, result.stderr
    info = written.stat()
    assert (info.st_uid, info.st_gid) == agent_ids() and not info.st_mode & 0o6000
    # Even a payload there (the agent may write its own home in (b)) runs at no login.
    written.write_text(SHELL_PAYLOAD.format(marker=markers / written.name, home=AGENT_HOME))
    for port in (stack.gatekeeper_port, stack.keyoption_port, stack.unvetted_port):
        again = stack.ssh("docker ps", port=port)
        assert again.returncode == 0, again.stderr
    assert list(markers.iterdir()) == []
    stack.docker("image", "prune", "-f")


def agent_ids() -> tuple[int, int]:
    entry = pwd.getpwnam(AGENT)
    return entry.pw_uid, entry.pw_gid


def test_proxy_socket_is_root_agent_0660(stack: Stack) -> None:
    info = PROXY_SOCKET.stat()
    assert (info.st_uid, grp.getgrgid(info.st_gid).gr_name, info.st_mode & 0o777) == (0, AGENT, 0o660)
    assert PROXY_SOCKET.parent.stat().st_uid == 0 and PROXY_SOCKET.parent.stat().st_mode & 0o777 == 0o755
