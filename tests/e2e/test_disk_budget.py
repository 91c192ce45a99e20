"""A pull past the profile's disk budget is refused with the figure (real ssh, real engine).

Attack: an agent fills the host's disk one pull, build or volume at a time; no
single command is refused. The agent's volume here holds 3 MB; under a 2 MB budget
([limits] disk_budget) the next pull and the next new volume are refused, and the
message carries the usage as the engine counts it (GET /system/df). Control: under a
budget well above the usage the same pull reaches docker (which then fails: the
stack has no registry) and the new volume is made.

Three ways (tests/e2e/conftest.py THREE_WAY): in layout (b) the proxy refuses the pull
(POST /images/create) and the new named volume it would make for the create, with the same
figures in its 403 and its "api" record. `gatekeeper doctor`, run by root, asks the engine
itself (the [proxy] upstream when [docker] host is the proxy) in every layout.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from gatekeeper.engine_api import disk_usage
from gatekeeper.vetting.disk_budget import human_size, profile_usage

from .stack import DOCKER_HOST, GATEKEEPER, IMAGE, Stack, audit_offset, policy_extended
from .test_attack_chains import assert_refused

pytestmark = pytest.mark.e2e

VOLUME, NEW_VOLUME = "ai-e2e-budget", "ai-e2e-budget-new"  # the agent's, within the [names] prefix
FIGURES = re.compile(
    r"use (\S+) \(images (\S+), volumes (\S+), build cache (\S+)\) of your (\S+) disk budget")
NOWHERE = "127.0.0.1:1/gk-e2e/none:1"  # refused at once: the stack has no registry
FILL = "dd if=/dev/zero of=/d/blob bs=1000 count=3000"


def budget(size: str) -> str:
    return f'\n[limits]\ndisk_budget = "{size}"\n'


def test_a_pull_over_the_budget_is_refused_with_the_figure(stack: Stack) -> None:
    for name in (VOLUME, NEW_VOLUME):
        stack.docker("volume", "rm", "-f", name, check=False)
    try:
        filled = stack.ssh(f"docker run --rm -v {VOLUME}:/d {IMAGE} {FILL}")
        assert filled.returncode == 0, filled.stderr
        # control: well under the budget the pull reaches docker, the new volume is made
        with policy_extended(budget("100g")):
            pulled = stack.ssh(f"docker pull {NOWHERE}")
            assert pulled.returncode not in (0, 77), pulled.stderr
            assert b"rule disk-budget" not in pulled.stderr, pulled.stderr
            made = stack.ssh(f"docker run --rm -v {NEW_VOLUME}:/d {IMAGE} true")
            assert made.returncode == 0, made.stderr
        stack.docker("volume", "rm", NEW_VOLUME)
        # the defence: at the budget, refused, with the engine's figures
        with policy_extended(budget("2m")):
            since = audit_offset()
            refused = stack.ssh(f"docker pull {NOWHERE}")
            assert_refused(stack, refused, since, rule="disk-budget")
            since = audit_offset()
            new_volume = stack.ssh(f"docker run --rm -v {NEW_VOLUME}:/d {IMAGE} true")
            assert_refused(stack, new_volume, since, rule="disk-budget")
            doctor = subprocess.run([str(GATEKEEPER), "doctor"], capture_output=True, text=True, timeout=120,
                                    check=False).stdout
        assert "warn  disk usage default: " in doctor and "at or past the 2MB budget" in doctor, doctor
        message = refused.stderr.decode()
        total, _images, volumes, _cache, limit = FIGURES.search(message).groups()  # type: ignore[union-attr]
        assert limit == "2MB"
        assert volumes.endswith("MB") and float(volumes[:-2]) >= 3.0, message
        usage = profile_usage(disk_usage(DOCKER_HOST, 60.0), "default")
        assert total == human_size(usage.total), (message, usage.breakdown())
        assert stack.docker("volume", "inspect", NEW_VOLUME, check=False).returncode != 0
    finally:
        for name in (VOLUME, NEW_VOLUME):
            stack.docker("volume", "rm", "-f", name, check=False)
