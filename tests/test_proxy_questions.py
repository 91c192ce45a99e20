"""The first question of a request's decision fetched before the decision runs
(gatekeeper.proxy.verdicts.FirstQuestions, Proxy.decide_on_loop): the same verdicts and
records as deciding from scratch, the decision run once instead of twice, every question it
asks answered for this very request; each case beside its control (nothing remembered)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatekeeper.proxy.contract import ApiRequest, ApiVerdict
from gatekeeper.proxy.settings import PolicyState, default_settings
from gatekeeper.proxy.verdicts import FirstQuestions

from .proxy_harness import Harness, running, status_of

TOP = b"GET /containers/c1/top HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n"
CHANGES = b"GET /containers/c1/changes?then=c2 HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n"


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[Harness]:
    with running(tmp_path) as harness:
        tries: list[str] = []
        decide = harness.proxy.decide

        def counted(request: ApiRequest, policy: object, engine: object) -> ApiVerdict:
            tries.append(request.path)
            return decide(request, policy, engine)  # type: ignore[arg-type]  # the harness's engines

        harness.proxy.decide = counted
        harness.tries = tries  # type: ignore[attr-defined]  # read by the cases below
        yield harness


def asked(proxy: Harness) -> list[str]:
    return [target for _, target, _, _ in proxy.engine.received]


def decisions(proxy: Harness) -> list[tuple[object, ...]]:
    return [(r["method"], r["target"], r["decision"], r["rule"], r["reason"]) for r in proxy.records()]


def test_the_remembered_question_is_fetched_first_and_the_decision_runs_once(proxy: Harness) -> None:
    # Control: nothing remembered (the harness's Proxy has none): two tries for every request.
    first = [proxy.raw(TOP) for _ in range(2)]
    assert proxy.tries == ["/containers/c1/top"] * 4  # type: ignore[attr-defined]
    control_asked, control_records = asked(proxy), decisions(proxy)
    assert control_asked == ["/containers/c1/json", "/containers/c1/top"] * 2
    proxy.engine.received.clear()
    proxy.tries.clear()  # type: ignore[attr-defined]
    proxy.audit.write_bytes(b"")
    proxy.proxy.questions = FirstQuestions()
    again = [proxy.raw(TOP) for _ in range(3)]
    # The first request learns its question (two tries), the next ones fetch it first (one try).
    assert proxy.tries == ["/containers/c1/top"] * 4  # type: ignore[attr-defined]
    assert asked(proxy) == ["/containers/c1/json", "/containers/c1/top"] * 3  # each asked once per request
    assert [a.partition(b"\r\n\r\n")[2] for a in again] == [first[0].partition(b"\r\n\r\n")[2]] * 3
    assert decisions(proxy) == control_records + control_records[:1]
    assert status_of(again[2]) == status_of(first[1])


def test_a_dependent_second_question_is_still_asked(proxy: Harness) -> None:
    proxy.raw(CHANGES)
    control_asked, control_records = asked(proxy), decisions(proxy)
    assert control_asked == ["/containers/c1/json", "/containers/c2/json"]  # denied: c2 is not c1
    proxy.proxy.questions = FirstQuestions()
    for _ in range(3):
        proxy.engine.received.clear()
        proxy.audit.write_bytes(b"")
        proxy.raw(CHANGES)
        assert asked(proxy) == control_asked
        assert decisions(proxy) == control_records


def test_a_remembered_question_the_decision_does_not_ask_changes_nothing(proxy: Harness) -> None:
    proxy.raw(TOP)
    control_records = decisions(proxy)
    proxy.proxy.questions = questions = FirstQuestions()
    proxy.engine.received.clear()
    proxy.audit.write_bytes(b"")
    questions.state = proxy.proxy.state  # a question this request's decision never asks
    questions.kept[("GET", "/containers/c1/top", "agent", os.getuid())] = "/containers/c2/json"
    proxy.raw(TOP)
    assert decisions(proxy) == control_records  # the same verdict: only its own questions count
    assert asked(proxy) == ["/containers/c2/json", "/containers/c1/json", "/containers/c1/top"]


def test_a_reloaded_policy_remembers_nothing(proxy: Harness) -> None:
    proxy.proxy.questions = FirstQuestions()
    proxy.raw(TOP)
    proxy.raw(TOP)
    assert len(proxy.tries) == 3  # type: ignore[attr-defined]  # learned, then used
    proxy.reload()
    proxy.raw(TOP)
    assert len(proxy.tries) == 5  # type: ignore[attr-defined]  # a new state: two tries again


def state() -> PolicyState:
    return PolicyState(None, default_settings(), "test")


def request(method: str, target: str, body: bytes = b"", uid: int = 1000,
            profile: str = "agent") -> ApiRequest:
    return ApiRequest(method, target, target.partition("?")[0], None, {}, [], body, uid, profile)


def test_only_the_same_get_caller_and_state_get_a_remembered_question() -> None:
    now, questions = state(), FirstQuestions()
    questions.keep(now, request("GET", "/containers/c1/json"), "/containers/c1/json")
    assert questions.get(now, request("GET", "/containers/c1/json")) == "/containers/c1/json"  # control
    assert questions.get(now, request("HEAD", "/containers/c1/json")) is None
    assert questions.get(now, request("GET", "/containers/c2/json")) is None
    assert questions.get(now, request("GET", "/containers/c1/json", uid=1001)) is None
    assert questions.get(now, request("GET", "/containers/c1/json", profile="other")) is None
    assert questions.get(state(), request("GET", "/containers/c1/json")) is None
    questions.keep(now, request("POST", "/containers/c1/start"), "/containers/c1/json")
    questions.keep(now, request("GET", "/containers/c3/json", b"{}"), "/containers/c3/json")
    assert questions.get(now, request("POST", "/containers/c1/start")) is None
    assert questions.get(now, request("GET", "/containers/c3/json", b"{}")) is None
    for n in range(1000):  # bounded
        questions.keep(now, request("GET", f"/containers/x{n}/json"), "/q")
    assert len(questions.kept) <= 256
