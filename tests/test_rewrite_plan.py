"""The rewrite plan: the one place what runs departs from what was typed
(gatekeeper.rewrite_plan). Steps are given in positions of the typed argv;
applying them once gives the argv to run and where each pinned word landed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatekeeper.decision import decide
from gatekeeper.rewrite_plan import PlanConflict, RewritePlan
from tests.fakes import StaticWorld

TYPED = ["docker", "run", "-v", "w:/d", "--env-file", "e", "img", "sh"]


def test_an_empty_plan_runs_what_was_typed() -> None:
    assert RewritePlan().apply(TYPED) == (TYPED, [])


def test_replace_insert_and_remove_together() -> None:
    plan = RewritePlan()
    plan.replace(2, 2, ["--volume=/home/w:/d"])  # a flag and its value become one word
    plan.insert(2, ["--memory=1g"])  # right after 'run'
    plan.insert(2, ["--label", "gatekeeper.owner=default"])  # a second vetter, same place
    plan.remove(4, 2)  # --env-file e
    plan.replace(6, 1, ["sha256:abc"])  # the image pinned to its ID
    assert plan.apply(TYPED)[0] == [
        "docker", "run", "--memory=1g", "--label", "gatekeeper.owner=default",
        "--volume=/home/w:/d", "sha256:abc", "sh"]


def test_pins_land_where_the_replaced_word_ends_up() -> None:
    plan = RewritePlan()
    plan.insert(2, ["--a", "--b", "--c"])  # three words before everything that follows
    plan.replace(4, 2, ["--env-file=/home/e"])
    plan.pin(4, "--env-file=", b"K=V\n")
    plan.remove(2, 2)  # the -v before it: one word fewer
    argv, pins = plan.apply(TYPED)
    assert argv == ["docker", "run", "--a", "--b", "--c", "--env-file=/home/e", "img", "sh"]
    assert pins == [(5, "--env-file=", b"K=V\n")]
    assert argv[pins[0][0]].startswith(pins[0][1])


def test_insert_at_the_end() -> None:
    plan = RewritePlan()
    plan.insert(len(TYPED), ["--", "x"])
    assert plan.apply(TYPED)[0] == [*TYPED, "--", "x"]


def test_a_wider_replacement_supersedes_the_ones_inside_it() -> None:
    """compose rebuilds 'compose' and its root flags whole: the root flags' own
    rewrites (and pins) inside that span are gone, not applied twice."""
    typed = ["docker", "compose", "-f", "a.yaml", "--env-file", "e", "up"]
    plan = RewritePlan()
    plan.replace(2, 2, ["--file=/home/a.yaml"])
    plan.replace(4, 2, ["--env-file=/home/e"])
    plan.pin(4, "--env-file=", b"")
    plan.replace(1, 5, ["compose", "-f", "-", "-p", "app"])
    assert plan.apply(typed) == (["docker", "compose", "-f", "-", "-p", "app", "up"], [])


@pytest.mark.parametrize(("start", "count"), [
    (2, 2),  # the same span again: one vetter would silently undo another's checked words
    (3, 2),  # starts inside the -v span
    (1, 2),  # ends inside it
    (2, 1),  # narrower, inside it: the rest of the span would come back as typed
    (3, 1),
])
def test_a_replacement_overlapping_another_is_a_conflict(start: int, count: int) -> None:
    plan = RewritePlan()
    plan.replace(2, 2, ["--volume=/home/w:/d"])
    with pytest.raises(PlanConflict):
        plan.replace(start, count, ["x"])


def test_an_insert_inside_a_replacement_is_a_conflict() -> None:
    plan = RewritePlan()
    plan.replace(2, 2, ["--volume=/home/w:/d"])
    plan.insert(3, ["x"])  # between -v and its value, which are one replacement
    with pytest.raises(PlanConflict):
        plan.apply(TYPED)


def test_a_pin_needs_a_replacement_to_name() -> None:
    with pytest.raises(PlanConflict):
        RewritePlan().pin(4, "--env-file=", b"")


def test_a_plan_conflict_is_a_denial_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    """A vetter bug that makes two steps collide fails closed, as an internal error."""
    from gatekeeper.policy import load_policy
    from gatekeeper.vetting import context

    original = context.Context.insert_after_command

    def colliding(self, words):  # type: ignore[no-untyped-def]
        original(self, words)
        self.vetted.plan.insert(self.located.args_start + 1, ["x"])  # inside a replaced span
        self.vetted.plan.replace(self.located.args_start, 2, ["-d"])

    policy, world = load_policy(None), StaticWorld()
    assert decide("docker run -d img", policy, world).allowed  # control: the owner label is inserted
    monkeypatch.setattr(context.Context, "insert_after_command", colliding)
    decision = decide("docker run -d img", policy, world)
    assert (decision.allowed, decision.rule) == (False, "internal-error")


# --- the property: every word no step touches reaches docker, in its order ---


@st.composite
def plans(draw):  # type: ignore[no-untyped-def]
    """A typed argv and non-overlapping steps against it."""
    typed = draw(st.lists(st.text(alphabet="abc-", max_size=3), min_size=1, max_size=10))
    plan, touched, i = RewritePlan(), set(), 0
    while i < len(typed):
        count = draw(st.integers(1, min(3, len(typed) - i)))
        if draw(st.integers(0, 3)) == 0:
            plan.replace(i, count, draw(st.lists(st.just("NEW"), max_size=2)))
            touched |= set(range(i, i + count))
        if draw(st.booleans()):
            plan.insert(i, ["INS"])
        i += count
    if draw(st.booleans()):
        plan.insert(len(typed), ["INS"])
    return typed, plan, touched


@given(plans())
def test_untouched_words_keep_their_order(case) -> None:  # type: ignore[no-untyped-def]
    typed, plan, touched = case
    out, _ = plan.apply(typed)
    kept = [(i, w) for i, w in enumerate(typed) if i not in touched]
    # each untouched word appears, in order, and nothing but plan words sits between them
    rest = iter(enumerate(out))
    for _, word in kept:
        assert any(w == word for _, w in rest), (typed, out)
    added = sum(len(words) for words in plan.inserted.values())
    replaced = sum(len(words) for _, words in plan.replaced.values())
    assert len(out) == len(kept) + added + replaced


# --- the same property over every allowed corpus command, as the vetters plan it ---

LIMITS_POLICY = """
[limits]
default_memory = "512m"
default_pids_limit = 100
log_max_size = "10m"
log_max_file = 3
"""


def untouched_in_order(typed: list[str], plan: RewritePlan, out: list[str]) -> bool:
    touched = {i for start, (count, _) in plan.replaced.items() for i in range(start, start + count)}
    rest = iter(out)
    return all(any(word == seen for seen in rest) for i, word in enumerate(typed) if i not in touched)


@pytest.mark.parametrize("limits", [False, True], ids=["default policy", "with injected limits"])
def test_every_allowed_corpus_command_keeps_its_untouched_words(limits: bool, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from gatekeeper.policy import load_policy
    from tests.corpus_loader import load_corpus

    path = tmp_path / "policy.toml"
    path.write_text(LIMITS_POLICY if limits else "")
    policy, applied = load_policy(str(path)), []
    original = RewritePlan.apply

    def recording(self, argv):  # type: ignore[no-untyped-def]
        result = original(self, argv)
        applied.append((list(argv), self, result[0]))
        return result

    monkeypatch.setattr(RewritePlan, "apply", recording)
    allowed = inserted = 0
    for case in [*load_corpus("core.txt"), *load_corpus("run.txt"), *load_corpus("build.txt")]:
        applied.clear()
        if decide(case.command, policy, StaticWorld()).allowed:
            allowed += 1
            typed, plan, out = applied[0]
            assert untouched_in_order(typed, plan, out), (case.command, out)
            inserted += bool(plan.inserted)
    assert allowed > 100 and inserted > 20  # the owner label at least, the caps with limits
