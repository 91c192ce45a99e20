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
