"""Environment variables sent by the client change nothing.

Debian's sshd_config has a global `AcceptEnv LANG LC_*` that a Match block
cannot revoke; the snippet's SetEnv overrides LANG and LC_ALL, and gatekeeper
builds the docker child's environment from the policy alone. Variables outside
AcceptEnv (DOCKER_HOST, PYTHONPATH, LD_PRELOAD) are dropped by sshd. Attacks:
point docker at another engine, make python import the agent's code, make the
loader run it.

Not three ways (tests/e2e/conftest.py THREE_WAY): sshd and the ForceCommand's own
environment are tested, not the layer in front of the engine, so the layout changes nothing;
layout (b) assumes a shell as the agent anyway.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .stack import Stack

pytestmark = pytest.mark.e2e

EVIL_MODULE = "import pathlib; pathlib.Path('{marker}').touch()\n"


@pytest.fixture
def evil_pythonpath(tmp_path: Path, markers: Path) -> Path:
    """A directory that would shadow the gatekeeper package if python searched it."""
    package = tmp_path / "gatekeeper"
    package.mkdir()
    (package / "__init__.py").write_text(EVIL_MODULE.format(marker=markers / "pythonpath"))
    (package / "__main__.py").write_text(EVIL_MODULE.format(marker=markers / "pythonpath"))
    for path in (tmp_path, package):
        path.chmod(0o755)
    return tmp_path


def test_sent_environment_changes_nothing(stack: Stack, evil_pythonpath: Path, markers: Path) -> None:
    baseline = stack.ssh("docker ps --format '{{.Image}}'")
    env = {
        "PATH": "/usr/bin:/bin",
        "DOCKER_HOST": "tcp://127.0.0.1:9",
        "PYTHONPATH": str(evil_pythonpath),
        "LC_ALL": "POSIX",
        "LC_DOCKER_HOST": "tcp://127.0.0.1:9",
        "LANG": "tr_TR.ISO-8859-9",
    }
    sendenv = [arg for name in env if name != "PATH" for arg in ("-o", f"SendEnv={name}")]
    sent = stack.ssh("docker ps --format '{{.Image}}'", options=sendenv, env=env)
    assert (sent.returncode, sent.stdout) == (0, baseline.stdout), sent.stderr
    assert list(markers.iterdir()) == []


def test_setenv_changes_nothing(stack: Stack, evil_pythonpath: Path, markers: Path) -> None:
    baseline = stack.ssh("docker ps --format '{{.Image}}'")
    settings = {
        "DOCKER_HOST": "tcp://127.0.0.1:9",
        "DOCKER_CONTEXT": "evil",
        "PYTHONPATH": str(evil_pythonpath),
        "PYTHONSTARTUP": str(evil_pythonpath / "gatekeeper" / "__init__.py"),
        "LD_DEBUG": "libs",
        "LC_ALL": "C",
        "ENV": str(evil_pythonpath / "gatekeeper" / "__init__.py"),
    }
    options = [arg for name, value in settings.items() for arg in ("-o", f"SetEnv={name}={value}")]
    sent = stack.ssh("docker ps --format '{{.Image}}'", options=options)
    assert (sent.returncode, sent.stdout, sent.stderr) == (0, baseline.stdout, b"")
    assert list(markers.iterdir()) == []


def test_docker_child_environment_holds_nothing_from_the_session(stack: Stack) -> None:
    """`docker run -e NAME` copies NAME from the docker client's own environment into the
    container: a window onto what gatekeeper handed the child. Nothing the client sent
    and nothing sshd set for the session (SSH_*, LC_* extras) may be there.
    """
    names = (
        "LC_GK_PROBE",
        "SSH_CONNECTION",
        "SSH_USER_AUTH",
        "SSH_ORIGINAL_COMMAND",
        "PYTHONPATH",
        "LD_PRELOAD",
    )
    flags = " ".join(f"-e {name}" for name in names)
    env = {"PATH": "/usr/bin:/bin", "LC_GK_PROBE": "leaked"}
    result = stack.ssh(
        f"docker run --rm {flags} gk-busybox env", options=("-o", "SendEnv=LC_GK_PROBE"), env=env
    )
    if result.returncode == 77:
        return  # the policy refuses environment pass-through altogether: nothing can leak
    assert result.returncode == 0, result.stderr
    leaked = [line for line in result.stdout.decode().splitlines() if line.split("=", 1)[0] in names]
    assert leaked == []
