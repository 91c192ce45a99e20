"""Starts the proxy refuses, and what becomes of the container (issue 12, layout b).

In layout (b) `docker run` reaches the proxy as a create and then a start; the proxy re-checks
some things only at the start (bind sources the agent may have swapped for symlinks since the
create, [limits] max_running). A refused start of a `run --rm` container left it created and
the client hung: it waits for the removal the engine does only after a start it saw fail.
Every start-time refusal goes through one path (vet.start_refused): a never-started AutoRemove
container is removed, as the engine would; any other never-started one stays created and the
refusal says so; one that ran before is left as it was.

Each case has its control in the same test: the same start with the refusal's cause taken out is
allowed and removes nothing; with the removal switched off, the container stays.
"""

from __future__ import annotations

import pytest

from gatekeeper.policy import Policy
from gatekeeper.proxy import vet
from gatekeeper.proxy.vet import vet_api_request
from tests.api_engine import MINE, FakeEngine, container
from tests.test_proxy_vet import OVERRIDES, POLICY, make_policy, request

BOX = "e1" * 32  # an ID no container of tests/api_engine.py has
NEVER = ("0001-01-01T00:00:00Z", "created")
RAN = ("2026-11-30T04:00:00Z", "exited")
SWAPPED = "/home/ai-worker/link"  # tests/api_engine.py LINKS: -> /etc
FRESH = "/home/ai-worker/fresh"


def capped(cap: int) -> Policy:
    return make_policy({**OVERRIDES, "limits": {**OVERRIDES["limits"], "max_running": cap}})  # type: ignore[dict-item]


def box_engine(source: str, *, autoremove: bool, state: tuple[str, str]) -> FakeEngine:
    engine = FakeEngine()
    box = container(BOX, "box", MINE, (source,))
    box["HostConfig"]["AutoRemove"] = autoremove
    box["State"] = {"Running": False, "Status": state[1], "StartedAt": state[0]}
    engine.containers.append(box)
    return engine


# (why the start is refused, the bind source, the policy): each refusal checked at the start
REFUSALS = {
    "host-path: source swapped for a symlink": ("host-path", SWAPPED, POLICY),
    "limit-running: at the cap": ("limit-running", FRESH, capped(1)),
}
# (AutoRemove, state) -> what the refusal says of the container, and whether it is removed
OUTCOMES = [
    pytest.param(True, NEVER, "(--rm, never started) was removed", True, id="run --rm, never started"),
    pytest.param(False, NEVER, "stays created, not started", False, id="run, never started"),
    pytest.param(True, RAN, None, False, id="--rm that ran before"),
    pytest.param(False, RAN, None, False, id="stopped, ran before"),
]


@pytest.mark.parametrize("refusal", REFUSALS.values(), ids=REFUSALS.keys())
@pytest.mark.parametrize(("autoremove", "state", "says", "removes"), OUTCOMES)
def test_a_refused_start_says_what_became_of_the_container(
        refusal: tuple[str, str, Policy], autoremove: bool, state: tuple[str, str], says: str | None,
        removes: bool) -> None:
    rule, source, policy = refusal
    start = request("POST", "/v1.47/containers/box/start")
    control = box_engine(FRESH, autoremove=autoremove, state=state)
    assert vet_api_request(start, POLICY, control).allowed  # control: nothing to refuse, nothing removed
    assert not any(asked.startswith("remove container") for asked in control.asked)
    engine = box_engine(source, autoremove=autoremove, state=state)
    verdict = vet_api_request(start, policy, engine)
    assert (verdict.allowed, verdict.rule) == (False, rule), verdict.reason
    assert (f"remove container {BOX}" in engine.asked) is removes
    assert any(c["Id"] == BOX for c in engine.containers) is not removes
    if says is None:
        assert "stays created" not in verdict.reason and "was removed" not in verdict.reason  # left as it was
    else:
        assert f"container 'box' {says}" in verdict.reason, verdict.reason


@pytest.mark.parametrize("refusal", REFUSALS.values(), ids=REFUSALS.keys())
def test_without_the_removal_the_refused_run_rm_container_stays(
        refusal: tuple[str, str, Policy], monkeypatch: pytest.MonkeyPatch) -> None:
    """The defence off (the engine's DELETE never sent): the --rm container stays, and the refusal
    does not claim a removal that did not happen."""
    rule, source, policy = refusal
    start = request("POST", "/v1.47/containers/box/start")
    monkeypatch.setattr(vet, "removed", lambda engine, ident: False)
    engine = box_engine(source, autoremove=True, state=NEVER)
    verdict = vet_api_request(start, policy, engine)
    assert (verdict.allowed, verdict.rule) == (False, rule)
    assert any(c["Id"] == BOX for c in engine.containers)
    assert "stays created" in verdict.reason and "was removed" not in verdict.reason
    monkeypatch.undo()
    engine = box_engine(source, autoremove=True, state=NEVER)
    assert "was removed" in vet_api_request(start, policy, engine).reason
    assert not any(c["Id"] == BOX for c in engine.containers)


def test_a_restart_refused_removes_the_never_started_rm_container_too() -> None:
    """docker restart starts a created container; refused, the engine would remove an --rm one."""
    engine = box_engine(SWAPPED, autoremove=True, state=NEVER)
    verdict = vet_api_request(request("POST", "/v1.47/containers/box/restart"), POLICY, engine)
    assert (verdict.allowed, verdict.rule) == (False, "host-path")
    assert f"remove container {BOX}" in engine.asked


def test_a_start_of_another_profiles_container_removes_nothing() -> None:
    """Ownership is judged first: a refusal for scope never touches the container."""
    engine = FakeEngine()
    theirs = container(BOX, "box", {"gatekeeper.owner": "alice"}, (SWAPPED,))
    theirs["HostConfig"]["AutoRemove"] = True
    theirs["State"] = {"Running": False, "Status": NEVER[1], "StartedAt": NEVER[0]}
    engine.containers.append(theirs)
    verdict = vet_api_request(request("POST", "/v1.47/containers/box/start"), POLICY, engine)
    assert not verdict.allowed and verdict.rule != "host-path"
    assert not any(asked.startswith("remove container") for asked in engine.asked)
    assert "was removed" not in verdict.reason


def test_an_internal_error_in_the_start_checks_settles_the_container(monkeypatch: pytest.MonkeyPatch) -> None:
    """A check that fails (a bug, an engine answer it cannot read) refuses the start as
    internal-error and settles the never-started --rm container like any refusal: the client
    of `docker run --rm` would otherwise wait. Control: without the failure the start is allowed
    and nothing is removed."""
    start = request("POST", "/v1.47/containers/box/start")
    engine = box_engine(FRESH, autoremove=True, state=NEVER)
    verdict = vet_api_request(start, POLICY, engine)
    assert verdict.allowed and verdict.starts == BOX  # the transport knows which container to settle
    assert not any(asked.startswith("remove container") for asked in engine.asked)

    def broken(call: object, ident: str) -> None:
        raise ValueError("an answer the check cannot read")

    monkeypatch.setattr(vet, "check_running_room", broken)
    engine = box_engine(FRESH, autoremove=True, state=NEVER)
    verdict = vet_api_request(start, POLICY, engine)
    assert (verdict.allowed, verdict.rule) == (False, "internal-error"), verdict.reason
    assert "ValueError" in verdict.reason and "(--rm, never started) was removed" in verdict.reason
    assert not any(c["Id"] == BOX for c in engine.containers)
