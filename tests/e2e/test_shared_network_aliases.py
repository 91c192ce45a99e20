"""A compose service on a shared network takes its service name there: red team, session 6.

[shared] networks lets the agent join a network of the operator's, never with an alias: an
alias is a name the operator's containers resolve (`db`), so the agent's container would get
the connections (and credentials) meant for the operator's database. `docker compose up` gives
every service an alias on each network it joins, its service name, whether or not `aliases:`
says so; the CLI layer counted only explicit `aliases:` (layout c took the name). Each layout
(a: CLI layer + proxy, b: proxy alone, c: CLI layer alone); the control in the same test is the
same project brought up by root: the operator's container then resolves `db` to it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from .stack import (
    AGENT,
    AGENT_HOME,
    IMAGE,
    Stack,
    audit_offset,
    policy_extended,
    write_file,
)
from .test_attack_chains import assert_refused

pytestmark = pytest.mark.e2e

EDGE = "gk-rt6-edge"  # the operator's network, shared with the agent
CLIENT = "gk-rt6-opclient"  # the operator's container that looks `db` up on it
PROJECT = "ai-rt6net"
APP = AGENT_HOME / PROJECT
COMPOSE = (f"services:\n  db:\n    image: {IMAGE}\n    command: sleep 120\n    networks: [edge]\n"
           f"networks:\n  edge:\n    external: true\n    name: {EDGE}\n")


@pytest.fixture
def shared_edge(stack: Stack) -> Iterator[str]:
    stack.docker("network", "create", EDGE)
    stack.docker("run", "-d", "--name", CLIENT, "--network", EDGE, IMAGE, "sleep", "300")
    write_file(APP / "compose.yaml", COMPOSE, mode=0o644, owner=AGENT, group=AGENT)
    try:
        with policy_extended(f'[shared]\nnetworks = ["{EDGE}"]\n'):
            yield str(APP / "compose.yaml")
    finally:
        stack.docker("compose", "-f", str(APP / "compose.yaml"), "-p", PROJECT, "down", "-t", "0",
                     check=False)
        stack.docker("rm", "-f", CLIENT, check=False)
        stack.docker("network", "rm", EDGE, check=False)
        shutil.rmtree(APP, ignore_errors=True)


def resolves_db(stack: Stack) -> bool:
    looked = stack.docker("exec", CLIENT, "nslookup", "db", "127.0.0.11", check=False)
    return looked.returncode == 0 and "Address" in looked.stdout.split("db", 1)[-1]


def test_a_compose_service_takes_no_name_on_a_shared_network(stack: Stack, shared_edge: str) -> None:
    assert not resolves_db(stack)
    # Control: the same project by root; compose names the service `db` on the operator's network.
    up = stack.docker("compose", "-f", shared_edge, "-p", PROJECT, "up", "-d", check=False)
    assert up.returncode == 0, up.stderr
    assert resolves_db(stack)
    stack.docker("compose", "-f", shared_edge, "-p", PROJECT, "down", "-t", "0", check=True)
    assert not resolves_db(stack)

    since = audit_offset()
    attempt = stack.ssh(f"docker compose -f {shared_edge} -p {PROJECT} up -d", timeout=120)
    assert_refused(stack, attempt, since, rule="foreign-network")
    assert not resolves_db(stack)
    joined = stack.docker("network", "inspect", "--format", "{{range .Containers}}{{.Name}} {{end}}", EDGE)
    assert joined.stdout.split() == [CLIENT]
