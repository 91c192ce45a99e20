"""Real-time scheduling through `--ulimit rtprio` and compose `ulimits:`, through real ssh and
the real engine.

The engine sets a container's resource limits as root, so `--ulimit rtprio=99` hands the
container's processes RLIMIT_RTPRIO 99: without any capability they may then switch to
SCHED_FIFO/SCHED_RR at up to priority 99. On kernels without RT group scheduling (Debian's
stock kernel) real-time tasks are not bound by the container's CPU caps (cpu.max, --cpus): a
busy loop at SCHED_FIFO takes a whole core from sshd, dockerd and the operator's services.
`nice` is the milder cousin (a raised CFS priority). Both are refused unless 0; the other
limits stay the agent's (nofile, nproc, core, ...).

The control, in the same run: as root on the bare engine the request reaches the runtime (on
a stock host the container's `ulimit -r` reads 99, 0 without it; root in this VM lacks
CAP_SYS_RESOURCE, so runc fails setting it: "error setting rlimit type 14", RLIMIT_RTPRIO),
and the agent's own harmless limit (nofile) reads back through every layer. Three ways
(tests/e2e/conftest.py THREE_WAY): the CLI layer and the proxy each refuse alone (flag-ulimit;
compose-ulimits at the CLI layer).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .stack import AGENT_HOME, IMAGE, PROXY_ALONE, Stack, agent_compose_project, audit_offset
from .test_attack_chains import assert_refused

pytestmark = pytest.mark.e2e

PROJECT = "ai-e2e-rtprio"
PROJECT_DIR = AGENT_HOME / "work" / "rtprio"
COMPOSE = f"""\
name: {PROJECT}
services:
  spin:
    image: {IMAGE}
    command: ["sh", "-c", "ulimit -r"]
    ulimits:
      rtprio: 99
"""


def test_root_grants_the_limit_the_agent_is_refused(stack: Stack) -> None:
    granted = stack.docker("run", "--rm", "--ulimit", "rtprio=99", IMAGE, "sh", "-c", "ulimit -r",
                           check=False)
    # control: the engine applies what anyone asks; here runc (without CAP_SYS_RESOURCE in this
    # VM) fails setting it, on a stock host the container reads 99
    assert granted.stdout.strip() == "99" or "rlimit type 14" in granted.stderr, granted
    default = stack.docker("run", "--rm", IMAGE, "sh", "-c", "ulimit -r")
    assert default.stdout.strip() == "0", default
    harmless = stack.ssh(f"docker run --rm --ulimit nofile=512:1024 {IMAGE} sh -c 'ulimit -n'", timeout=60)
    assert (harmless.returncode, harmless.stdout.strip()) == (0, b"512"), harmless.stderr
    for value in ("rtprio=99", "rtprio=0:1", "rtprio=-1", "nice=40"):
        since = audit_offset()
        refused = stack.ssh(f"docker run --rm --ulimit {value} {IMAGE} sh -c 'ulimit -r'", timeout=60)
        assert_refused(stack, refused, since, rule="flag-ulimit")
        assert not refused.stdout.strip()


@pytest.fixture
def project(stack: Stack) -> Iterator[Path]:
    with agent_compose_project(PROJECT, PROJECT_DIR, COMPOSE) as path:
        yield path


def test_compose_ulimits_are_refused(stack: Stack, project: Path) -> None:
    since = audit_offset()
    refused = stack.ssh(f"docker compose -f {project} run --rm spin", timeout=120)
    rule = "flag-ulimit" if stack.mode == PROXY_ALONE else "compose-ulimits"
    assert_refused(stack, refused, since, rule=rule)
    assert b"99" not in refused.stdout
