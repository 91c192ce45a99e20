"""A compose up refused half-way names what its project keeps (issue 12, layout b).

Layouts (a) and (c): the CLI layer judges the whole `docker compose up` before anything runs;
a refusal leaves nothing. Layout (b): the proxy sees compose's requests one by one (the
project's networks and volumes, then each container's create, its network connects, its
start). Measured before the change: a privileged service refused at its create left the
project's three networks, its volume and the other service's container (created, never
started); a connect to a network the agent may not join (compose on this engine's API 1.41
creates on the first network, then connects the others) left the container and its network.
The refusal said nothing of them. The proxy removes none (it cannot tell which this command
made; a volume may hold an earlier up's data) but names each, with the command that removes
them (gatekeeper.proxy.leftovers).

Control in the same test: the proxy restarted with the naming off (the same objects are left,
the refusal names none of them); then `docker compose -p ... down` as the refusal says removes
the containers and networks, `down -v` the volumes.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from .stack import AGENT, AGENT_HOME, IMAGE, PROXY_ALONE, Stack, policy_extended, proxy_patched

pytestmark = pytest.mark.e2e

BASE = AGENT_HOME / "work" / "ai-rl"
PROJECT = "ai-rl"
FOREIGN = "ai-rl-foreign"  # root's network: not the agent's to join
NO_NAMING = "import gatekeeper.proxy.leftovers as leftovers\nleftovers.project_leftovers = lambda call: None"
TIMEOUT = 120

HALF_WAY = f"""name: {PROJECT}
services:
  app:
    image: {IMAGE}
    command: ["sleep", "600"]
    volumes: [data:/data]
    networks: [front, back]
  bad:
    image: {IMAGE}
    command: ["sleep", "600"]
    privileged: true
    depends_on: [app]
volumes:
  data: {{}}
networks:
  front: {{}}
  back: {{}}
"""

CONNECT = f"""name: {PROJECT}
services:
  app:
    image: {IMAGE}
    command: ["sleep", "600"]
    networks: [a-front, z-foreign]
networks:
  a-front: {{}}
  z-foreign:
    external: true
    name: {FOREIGN}
"""

CASES = {"half-way": (HALF_WAY, "flag-privileged", "compose-privileged"),
         "connect": (CONNECT, "foreign-network", "foreign-network")}


def leftovers(stack: Stack) -> list[str]:
    """Names of the project's containers, networks and volumes the engine has now."""
    label = f"label=com.docker.compose.project={PROJECT}"
    return [*stack.docker("ps", "-a", "--filter", label, "--format", "{{.Names}}").stdout.split(),
            *stack.docker("network", "ls", "--filter", label, "--format", "{{.Name}}").stdout.split(),
            *stack.docker("volume", "ls", "--filter", label, "--format", "{{.Name}}").stdout.split()]


def clean(stack: Stack) -> None:
    """The project's objects by its label (root's FOREIGN network, whose name matches, stays)."""
    label = f"label=com.docker.compose.project={PROJECT}"
    for kind, remove in (("container", ("rm", "-f")), ("network", ("network", "rm")),
                         ("volume", ("volume", "rm", "-f"))):
        listing = ("ps", "-aq") if kind == "container" else (kind, "ls", "-q")
        found = stack.docker(*listing, "--filter", label).stdout.split()
        if found:
            stack.docker(*remove, *found, check=False)


@pytest.fixture
def compose_dir(stack: Stack) -> Iterator[Path]:
    clean(stack)
    BASE.mkdir(parents=True, exist_ok=True)
    shutil.chown(BASE, AGENT, AGENT)
    stack.docker("network", "create", FOREIGN, check=False)
    yield BASE
    clean(stack)
    stack.docker("network", "rm", FOREIGN, check=False)
    shutil.rmtree(BASE, ignore_errors=True)


def up(stack: Stack, base: Path, text: str) -> tuple[int, str]:
    compose = base / "compose.yaml"
    compose.write_text(text)
    shutil.chown(compose, AGENT, AGENT)
    result = stack.ssh(f"docker compose -f {compose} up -d", timeout=TIMEOUT)
    return result.returncode, result.stderr.decode(errors="replace")


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_a_compose_up_refused_half_way_names_what_its_project_keeps(
        stack: Stack, compose_dir: Path, case: tuple[str, str, str]) -> None:
    text, api_rule, cli_rule = case
    if stack.mode != PROXY_ALONE:  # the CLI layer refuses the whole up first: nothing made
        status, said = up(stack, compose_dir, text)
        assert status == 77 and f"(rule {cli_rule})" in said, said
        assert leftovers(stack) == []
        return
    with proxy_patched(stack, NO_NAMING):  # control: the naming off, as before
        status, said = up(stack, compose_dir, text)
        left = leftovers(stack)
        assert status != 0 and f"(rule {api_rule})" in said, said
        assert left, "the refusal half-way left nothing: nothing to name"
        assert "keeps what it made" not in said and not any(name in said.split("Error")[-1] for name in left)
    clean(stack)
    status, said = up(stack, compose_dir, text)
    assert status != 0 and f"(rule {api_rule})" in said, said
    refusal = said.strip().splitlines()[-1]  # compose's last line: the refusal as the engine answered
    assert sorted(leftovers(stack)) == sorted(left), "the same objects are left with the naming on"
    assert f"compose project '{PROJECT}' keeps what it made before this refusal" in refusal, refusal
    missing = [name for name in left if name not in refusal]
    assert not missing, (missing, refusal)
    # What the refusal says to run removes them.
    down = stack.ssh(f"docker compose -p {PROJECT} down -v", timeout=TIMEOUT)
    assert down.returncode == 0, down.stderr
    assert leftovers(stack) == []
    print(f"\n{stack.mode}: left {sorted(left)}; the refusal: {refusal}")


VOLUME = "ai-rl-vol"
NO_VOLUME_REMOVAL = ("import gatekeeper.proxy.leftovers as leftovers\n"
                     "leftovers.removed_volumes = lambda engine, names: None")


def volume_left(stack: Stack) -> bool:
    return bool(stack.docker("volume", "ls", "-q", "--filter", f"name=^{VOLUME}$").stdout.split())


def over_budget(stack: Stack) -> tuple[int, str]:
    """[budgets] containers_per_hour = 1 spent by one create, then `docker run -v NEW:/d`: the
    proxy's decision makes the new volume, then the budget (charged after it) refuses the create."""
    stack.ssh(f"docker create --name {PROJECT}-spend {IMAGE} true", timeout=TIMEOUT)
    result = stack.ssh(f"docker run --rm --name {PROJECT}-over -v {VOLUME}:/d {IMAGE} true", timeout=TIMEOUT)
    return result.returncode, result.stderr.decode(errors="replace")


def test_a_create_refused_by_its_budget_removes_the_volume_made_for_it(stack: Stack) -> None:
    """Measured before: the volume the proxy made for the create stayed (layout b). Control: the
    proxy restarted with the removal off; the volume stays. Layouts a and c: the CLI layer counts
    the budget first (no create reaches the engine, no volume is made)."""
    stack.docker("volume", "rm", "-f", VOLUME, check=False)
    try:
        with policy_extended("\n[budgets]\ncontainers_per_hour = 1\n"):
            if stack.mode == PROXY_ALONE:
                with proxy_patched(stack, NO_VOLUME_REMOVAL):  # control: the removal off
                    status, said = over_budget(stack)
                    assert status != 0 and "(rule budget-containers)" in said, said
                    assert volume_left(stack), "the control made no volume: nothing to remove"
                stack.docker("volume", "rm", "-f", VOLUME, check=False)
                stack.remove_named(f"{PROJECT}-spend")
            status, said = over_budget(stack)
            assert status != 0 and "(rule budget-containers)" in said, said
            assert not volume_left(stack), "the volume made for the refused create was left behind"
            if stack.mode == PROXY_ALONE:
                assert f"volume {VOLUME}, made for this create, removed" in said, said
    finally:
        for name in ("spend", "over"):
            stack.remove_named(f"{PROJECT}-{name}")
        stack.docker("volume", "rm", "-f", VOLUME, check=False)
