"""Addresses the agent picks, through real ssh and the real engine (issue 18 item 1).

* Route attack: a compose network with an `ipam` subnet (198.51.100.0/24, a
  documentation range, on our private engine's own bridge) and a service at a
  fixed `ipv4_address`. Run by root directly (the control, no gatekeeper) the
  engine adds a host route for the subnet to a new bridge; through gatekeeper it
  is refused and `ip route` / `ip -6 route` are unchanged.
* MAC clone: root starts a victim container on the default bridge; a second
  container with `--mac-address` set to the victim's (the control, root) shows
  the same address on its interface on the bridge; through gatekeeper the compose
  `mac_address`, the run flag and the long `--network` syntax are refused and
  no second interface with the victim's MAC appears.

No traffic is sent anywhere: the checks read routes and interface addresses.
Three ways (tests/e2e/conftest.py THREE_WAY): in layout (b) the proxy refuses (its 403 and
"api" record) and routes and interfaces stay the same.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .stack import AGENT, AGENT_HOME, IMAGE, PROXY_ALONE, Stack, audit_offset, write_file
from .test_attack_chains import assert_refused

pytestmark = pytest.mark.e2e

SUBNET = "198.51.100.0/24"
PROJECT_DIR = AGENT_HOME / "work" / "ai-netgrab"  # its compose project: the [names] prefix
ROUTE_ATTACK = f"""\
services:
  grab:
    image: {IMAGE}
    command: ["sleep", "60"]
    networks:
      grab:
        ipv4_address: 198.51.100.53
networks:
  grab:
    ipam:
      config:
        - subnet: {SUBNET}
          gateway: 198.51.100.1
"""
VICTIM = "gk-e2e-mac-victim"
CLONE = "ai-e2e-mac-clone"  # the agent's: the [names] prefix


def host_routes() -> str:
    shown = [subprocess.run(["ip", *family, "route", "show", "table", "all"],
                            capture_output=True, text=True, check=True).stdout for family in ([], ["-6"])]
    return "".join(shown)


@pytest.fixture
def route_project(stack: Stack) -> Iterator[Path]:
    compose = PROJECT_DIR / "compose.yaml"
    write_file(compose, ROUTE_ATTACK, mode=0o644, owner=AGENT, group=AGENT)
    yield compose
    stack.docker("compose", "-f", str(compose), "-p", "ai-netgrab", "down", check=False)
    for path in (compose, PROJECT_DIR):
        if path.is_dir():
            path.rmdir()
        else:
            path.unlink(missing_ok=True)


def test_route_attack_changes_routes_without_gatekeeper_not_with(stack: Stack, route_project: Path) -> None:
    before = host_routes()
    assert SUBNET not in before
    # control: the same file, run by root straight against the engine
    control = stack.docker("compose", "-f", str(route_project), "-p", "ai-netgrab", "up", "-d", check=False)
    assert control.returncode == 0, control.stderr
    assert SUBNET in host_routes(), "control: the engine should have routed the subnet to its new bridge"
    stack.docker("compose", "-f", str(route_project), "-p", "ai-netgrab", "down", check=True)
    before = host_routes()  # the engine's bridge may have gained its IPv6 link-local meanwhile
    assert SUBNET not in before
    # the attack through gatekeeper
    since = audit_offset()
    result = stack.ssh(f"docker compose -f {route_project} up -d", timeout=120)
    assert_refused(stack, result, since)
    assert b"network-subnet" in result.stderr or b"[network] subnets" in result.stderr, result.stderr
    assert host_routes() == before


@pytest.fixture
def victim(stack: Stack) -> Iterator[str]:
    for name in (VICTIM, CLONE):
        stack.docker("rm", "-f", name, check=False)
    stack.docker("run", "-d", "--name", VICTIM, IMAGE, "sleep", "300")
    yield VICTIM
    for name in (VICTIM, CLONE):
        stack.docker("rm", "-f", name, check=False)
    stack.docker("compose", "-p", "ai-macgrab", "down", check=False)


def interface_macs(stack: Stack) -> list[str]:
    """The MAC of eth0 in every running container on the engine's default bridge."""
    macs = []
    for ident in stack.docker("ps", "-q", "--filter", "network=bridge").stdout.split():
        pid = json.loads(stack.docker("inspect", ident).stdout)[0]["State"]["Pid"]
        macs.append(Path(f"/proc/{pid}/root/sys/class/net/eth0/address").read_text().strip())
    return macs


def test_mac_clone_works_without_gatekeeper_not_with(stack: Stack, victim: str, restored_home: Path) -> None:
    mac = json.loads(stack.docker("inspect", victim).stdout)[0]["NetworkSettings"]["MacAddress"]
    assert interface_macs(stack).count(mac) == 1
    project = AGENT_HOME / "work" / "ai-macgrab" / "compose.yaml"
    write_file(project, f"services:\n  grab:\n    image: {IMAGE}\n    command: [sleep, '300']\n"
               f"    network_mode: bridge\n    mac_address: '{mac}'\n", mode=0o644, owner=AGENT, group=AGENT)
    # control: root runs the same project directly (the 28.x client's --mac-address
    # needs API 1.44; compose sets the container's MAC the way API 1.41 takes it)
    control = stack.docker("compose", "-f", str(project), "-p", "ai-macgrab", "up", "-d", check=False)
    assert control.returncode == 0, control.stderr
    assert interface_macs(stack).count(mac) == 2, "control: the engine should accept a duplicate MAC"
    stack.docker("compose", "-f", str(project), "-p", "ai-macgrab", "down", check=True)
    assert interface_macs(stack).count(mac) == 1
    # the attack through gatekeeper, in each spelling
    attempts = {
        f"docker compose -f {project} up -d": b"compose-mac_address",
        f"docker run -d --name {CLONE} --mac-address {mac} {IMAGE} sleep 60": b"mac-address",
        f"docker run -d --network name=bridge,mac-address={mac} {IMAGE} sleep 60": b"mac-address",
    }
    for command, word in attempts.items():
        since = audit_offset()
        result = stack.ssh(command, timeout=120)
        # (b): the 28.x client itself refuses both run spellings on this engine (a MAC is per
        # network from API 1.44; the engine speaks 1.41): compose's reaches the proxy
        assert_refused(stack, result, since, client_side=command.startswith("docker run"))
        said = result.stderr.lower()
        assert (b"mac" if stack.mode == PROXY_ALONE else word) in said, (command, result.stderr)
    assert interface_macs(stack).count(mac) == 1
