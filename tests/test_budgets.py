"""[budgets]: each budget refuses the command that would overspend it (naming the
budget and when it refills), nothing is spent by a refused command, the window slides,
profiles have their own ledgers, and 200 concurrent sessions spend exactly the budget."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from gatekeeper.budgets import charge, ledger_name, spending
from gatekeeper.errors import Denied
from gatekeeper.policy import load_policy
from tests.conftest import REPO, Deployment, gatekeeper_command

NOW = 1_800_000_000.0


def policy_with(tmp_path: Path, budgets: str, profile: str = "agent"):  # type: ignore[no-untyped-def]
    path = tmp_path / "p.toml"
    path.write_text(f'[paths]\nallowed_roots = ["{tmp_path}/home"]\nstate_dir = "{tmp_path}/state"\n'
                    f"[budgets]\n{budgets}\n")
    return load_policy(str(path), profile)


def test_commands_per_minute_refuse_then_refill(tmp_path: Path) -> None:
    policy = policy_with(tmp_path, "commands_per_minute = 3")
    for second in range(3):
        charge(policy, "container ls", None, NOW + second)
    with pytest.raises(Denied) as refused:
        charge(policy, "container ls", None, NOW + 10)
    assert refused.value.rule == "budget-commands"
    assert "commands_per_minute = 3" in refused.value.message and "(in 50 s)" in refused.value.message
    charge(policy, "container ls", None, NOW + 60)  # the first one aged out


@pytest.mark.parametrize(("key", "canonical", "rule"), [
    ("containers_per_hour", "container run", "budget-containers"),
    ("containers_per_hour", "container create", "budget-containers"),
    ("pulls_per_day", "image pull", "budget-pulls"),
    ("builds_per_day", "image build", "budget-builds"),
])
def test_each_budget(tmp_path: Path, key: str, canonical: str, rule: str) -> None:
    policy = policy_with(tmp_path, f"{key} = 2")
    charge(policy, canonical, None, NOW)
    charge(policy, canonical, None, NOW + 1)
    charge(policy, "container ls", None, NOW + 2)  # spends nothing of this budget
    with pytest.raises(Denied) as refused:
        charge(policy, canonical, None, NOW + 3)
    assert refused.value.rule == rule


def test_a_refused_command_spends_nothing(tmp_path: Path) -> None:
    policy = policy_with(tmp_path, "commands_per_minute = 5\ncontainers_per_hour = 1")
    charge(policy, "container run", None, NOW)
    for _ in range(3):
        with pytest.raises(Denied):
            charge(policy, "container run", None, NOW + 1)
    ledger = (tmp_path / "state" / ledger_name("agent")).read_text().splitlines()
    assert len(ledger) == 2  # one command, one container


def test_profiles_have_their_own_ledgers(tmp_path: Path) -> None:
    first = policy_with(tmp_path, "commands_per_minute = 1", "ci/bot")
    second = policy_with(tmp_path, "commands_per_minute = 1", "..")
    charge(first, "container ls", None, NOW)
    charge(second, "container ls", None, NOW)
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == sorted(
        [ledger_name("ci/bot"), ledger_name("..")])


def test_compose_spends_per_service() -> None:
    model = json.dumps({"services": {"a": {"image": "x"}, "b": {"build": {"context": "/c"}}}}).encode()
    assert spending("compose up", model) == {"commands": 1, "containers": 2, "builds": 1}
    assert spending("compose pull", model) == {"commands": 1, "pulls": 1}
    assert spending("compose build", model) == {"commands": 1, "builds": 1}


def test_more_than_the_whole_budget_at_once(tmp_path: Path) -> None:
    policy = policy_with(tmp_path, "containers_per_hour = 2")
    model = json.dumps({"services": {n: {"image": "x"} for n in "abc"}}).encode()
    with pytest.raises(Denied, match="this command alone needs 3"):
        charge(policy, "compose up", model, NOW)


def test_a_symlinked_ledger_is_not_followed(tmp_path: Path) -> None:
    policy = policy_with(tmp_path, "commands_per_minute = 1")
    (tmp_path / "state").mkdir(mode=0o700)
    target = tmp_path / "elsewhere"
    target.write_text("")
    (tmp_path / "state" / ledger_name("agent")).symlink_to(target)
    with pytest.raises(Denied) as refused:
        charge(policy, "container ls", None, NOW)
    assert refused.value.rule == "host-path-state"


SESSIONS = 200
BUDGET = 150


def test_200_concurrent_sessions_spend_exactly_the_budget(deployment: Deployment) -> None:
    """Without the ledger's lock, sessions reading the same count would all pass."""
    deployment.docker.write_text("#!/bin/sh\nexit 0\n")
    deployment.write_policy(f"[budgets]\ncommands_per_minute = {BUDGET}\n")
    barrier = 'read go && exec "$@"'
    started = []
    for index in range(SESSIONS):
        env = {"PATH": "/usr/bin:/bin", "SSH_ORIGINAL_COMMAND": "docker ps",
               "SSH_CONNECTION": f"127.0.0.1 {20000 + index} 127.0.0.1 22"}
        started.append(subprocess.Popen(
            ["/bin/sh", "-c", barrier, "sh", *gatekeeper_command(), "--policy", str(deployment.policy)],
            env=env, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    for process in started:
        assert process.stdin is not None
        process.stdin.write(b"go\n")
        process.stdin.close()
    codes = [process.wait(timeout=300) for process in started]
    assert codes.count(0) == BUDGET and codes.count(77) == SESSIONS - BUDGET
    records = [json.loads(line) for line in deployment.audit_lines()]
    decisions = [r for r in records if r["event"] == "decision"]
    assert len(decisions) == SESSIONS  # every refusal is audited too
    assert sum(r["rule"] == "budget-commands" for r in decisions) == SESSIONS - BUDGET
