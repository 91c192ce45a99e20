"""max_running cannot be split, through real ssh and the real engine (issue 18 item 2).

The control: with no cap, one `compose up` of a service with `scale: 5` starts
five containers (the issue's count took it as one). With `max_running = 3`:
the same project is refused and nothing starts; `docker run -d` stops at three;
`docker restart` of a stopped container counts; six concurrent `docker run -d`
sessions end with at most three running (the count is taken under the
in-flight lock and claims what it starts). The engine is asked by root for the
count every time.

Three ways (tests/e2e/conftest.py THREE_WAY). In layout (b) the proxy alone counts: it
allows a create and refuses the start that would pass the cap (rule limit-running, its
"api" record; container.start and container.restart are decided one at a time per
profile), so a scaled project stops at the cap instead of not starting at all, and a
refused `docker run -d` leaves a created container that never ran. What holds in every
layout: never more than the cap running.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest

from .stack import AGENT, AGENT_HOME, IMAGE, PROXY_ALONE, Stack, audit_offset, policy_extended, write_file
from .test_attack_chains import assert_refused

pytestmark = pytest.mark.e2e

EX_NOPERM = 77
OWNER = "label=gatekeeper.owner=default"
PROJECT = AGENT_HOME / "work" / "ai-scaled" / "compose.yaml"  # compose project ai-scaled: the [names] prefix
SCALED = f"""\
services:
  many:
    image: {IMAGE}
    command: ["sleep", "120"]
    scale: 5
"""


def refused(stack: Stack, command: str, *, timeout: float = 60.0) -> None:
    """`command` through ssh is refused for the cap: exit 77 from the CLI layer, in (b) the
    proxy's limit-running denial."""
    since = audit_offset()
    result = stack.ssh(command, timeout=timeout)
    assert_refused(stack, result, since, rule="limit-running")


def running(stack: Stack) -> int:
    return len(stack.docker("ps", "-q", "--filter", OWNER).stdout.split())


def remove_owned(stack: Stack) -> None:
    """Every container of the agent gone, its compose network too. A start the engine was still
    taking when compose gave up (layout b: the proxy refused a sibling's start) can make `rm -f`
    fail once; the next layout's compose then met the old network with endpoints: ask again."""
    for _ in range(20):
        ids = stack.docker("ps", "-aq", "--filter", OWNER).stdout.split()
        if ids:
            stack.docker("rm", "-f", *ids, check=False)
        network = stack.docker("network", "inspect", "ai-scaled_default", check=False).returncode == 0
        if network:
            stack.docker("network", "rm", "ai-scaled_default", check=False)
        if not ids and not network:
            return
        time.sleep(0.5)
    raise AssertionError("the agent's containers or the ai-scaled network could not be removed")


@pytest.fixture
def clean(stack: Stack) -> Iterator[None]:
    remove_owned(stack)
    write_file(PROJECT, SCALED, mode=0o644, owner=AGENT, group=AGENT)
    yield
    remove_owned(stack)
    PROJECT.unlink(missing_ok=True)
    PROJECT.parent.rmdir()


def test_compose_scale_counts_every_replica(stack: Stack, clean: None) -> None:
    up = f"docker compose -f {PROJECT} up -d"
    result = stack.ssh(up, timeout=180)  # control: no cap
    assert result.returncode == 0, result.stderr
    assert running(stack) == 5
    remove_owned(stack)
    with policy_extended("\n[limits]\nmax_running = 3\n"):
        refused(stack, up, timeout=180)
        # (b): the proxy refuses the start past the cap, so the project stops at three
        assert running(stack) == (3 if stack.mode == PROXY_ALONE else 0)


def test_run_restart_and_concurrent_sessions_stay_under_the_cap(stack: Stack, clean: None) -> None:
    with policy_extended("\n[limits]\nmax_running = 3\n"):
        for name in ("ai-cap-1", "ai-cap-2", "ai-cap-3"):
            assert stack.ssh(f"docker run -d --name {name} {IMAGE} sleep 120").returncode == 0
        refused(stack, f"docker run -d --name ai-cap-4 {IMAGE} sleep 120")
        assert running(stack) == 3
        stack.docker("rm", "-f", "ai-cap-4", check=False)  # (b): created by the proxy, never started
        stack.docker("stop", "-t", "0", "ai-cap-3")
        assert stack.ssh(f"docker run -d --name ai-cap-4 {IMAGE} sleep 120").returncode == 0
        refused(stack, "docker restart ai-cap-3")  # stopped: restarting it would make four
        assert running(stack) == 3
        remove_owned(stack)
        sessions = [subprocess.Popen(stack.ssh_argv(f"docker run -d {IMAGE} sleep 120"),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(6)]
        codes = [session.wait(timeout=120) for session in sessions]
        assert codes.count(0) <= 3, codes
        if stack.mode != PROXY_ALONE:  # (b): docker's own status for the proxy's refusal
            assert set(codes) <= {0, EX_NOPERM}, codes
        assert running(stack) <= 3


def test_restart_of_a_stopped_container_counts_without_the_cap_too(stack: Stack, clean: None) -> None:
    """The control for the restart rule: with no cap the same restart runs a fourth container."""
    for name in ("ai-cap-1", "ai-cap-2", "ai-cap-3", "ai-cap-4"):
        assert stack.ssh(f"docker run -d --name {name} {IMAGE} sleep 120").returncode == 0
    stack.docker("stop", "-t", "0", "ai-cap-4")
    assert stack.ssh("docker restart ai-cap-4").returncode == 0
    assert running(stack) == 4
