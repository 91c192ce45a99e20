"""Shared fixtures: a policy in a temp dir with a recording stub docker."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from gatekeeper.policy import Policy

REPO = Path(__file__).resolve().parent.parent

STUB = """#!/bin/sh
# Recording stub docker: writes argv (NUL-separated), cwd and environment, then exits.
out="{record}"
printf '%s\\0' "$@" > "$out.argv"
pwd > "$out.cwd"
env > "$out.env"
if [ -n "$STUB_STDIN" ]; then cat > "$out.stdin"; fi
exit "${{STUB_EXIT:-0}}"
"""


def pytest_configure(config: pytest.Config) -> None:
    """The embedded default's [names] prefix is "ai-" (gatekeeper.name_prefix). The unit tests of
    other rules name things `web`, `app`, `pgdata`, and compose fixtures are projects named after
    their directories: in this test process the embedded default is "" (the rule off), set before
    any test module builds its policies. The name rule's own tests give the prefix explicitly, and
    tests marked `names_default` get the real default back; gatekeeper run in a subprocess (the
    ForceCommand tests, the end-to-end stack) reads the real default."""
    from gatekeeper import policy

    policy.DEFAULTS["names"] = {"prefix": ""}


def names_default(policy: Policy) -> Policy:
    """`policy` with the embedded default's [names] prefix, for fixtures built before any marker applies."""
    from gatekeeper.name_prefix import DEFAULT_PREFIX

    policy.name_prefix = DEFAULT_PREFIX
    return policy


@pytest.fixture(autouse=True)
def names_default_when_marked(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.node.get_closest_marker("names_default"):
        from gatekeeper import name_prefix, policy

        monkeypatch.setitem(policy.DEFAULTS, "names", {"prefix": name_prefix.DEFAULT_PREFIX})


class Deployment:
    """A temp deployment: workdir, audit log, stub docker, policy file."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.workdir = root / "home"
        self.workdir.mkdir()
        (self.workdir / "work").mkdir()
        self.record = root / "record"
        self.audit = root / "audit.jsonl"
        self.audit.touch()
        self.docker = root / "docker"
        self.docker.write_text(STUB.format(record=self.record))
        self.docker.chmod(self.docker.stat().st_mode | stat.S_IXUSR)
        self.policy = root / "policy.toml"
        self.write_policy()

    def write_policy(self, extra: str = "") -> None:
        self.policy.write_text(
            f'[docker]\nbinary = "{self.docker}"\nworkdir = "{self.workdir}"\n'
            f'config_dir = "{self.root}/dockercfg"\nhost = "unix:///run/test.sock"\n'
            f'[audit]\npath = "{self.audit}"\nsyslog = false\n'
            f'[paths]\nallowed_roots = ["{self.workdir}"]\nstate_dir = "{self.root}/state"\n{extra}'
        )

    def argv(self) -> list[str]:
        return self.record.with_suffix(".argv").read_bytes().decode().split("\0")[:-1]

    def child_env(self) -> dict[str, str]:
        lines = self.record.with_suffix(".env").read_text().splitlines()
        return dict(line.split("=", 1) for line in lines if "=" in line)

    def audit_lines(self) -> list[str]:
        return self.audit.read_text().splitlines()


@pytest.fixture
def area_mounted_inert(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real tmp trees standing in for the agent's area, which the deployment mounts
    nosuid,nodev (tests/test_inert_mounts.py proves the refusal when it is not)."""
    monkeypatch.setattr("gatekeeper.worlds.mount_is_inert", lambda path: True)


@pytest.fixture
def deployment(tmp_path: Path) -> Deployment:
    return Deployment(tmp_path)


def gatekeeper_command() -> list[str]:
    """The ForceCommand exactly as sshd runs it: isolated interpreter, -m."""
    return [sys.executable, "-I", "-m", "gatekeeper"]


def pythonpath_free_env(**extra: str) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    env.update(extra)
    return env
