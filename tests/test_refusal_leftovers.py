"""A refused compose step names what its project keeps (issue 12, layout b).

In layout (b) compose's requests reach the proxy one by one: networks and volumes, then each
container's create, its network connects, its start. A refused create or connect half-way
left the project's networks, volumes and created containers, and the refusal said nothing of
them. The proxy removes none of them (it cannot tell which this command made: a volume may
hold an earlier `up`'s data) but names them, with the command that removes them.

Each case with its control: the same refusal of a request that names no compose project (or a
project with nothing of the caller's) says nothing more; an allowed request lists nothing.
"""

from __future__ import annotations

import json

import pytest

from gatekeeper.proxy.leftovers import describe_leftovers
from gatekeeper.proxy.vet import vet_api_request
from tests import api_engine
from tests.api_engine import MINE, FakeEngine
from tests.test_proxy_vet import POLICY, request

PROJECT = "com.docker.compose.project"
KEEPS = "compose project 'app' keeps what it made before this refusal"


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> FakeEngine:
    """Project 'app': the agent's container comp (api_engine's), network app_default and volume
    app_data (a project with another's objects in it is refused whole: refused-label)."""
    project = {PROJECT: "app"}
    monkeypatch.setattr(api_engine, "NETWORKS", [
        *api_engine.NETWORKS, {"Id": "a0" * 32, "Name": "app_default", "Labels": {**MINE, **project}}])
    monkeypatch.setattr(api_engine, "VOLUMES", [
        *api_engine.VOLUMES, {"Name": "app_data", "Driver": "local", "Options": None,
                              "Labels": {**MINE, **project}}])
    return FakeEngine()


def create(labels: dict[str, str], privileged: bool = True) -> str:
    return json.dumps({"Image": "alpine", "Labels": labels, "HostConfig": {"Privileged": privileged}})


def listed(engine: FakeEngine) -> list[str]:
    """The project listings of leftovers (owner and project label together; compose's own
    ownership check lists the project by its label alone)."""
    return [asked for asked in engine.asked if "gatekeeper.owner" in asked and PROJECT in asked]


def test_a_refused_create_of_a_compose_service_names_what_the_project_keeps(engine: FakeEngine) -> None:
    verdict = vet_api_request(request("POST", "/v1.47/containers/create", create({PROJECT: "app"})),
                              POLICY, engine)
    assert (verdict.allowed, verdict.rule) == (False, "flag-privileged"), verdict.reason
    assert KEEPS in verdict.reason, verdict.reason
    assert "network app_default" in verdict.reason and "volume app_data" in verdict.reason
    assert "container comp" in verdict.reason
    assert "docker compose -p app down" in verdict.reason


@pytest.mark.parametrize("body", [
    pytest.param(create({}), id="no-project: refused as before"),
    pytest.param(create({PROJECT: "other"}), id="a project with nothing of the caller's"),
])  # fmt: skip
def test_control_a_refusal_without_a_project_says_nothing_more(engine: FakeEngine, body: str) -> None:
    verdict = vet_api_request(request("POST", "/v1.47/containers/create", body), POLICY, engine)
    assert (verdict.allowed, verdict.rule) == (False, "flag-privileged")
    assert "keeps what it made" not in verdict.reason


def test_control_an_allowed_create_lists_nothing(engine: FakeEngine) -> None:
    body = create({PROJECT: "app"}, privileged=False)
    assert vet_api_request(request("POST", "/v1.47/containers/create", body), POLICY, engine).allowed
    assert listed(engine) == []


def test_a_refused_connect_of_a_compose_container_names_what_the_project_keeps(engine: FakeEngine) -> None:
    """compose (API < 1.44) creates a container on its first network, then connects the others:
    a connect refused (a network the agent may not join) left the container created."""
    verdict = vet_api_request(request("POST", "/v1.47/networks/opsnet/connect", '{"Container":"comp"}'),
                              POLICY, engine)
    assert (verdict.allowed, verdict.rule) == (False, "foreign-network"), verdict.reason
    assert KEEPS in verdict.reason and "container comp" in verdict.reason, verdict.reason


@pytest.mark.parametrize("name", ["web", "ops-db-1"], ids=["no-project", "not-the-callers-container"])
def test_control_a_refused_connect_of_another_container_says_nothing_more(engine: FakeEngine,
                                                                          name: str) -> None:
    connect = request("POST", "/v1.47/networks/opsnet/connect", json.dumps({"Container": name}))
    verdict = vet_api_request(connect, POLICY, engine)
    assert not verdict.allowed
    assert "keeps what it made" not in verdict.reason
    assert listed(engine) == []


def test_the_clause_names_each_kind_and_counts_past_ten() -> None:
    assert describe_leftovers("p", {"container": [], "network": [], "volume": []}) is None
    networks = [f"n{i:02}" for i in range(12)]
    said = describe_leftovers("p", {"container": ["p-a-1 (created)"], "network": networks, "volume": ["p_v"]})
    assert said is not None
    assert "container p-a-1 (created); networks n00, n01" in said and "n09 and 2 more; volume p_v" in said
    assert "n10" not in said
