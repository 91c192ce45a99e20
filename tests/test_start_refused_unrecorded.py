"""A start the decision allowed but the audit log then refused (issue 12, layout b).

Nothing runs unrecorded: a start whose record cannot be written ([audit] max_bytes reached,
the log unwritable) is refused after its decision (Proxy.record_verdict). That refusal used to
skip vet.start_refused's settling: a never-started `run --rm` container stayed created and
`docker run --rm` waited for a removal that never came. The verdict of an allowed start names
its container (ApiVerdict.starts); a refusal after the decision keeps the name and the transport
settles it as a decided refusal would (removed, or named as left created).

Control in the same test: the same start with room in the log is allowed and nothing is removed;
with the name not carried to the refusal (the defence off) the container stays and the refusal
says nothing of it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gatekeeper.proxy import server, vet
from gatekeeper.proxy.contract import ApiRequest, ApiVerdict, EngineQueries
from tests.api_engine import FakeEngine

from .proxy_harness import Harness, running
from .test_audit_ceiling import with_ceiling
from .test_proxy_guards import users
from .test_start_refusals import BOX, FRESH, NEVER, box_engine


def start_decide(request: ApiRequest, policy: object, engine: EngineQueries) -> ApiVerdict:
    """vet_start's allowed verdict for the one container the fake engine has."""
    verdict = ApiVerdict(True, "allowed", "stand-in", "container.start", target=request.target)
    verdict.starts = BOX
    return verdict


def started(harness: Harness) -> tuple[int, str]:
    conn = harness.http()
    conn.request("POST", "/v1.47/containers/box/start")
    response = conn.getresponse()
    body = response.read()
    return response.status, json.loads(body)["message"] if body else ""


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> FakeEngine:
    """The container's engine (tests/api_engine.py): what settling asks and removes."""
    fake = box_engine(FRESH, autoremove=True, state=NEVER)
    settle = vet.never_started_fate
    monkeypatch.setattr(vet, "never_started_fate", lambda upstream, ident: settle(fake, ident))
    return fake


@pytest.mark.parametrize("defence", [True, False], ids=["settled", "control-defence-off"])
def test_a_start_refused_by_a_full_log_settles_its_rm_container(
        tmp_path: Path, engine: FakeEngine, defence: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not defence:
        monkeypatch.setattr(server, "refused_after", lambda decided, refusal: refusal)
    with running(tmp_path, users("request_rate = 0\nintake_per_minute = 0")) as proxy:
        proxy.proxy.decide = start_decide
        status, _ = started(proxy)  # control: room in the log, the start is forwarded
        assert status == 404  # (the harness's engine knows no such container; it was asked)
        assert not any(asked.startswith("remove container") for asked in engine.asked)
        with_ceiling(proxy, proxy.audit.stat().st_size + 10)
        status, message = started(proxy)
    assert status == 507 and "(rule audit-full)" in message, message
    gone = not any(c["Id"] == BOX for c in engine.containers)
    assert gone is defence
    assert ("(--rm, never started) was removed" in message) is defence, message


def test_a_start_refused_by_an_unwritable_log_settles_its_rm_container(
        tmp_path: Path, engine: FakeEngine) -> None:
    """The log cannot be written at all (AuditError, not the ceiling): the same settling."""
    with running(tmp_path, users("request_rate = 0\nintake_per_minute = 0")) as proxy:
        proxy.proxy.decide = start_decide

        def unwritable(policy: object, record: dict[str, object]) -> None:
            raise server.AuditError("cannot write audit log: Read-only file system")

        proxy.proxy.record = unwritable
        status, message = started(proxy)
    assert status == 403 and "nothing runs unrecorded" in message, message
    assert "(--rm, never started) was removed" in message
    assert not any(c["Id"] == BOX for c in engine.containers)


def test_a_refusal_that_names_no_start_settles_nothing(tmp_path: Path, engine: FakeEngine) -> None:
    """Only a start's verdict names a container: any other refusal by a full log touches none."""
    with running(tmp_path, users("request_rate = 0\nintake_per_minute = 0")) as proxy:
        with_ceiling(proxy, proxy.audit.stat().st_size + 10)
        conn = proxy.http()
        conn.request("GET", "/containers/json")
        response = conn.getresponse()
        response.read()
    assert response.status == 507
    assert not any(asked.startswith("remove container") for asked in engine.asked)


# ---------------------------------------------------------------- volumes made for a refused create


class Volumes:
    """The engine's side of removing volumes: what was asked; `in_use` answers 409."""

    def __init__(self, in_use: tuple[str, ...] = ()) -> None:
        self.removed: list[str] = []
        self.in_use = in_use

    def remove_volume(self, name: str) -> tuple[int, object]:
        if name in self.in_use:
            return 409, {"message": "volume is in use"}
        self.removed.append(name)
        return 204, None


def create_decide(request: ApiRequest, policy: object, engine: EngineQueries) -> ApiVerdict:
    """vet_container_create's allowed verdict after it made the create's new volume."""
    verdict = ApiVerdict(True, "allowed", "stand-in", "container.create", target=request.target)
    verdict.made_volumes = ("ai-new",)
    return verdict


@pytest.mark.parametrize("defence", [True, False], ids=["removed", "control-defence-off"])
def test_a_create_over_its_budget_removes_the_volume_made_for_it(
        tmp_path: Path, defence: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """[budgets] containers_per_hour is charged after the decision, which made the create's new
    volume: the refused create left it behind. Control: the first create (in budget) keeps its
    volume; with the removal not carried to the refusal, the second's stays too."""
    from gatekeeper.proxy import leftovers

    engine = Volumes()
    remove = leftovers.removed_volumes
    monkeypatch.setattr(leftovers, "removed_volumes", lambda upstream, names: remove(engine, names))
    if not defence:
        monkeypatch.setattr(server, "refused_after", lambda decided, refusal: refusal)
    with running(tmp_path, users("request_rate = 0\nintake_per_minute = 0",
                                 "[budgets]\ncontainers_per_hour = 1\n")) as proxy:
        proxy.proxy.decide = create_decide
        conn = proxy.http()
        for _ in range(2):
            conn.request("POST", "/v1.47/containers/create", body=b"{}")
            response = conn.getresponse()
            body = response.read()
    message = json.loads(body)["message"]
    assert response.status == 403 and "(rule budget-containers)" in message, message
    assert engine.removed == (["ai-new"] if defence else [])
    assert ("volume ai-new, made for this create, removed" in message) is defence, message


def test_a_volume_in_use_is_kept_and_named() -> None:
    from gatekeeper.proxy.leftovers import removed_volumes

    engine = Volumes(in_use=("b",))
    said = removed_volumes(engine, ("a", "b", "c"))
    assert engine.removed == ["a", "c"]
    assert said == ("volumes a, c, made for this create, removed; "
                    "volume b, made for this create, kept (in use)")
    assert removed_volumes(engine, ()) is None


@pytest.mark.parametrize(("volume", "made"), [("ai-fresh", ("ai-fresh",)), ("myvol", ())],
                         ids=["new: made by the proxy", "control: existing"])
def test_the_verdict_names_the_volumes_its_decision_made(volume: str, made: tuple[str, ...]) -> None:
    from gatekeeper.proxy.vet import vet_api_request
    from tests.test_proxy_vet import POLICY, request

    body = json.dumps({"Image": "alpine", "HostConfig": {"Binds": [f"{volume}:/data"]}})
    verdict = vet_api_request(request("POST", "/v1.47/containers/create", body), POLICY, FakeEngine())
    assert verdict.allowed, verdict.reason
    assert verdict.made_volumes == made
