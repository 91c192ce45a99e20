"""[scope] ps = "owned" with the CLI layer alone (layout c): no listing shows the operator's containers.

Under ps = "owned" `docker ps` gets the owner filters, and behind the proxy every list of
containers is filtered; but compose lists from the engine itself: `docker compose ls -a`
named every project on the engine (the operator's, with its compose file's host path),
`docker compose ps` with a file of the agent's naming the operator's project listed its
containers, and `docker system df -v` every container's name and command. With the scope
owned those lists now come from gatekeeper's stand-in (gatekeeper.redacting_engine), which
leaves out the containers (and under images = "owned" the images) that are not the agent's.

Control, in the same test: with [scope] ps = "all" (the default: listings of everything by
design) the agent's same commands show the operator's project, as root's do on the bare engine.

Layout (c) only (tests/e2e/conftest.py THREE_WAY): behind the proxy its container lists are
already filtered, which would hide a hole in the CLI layer.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .stack import AGENT, AGENT_HOME, CLI_ALONE, IMAGE, Stack, policy_extended, switch_mode, write_file

pytestmark = pytest.mark.e2e

PROJECT = "gk-e2e-owned-op"  # the operator's compose project
MINE = "ai-e2e-owned-mine"  # the agent's container
AGENTS_FILE = AGENT_HOME / "work" / "owned-listings" / "compose.yaml"
OWNED = '\n[scope]\nps = "owned"\nimages = "owned"\n'
LISTINGS = [
    "docker compose ls -a",
    "docker compose ls -a --format json",
    f"docker compose -f {AGENTS_FILE} ps -a",
    f"docker compose -f {AGENTS_FILE} ps -a --format json",
    f"docker compose -f {AGENTS_FILE} images",
    "docker system df -v",
    "docker system df -v --format '{{json .}}'",
]


@pytest.fixture(scope="module")
def stack(deployed_stack: Stack) -> Stack:
    switch_mode(deployed_stack, CLI_ALONE)
    return deployed_stack


@pytest.fixture(scope="module")
def operators_project(stack: Stack) -> Iterator[None]:
    operators_file = stack.workdir / "owned-listings-operator.yaml"
    service = f"  db:\n    image: {IMAGE}\n    command: [sleep, '600']\n"
    operators_file.write_text(f"name: {PROJECT}\nservices:\n{service}")
    stack.docker("rm", "-f", MINE, check=False)
    stack.docker("compose", "-f", str(operators_file), "up", "-d", check=True)
    write_file(AGENTS_FILE, f"name: {PROJECT}\nservices:\n{service}", mode=0o644, owner=AGENT, group=AGENT)
    started = stack.ssh(f"docker run -d --name {MINE} {IMAGE} sleep 600")
    assert started.returncode == 0, started.stderr
    yield
    stack.docker("rm", "-f", MINE, check=False)
    stack.docker("compose", "-f", str(operators_file), "down", check=False)
    operators_file.unlink(missing_ok=True)
    AGENTS_FILE.unlink(missing_ok=True)
    AGENTS_FILE.parent.rmdir()


@pytest.mark.parametrize("command", LISTINGS)
def test_owned_scope_lists_only_the_agents_containers(
        stack: Stack, operators_project: None, command: str) -> None:
    control = stack.ssh(command, timeout=90)  # [scope] ps = "all": everything is listed, by design
    assert control.returncode == 0, control.stderr
    assert PROJECT in control.stdout.decode(errors="replace")
    with policy_extended(OWNED):
        result = stack.ssh(command, timeout=90)
    assert result.returncode == 0, result.stderr
    shown = result.stdout.decode(errors="replace")
    assert PROJECT not in shown, shown
    if "system df" in command:
        assert MINE in shown, shown  # the agent's own container is still listed
