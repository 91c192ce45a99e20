"""IPv6 networks through real ssh and the real engine: the host's IPv6 forwarding.

Since docker 27 the engine sets net.ipv6.conf.all.forwarding=1 when it makes an IPv6 bridge
(with ip6tables, its default): a host configured by router advertisements (accept_ra=1) then
stops taking them and loses its IPv6 routes as they expire. A host setting changed by the
agent, so IPv6 networks need the policy's `[network] ipv6 = true` (rule network-ipv6):
`network create --ipv6`, compose `enable_ipv6: true`, the API's EnableIPv6.

The control, in the same run: root makes an IPv6 network on the bare engine (it does, for
anyone asking), and with `ipv6 = true` the agent's own `network create --ipv6` succeeds, so
the refusal is the policy's and not the engine's. This suite's engine runs without ip6tables,
so the sysctl itself is not touched here. Three ways (tests/e2e/conftest.py THREE_WAY): the CLI
layer and the proxy each refuse alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .stack import AGENT_HOME, IMAGE, Stack, agent_compose_project, audit_offset, policy_extended
from .test_attack_chains import assert_refused

pytestmark = pytest.mark.e2e

NETWORK = "ai-e2e-v6net"
SUBNETS = 'subnets = ["2001:db8:42::/48"]'  # the engine here has no default IPv6 pool
PROJECT = "ai-e2e-v6"
PROJECT_DIR = AGENT_HOME / "work" / "v6net"
COMPOSE = f"""\
name: {PROJECT}
services:
  app:
    image: {IMAGE}
    command: ["true"]
networks:
  default:
    enable_ipv6: true
"""


def ipv6_enabled(stack: Stack, name: str) -> str:
    return stack.docker("network", "inspect", "--format", "{{.EnableIPv6}}", name, check=False).stdout.strip()


@pytest.fixture
def clean(stack: Stack) -> Iterator[None]:
    yield
    stack.docker("network", "rm", NETWORK, "root-v6net", f"{PROJECT}_default", check=False)


def test_an_ipv6_network_needs_the_policy(stack: Stack, clean: None) -> None:
    made = stack.docker("network", "create", "--ipv6", "--subnet", "2001:db8:42:1::/64", "root-v6net",
                        check=False)
    assert made.returncode == 0, made.stderr  # control: the engine makes one for anyone asking
    assert ipv6_enabled(stack, "root-v6net") == "true"
    create = f"docker network create --ipv6 --subnet 2001:db8:42:2::/64 {NETWORK}"
    with policy_extended(f"\n[network]\n{SUBNETS}\n"):
        since = audit_offset()
        refused = stack.ssh(create, timeout=60)
        assert_refused(stack, refused, since, rule="network-ipv6")
    assert ipv6_enabled(stack, NETWORK) == ""
    with policy_extended(f"\n[network]\n{SUBNETS}\nipv6 = true\n"):
        allowed = stack.ssh(create, timeout=60)
    assert allowed.returncode == 0, allowed.stderr  # control: the policy opens it
    assert ipv6_enabled(stack, NETWORK) == "true"


@pytest.fixture
def project(stack: Stack, clean: None) -> Iterator[Path]:
    with agent_compose_project(PROJECT, PROJECT_DIR, COMPOSE) as path:
        yield path


def test_compose_enable_ipv6_needs_the_policy(stack: Stack, project: Path) -> None:
    since = audit_offset()
    refused = stack.ssh(f"docker compose -f {project} up -d", timeout=120)
    assert_refused(stack, refused, since, rule="network-ipv6")
    assert ipv6_enabled(stack, f"{PROJECT}_default") == ""
