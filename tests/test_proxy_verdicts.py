"""The verdicts the proxy gives again without deciding again (gatekeeper.proxy.verdicts): only
allowed GET/HEAD without a body on endpoints vetted from the request line alone, which asked the
engine nothing; the same verdict a fresh decision gives, for the same policy state and caller only."""

from __future__ import annotations

import pytest

from gatekeeper.engine_api import EngineError
from gatekeeper.proxy.contract import ApiVerdict
from gatekeeper.proxy.endpoints import ROUTES
from gatekeeper.proxy.settings import PolicyState, default_settings
from gatekeeper.proxy.verdicts import PURE_ENDPOINTS, PureVerdicts
from gatekeeper.proxy.vet import vet_api_request
from tests.api_engine import FakeEngine
from tests.test_proxy_vet import POLICY, corpus, make_policy, request

FIELDS = ApiVerdict.__slots__


class Unasked:
    """An engine that must not be asked: a kept verdict's decision reads the request line only."""

    def get_json(self, target: str) -> tuple[int, object]:
        raise EngineError(f"asked {target}")

    def realpath(self, path: str) -> str:
        raise EngineError(f"asked {path}")


def state(policy: object = POLICY) -> PolicyState:
    return PolicyState(policy, default_settings(), None)  # type: ignore[arg-type]  # a test Policy


def same(a: ApiVerdict, b: ApiVerdict) -> bool:
    return all(getattr(a, name) == getattr(b, name) for name in FIELDS)


def test_the_pure_endpoints_are_the_version_ping_and_the_lists() -> None:
    assert {"system.ping", "system.version", "container.list", "image.list"} <= PURE_ENDPOINTS
    vetters = {route.vetter for route in ROUTES if route.ident in PURE_ENDPOINTS}
    assert vetters <= {"plain", "listing"}
    assert not PURE_ENDPOINTS & {"container.inspect", "container.create", "container.start", "image.pull"}


def test_a_kept_verdict_is_the_fresh_decision_of_the_same_request() -> None:
    """Every line of the API corpus: what is kept is what deciding again gives, field by field,
    and its decision never asked the engine. As the proxy does (Proxy.decide_on_loop), only a
    decision that asked the engine nothing is offered for keeping: a list under an owned scope
    reads the caller's build records (the image IDs an owned image list or image events name),
    which change with every build."""
    now, kept = state(), PureVerdicts()
    given = asked = 0
    for line in corpus():
        body = line.body
        engine = FakeEngine()
        fresh = vet_api_request(request(line.method, line.target, body), POLICY, engine)
        if engine.asked:
            asked += fresh.endpoint in PURE_ENDPOINTS
            continue
        kept.keep(now, request(line.method, line.target, body), fresh)
        again = kept.get(now, request(line.method, line.target, body))
        if again is None:
            continue
        given += 1
        assert same(again, vet_api_request(request(line.method, line.target, body), POLICY, FakeEngine()))
        assert same(again, vet_api_request(request(line.method, line.target, body), POLICY, Unasked()))
        assert again.allowed and again.endpoint in PURE_ENDPOINTS and line.method in ("GET", "HEAD")
    assert given >= 10  # the corpus has pings and lists
    assert asked >= 1  # and lists that read the build records: never kept


@pytest.mark.parametrize(("method", "target", "body"), [
    ("GET", "/v1.50/containers/c1/json", ""),         # inspect: asks the engine
    ("POST", "/v1.50/containers/c1/start", ""),       # acts
    ("POST", "/v1.50/containers/create", "{}"),       # has a body
    ("GET", "/v1.50/containers/json", '{"x": 1}'),    # a list with a body: denied, never kept
    ("GET", "/v1.50/containers/json?size=1&size=1", ""),  # denied (a key given twice)
    ("GET", "/v1.50/secrets", ""),                    # refused endpoint
])
def test_verdicts_not_kept(method: str, target: str, body: str) -> None:
    now, kept = state(), PureVerdicts()
    verdict = vet_api_request(request(method, target, body), POLICY, FakeEngine())
    kept.keep(now, request(method, target, body), verdict)
    assert kept.get(now, request(method, target, body)) is None
    # control: a list is kept
    listing = vet_api_request(request("GET", "/v1.50/containers/json"), POLICY, FakeEngine())
    kept.keep(now, request("GET", "/v1.50/containers/json"), listing)
    assert kept.get(now, request("GET", "/v1.50/containers/json")) is listing


def test_a_kept_verdict_is_given_only_to_the_same_caller_target_and_policy_state() -> None:
    now, kept = state(), PureVerdicts()
    verdict = vet_api_request(request("GET", "/v1.50/containers/json"), POLICY, FakeEngine())
    kept.keep(now, request("GET", "/v1.50/containers/json"), verdict)
    assert kept.get(now, request("GET", "/v1.50/containers/json")) is verdict
    # another profile (under [scope] ps = "owned" another owner filter), another list, version, method
    assert kept.get(now, request("GET", "/v1.50/containers/json", profile="other")) is None
    assert kept.get(now, request("GET", "/v1.50/containers/json?all=1")) is None
    assert kept.get(now, request("GET", "/v1.49/containers/json")) is None
    assert kept.get(now, request("HEAD", "/v1.50/containers/json")) is None
    other_uid = request("GET", "/v1.50/containers/json")
    other_uid.uid = 1001
    assert kept.get(now, other_uid) is None
    # a reloaded policy (a new state): decided again
    reloaded = state(make_policy({"scope": {"ps": "owned"}}))
    assert kept.get(reloaded, request("GET", "/v1.50/containers/json")) is None
    fresh = vet_api_request(request("GET", "/v1.50/containers/json"), reloaded.policy, FakeEngine())  # type: ignore[arg-type]
    assert fresh.target != verdict.target  # (this policy's ps lists only the caller's: an owner filter)
    kept.keep(reloaded, request("GET", "/v1.50/containers/json"), fresh)
    assert kept.get(now, request("GET", "/v1.50/containers/json")) is None  # the old state's are gone
    assert kept.get(reloaded, request("GET", "/v1.50/containers/json")) is fresh


def test_kept_verdicts_are_bounded() -> None:
    from gatekeeper.proxy.verdicts import KEPT

    now, kept = state(), PureVerdicts()
    for n in range(KEPT * 3):
        target = f"/v1.50/containers/json?limit={n}"
        kept.keep(now, request("GET", target), vet_api_request(request("GET", target), POLICY, FakeEngine()))
        assert len(kept.kept) <= KEPT


# ---------------------------------------------------------------- routes found once per path


def test_a_route_found_again_is_the_route_the_search_finds() -> None:
    """Every line of the API corpus, twice: what find_route gives from its memory is what
    searching the tables gives (route and parameters), and a denial is never remembered."""
    from gatekeeper.errors import Denied
    from gatekeeper.proxy import endpoints
    from gatekeeper.proxy.framing import FramingError, split_target

    endpoints.FOUND.clear()
    found = denied = 0
    for line in corpus() * 2:
        try:
            path = split_target(line.target.encode()).path
        except (FramingError, UnicodeError):
            continue  # refused before any route is looked for
        try:
            searched = endpoints.search_route(line.method, path)
        except Denied as denial:
            with pytest.raises(Denied) as again:
                endpoints.find_route(line.method, path)
            assert (again.value.rule, again.value.message) == (denial.rule, denial.message)
            assert (line.method, path) not in endpoints.FOUND
            denied += 1
            continue
        route, params = endpoints.find_route(line.method, path)
        assert (route, params) == searched
        params["id"] = "changed by a vetter"  # (vet_object rewrites a name to the ID it checked)
        assert endpoints.find_route(line.method, path) == searched  # the memory is not changed
        found += 1
    assert found >= 100 and denied >= 20


def test_found_routes_are_bounded() -> None:
    from gatekeeper.proxy import endpoints

    for n in range(3000):
        endpoints.find_route("GET", f"/containers/x{n}/json")
    assert len(endpoints.FOUND) <= endpoints.FOUND_KEPT


def test_the_record_encoder_made_once_writes_record_line_s_line() -> None:
    from gatekeeper.json_codec import record_line
    from gatekeeper.proxy.records import ENCODE

    samples: list[object] = [
        {"v": 1, "ts": "2026-11-30T00:00:00.000000Z", "uid": 1000, "user": None, "allowed": True},
        {"reason": 'quote " backslash \\ tab \t nul \x00 é ☃ \U0001f600', "n": -3, "f": 1.5},
        {"nested": {"list": [1, "two", None, False, {"x": []}]}, "nan": float("nan"), "inf": float("inf")},
        {"surrogate": "\udcff", "big": 2**70},
    ]
    for value in samples * 2:  # the same encoder object, again
        assert ENCODE(value) == record_line(value)
    with pytest.raises(TypeError):
        ENCODE({"x": object()})
    with pytest.raises(TypeError):
        record_line({"x": object()})  # control: the same refusal
