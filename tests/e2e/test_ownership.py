"""Ownership rails against the real engine, through real ssh (gatekeeper.vetting.ownership).

* The agent's `docker run` carries gatekeeper.owner=default on the container the
  engine made (root checks, bypassing gatekeeper), and the agent can stop,
  read the logs of and remove it, by name or by ID prefix.
* A container root made directly on the engine (no owner label): the agent's
  stop, rm -f, logs and kill are refused with exit 77 and the container still runs.
* Forging the label: `--label gatekeeper.owner=...` is refused.
* [protect]: a container of the agent's own, protected by a name pattern or a
  label, cannot be stopped or removed, and `container prune` refuses while an
  owned stopped container matches a protected name.
* Prune: `docker container prune -f` removes the agent's stopped container and
  leaves root's stopped container alone; `system prune` is refused.
* compose: the services' containers and the project network carry the owner
  label, and `compose down` works on the agent's own project.

Three ways (tests/e2e/conftest.py THREE_WAY): in layout (b) the proxy refuses (its 403 as
docker prints it and its "api" record, same rule; `system prune` is refused at the build cache,
api-unvetted), and the foreign containers stay as they were.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .stack import APP_DIR, IMAGE, PROXY_ALONE, Stack, audit_offset, policy_extended
from .test_attack_chains import assert_refused

pytestmark = pytest.mark.e2e

OWNER = "gatekeeper.owner"
PROTECT = """
[protect]
containers = ["ai-e2e-own-keep*"]
labels = ["gk-e2e-vital=yes"]
"""
# The agent names its containers within the [names] prefix (the default "ai-"); root's keep gk-.
MINE = "ai-e2e-own-mine"
KEEP = "ai-e2e-own-keep"
VITAL = "ai-e2e-own-vital"
STOPPED = "ai-e2e-own-stopped"
FOREIGN = "gk-e2e-own-foreign"
NAMES = (MINE, KEEP, FOREIGN, VITAL, STOPPED, "gk-e2e-own-foreign-stopped")


@pytest.fixture(scope="module")
def protect_policy(stack: Stack) -> Iterator[None]:
    """The stack's policy with [protect] added for this module, then put back."""
    with policy_extended(PROTECT):
        yield


@pytest.fixture
def clean(stack: Stack, protect_policy: None) -> Iterator[None]:
    for name in NAMES:
        stack.docker("rm", "-f", name, check=False)
    yield
    for name in NAMES:
        stack.docker("rm", "-f", name, check=False)


def agent_runs(stack: Stack, name: str, *extra: str) -> None:
    result = stack.ssh(f"docker run -d --name {name} {' '.join(extra)} {IMAGE} sleep 300")
    assert result.returncode == 0, result.stderr


def label_of(stack: Stack, name: str, key: str = OWNER) -> str:
    return stack.docker("inspect", "--format", f'{{{{index .Config.Labels "{key}"}}}}', name).stdout.strip()


def exists(stack: Stack, name: str) -> bool:
    return name in stack.docker("ps", "-a", "--format", "{{.Names}}").stdout.split()


def running(stack: Stack, name: str) -> bool:
    return name in stack.docker("ps", "--format", "{{.Names}}").stdout.split()


def denied(stack: Stack, command: str, rule: str) -> str:
    """Refused by the layout's first layer with `rule` (in layout (b) by the proxy)."""
    since = audit_offset()
    result = stack.ssh(command)
    assert_refused(stack, result, since, rule=rule)
    return result.stderr.decode()


def test_agent_manages_its_own_container(stack: Stack, clean: None) -> None:
    agent_runs(stack, MINE)
    assert label_of(stack, MINE) == "default"
    assert stack.ssh(f"docker logs {MINE}").returncode == 0
    ident = stack.docker("inspect", "--format", "{{.Id}}", MINE).stdout.strip()
    stop = stack.ssh(f"docker stop -t 1 {ident[:12]}")
    assert stop.returncode == 0, stop.stderr
    assert not running(stack, MINE)
    rm = stack.ssh(f"docker rm /{MINE}")
    assert rm.returncode == 0, rm.stderr
    assert not exists(stack, MINE)


def test_root_made_container_is_out_of_reach(stack: Stack, clean: None) -> None:
    stack.docker("run", "-d", "--name", FOREIGN, IMAGE, "sleep", "300", check=True)
    ident = stack.docker("inspect", "--format", "{{.Id}}", FOREIGN).stdout.strip()
    for command in (f"docker stop {FOREIGN}", f"docker rm -f {FOREIGN}", f"docker logs {FOREIGN}",
                    f"docker rm -f {ident[:8]}", f"docker restart /{FOREIGN}"):
        line = denied(stack, command, "scope-owned")
        assert "not created through gatekeeper" in line
    agent_runs(stack, MINE)
    line = denied(stack, f"docker rm -f {MINE} {FOREIGN}", "scope-owned")  # one foreign target spoils all
    assert FOREIGN in line
    assert running(stack, FOREIGN)
    # (b): docker's CLI removes one container per request, so its own goes and only FOREIGN's is refused
    assert running(stack, MINE) is (stack.mode != PROXY_ALONE)


def test_owner_label_cannot_be_forged(stack: Stack, clean: None) -> None:
    denied(stack, f"docker run -d --name {MINE} --label gatekeeper.owner=root {IMAGE} true", "reserved-label")
    assert not exists(stack, MINE)


def test_protected_containers_survive_their_owner(stack: Stack, clean: None) -> None:
    agent_runs(stack, KEEP)
    agent_runs(stack, VITAL, "--label", "gk-e2e-vital=yes")
    assert label_of(stack, KEEP) == "default"  # owned, and still protected
    denied(stack, f"docker rm -f {KEEP}", "protected")
    denied(stack, f"docker stop {KEEP}", "protected")
    denied(stack, f"docker rm -f {VITAL}", "protected")
    assert running(stack, KEEP) and running(stack, VITAL)
    stack.docker("stop", "-t", "1", KEEP, check=True)
    denied(stack, "docker container prune -f", "protected")  # it could remove KEEP
    assert exists(stack, KEEP)


def test_prune_leaves_foreign_containers(stack: Stack, clean: None) -> None:
    stack.docker("create", "--name", "gk-e2e-own-foreign-stopped", IMAGE, "true", check=True)
    created = stack.ssh(f"docker create --name {STOPPED} {IMAGE} true")
    assert created.returncode == 0, created.stderr
    prune = stack.ssh("docker container prune -f")
    assert prune.returncode == 0, prune.stderr
    assert not exists(stack, STOPPED)
    assert exists(stack, "gk-e2e-own-foreign-stopped")
    # the proxy sees system prune as the prunes it is made of; the build cache's is refused
    rule = "api-unvetted" if stack.mode == PROXY_ALONE else "prune-unscoped"
    line = denied(stack, "docker system prune -f", rule)
    assert "build cache" in line


def test_compose_project_is_labelled_and_managed(stack: Stack, clean: None) -> None:
    compose = f"docker compose -f {APP_DIR}/compose.yaml -p ai-app"  # not `app`, its directory: the prefix
    up = stack.ssh(f"{compose} up -d", timeout=120)
    try:
        assert up.returncode == 0, up.stderr
        assert label_of(stack, "ai-app-ticker-1") == "default"
        network = stack.docker("network", "inspect", "--format",
                               f'{{{{index .Labels "{OWNER}"}}}}', "ai-app_default").stdout.strip()
        assert network == "default"
    finally:
        down = stack.ssh(f"{compose} down", timeout=120)
    assert down.returncode == 0, down.stderr
    assert not exists(stack, "ai-app-ticker-1")
