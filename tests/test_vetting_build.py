"""docker build and its aliases: the corpus (tests/corpus/build.txt), the
issue's cheat list, and the argv docker gets after host paths are resolved."""

from __future__ import annotations

import pytest

from gatekeeper.decision import decide
from gatekeeper.policy import load_policy
from tests.conftest import names_default
from tests.corpus_loader import Case, corpus_params, load_corpus
from tests.fakes import StaticWorld
from tests.owner_label import without_owner_label


@pytest.fixture(scope="module")
def policy():  # type: ignore[no-untyped-def]
    return names_default(load_policy(None))  # the corpus is decided under the deployed default


@pytest.mark.parametrize("case", corpus_params("build.txt"))
def test_build_corpus(case: Case, policy) -> None:  # type: ignore[no-untyped-def]
    decision = decide(case.command, policy, StaticWorld())
    assert decision.as_dict()["decision"] == case.expected, decision.reason
    if case.rule != "*":
        assert decision.rule == case.rule, decision.reason


TRYING_TO_CHEAT = [
    ("docker build -o type=local,dest=/tmp/x .", "-o"),
    ("docker build -o - .", "-o"),
    ("docker build --secret id=x,src=/etc/shadow .", "--secret"),
    ("docker build --output=type=tar,dest=work/i.tar work/app", "--output"),
    ("docker build -o type=image,name=me/app,push=true work/app", "-o"),
    ("docker build --cache-to type=local,dest=/home/ai-worker/.ssh work/app", "--cache-to"),
    ("docker build --build-context x=/ work/app", "--build-context"),
    ("docker build -f /etc/shadow work/app", "-f"),
    ("docker build --network host work/app", "--network"),
    ("docker build --allow security.insecure work/app", "--allow"),
]


@pytest.mark.parametrize(("command", "flag"), TRYING_TO_CHEAT, ids=[c for c, _ in TRYING_TO_CHEAT])
def test_trying_to_cheat_is_denied_naming_the_flag(command: str, flag: str, policy) -> None:  # type: ignore[no-untyped-def]
    decision = decide(command, policy, StaticWorld())
    assert not decision.allowed
    assert decision.reason.startswith(flag + " ") or decision.reason.startswith(flag + ":")


W = "/home/ai-worker/work"

REWRITES = [
    ("docker build -t ai-app /home/ai-worker/work/app",
     ["docker", "build", "--file=-", "-t", "ai-app", f"{W}/app"]),
    ("docker build ./work/app", ["docker", "build", "--file=-", f"{W}/app"]),  # the Dockerfile as checked
    ("docker build work/app -t ai-app", ["docker", "build", "--file=-", f"{W}/app", "-t", "ai-app"]),
    ("docker build -- work/app", ["docker", "build", "--file=-", "--", f"{W}/app"]),
    ("docker build -f - work/app", ["docker", "build", "-f", "-", f"{W}/app"]),
    ("docker build -qf - work/app", ["docker", "build", "-qf", "-", f"{W}/app"]),
    ("docker build --file=- work/app", ["docker", "build", "--file=-", f"{W}/app"]),  # path-or-stdin
    ("docker build -f- -- work/app", ["docker", "build", "-f-", "--", f"{W}/app"]),
    (
        "docker build -f work/app/Dockerfile work/app",
        ["docker", "build", "--file=-", f"{W}/app"],  # its bytes on stdin (images.pin_dockerfile)
    ),
    ("docker build -o work/out -", ["docker", "build", f"--output=type=local,dest={W}/out", "-"]),
    (
        "docker build -o type=local,dest=work/out,platform-split=false -",
        ["docker", "build", f"--output=type=local,platform-split=false,dest={W}/out", "-"],
    ),
    ("docker build --secret id=t,src=work/tok -", ["docker", "build", f"--secret=id=t,src={W}/tok", "-"]),
    (
        "docker build --build-context lib=./work/lib -",
        ["docker", "build", f"--build-context=lib={W}/lib", "-"],
    ),
    (
        "docker build --cache-to type=local,dest=work/c,mode=max -",
        ["docker", "build", f"--cache-to=type=local,mode=max,dest={W}/c", "-"],
    ),
    (
        "docker build --cache-from type=local,src=work/c -",
        ["docker", "build", f"--cache-from=type=local,src={W}/c", "-"],
    ),
    ("docker builder build --iidfile work/iid -", ["docker", "builder", "build", f"--iidfile={W}/iid", "-"]),
]


@pytest.mark.parametrize(("command", "argv"), REWRITES, ids=[c for c, _ in REWRITES])
def test_host_paths_reach_docker_resolved(command: str, argv: list[str], policy) -> None:  # type: ignore[no-untyped-def]
    decision = decide(command, policy, StaticWorld())
    assert decision.allowed, decision.reason
    assert without_owner_label(decision.argv) == argv


def test_context_through_a_symlink_out_is_denied(policy) -> None:  # type: ignore[no-untyped-def]
    world = StaticWorld({f"{W}/app": "/etc"})
    decision = decide("docker build work/app", policy, world)
    assert (decision.allowed, decision.rule) == (False, "host-path")
    assert "'/etc'" in decision.reason


def test_build_corpus_is_two_sided() -> None:
    cases = load_corpus("build.txt")
    assert len(cases) >= 100
    assert {c.expected for c in cases} == {"allow", "deny"}
