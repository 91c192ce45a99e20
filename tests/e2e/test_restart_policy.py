"""Restart policies past [limits] max_running at a daemon restart, through real ssh, the real
engine and a real restart of the stack's own dockerd (never the machine's other engines).

The attack: with `max_running = 2` the agent runs two containers with `--restart always`,
stops them, and runs two more: two running, within the cap. A daemon restart (an upgrade, a
reboot: never the agent's doing) starts every "always" container, the stopped ones too: four
running, twice the cap, and nobody counted them. "on-failure" restarts every one `docker stop`
left with exit 137/143 the same way; "unless-stopped" leaves what was stopped stopped (dockerd
20.10 here; a created container that never ran is started by none of them).

The control, in the same run: the two "always" containers made while no cap was set come back
at the restart beside the two running ones (the attack works when the refusal does not apply).
The defence: under the cap, `--restart always` and `on-failure` are refused (rule limit-restart:
the CLI layer's exit 77, in layout (b) the proxy's api denial); the same moves with
`--restart unless-stopped` end with exactly the cap running after the daemon restart.
Three ways (tests/e2e/conftest.py THREE_WAY): each layer refuses alone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from .stack import IMAGE, Stack, audit_offset, engine_answers, policy_extended, wait_for
from .test_attack_chains import assert_refused

pytestmark = pytest.mark.e2e

OWNER = "label=gatekeeper.owner=default"
CAPPED = "\n[limits]\nmax_running = 2\n"
# stops at once on SIGTERM, so `docker stop` and the daemon's shutdown take no stop timeout
LOOP = "sh -c 'trap \"exit 0\" TERM; while :; do sleep 1; done'"


def run_detached(stack: Stack, name: str, restart: str) -> subprocess.CompletedProcess[bytes]:
    return stack.ssh(f"docker run -d --name {name} --restart {restart} {IMAGE} {LOOP}", timeout=90)


def started(stack: Stack, name: str, restart: str) -> None:
    result = run_detached(stack, name, restart)
    assert result.returncode == 0, result.stderr


def stopped(stack: Stack, name: str) -> None:
    result = stack.ssh(f"docker stop {name}", timeout=90)
    assert result.returncode == 0, result.stderr


def running_names(stack: Stack) -> set[str]:
    out = stack.docker("ps", "--filter", OWNER, "--format", "{{.Names}}").stdout
    return set(out.split())


def remove_owned(stack: Stack) -> None:
    ids = stack.docker("ps", "-aq", "--filter", OWNER).stdout.split()
    if ids:
        stack.docker("rm", "-f", *ids, check=False)


def restart_engine(stack: Stack) -> None:
    """SIGTERM to the stack's dockerd alone (as `systemctl restart docker` does: the daemon stops
    its containers and its containerd), then the same dockerd started again."""
    dockerd = stack.daemons[0]
    assert dockerd.name == "dockerd" and dockerd.process is not None
    os.kill(dockerd.process.pid, signal.SIGTERM)
    dockerd.process.wait(90)
    dockerd.start()
    wait_for("dockerd", lambda: engine_answers(dockerd), 90, diagnose=dockerd.log_tail)


def settled(stack: Stack, expected: set[str]) -> set[str]:
    """The engine starts restart-policy containers shortly after it answers: wait for them."""
    deadline = time.monotonic() + 60
    seen = running_names(stack)
    while not expected <= seen and time.monotonic() < deadline:
        time.sleep(0.5)
        seen = running_names(stack)
    return seen  # the caller's assertions say what was running instead


@pytest.fixture
def clean(stack: Stack) -> Iterator[None]:
    remove_owned(stack)
    yield
    remove_owned(stack)


def test_daemon_restart_starts_stopped_always_containers_past_the_cap(stack: Stack, clean: None) -> None:
    # the control's containers: "always", made while no cap applied, then stopped by the agent
    for name in ("ai-rp-always1", "ai-rp-always2"):
        started(stack, name, "always")
        stopped(stack, name)
    with policy_extended(CAPPED):
        for restart in ("always", "on-failure", "on-failure:3"):
            since = audit_offset()
            assert_refused(stack, run_detached(stack, "ai-rp-refused", restart), since, rule="limit-restart")
        assert not stack.docker("ps", "-aq", "--filter", "name=ai-rp-refused").stdout.split()
        for name in ("ai-rp-stopped1", "ai-rp-stopped2"):
            started(stack, name, "unless-stopped")
            stopped(stack, name)
        for name in ("ai-rp-up1", "ai-rp-up2"):
            started(stack, name, "unless-stopped")
        assert running_names(stack) == {"ai-rp-up1", "ai-rp-up2"}  # at the cap
        restart_engine(stack)
        after = settled(stack, {"ai-rp-up1", "ai-rp-up2", "ai-rp-always1", "ai-rp-always2"})
    # control: the stopped "always" containers are back, four running under a cap of two
    assert {"ai-rp-always1", "ai-rp-always2"} <= after, after
    # defence: what the agent made under the cap comes back exactly as it left it
    assert after - {"ai-rp-always1", "ai-rp-always2"} == {"ai-rp-up1", "ai-rp-up2"}, after


def test_a_run_rm_refused_for_the_cap_returns_and_leaves_nothing(stack: Stack, clean: None) -> None:
    """`docker run --rm` waits for its container's removal when the start fails. In layout (b) the
    proxy refused the start (the engine never saw it fail, so never removed it): the client hung and
    the container stayed created. The proxy now removes such a never-started --rm container."""
    command = f"docker run --rm --name ai-rp-rm {IMAGE} true"
    control = stack.ssh(command, timeout=60)  # control: no cap, it runs and is gone
    assert control.returncode == 0, control.stderr
    with policy_extended("\n[limits]\nmax_running = 1\n"):
        started(stack, "ai-rp-one", "no")
        since = audit_offset()
        assert_refused(stack, stack.ssh(command, timeout=60), since, rule="limit-running")
        assert not stack.docker("ps", "-aq", "--filter", "name=ai-rp-rm").stdout.split()
