"""The core allow/deny table: realistic agent commands and every route to a
blocked operation (aliases, global flags, quoting, plugins, shell syntax)."""

from __future__ import annotations

import pytest

from gatekeeper.decision import decide
from gatekeeper.policy import load_policy
from tests.conftest import names_default
from tests.corpus_loader import Case, corpus_params, load_corpus
from tests.fakes import StaticWorld


@pytest.fixture(scope="module")
def policy():  # type: ignore[no-untyped-def]
    return names_default(load_policy(None))  # the corpus is decided under the deployed default


@pytest.mark.parametrize("case", corpus_params("core.txt"))
def test_core_corpus(case: Case, policy) -> None:  # type: ignore[no-untyped-def]
    decision = decide(case.command, policy, StaticWorld())
    assert decision.as_dict()["decision"] == case.expected, decision.reason
    if case.rule != "*":
        assert decision.rule == case.rule, decision.reason


def test_corpus_is_large_and_two_sided() -> None:
    cases = load_corpus("core.txt")
    assert len(cases) >= 150
    assert {c.expected for c in cases} == {"allow", "deny"}


ISSUE_EXAMPLES = [
    ("docker -H unix:///var/run/docker.sock exec x sh", False),
    ("docker container exec x sh", False),
    ("docker system dial-stdio", False),
    ("docker ps; id", False),
    ('docker e"x"ec x', False),
]


@pytest.mark.parametrize(("command", "allowed"), ISSUE_EXAMPLES)
def test_issue_examples(command: str, allowed: bool, policy) -> None:  # type: ignore[no-untyped-def]
    assert decide(command, policy, StaticWorld()).allowed is allowed


def test_allowed_argv_is_exactly_the_words(policy) -> None:  # type: ignore[no-untyped-def]
    decision = decide("docker ps -a --format '{{.Names}}'", policy, StaticWorld())
    assert decision.allowed
    assert decision.argv == ["docker", "ps", "-a", "--format", "{{.Names}}"]
    assert decision.canonical == "container ls"


def test_a_bug_in_a_vetter_is_an_audited_denial(policy, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Anything but Denied raised while vetting still yields a Decision (deny), so the
    ForceCommand writes its audit record and the agent gets one line, not a traceback."""
    from gatekeeper.vetting import families

    def broken(ctx: object) -> None:
        raise KeyError("oops")

    monkeypatch.setitem(families.FAMILY_VETTERS, "container run", broken)
    decision = decide("docker run --rm alpine true", policy, StaticWorld())
    assert not decision.allowed and decision.rule == "internal-error"
    assert "KeyError" in decision.reason
