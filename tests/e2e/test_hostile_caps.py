"""Healthcheck floors and build caps through real ssh and the real engine (issue 18 item 2).

* Health: `--health-interval 1ms` makes the engine run the check back to back
  (dockerd, containerd and runc do the work, outside the container's cgroup).
  Without floors (the control) gatekeeper allows it and the engine's health log
  shows checks milliseconds apart; with `[limits] min_health_interval` it is
  refused, in the run and the compose spelling (healthcheck.interval), and so is a plain
  `docker run` of an image whose Dockerfile says HEALTHCHECK --interval=1ms (the engine
  takes every field the create leaves at 0 from the image).
* Build: the e2e engine is dockerd 20.10 with the 28.x client and no buildx
  plugin, so `docker build` runs the classic builder (its deprecation notice is
  asserted). A RUN step reads its own cgroup: without [limits] (the control)
  memory and CPU are unlimited; with them the step runs under the injected
  memory limit, CPU quota and the policy's cgroup parent.

Three ways (tests/e2e/conftest.py THREE_WAY): in layout (b) the proxy refuses the create
under the floor and an over-cap build (the rule in its 403 and its "api" record), and
injects the build's limits and cgroup parent into POST /build itself.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from itertools import pairwise
from pathlib import Path

import pytest

from .stack import (
    AGENT,
    AGENT_HOME,
    IMAGE,
    Stack,
    agent_compose_project,
    audit_offset,
    policy_extended,
    project_containers,
    write_file,
)
from .test_attack_chains import assert_refused

pytestmark = pytest.mark.e2e

HEALTHY = "ai-e2e-health"  # the agent names within the [names] prefix (the default "ai-")
CGROUP_PARENT = "gk-e2e-build"
BUILD_DIR = AGENT_HOME / "work" / "capsbuild"
DOCKERFILE = f"""\
FROM {IMAGE}
RUN echo "mem=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes || cat /sys/fs/cgroup/memory.max)" \\
 && echo "quota=$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cat /sys/fs/cgroup/cpu.max)" \\
 && echo "cgroup=$(grep -m1 memory /proc/self/cgroup || head -1 /proc/self/cgroup)"
"""
BUILD_LIMITS = f"""
[limits]
memory = "256m"
cpus = 1.0
default_memory = "64m"
default_cpus = 0.5
build_cgroup_parent = "/{CGROUP_PARENT}"
"""


@pytest.fixture
def no_health_container(stack: Stack) -> Iterator[None]:
    stack.docker("rm", "-f", HEALTHY, check=False)
    yield
    stack.docker("rm", "-f", HEALTHY, check=False)


def go_time(text: str) -> datetime:
    """RFC 3339 with up to nanoseconds and a zone, as Go prints it, to microseconds."""
    stamp = text.split("+", maxsplit=1)[0].rstrip("Z")
    whole, _, fraction = stamp.partition(".")
    return datetime.fromisoformat(f"{whole}.{(fraction + '000000')[:6]}")


def health_gaps_ms(stack: Stack) -> list[float]:
    log = json.loads(stack.docker("inspect", HEALTHY).stdout)[0]["State"]["Health"]["Log"]
    starts = [go_time(entry["Start"]) for entry in log]
    return [(b - a).total_seconds() * 1000 for a, b in pairwise(starts)]


def test_health_interval_floor(stack: Stack, no_health_container: None) -> None:
    command = f"docker run -d --name {HEALTHY} --health-cmd true --health-interval 1ms {IMAGE} sleep 60"
    # control: no floor in the policy, the engine checks back to back
    result = stack.ssh(command)
    assert result.returncode == 0, result.stderr
    time.sleep(2)
    gaps = health_gaps_ms(stack)
    assert gaps and max(gaps) < 200, gaps
    stack.docker("rm", "-f", HEALTHY)
    with policy_extended('\n[limits]\nmin_health_interval = "5s"\n'):
        since = audit_offset()
        assert_refused(stack, stack.ssh(command), since, rule="limit-health")
        assert HEALTHY not in stack.docker("ps", "-a", "--format", "{{.Names}}").stdout.split()
        allowed = stack.ssh(command.replace("1ms", "5s"))
        assert allowed.returncode == 0, allowed.stderr


HEALTH_IMAGE = "ai-e2e-hcimage"
HEALTH_IMAGE_DIR = AGENT_HOME / "work" / "capshcimage"


@pytest.fixture
def health_image(stack: Stack) -> Iterator[str]:
    """An image the agent builds whose Dockerfile says HEALTHCHECK --interval=1ms."""
    dockerfile = f"FROM {IMAGE}\nHEALTHCHECK --interval=1ms CMD true\n"
    write_file(HEALTH_IMAGE_DIR / "Dockerfile", dockerfile, mode=0o644, owner=AGENT, group=AGENT)
    built = stack.ssh(f"docker build -q -t {HEALTH_IMAGE} {HEALTH_IMAGE_DIR}", timeout=180)
    assert built.returncode == 0, built.stderr
    yield HEALTH_IMAGE
    stack.docker("rm", "-f", HEALTHY, check=False)
    stack.docker("image", "rm", "-f", HEALTH_IMAGE, check=False)
    (HEALTH_IMAGE_DIR / "Dockerfile").unlink(missing_ok=True)
    HEALTH_IMAGE_DIR.rmdir()


def test_image_healthcheck_floor(stack: Stack, no_health_container: None, health_image: str) -> None:
    """The image's own HEALTHCHECK: a plain `docker run -d` of it passes no --health-* flag, and
    the engine takes the interval from the image."""
    command = f"docker run -d --name {HEALTHY} {health_image} sleep 60"
    # control: no floor in the policy, the engine checks back to back (each check's own exec
    # takes 100-300 ms on this loaded machine: far under the 5 s floor)
    result = stack.ssh(command)
    assert result.returncode == 0, result.stderr
    time.sleep(2)
    gaps = health_gaps_ms(stack)
    assert gaps and max(gaps) < 1000, gaps
    stack.docker("rm", "-f", HEALTHY)
    with policy_extended('\n[limits]\nmin_health_interval = "5s"\n'):
        since = audit_offset()
        assert_refused(stack, stack.ssh(command), since, rule="limit-health")
        assert HEALTHY not in stack.docker("ps", "-a", "--format", "{{.Names}}").stdout.split()
        allowed = stack.ssh(command.replace(" -d ", " -d --health-interval 5s "))
        assert allowed.returncode == 0, allowed.stderr


HEALTH_PROJECT = "ai-e2e-health"
HEALTH_DIR = AGENT_HOME / "work" / "capshealth"
HEALTH_COMPOSE = f"""\
name: {HEALTH_PROJECT}
services:
  probe:
    image: {IMAGE}
    command: ["sleep", "60"]
    healthcheck:
      test: ["CMD", "true"]
      interval: 1ms
"""


@pytest.fixture
def health_project(stack: Stack) -> Iterator[Path]:
    with agent_compose_project(HEALTH_PROJECT, HEALTH_DIR, HEALTH_COMPOSE) as path:
        yield path


def test_compose_healthcheck_floor(stack: Stack, health_project: Path) -> None:
    """The compose spelling: a service's healthcheck.interval reaches the engine as the create's
    Healthcheck.Interval (the control shows 1 ms recorded); under the floor it is refused."""
    up = f"docker compose -f {health_project} up -d"
    result = stack.ssh(up, timeout=120)
    assert result.returncode == 0, result.stderr
    [made] = project_containers(HEALTH_PROJECT)
    interval = stack.docker("inspect", "--format", "{{.Config.Healthcheck.Interval}}", made).stdout
    assert interval.strip() == "1ms", interval
    stack.docker("rm", "-f", made)
    with policy_extended('\n[limits]\nmin_health_interval = "5s"\n'):
        since = audit_offset()
        assert_refused(stack, stack.ssh(up, timeout=120), since, rule="limit-health")
        assert project_containers(HEALTH_PROJECT) == []


@pytest.fixture
def build_dir(stack: Stack) -> Iterator[Path]:
    write_file(BUILD_DIR / "Dockerfile", DOCKERFILE, mode=0o644, owner=AGENT, group=AGENT)
    yield BUILD_DIR
    (BUILD_DIR / "Dockerfile").unlink(missing_ok=True)
    BUILD_DIR.rmdir()
    stack.docker("image", "rm", "-f", "ai-e2e-capsbuild", check=False)
    for controller in Path("/sys/fs/cgroup").iterdir():  # the parent the engine made for our builds
        leftover = controller / CGROUP_PARENT
        if leftover.is_dir():
            for child in leftover.iterdir():
                if child.is_dir():
                    child.rmdir()
            leftover.rmdir()


def step_output(output: str) -> dict[str, str]:
    lines = [line.strip() for line in output.splitlines()]
    return {key: line.split("=", 1)[1] for line in lines for key in ("mem", "quota", "cgroup")
            if line.startswith(key + "=")}


def test_build_steps_run_under_the_caps(stack: Stack, build_dir: Path) -> None:
    command = f"docker build --no-cache -t ai-e2e-capsbuild {build_dir}"
    # control: no [limits], the RUN step sees no limit
    result = stack.ssh(command, timeout=180)
    assert result.returncode == 0, result.stderr
    assert b"legacy builder" in result.stderr, "expected the classic builder (no buildx plugin here)"
    seen = step_output(result.stdout.decode())
    assert int(seen["mem"]) > 1 << 40 and seen["quota"] in ("-1", "max 100000"), seen
    assert CGROUP_PARENT not in seen["cgroup"]
    with policy_extended(BUILD_LIMITS):
        result = stack.ssh(command, timeout=180)
        assert result.returncode == 0, result.stderr
        seen = step_output(result.stdout.decode())
        assert int(seen["mem"]) == 64 << 20, seen
        assert seen["quota"] in ("50000", "50000 100000"), seen
        assert f"/{CGROUP_PARENT}/" in seen["cgroup"], seen
        since = audit_offset()
        over = stack.ssh(f"docker build -m 1g -t ai-e2e-capsbuild {build_dir}", timeout=60)
        assert_refused(stack, over, since, rule="limit-memory")
