"""Restart policies under [limits] max_running (issue 12): confinement after the decision.

The attack: `max_running = 2`; `docker run -d --restart always` twice, `docker stop` both, two
more: two running, within the cap. The next daemon restart starts all four: the engine's own
restart, counted by nobody. "on-failure" does the same for every container `docker stop` or
`kill` left with exit 137/143; "unless-stopped" starts again only what was running (at most the
cap) or exited by itself (tests/e2e/test_restart_policy.py shows it on the engine). So with a cap
set, run/create --restart, compose restart:/deploy.restart_policy and the API's RestartPolicy
allow only "no" and "unless-stopped" (rule limit-restart); without a cap, everything (the
control). `update` may give no restart policy at all under a cap: unless-stopped given to a
container that exited by itself is started by the next daemon restart.
"""

# One case per line keeps each input beside its expectation; such lines run long.
# ruff: noqa: E501

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gatekeeper.decision import decide
from gatekeeper.errors import Denied
from gatekeeper.policy import Policy, load_policy
from gatekeeper.proxy.vet import vet_api_request
from gatekeeper.vetting import limits
from tests.api_engine import MINE, FakeEngine, cid, container
from tests.test_proxy_vet import OVERRIDES, make_policy, request
from tests.test_running_count import Engine


def policy(tmp_path: Path, cap: int) -> Policy:
    path = tmp_path / f"policy-{cap}.toml"
    path.write_text(f"[limits]\nmax_running = {cap}\n" if cap else "")
    return load_policy(str(path))


# ---------------------------------------------------------------- CLI layer: run/create --restart

CLI_REFUSED = [
    "docker run -d --restart always img",
    "docker run -d --restart=always img",
    "docker create --restart always img",
    "docker container run -d --restart on-failure img",
    "docker run -d --restart on-failure:3 img",
    "docker run -d --restart=Always img",  # the engine refuses the spelling; we refuse what we do not know
    "docker run -d --restart unless-stopped --restart always img",  # the last one counts to docker
    "docker run -d --restart always --restart unless-stopped img",  # every one is judged, the first too
]
CLI_ALLOWED = [
    "docker run -d img",
    "docker run -d --restart unless-stopped img",
    "docker run -d --restart=no img",
    "docker create --restart unless-stopped img",
]


@pytest.mark.parametrize("command", CLI_REFUSED)
def test_cli_refuses_restarts_past_the_cap(tmp_path: Path, command: str) -> None:
    assert decide(command, policy(tmp_path, 0), Engine()).allowed  # control: no cap, no rule
    refused = decide(command, policy(tmp_path, 5), Engine())
    assert (refused.allowed, refused.rule) == (False, "limit-restart"), refused.reason
    assert "unless-stopped" in refused.reason


@pytest.mark.parametrize("command", CLI_ALLOWED)
def test_cli_allows_counted_restart_policies(tmp_path: Path, command: str) -> None:
    decision = decide(command, policy(tmp_path, 5), Engine())
    assert decision.allowed, decision.reason


# ---------------------------------------------------------------- CLI layer: compose services

SERVICES_REFUSED = {
    "restart always": {"image": "x", "restart": "always"},
    "restart on-failure:2": {"image": "x", "restart": "on-failure:2"},
    "deploy any (compose: always)": {"image": "x", "deploy": {"restart_policy": {"condition": "any"}}},
    "deploy on-failure": {"image": "x", "deploy": {"restart_policy": {"condition": "on-failure"}}},
    "deploy wins over restart": {"image": "x", "restart": "no", "deploy": {"restart_policy": {"condition": "any"}}},
}
SERVICES_ALLOWED = {
    "none": {"image": "x"},
    "restart unless-stopped": {"image": "x", "restart": "unless-stopped"},
    "restart no": {"image": "x", "restart": "no"},
    "deploy none": {"image": "x", "deploy": {"restart_policy": {"condition": "none"}}},
    "deploy without a condition": {"image": "x", "deploy": {"restart_policy": {"max_attempts": 3}}},
}


def caps(cap: int) -> limits.Caps:
    return limits.Caps({"max_running": cap})


@pytest.mark.parametrize("service", SERVICES_REFUSED.values(), ids=SERVICES_REFUSED.keys())
def test_compose_refuses_restarts_past_the_cap(service: dict[str, object]) -> None:
    limits.limit_service("web", dict(service), caps(0))  # control: no cap
    with pytest.raises(Denied) as denied:
        limits.limit_service("web", dict(service), caps(3))
    assert denied.value.rule == "limit-restart"


@pytest.mark.parametrize("service", SERVICES_ALLOWED.values(), ids=SERVICES_ALLOWED.keys())
def test_compose_allows_counted_restart_policies(service: dict[str, object]) -> None:
    limits.limit_service("web", dict(service), caps(3))


# ---------------------------------------------------------------- API layer: create and update bodies


def capped(cap: int) -> Policy:
    return make_policy({**OVERRIDES, "commands": {"allowed": ["run", "create", "update"]},
                        "limits": {**OVERRIDES["limits"], "max_running": cap}})  # type: ignore[dict-item]


def create(policy: Policy, restart: object) -> tuple[bool, str]:
    body = {"Image": "alpine", "HostConfig": {"RestartPolicy": restart}}
    verdict = vet_api_request(request("POST", "/v1.47/containers/create", json.dumps(body)), policy, FakeEngine())
    return verdict.allowed, verdict.rule


API_REFUSED = [
    {"Name": "always"},
    {"Name": "on-failure", "MaximumRetryCount": 5},
    {"Name": "Always"},
]
API_ALLOWED = [None, {}, {"Name": ""}, {"Name": "no"}, {"Name": "unless-stopped"}]


@pytest.mark.parametrize("restart", API_REFUSED, ids=json.dumps)
def test_api_create_refuses_restarts_past_the_cap(restart: object) -> None:
    assert create(capped(0), restart) == (True, "allowed")  # control: no cap
    assert create(capped(4), restart) == (False, "limit-restart")


@pytest.mark.parametrize("restart", API_ALLOWED, ids=json.dumps)
def test_api_create_allows_counted_restart_policies(restart: object) -> None:
    assert create(capped(4), restart)[0]


def test_api_restart_policy_fields_are_spelt_as_the_engine_reads_them() -> None:
    """{"name": "always"} is Name to Go's JSON: refused as a field nobody vetted, cap or not (it
    also slipped past the binds' no-restart rule, which read "Name" only)."""
    assert create(capped(0), {"Name": "always"})[0]  # control: the exact spelling passes without a cap
    assert create(capped(0), {"name": "always"}) == (False, "api-body-field")
    assert create(capped(0), {"Name": 1}) == (False, "api-body")


def update(policy: Policy, restart: object) -> tuple[bool, str]:
    engine = FakeEngine()
    engine.containers.append(container(cid("7"), "box", MINE, ()))
    body = json.dumps({"RestartPolicy": restart})
    verdict = vet_api_request(request("POST", "/v1.47/containers/box/update", body), policy, engine)
    return verdict.allowed, verdict.rule


@pytest.mark.parametrize("restart", [{"Name": "unless-stopped"}, {"Name": "always"}, {"Name": "on-failure"}], ids=json.dumps)
def test_api_update_gives_no_restart_policy_under_a_cap(restart: object) -> None:
    assert update(capped(0), restart) == (True, "allowed")  # control: no cap
    assert update(capped(4), restart) == (False, "limit-restart")


@pytest.mark.parametrize("restart", [{"Name": "no"}, {"Name": ""}, {}], ids=json.dumps)
def test_api_update_may_take_a_restart_policy_away(restart: object) -> None:
    assert update(capped(4), restart)[0]


# ---------------------------------------------------------------- layout (b): `run --rm` refused at start


BOX = "e0" * 32  # an ID no container of tests/api_engine.py has


def rm_engine(started: str, status: str) -> FakeEngine:
    engine = FakeEngine()
    box = container(BOX, "box", MINE, ())
    box["HostConfig"]["AutoRemove"] = True
    box["State"] = {"Running": False, "Status": status, "StartedAt": started}
    engine.containers.append(box)
    return engine


@pytest.mark.parametrize(("started", "status", "removed"), [
    ("0001-01-01T00:00:00Z", "created", True),  # `docker run --rm` at the cap: the CLI waits for its removal
    ("2026-11-30T04:00:00Z", "exited", False),  # control: a container that ran is the agent's to remove
])
def test_a_refused_start_removes_a_never_started_rm_container(started: str, status: str, removed: bool) -> None:
    """The engine removes an AutoRemove container whose start fails; the client (`docker run --rm`)
    waits for that removal, and hung when the proxy refused the start instead (layout b)."""
    engine = rm_engine(started, status)
    verdict = vet_api_request(request("POST", "/v1.47/containers/box/start"), capped(1), engine)
    assert (verdict.allowed, verdict.rule) == (False, "limit-running")
    assert (f"remove container {BOX}" in engine.asked) is removed
    assert ("was removed" in verdict.reason) is removed
    open_engine = rm_engine(started, status)
    assert vet_api_request(request("POST", "/v1.47/containers/box/start"), capped(0), open_engine).allowed
    assert not any(a.startswith("remove container") for a in open_engine.asked)  # control: no cap, no removal
