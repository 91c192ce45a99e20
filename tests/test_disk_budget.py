"""Disk budget ([limits] disk_budget, gatekeeper.vetting.disk_budget): pull, build and
volume creation are refused while the profile's images, volumes and build cache (the
engine's /system/df) are at the budget, with the figures in the message; everything
else, and everything under the budget, passes. Control: the same engine without a
budget refuses nothing."""

# ruff: noqa: E501

from __future__ import annotations

from pathlib import Path

import pytest

from gatekeeper.decision import decide
from gatekeeper.errors import Denied, PolicyError
from gatekeeper.policy import load_policy
from gatekeeper.vetting.disk_budget import human_size, profile_usage
from tests.fakes import StaticWorld

MB = 1000 * 1000
DF = {
    "Images": [
        {"Id": "sha256:built", "Size": 40 * MB, "Labels": {"gatekeeper.owner": "default"}},
        {"Id": "sha256:pulled", "Size": 30 * MB, "Labels": None},
        {"Id": "sha256:operator", "Size": 900 * MB, "Labels": {}},
        {"Id": "sha256:other", "Size": 900 * MB, "Labels": {"gatekeeper.owner": "ci"}},
    ],
    "Volumes": [
        {"Name": "data", "Labels": {"gatekeeper.owner": "default"}, "UsageData": {"Size": 20 * MB, "RefCount": 1}},
        {"Name": "gatekeeper-pull-x", "Labels": {"gatekeeper.pulled-by": "default", "gatekeeper.pulled-image": "sha256:pulled"},
         "UsageData": {"Size": 0}},
        {"Name": "pgdata", "Labels": None, "UsageData": {"Size": 5000 * MB}},
        {"Name": "sizeless", "Labels": {"gatekeeper.owner": "default"}, "UsageData": {"Size": -1}},
    ],
    "BuildCache": [{"ID": "c1", "Size": 10 * MB}, {"ID": "c2", "Size": 0}],
    "Containers": [],
}  # default's usage: 40 + 30 + 20 + 10 = 100 MB


class DiskWorld(StaticWorld):
    def __init__(self, df: dict[str, object]) -> None:
        super().__init__()
        self.df = df
        self.asked = 0

    def disk_usage(self, policy: object) -> dict[str, object]:
        self.asked += 1
        return self.df


def policy_with(tmp_path: Path, budget: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "policy.toml"
    path.write_text(f'[limits]\ndisk_budget = "{budget}"\n' if budget else "")
    return load_policy(str(path))


# (command, budget, expected: "allowed" or the rule)
CASES = [
    ("docker pull alpine", "100m", "disk-budget"),  # at the budget
    ("docker pull alpine", "99m", "disk-budget"),
    ("docker image pull alpine", "50m", "disk-budget"),
    ("docker build -t x .", "100m", "disk-budget"),
    ("docker builder build -t x .", "100m", "disk-budget"),
    ("docker run --rm -v scratch:/s busybox true", "100m", "disk-budget"),  # a new named volume
    ("docker pull alpine", "101m", "allowed"),
    ("docker pull alpine", "1g", "allowed"),
    ("docker run --rm -v scratch:/s busybox true", "101m", "allowed"),
    # commands that add nothing pass whatever the usage
    ("docker ps", "1k", "allowed"),
    ("docker rmi x", "1k", "allowed"),
    ("docker run --rm busybox true", "1k", "allowed"),
    ("docker volume prune -f", "1k", "allowed"),
]


@pytest.mark.parametrize(("command", "budget", "expected"), CASES, ids=[f"{c} @{b}" for c, b, _ in CASES])
def test_disk_budget(command: str, budget: str, expected: str, tmp_path: Path) -> None:
    world = DiskWorld(DF)
    decision = decide(command.replace(" .", " /home/ai-worker/app"), policy_with(tmp_path, budget), world)
    if expected == "allowed":
        assert decision.allowed, decision.reason
        return
    assert (decision.allowed, decision.rule) == (False, expected), decision.reason
    assert "100MB (images 70MB, volumes 20MB, build cache 10MB)" in decision.reason
    assert f"of your {human_size(int(budget[:-1]) * MB)} disk budget" in decision.reason


def test_control_without_a_budget_nothing_is_refused_or_asked(tmp_path: Path) -> None:
    world = DiskWorld(DF)
    for command in ("docker pull alpine", "docker run --rm -v scratch:/s busybox true"):
        assert decide(command, policy_with(tmp_path, ""), world).allowed
    assert world.asked == 0


def test_each_profile_counts_its_own(tmp_path: Path) -> None:
    assert profile_usage(DF, "default").total == 100 * MB
    assert profile_usage(DF, "ci").images == 900 * MB
    assert profile_usage(DF, "nobody").total == 10 * MB  # the build cache, which has no owner


class DeadEngine(StaticWorld):
    def disk_usage(self, policy: object) -> dict[str, object]:
        raise Denied("cannot learn the engine's disk usage for [limits] disk_budget: no socket", rule="disk-budget")


def test_an_engine_that_does_not_answer_refuses_growth(tmp_path: Path) -> None:
    """Trying to cheat: a budget that cannot be checked is not a budget that passes."""
    decision = decide("docker pull alpine", policy_with(tmp_path, "1g"), DeadEngine())
    assert (decision.allowed, decision.rule) == (False, "disk-budget")
    assert decide("docker ps", policy_with(tmp_path, "1g"), DeadEngine()).allowed


@pytest.mark.parametrize("df", [
    {"Images": "lots"}, {"Images": [{"Id": "sha256:built", "Size": "40MB", "Labels": {"gatekeeper.owner": "default"}}]},
    {"Volumes": [1]}, {"BuildCache": [{"Size": True}]},
])  # fmt: skip
def test_a_malformed_answer_refuses_growth(df: dict[str, object], tmp_path: Path) -> None:
    decision = decide("docker pull alpine", policy_with(tmp_path, "1g"), DiskWorld(df))
    assert (decision.allowed, decision.rule) == (False, "disk-budget"), decision.reason


@pytest.mark.parametrize(("size", "shown"), [(0, "0B"), (999, "999B"), (1000, "1kB"), (1234567, "1.235MB"),
                                             (20 * 10**9, "20GB"), (10**16, "10PB")])
def test_human_size_is_dockers(size: int, shown: str) -> None:
    assert human_size(size) == shown


@pytest.mark.parametrize("bad", ['"1.5g"', '"lots"', "20", '"-1g"', '"0"'])
def test_bad_budgets_are_a_policy_error(bad: str, tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(f"[limits]\ndisk_budget = {bad}\n")
    with pytest.raises(PolicyError):
        load_policy(str(path))


def test_real_world_asks_the_engine_socket(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from gatekeeper.worlds import RealWorld
    from tests.fake_engine import fake_engine

    with fake_engine(tmp_path, {"system/df": DF}) as engine:  # type: ignore[dict-item]
        policy = SimpleNamespace(host=f"unix://{engine.server_address}")
        assert profile_usage(RealWorld().disk_usage(policy), "default").total == 100 * MB  # type: ignore[arg-type]
        assert engine.requests == ["GET /system/df"]
    for host in (f"unix://{tmp_path}/none.sock", "tcp://127.0.0.1:2375"):
        with pytest.raises(Denied) as denial:
            RealWorld().disk_usage(SimpleNamespace(host=host))  # type: ignore[arg-type]
        assert denial.value.rule == "disk-budget"


def test_doctor_shows_each_profiles_usage(tmp_path: Path) -> None:
    from gatekeeper.operator.doctor import Deployment, check_disk_usage
    from tests.fake_engine import fake_engine

    with fake_engine(tmp_path, {"system/df": DF}) as engine:  # type: ignore[dict-item]
        settings = {"docker": {"host": f"unix://{engine.server_address}"}, "limits": {"disk_budget": "100m"}}
        checks = {check.name: check for check in check_disk_usage(Deployment(), settings)}  # type: ignore[arg-type]
    assert set(checks) == {"disk usage default", "disk usage ci"}
    assert checks["disk usage default"].status == "warn"
    assert checks["disk usage default"].detail.startswith("100MB (images 70MB, volumes 20MB, build cache 10MB), at")
    assert checks["disk usage ci"].status == "warn"
    assert checks["disk usage ci"].detail.startswith("910MB (images 900MB, volumes 0B, build cache 10MB), at")
    settings["limits"] = {"disk_budget": "1g"}
    (tmp_path / "again").mkdir()
    with fake_engine(tmp_path / "again", {"system/df": DF}) as engine:  # type: ignore[dict-item]
        settings["docker"] = {"host": f"unix://{engine.server_address}"}
        under = {check.name: check for check in check_disk_usage(Deployment(), settings)}  # type: ignore[arg-type]
    assert (under["disk usage default"].status, under["disk usage default"].detail) == (
        "ok", "100MB (images 70MB, volumes 20MB, build cache 10MB) of the 1GB budget")
