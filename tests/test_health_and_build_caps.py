"""Healthcheck floors and build caps in [limits] (issue 18 item 2, part).

* `--health-interval 1ms` on three containers kept both host CPUs busy in
  dockerd, containerd and runc, outside every container's cgroup. With the
  floors unset (the control) it is allowed; with them set it is refused, for
  each flag and each compose `healthcheck` key; 0 (the engine's default) and
  values at or over the floor pass.
* `docker build` RUN steps ran with no limit at all: the caps hold the agent's
  `--memory`, the defaults are injected (memory; CPU as a quota per period, since
  the classic builder has no --cpus), and the policy's build_cgroup_parent.
"""

# One case per line keeps each command beside its expectation; such lines run long.
# ruff: noqa: E501

from __future__ import annotations

from pathlib import Path

import pytest

from gatekeeper.decision import decide
from gatekeeper.errors import Denied, PolicyError
from gatekeeper.policy import load_policy
from gatekeeper.vetting.limits import Caps, go_duration, limit_service
from tests.fakes import StaticWorld

FLOORS = """
[limits]
min_health_interval = "5s"
min_health_start_interval = "1s"
min_health_timeout = "1s"
min_health_start_period = "1s"
min_health_retries = 1
"""
BUILD_CAPS = """
[limits]
memory = "2g"
cpus = 2.0
default_memory = "1g"
default_cpus = 1.5
build_cgroup_parent = "/gatekeeper-build"
"""


def policy_from(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "policy.toml"
    path.write_text(text)
    return load_policy(str(path))


# (command, rule without floors, rule with FLOORS)
HEALTH_CASES = {
    "1ms interval": ("docker run -d --health-cmd true --health-interval 1ms img", "allowed", "limit-health"),
    "4.9s interval": ("docker run -d --health-interval 4.9s img", "allowed", "limit-health"),
    "interval at the floor": ("docker run -d --health-interval 5s img", "allowed", "allowed"),
    "interval 1m30s": ("docker run -d --health-interval=1m30s img", "allowed", "allowed"),
    "interval 0 (default)": ("docker run -d --health-interval 0 img", "allowed", "allowed"),
    "interval 5000ms": ("docker run -d --health-interval 5000ms img", "allowed", "allowed"),
    "interval in microseconds": ("docker run -d --health-interval 999999us img", "allowed", "limit-health"),
    "interval negative": ("docker run -d --health-interval -1s img", "allowed", "limit-health"),
    "interval no unit": ("docker run -d --health-interval 5 img", "allowed", "limit-health"),
    "start interval": ("docker create --health-start-interval 10ms img", "allowed", "limit-health"),
    "timeout": ("docker run -d --health-timeout 1ns img", "allowed", "limit-health"),
    "start period": ("docker run -d --health-start-period 100ms img", "allowed", "limit-health"),
    "retries 1": ("docker run -d --health-retries 1 img", "allowed", "allowed"),
    "retries negative": ("docker run -d --health-retries -1 img", "allowed", "limit-health"),
    "retries octal": ("docker run -d --health-retries 010 img", "allowed", "limit-health"),
}


@pytest.mark.parametrize(("command", "open_rule", "floored_rule"), HEALTH_CASES.values(), ids=HEALTH_CASES.keys())
def test_health_flags(tmp_path: Path, command: str, open_rule: str, floored_rule: str) -> None:
    assert decide(command, load_policy(None), StaticWorld()).rule == open_rule
    assert decide(command, policy_from(tmp_path, FLOORS), StaticWorld()).rule == floored_rule


COMPOSE_HEALTH = {
    "1ms interval": ({"test": ["CMD", "true"], "interval": "1ms"}, "limit-health"),
    "500us start interval": ({"start_interval": "500\u00b5s"}, "limit-health"),
    "retries 0 (default)": ({"retries": 0}, None),
    "sane": ({"interval": "30s", "timeout": "5s", "start_period": "1m", "start_interval": "5s", "retries": 3}, None),
    "disabled": ({"disable": True}, None),
}


@pytest.mark.parametrize(("health", "floored_rule"), COMPOSE_HEALTH.values(), ids=COMPOSE_HEALTH.keys())
def test_compose_healthcheck(health: dict, floored_rule: str | None) -> None:
    limit_service("a", {"healthcheck": dict(health)}, Caps({}))  # control: no floors, nothing refused
    floors = {"min_health_interval": "5s", "min_health_start_interval": "1s", "min_health_retries": 1}
    if floored_rule is None:
        limit_service("a", {"healthcheck": dict(health)}, Caps(floors))
    else:
        with pytest.raises(Denied) as denied:
            limit_service("a", {"healthcheck": dict(health)}, Caps(floors))
        assert denied.value.rule == floored_rule


@pytest.mark.parametrize(("text", "nanos"), [
    ("0", 0), ("1ns", 1), ("1us", 1000), ("1\u00b5s", 1000), ("1.5s", 1_500_000_000), ("1m30s", 90 * 10**9),
    ("2h", 7200 * 10**9), (".5s", 500_000_000), ("1", None), ("-1s", None), ("1d", None), ("1s ", None), ("", None),
])
def test_go_duration(text: str, nanos: int | None) -> None:
    assert go_duration(text) == nanos


def test_policy_floors_must_be_durations(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="min_health_interval"):
        policy_from(tmp_path, '[limits]\nmin_health_interval = "5"\n')
    with pytest.raises(PolicyError, match="build_cgroup_parent"):
        policy_from(tmp_path, '[limits]\nbuild_cgroup_parent = "/a/../b"\n')


def test_build_without_limits_is_untouched(tmp_path: Path) -> None:
    """The control: no [limits], the build runs as typed (and, as the issue found, uncapped)."""
    decision = decide("docker build -t x work/app", load_policy(None), StaticWorld())
    assert decision.allowed and not any(w.startswith(("--memory", "--cpu", "--cgroup")) for w in decision.argv or [])


def test_build_gets_the_caps(tmp_path: Path) -> None:
    decision = decide("docker build -t x work/app", policy_from(tmp_path, BUILD_CAPS), StaticWorld())
    assert decision.allowed, decision.reason
    assert decision.argv is not None
    assert decision.argv[1:5] == ["build", "--memory=1g", "--cpu-period=100000", "--cpu-quota=150000"]
    assert "--cgroup-parent=/gatekeeper-build" in decision.argv


BUILD_CASES = {
    "memory at the cap": ("docker build -m 2g work/app", "allowed"),
    "memory over the cap": ("docker build --memory 4g work/app", "limit-memory"),
    "memory unlimited": ("docker build --memory 0 work/app", "limit-memory"),
    "swap unlimited": ("docker build --memory-swap -1 work/app", "limit-memory"),
    "quota while cpus capped": ("docker build --cpu-quota -1 work/app", "limit-cpus"),
    "agent's cgroup parent": ("docker build --cgroup-parent / work/app", "flag-cgroup-parent"),
}


@pytest.mark.parametrize(("command", "rule"), BUILD_CASES.values(), ids=BUILD_CASES.keys())
def test_build_flags_against_the_caps(tmp_path: Path, command: str, rule: str) -> None:
    assert decide(command, policy_from(tmp_path, BUILD_CAPS), StaticWorld()).rule == rule
