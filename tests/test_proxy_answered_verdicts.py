"""Verdicts given again on the same answer (gatekeeper.proxy.verdicts.AnsweredVerdicts): an
allowed GET of one container whose decision asked the engine one question is the decision again
only when the engine answers that question, fetched for this request, with the same bytes.
Driven through the proxy's own decision loop (Proxy.decide_on_loop) with the production
decision, the engine's answers made from tests/api_engine.py's objects."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from gatekeeper.operator.proxy_cmd import production_decide, production_transform
from gatekeeper.policy import Policy
from gatekeeper.proxy import server
from gatekeeper.proxy.contract import ApiRequest, ApiVerdict
from gatekeeper.proxy.endpoints import ROUTES
from gatekeeper.proxy.engine import EngineAnswer
from gatekeeper.proxy.records import Caller
from gatekeeper.proxy.server import Proxy
from gatekeeper.proxy.verdicts import ANSWERED_ENDPOINTS, AnsweredVerdicts, PureVerdicts
from gatekeeper.proxy.vet import vet_api_request
from tests.api_engine import OWNER, FakeEngine, cid, container
from tests.test_proxy_verdicts import same, state
from tests.test_proxy_vet import OVERRIDES, POLICY, make_policy, request

OWNED_INSPECT = make_policy({**OVERRIDES, "scope": {"inspect": "owned"}})
CALLER = Caller(4242, 1000, 1000, "ai-worker")


class Engine:
    """What fetch_pooled brings back: FakeEngine's answers as JSON bytes; every question counted."""

    def __init__(self) -> None:
        self.fake = FakeEngine()
        self.asked: list[str] = []

    async def fetch(self, pool: object, socket_path: str, target: str, timeout: float = 0.0,
                    loop: object = None) -> EngineAnswer:
        self.asked.append(target)
        status, value = self.fake.get_json(target)
        body = json.dumps(value).encode()
        return EngineAnswer(status, b"OK", [(b"content-type", b"application/json")], body)

    def replace(self, name: str, labels: dict[str, str]) -> None:
        """The container `name` removed and another made with its name (the operator's, say)."""
        self.fake.containers = [c for c in self.fake.containers if c["Name"] != "/" + name]
        self.fake.containers.append(container(cid("7"), name, labels, running=True))


class Loop:
    """A proxy whose decisions are counted, its records kept in memory."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, policy: Policy = POLICY) -> None:
        self.engine = Engine()
        monkeypatch.setattr(server, "fetch_pooled", self.engine.fetch)
        self.decisions = 0
        self.records: list[dict[str, Any]] = []
        self.state = state(policy)
        self.proxy = Proxy(self.state, self.decide, production_transform,
                           record=lambda _policy, record: self.records.append(record), pure=PureVerdicts())

    def decide(self, request: ApiRequest, policy: Policy, engine: Any) -> ApiVerdict:
        self.decisions += 1
        return production_decide(request, policy, engine)

    def verdict(self, target: str, uid: int = 1000) -> tuple[ApiVerdict, dict[str, EngineAnswer]]:
        fetched: dict[str, EngineAnswer] = {}
        asked = request("GET", target)
        asked.uid = uid

        async def decided() -> ApiVerdict | None:
            return await self.proxy.decide_on_loop(asked, self.state, CALLER, {}, fetched)

        verdict = asyncio.run(decided())
        assert verdict is not None  # decided on the loop (no host question)
        return verdict, fetched

    def settled(self, target: str) -> ApiVerdict:
        """The verdict once the proxy has learned the request (its first question, its image's
        labels): the third time it is asked."""
        for _ in range(3):
            verdict, _ = self.verdict(target)
        return verdict


def fresh(target: str, engine: Engine, policy: Policy = POLICY) -> ApiVerdict:
    return vet_api_request(request("GET", target), policy, engine.fake)


def test_the_endpoints_are_gets_of_one_container() -> None:
    routes = [route for route in ROUTES if route.ident in ANSWERED_ENDPOINTS]
    assert {route.ident for route in routes} == {"container.inspect", "container.logs", "container.top"}
    assert {(route.method, route.kind, route.vetter) for route in routes} == {
        ("GET", "container", "inspect"), ("GET", "container", "object"), ("GET", "container", "top")}


@pytest.mark.parametrize("target", ["/v1.50/containers/web/json", "/v1.50/containers/web/logs?stdout=1",
                                    "/v1.50/containers/other/json"])
def test_the_same_answer_gives_the_kept_verdict_without_deciding_again(
        monkeypatch: pytest.MonkeyPatch, target: str) -> None:
    loop = Loop(monkeypatch)
    kept = loop.settled(target)
    decisions, questions = loop.decisions, len(loop.engine.asked)
    again, fetched = loop.verdict(target)
    assert loop.decisions == decisions  # not decided again
    assert len(loop.engine.asked) == questions + 1  # its question still asked, for this request
    assert again is kept and same(again, fresh(target, loop.engine))
    assert list(fetched) == loop.engine.asked[-1:]  # the answer the client gets is this request's
    assert len(loop.records) == 4  # every request recorded


def test_a_changed_answer_is_decided_afresh(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = Loop(monkeypatch)
    loop.settled("/v1.50/containers/web/json")
    decisions = loop.decisions
    web = loop.engine.fake.containers[0]
    loop.engine.fake.containers[0] = {**web, "State": {"Running": False}}  # the same container, changed
    again, _ = loop.verdict("/v1.50/containers/web/json")
    assert loop.decisions > decisions and again.allowed


def test_a_container_replaced_under_its_name_is_never_judged_by_the_kept_verdict(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Under [scope] inspect = "owned": the agent inspects its container `web` (kept); the
    operator's container takes the name; the agent's inspect of `web` is refused. Control: a
    memory that gave the kept verdict for the same request whatever the engine answered hands
    the agent the operator's container (allowed, answered by that object)."""
    target = "/v1.50/containers/web/json"

    def replaced_then_asked(memory_keyed_by_request_only: bool) -> tuple[ApiVerdict, dict[str, EngineAnswer]]:
        with pytest.MonkeyPatch.context() as patch:
            if memory_keyed_by_request_only:
                patch.setattr(AnsweredVerdicts, "given",
                              lambda self, state, request, question, answer: (self.get(state, request) or
                                                                              (None,) * 4)[3])
            loop = Loop(patch, OWNED_INSPECT)
            assert loop.settled(target).allowed
            loop.engine.replace("web", {OWNER: "alice"})
            assert not fresh(target, loop.engine, OWNED_INSPECT).allowed
            return loop.verdict(target)

    stale, fetched = replaced_then_asked(memory_keyed_by_request_only=True)
    assert stale.allowed and b'"Id": "' + cid("7").encode() in fetched[target].body  # the attack, defence off
    verdict, _ = replaced_then_asked(memory_keyed_by_request_only=False)
    assert (verdict.allowed, verdict.rule) == (False, "scope-owned")


def test_kept_for_the_same_caller_and_policy_state_only(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = Loop(monkeypatch)
    loop.settled("/v1.50/containers/web/json")
    decisions = loop.decisions
    loop.verdict("/v1.50/containers/web/json", uid=1001)  # another account with the same profile
    assert loop.decisions > decisions
    decisions = loop.decisions
    loop.state = state(POLICY)  # a reloaded policy
    loop.verdict("/v1.50/containers/web/json")
    assert loop.decisions > decisions


@pytest.mark.parametrize("target", [
    "/v1.50/images/myapp/json",                      # an image: its decision reads the build records
    "/v1.50/containers/web/stats?stream=0",          # not one of the endpoints
])
def test_other_requests_are_decided_every_time(monkeypatch: pytest.MonkeyPatch, target: str) -> None:
    loop = Loop(monkeypatch)
    loop.settled(target)
    decisions = loop.decisions
    loop.verdict(target)
    assert loop.decisions > decisions


def test_a_denied_verdict_is_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = Loop(monkeypatch, OWNED_INSPECT)
    assert not loop.settled("/v1.50/containers/other/json").allowed
    decisions = loop.decisions
    loop.verdict("/v1.50/containers/other/json")
    assert loop.decisions > decisions
