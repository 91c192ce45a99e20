"""Attack chains through allowed commands only, judged by the real world afterwards.

Skeleton (issue 4, item 4): the chains below run now; the vetting issue adds
the rest (CHAINS_FOR_LATER). Each chain uses only commands the agent may send,
tries to get code run outside gatekeeper or host files read or written, and is
judged by what the engine and the file system look like afterwards, not by our
exit codes: every container and volume the engine holds is inspected, and the
home's dot files are compared before and after.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from .stack import AGENT_HOME, IMAGE, Stack, make_keypair

pytestmark = pytest.mark.e2e

# Still to write once vetting lands (each: the write through an allowed command,
# then reconnect and run an allowed command, then judge the world):
CHAINS_FOR_LATER = (
    "~/.ssh/rc through a bind mount of the home",
    "~/.bashrc and ~/.profile through a bind mount",
    "~/.docker/cli-plugins/docker-ps and ~/.docker/config.json through a bind mount",
    "~/.local/lib/python3.11/site-packages/usercustomize.py through a bind mount",
    "~/gatekeeper/__init__.py (cwd shadowing for -m) through a bind mount",
    "compose file with privileged: true / pid: host / volumes: /:/host",
    "compose file whose build context or env_file points outside the allowed root",
    "docker build with a Dockerfile that COPYs from outside the allowed root",
    "volume create with driver options type=none,o=bind,device=/",
)


def dotfiles_digest(home: Path = AGENT_HOME) -> dict[str, str]:
    """sha256 of every dot file and dot directory entry under the home (not following links)."""
    digest = {}
    for path in sorted(home.rglob(".*")):
        relative = str(path.relative_to(home))
        if path.is_symlink():
            digest[relative] = "link:" + str(path.readlink())
        elif path.is_file():
            digest[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            digest[relative] = "dir"
    return digest


def engine_findings(stack: Stack) -> list[str]:
    """Everything dangerous about the containers and volumes the engine actually holds."""
    findings = []
    ids = stack.docker("ps", "-aq").stdout.split()
    for container in json.loads(stack.docker("inspect", *ids).stdout) if ids else []:
        findings += container_findings(container)
    for volume in stack.docker("volume", "ls", "-q").stdout.split():
        options = json.loads(stack.docker("volume", "inspect", volume).stdout)[0].get("Options") or {}
        if options:
            findings.append(f"volume {volume} has driver options {options}")
    return findings


def container_findings(container: dict[str, object]) -> list[str]:
    host = container["HostConfig"]
    assert isinstance(host, dict)
    name = container["Name"]
    checks = {
        "privileged": host.get("Privileged"),
        "capabilities added": host.get("CapAdd"),
        "devices": host.get("Devices"),
        "host network": host.get("NetworkMode") == "host",
        "host pid": host.get("PidMode") == "host",
        "host ipc": host.get("IpcMode") == "host",
        "host uts": host.get("UTSMode") == "host",
        "host user namespace": host.get("UsernsMode") == "host",
    }
    findings = [f"{name}: {what}" for what, bad in checks.items() if bad]
    for mount in container.get("Mounts") or []:  # type: ignore[attr-defined]
        source = str(mount.get("Source", ""))
        if mount.get("Type") == "bind" and not source.startswith(f"{AGENT_HOME}/"):
            findings.append(f"{name}: bind mount of {source}")
    return findings


@pytest.fixture
def judged_world(stack: Stack, restored_home: Path) -> Iterator[None]:
    """Snapshot the home's dot files; afterwards they and the engine must be as before."""
    before = dotfiles_digest()
    yield
    assert dotfiles_digest() == before, "the home's dot files changed"
    assert engine_findings(stack) == []
    stack.docker("container", "prune", "-f")


@pytest.mark.usefixtures("judged_world")
def test_pam_environment_through_bind_mount(stack: Stack) -> None:
    """Write ~/.pam_environment from a container, then log in again: LD_* must not reach /bin/sh."""
    write = (
        f"docker run --rm -v {AGENT_HOME}:/h {IMAGE} sh -c 'echo LD_DEBUG DEFAULT=libs > /h/.pam_environment'"
    )
    stack.ssh(write)
    result = stack.ssh("docker ps")
    assert b"find library" not in result.stderr


@pytest.mark.usefixtures("judged_world")
def test_authorized_keys_through_bind_mount(stack: Stack, tmp_path: Path) -> None:
    """Add a key to ~/.ssh/authorized_keys from a container, then log in with it."""
    key = make_keypair(tmp_path / "planted", "planted")
    public = Path(f"{key}.pub").read_text().strip()
    script = f'mkdir -p /h/.ssh; echo "{public}" >> /h/.ssh/authorized_keys'
    stack.ssh(f"docker run --rm -v {AGENT_HOME}:/h {IMAGE} sh -c '{script}'")
    result = stack.ssh("docker ps", key=key)
    assert result.returncode == 255 and b"Permission denied" in result.stderr


@pytest.mark.usefixtures("judged_world")
def test_symlink_under_allowed_root_to_host_root(stack: Stack, restored_home: Path) -> None:
    """A symlink in the work area that points at / must not turn into a bind mount of /."""
    link = restored_home / "work" / "escape"
    link.symlink_to("/")
    result = stack.ssh(f"docker run --rm -v {link}/etc:/x {IMAGE} cat /x/shadow")
    assert b"root:" not in result.stdout


# No --rm: if one got through, the container stays for judged_world to inspect.
DIRECT_ESCAPES = {
    "privileged": "--privileged",
    "host pid": "--pid=host",
    "host network": "--network=host",
    "host root": "-v /:/host",
    "engine socket": "-v /run/gk-e2e/docker.sock:/s",
    "device": "--device /dev/kmsg",
    "cap add": "--cap-add SYS_ADMIN",
}


@pytest.mark.usefixtures("judged_world")
@pytest.mark.parametrize("flags", DIRECT_ESCAPES.values(), ids=DIRECT_ESCAPES.keys())
def test_direct_escape_is_denied(stack: Stack, flags: str) -> None:
    """The one-step versions: each must be refused before the engine sees it."""
    result = stack.ssh(f"docker run --name gk-e2e-escape {flags} {IMAGE} true")
    assert result.returncode == 77, result.stderr
