"""Files planted in the agent's home are never run or read on the way to gatekeeper.

The agent can write its home (a container with a bind mount runs as root), so
assume any file there is hostile. Each case plants one file the way a
successful attack would, then runs an allowed command and looks for proof
that the payload ran: a marker file, loader debug output, or changed docker
output. The second half of each attack chain, the write itself, is in
test_attack_chains.py.

Not three ways (tests/e2e/conftest.py THREE_WAY): what stops these payloads is sshd, PAM,
the account's shell and the ForceCommand's own start (an isolated interpreter, a
DOCKER_CONFIG the agent cannot write), not the layer that vets docker, so the layout in
front of the engine changes nothing; the module runs in the default layout. Layout (b)
assumes a shell as the agent already (its unvetted ForceCommand reads ~/.docker like one),
so code run as the agent is no escalation there. The writes themselves run three ways in
test_attack_chains.py.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from .stack import AGENT, Stack, make_keypair

pytestmark = pytest.mark.e2e

SHELL_PAYLOAD = "touch {marker}\n"
PYTHON_PAYLOAD = "import pathlib; pathlib.Path('{marker}').touch()\n"
# docker's plugin protocol: answer the metadata probe, otherwise leave the marker.
PLUGIN_PAYLOAD = """#!/bin/sh
if [ "$1" = docker-cli-plugin-metadata ]; then
  echo '{{"SchemaVersion":"0.1.0","Vendor":"evil","Version":"v9.9.9"}}'
  exit 0
fi
touch {marker}
"""

# relative path in the home -> (payload template, the allowed command that would run it, why).
PLANTED = {
    ".ssh/rc": (
        SHELL_PAYLOAD,
        "docker ps",
        "sshd runs ~/.ssh/rc before a key's command= (PermitUserRC, restrict)",
    ),
    ".profile": (SHELL_PAYLOAD, "docker ps", "a login shell reads it; sshd's `sh -c` must not be one"),
    ".bashrc": (
        SHELL_PAYLOAD,
        "docker ps",
        "bash -c reads it when started by sshd; the login shell is /bin/sh",
    ),
    ".shrc": (SHELL_PAYLOAD, "docker ps", "dash reads $ENV only when interactive"),
    "gatekeeper/__init__.py": (
        PYTHON_PAYLOAD,
        "docker ps",
        "`python -m` puts the cwd (the home) on sys.path without -I",
    ),
    "gatekeeper/__main__.py": (PYTHON_PAYLOAD, "docker ps", "same, for the module run by -m"),
    ".local/lib/python3.11/site-packages/usercustomize.py": (
        PYTHON_PAYLOAD,
        "docker ps",
        "user site, off with -I",
    ),
    ".local/lib/python3.11/site-packages/gk.pth": (
        "import os; os.system('touch {marker}')\n",
        "docker ps",
        "pth",
    ),
    ".docker/cli-plugins/docker-compose": (
        PLUGIN_PAYLOAD,
        "docker compose version",
        "~/.docker/cli-plugins first",
    ),
    ".docker/cli-plugins/docker-buildx": (
        PLUGIN_PAYLOAD,
        "docker build --help",
        "build goes to the buildx plugin",
    ),
}


def plant(home: Path, relative: str, text: str) -> Path:
    path = home / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    for part in [path, *path.parents]:
        if part == home:
            break
        shutil.chown(part, AGENT, AGENT)
    return path


@pytest.mark.parametrize("relative", PLANTED.keys())
def test_planted_file_does_not_run(stack: Stack, restored_home: Path, markers: Path, relative: str) -> None:
    """Under ForceCommand (bare key) and under command= (restrict key) alike."""
    template, command, _why = PLANTED[relative]
    marker = markers / relative.replace("/", "_")
    plant(restored_home, relative, template.format(marker=marker))
    for port in (stack.forcecommand_port, stack.keyoption_port):
        stack.ssh(command, port=port)
        assert not marker.exists(), f"{relative} ran (port {port})"


def test_planted_docker_config_is_ignored(stack: Stack, restored_home: Path) -> None:
    """~/.docker/config.json could set psFormat, credential helpers, cliPluginsExtraDirs, proxies."""
    plant(restored_home, ".docker/config.json", '{"psFormat": "PLANTED {{.ID}}"}\n')
    result = stack.ssh("docker ps")
    assert result.returncode == 0, result.stderr
    assert b"PLANTED" not in result.stdout and b"CONTAINER ID" in result.stdout


def test_planted_ssh_environment_is_ignored(stack: Stack, restored_home: Path) -> None:
    """~/.ssh/environment (PermitUserEnvironment) would set LD_PRELOAD for the agent's shell."""
    plant(restored_home, ".ssh/environment", "LD_DEBUG=libs\n")
    for port in (stack.forcecommand_port, stack.keyoption_port):
        result = stack.ssh("docker ps", port=port)
        assert b"find library" not in result.stderr, result.stderr[:300]


def test_planted_pam_environment_is_ignored(stack: Stack, restored_home: Path) -> None:
    """Debian's pam_env `user_readenv=1` reads ~/.pam_environment into the session:
    LD_PRELOAD there runs the agent's code in /bin/sh before gatekeeper starts.
    The README's deployment switches it off; this proves it is off.
    """
    plant(restored_home, ".pam_environment", "LD_DEBUG DEFAULT=libs\n")
    for port in (stack.forcecommand_port, stack.keyoption_port):
        result = stack.ssh("docker ps", port=port)
        assert b"find library" not in result.stderr, result.stderr[:300]


def test_planted_authorized_key_is_ignored(stack: Stack, restored_home: Path, tmp_path: Path) -> None:
    """A key added to ~/.ssh/authorized_keys would log in without command= restrictions."""
    key = make_keypair(tmp_path / "planted", "planted")
    plant(restored_home, ".ssh/authorized_keys", Path(f"{key}.pub").read_text())
    for port in (stack.forcecommand_port, stack.keyoption_port):
        result = stack.ssh("docker ps", key=key, port=port)
        assert result.returncode == 255 and b"Permission denied" in result.stderr


def test_home_is_not_the_login_shells_playground(stack: Stack) -> None:
    """The account's shell must be /bin/sh (dash): bash or zsh would read rc files the agent writes."""
    shell = subprocess.run(["getent", "passwd", AGENT], capture_output=True, text=True, check=True)
    assert shell.stdout.strip().rsplit(":", 1)[1] == "/bin/sh"
    assert Path("/bin/sh").resolve().name == "dash"
