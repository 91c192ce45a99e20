"""Properties of the API decision: whatever arrives, a verdict comes back, never a crash
(an internal error is a denial, but a vetter that raises on odd input is a bug), and
whatever it forwards is a body it would allow again unchanged (the rewrite is a fixpoint)."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.proxy.containers import HOST_FIELDS
from gatekeeper.proxy.vet import vet_api_request
from tests.api_engine import FakeEngine
from tests.test_proxy_vet import POLICY, request

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63), st.text(max_size=12),
                    st.sampled_from(["host", "container:web", "/home/ai-worker/x:/x", "myvol:/d", "bridge"]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from([*HOST_FIELDS, "Type", "Source", "x"]),
                                                 inner, max_size=3)), max_leaves=8)
HOSTS = st.dictionaries(st.sampled_from(sorted(HOST_FIELDS)), VALUES, max_size=4)
BODIES = st.fixed_dictionaries({"Image": st.just("alpine")}, optional={
    "HostConfig": HOSTS, "Labels": VALUES, "Healthcheck": VALUES, "NetworkingConfig": VALUES,
    **{key: VALUES for key in ("Env", "MacAddress", "Volumes")}})


@settings(max_examples=300, deadline=None)
@given(BODIES)
def test_create_bodies_never_crash(body: dict) -> None:
    create = request("POST", "/v1.47/containers/create", json.dumps(body))
    verdict = vet_api_request(create, POLICY, FakeEngine())
    assert verdict.rule != "internal-error", verdict.reason
    if verdict.allowed:
        again = vet_api_request(request("POST", "/v1.47/containers/create", (verdict.body or b"").decode()),
                                POLICY, FakeEngine())
        assert again.allowed and again.body == verdict.body, again.reason


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["GET", "POST", "DELETE", "HEAD", "PUT"]),
       st.lists(st.sampled_from(["containers", "images", "web", "json", "db", "..", "", "exec", "networks",
                                 "volumes", "create", "start", "x:y", "%2F"]), max_size=5),
       st.dictionaries(st.sampled_from(["filters", "t", "name", "all", "fromImage", "tag", "labels"]),
                       st.text(max_size=20), max_size=3))
def test_any_request_gets_a_verdict(method: str, segments: list[str], query: dict[str, str]) -> None:
    from urllib.parse import urlencode

    target = "/v1.47/" + "/".join(segments) + ("?" + urlencode(query) if query else "")
    verdict = vet_api_request(request(method, target), POLICY, FakeEngine())
    assert verdict.rule != "internal-error", (target, verdict.reason)
    assert verdict.reason == "" if verdict.allowed else "\n" not in verdict.reason
