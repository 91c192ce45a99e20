"""The API layer's decision (gatekeeper.proxy.vet) as a specification: every line of
tests/corpus/api.txt is a request with its expected verdict and rule, decided against
the fake engine of tests/api_engine.py. Attacks sit beside their allowed controls."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest

from gatekeeper.policy import DEFAULTS, Policy, merge
from gatekeeper.proxy.contract import ApiRequest, ApiVerdict
from gatekeeper.proxy.endpoints import ANY_COMMAND, REFUSED, ROUTES
from gatekeeper.proxy.vet import transform_response, vet_api_request
from gatekeeper.rules import is_known
from tests.api_engine import FakeEngine, cid

CORPUS = Path(__file__).parent / "corpus" / "api.txt"
VERSION = re.compile(r"^/v([0-9]+\.[0-9]+)(?=/)")

OVERRIDES: dict[str, object] = {
    "protect": {"containers": ["vital"], "images": ["postgres"]},
    "shared": {"volumes": ["sharedvol"], "networks": ["sharednet"], "containers": ["db"]},
    "limits": {"memory": "2g", "cpus": 2.0, "pids_limit": 512, "default_memory": "1g",
               "default_cpus": 1.0, "default_pids_limit": 256, "log_max_size": "10m", "log_max_file": 3,
               "min_health_interval": "5s"},
    "network": {"subnets": ["172.30.0.0/16"]},
}


def make_policy(overrides: dict[str, object] = OVERRIDES) -> Policy:
    return Policy(merge(DEFAULTS, overrides, "test"), "test", "")


POLICY = make_policy()


def request(method: str, target: str, body: str = "", profile: str = "default") -> ApiRequest:
    """An ApiRequest as the transport makes it (version prefix stripped, path decoded)."""
    parts = urlsplit(target)
    path = unquote(parts.path)
    version = VERSION.match(path)
    if version:
        path = path[version.end():]
    return ApiRequest(method, target, path, version.group(1) if version else None,
                      parse_qs(parts.query, keep_blank_values=True), [], body.encode(), 1000, profile)


def decide(method: str, target: str, body: str = "", policy: Policy = POLICY) -> ApiVerdict:
    return vet_api_request(request(method, target, body), policy, FakeEngine())


class Line:
    __slots__ = ("expected", "rule", "method", "target", "body", "number")

    def __init__(self, raw: str, number: int) -> None:
        fields = raw.split(None, 4)
        self.expected, self.rule, self.method, self.target = fields[:4]
        self.body = fields[4] if len(fields) > 4 else ""
        self.number = number


def corpus() -> list[Line]:
    lines = []
    for number, raw in enumerate(CORPUS.read_text(encoding="utf-8").splitlines(), 1):
        if raw.strip() and not raw.lstrip().startswith("#"):
            lines.append(Line(raw, number))
    return lines


@pytest.mark.parametrize("line", [pytest.param(c, id=f"{c.number}:{c.expected}:{c.method} {c.target[:60]}")
                                  for c in corpus()])
def test_corpus(line: Line) -> None:
    if line.body:
        json.loads(line.body)  # the corpus itself holds valid JSON
    verdict = decide(line.method, line.target, line.body)
    shown = ("allow" if verdict.allowed else "deny"), verdict.rule
    assert shown == (line.expected, line.rule), verdict.reason
    if not verdict.allowed:
        assert verdict.reason and "\n" not in verdict.reason
        assert is_known(verdict.rule)


def route_key(method: str, target: str) -> str:
    from gatekeeper.proxy.endpoints import find_route

    try:
        route, _ = find_route(method, request(method, target).path)
    except Exception:  # noqa: BLE001 - refused and unknown endpoints are counted apart
        return ""
    return f"{route.method} {route.template}"


# Routes whose vetter is being written (gatekeeper.proxy.containers, creates): refused until then.
PENDING: set[str] = set()


def test_every_endpoint_has_a_sample() -> None:
    """Meta-test: each route of the table is exercised by a corpus line, allowed and denied."""
    seen: dict[str, set[str]] = {}
    for line in corpus():
        seen.setdefault(route_key(line.method, line.target), set()).add(line.expected)
    missing = [f"{r.method} {r.template}" for r in ROUTES
               if f"{r.method} {r.template}" not in seen and f"{r.method} {r.template}" not in PENDING]
    assert not missing, f"no sample in tests/corpus/api.txt for {missing}"
    assert len(corpus()) > 50


def test_every_refused_endpoint_has_a_sample() -> None:
    from gatekeeper.proxy.endpoints import refused_why, split_path

    whys = {refused_why(line.method, split_path(request(line.method, line.target).path))[1]
            for line in corpus() if line.rule == "api-unvetted"}
    assert set(REFUSED.values()) <= whys, set(REFUSED.values()) - whys


DECISION_MODULES = ("vet", "endpoints", "objects", "containers", "creates", "images", "labels", "binds")


def test_every_api_rule_of_the_decision_has_a_denial_sample() -> None:
    source = Path(__file__).resolve().parent.parent / "gatekeeper" / "proxy"
    spelled = {rule for name in DECISION_MODULES
               for rule in re.findall(r'rule="(api-[a-z-]+)"', (source / f"{name}.py").read_text())}
    assert {"api-endpoint", "api-body-field"} <= spelled  # control: the scan finds them
    sampled = {line.rule for line in corpus() if line.expected == "deny"}
    assert not spelled - sampled, f"no deny line in tests/corpus/api.txt for {spelled - sampled}"


def test_every_route_names_real_commands_and_a_vetter() -> None:
    from gatekeeper.grammar.names import canonical_name
    from gatekeeper.proxy.vet import VETTERS

    for route in ROUTES:
        assert route.vetter in VETTERS, route.template
        if route.commands is ANY_COMMAND:  # the ping: open to any allowed command
            continue
        for command in route.commands:
            assert canonical_name(command) == command, (route.template, command)


# ---------------------------------------------------------------- what is forwarded


def test_forwarded_by_the_id_that_was_checked() -> None:
    verdict = decide("POST", "/v1.47/containers/web/stop?t=3")
    assert verdict.target == f"/v1.47/containers/{cid('a')}/stop?t=3"
    assert decide("POST", f"/containers/{cid('a')[:6]}/kill").target == f"/containers/{cid('a')}/kill"


def test_target_is_rebuilt_not_relayed() -> None:
    """The engine gets the path from the template and the checked query, re-encoded."""
    assert decide("GET", "/v1.47/networks/").target == "/v1.47/networks/"
    assert decide("GET", "/networks?filters=%7B%7D").target == "/networks?filters=%7B%7D"
    assert decide("GET", "/v1.47/images/reg.example:5000/team/app:1.2/json").target \
        == "/v1.47/images/reg.example:5000/team/app:1.2/json"
    verdict = decide("GET", "/v1.47/containers/web/logs?stdout=1&tail=%31%30")
    assert verdict.target == f"/v1.47/containers/{cid('a')}/logs?stdout=1&tail=10"


def test_owned_listing_gets_the_owner_filter() -> None:
    policy = make_policy({**OVERRIDES, "scope": {"ps": "owned"}})
    control = decide("GET", "/v1.47/containers/json?all=1")
    assert control.target == "/v1.47/containers/json?all=1"
    verdict = decide("GET", "/v1.47/containers/json?all=1", policy=policy)
    filters = json.loads(parse_qs(urlsplit(verdict.target).query)["filters"][0])
    # a container made by the agent's create, not one that inherited the owner label from its image
    assert filters == {"label": {"gatekeeper.owner=default": True, "gatekeeper.created=default": True}}


def test_prune_filter() -> None:
    verdict = decide("POST", "/v1.47/images/prune?filters=%7B%22dangling%22%3A%5B%22true%22%5D%7D")
    filters = json.loads(parse_qs(urlsplit(verdict.target).query)["filters"][0])
    assert filters == {"dangling": {"true": True}, "label": {"gatekeeper.owner=default": True}}


def test_container_prune_filter_needs_gatekeeper_created() -> None:
    unprotected = make_policy({**OVERRIDES, "protect": {"containers": []}})
    verdict = decide("POST", "/v1.47/containers/prune", policy=unprotected)
    filters = json.loads(parse_qs(urlsplit(verdict.target).query)["filters"][0])
    assert filters["label"] == {"gatekeeper.owner=default": True, "gatekeeper.created=default": True}


def test_prune_refused_when_a_protected_name_is_owned() -> None:
    assert decide("POST", "/v1.47/containers/prune", policy=make_policy(
        {**OVERRIDES, "protect": {"containers": []}})).allowed
    verdict = decide("POST", "/v1.47/containers/prune")
    assert (verdict.allowed, verdict.rule) == (False, "protected")


# The engine ANDs label! filters: with two [protect] labels an object carrying one of them is
# pruned. Owned here: web (no extra label), vital, comp (com.docker.compose.project=app).
PROTECT_LABELS = [
    # (protect labels, kind, allowed)
    (["com.docker.compose.project=app"], "containers", True),  # one label: label! keeps it
    (["com.docker.compose.project=app", "keep"], "containers", False),  # comp carries one of two
    (["com.docker.compose.project", "keep"], "containers", False),  # by key alone
    (["com.docker.compose.project=other", "keep"], "containers", True),  # control: none carries one
    (["com.docker.compose.project=ops", "keep"], "containers", True),  # ops-db-1 is not the agent's
    (["nfs", "keep"], "volumes", True),
    (["gatekeeper.owner=default", "keep"], "volumes", False),  # every owned volume carries it
]


@pytest.mark.parametrize(("labels", "kind", "allowed"), PROTECT_LABELS)
def test_prune_with_several_protected_labels(labels: list[str], kind: str, allowed: bool) -> None:
    policy = make_policy({**OVERRIDES, "protect": {"containers": [], "labels": labels}})
    verdict = decide("POST", f"/v1.47/{kind}/prune", policy=policy)
    assert verdict.allowed == allowed, verdict.reason
    assert verdict.rule == ("allowed" if allowed else "protected"), verdict.reason
    if allowed:
        filters = json.loads(parse_qs(urlsplit(verdict.target).query)["filters"][0])
        assert filters["label!"] == dict.fromkeys(labels, True)


def test_scope_all_lets_the_operator_open_actions() -> None:
    """Control for scope-owned: the same stop is allowed when [scope] stop = "all"."""
    assert decide("POST", "/v1.47/containers/db/stop").rule == "scope-owned"
    assert decide("POST", "/v1.47/containers/db/stop", policy=make_policy(
        {**OVERRIDES, "scope": {"stop": "all"}})).allowed


def test_blocking_a_command_closes_its_endpoints() -> None:
    """The endpoint list is derived from [commands]: block logs everywhere and logs are closed."""
    assert decide("GET", "/v1.47/containers/web/logs?stdout=1").allowed
    policy = make_policy({**OVERRIDES, "commands": {"blocked": ["logs", "compose logs", "compose up"]}})
    verdict = decide("GET", "/v1.47/containers/web/logs?stdout=1", policy=policy)
    assert (verdict.allowed, verdict.rule) == (False, "blocked-subcommand")


def test_an_engine_that_fails_is_a_denial() -> None:
    class Broken(FakeEngine):
        def get_json(self, target: str) -> tuple[int, object]:
            raise OSError("gone")

    verdict = vet_api_request(request("POST", "/containers/web/stop"), POLICY, Broken())
    assert (verdict.allowed, verdict.rule) == (False, "scope-unresolved")


# ---------------------------------------------------------------- inspect redaction


def test_inspect_redaction() -> None:
    engine = FakeEngine()
    for word, redacted in (("web", False), ("db", True), ("other", True)):
        verdict = vet_api_request(request("GET", f"/v1.47/containers/{word}/json"), POLICY, engine)
        assert verdict.allowed and verdict.response
        _status, obj = engine.get_json(f"/containers/{word}/json")
        out = json.loads(transform_response(verdict.response, 200, json.dumps(obj).encode(),
                                            request("GET", f"/containers/{word}/json")))
        assert out["Config"]["Env"] == (["PASSWORD=***"] if redacted else ["PASSWORD=hunter2"])


def test_inspect_redaction_from_the_decision_s_own_parse_is_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """An inspect answered by the decision's own question is redacted from the value the decision
    parsed (proxy.engine.LAST_PARSED) when it is that body (or the same bytes again): the same
    bytes out either way."""
    import json as json_module

    from gatekeeper.proxy.engine import EngineAnswer, parsed

    engine = FakeEngine()
    loads_of_bodies: list[int] = []
    real_loads = json_module.loads

    def counted(text: str | bytes, **kwargs: object) -> object:
        if isinstance(text, bytes):
            loads_of_bodies.append(len(text))
        return real_loads(text, **kwargs)  # type: ignore[arg-type]  # json.loads' keywords

    for word in ("web", "db", "other"):
        verdict = vet_api_request(request("GET", f"/v1.47/containers/{word}/json"), POLICY, engine)
        _status, obj = engine.get_json(f"/containers/{word}/json")
        body = json.dumps(obj, indent=1).encode()
        req = request("GET", f"/containers/{word}/json")
        fresh = transform_response(verdict.response or "", 200, bytes(bytearray(body)), req)  # control
        other = transform_response(verdict.response or "", 200, body + b"\n", req)  # other bytes
        answer = EngineAnswer(200, b"OK", [], body)
        assert not isinstance(parsed(answer), Exception)  # what decide_on_loop does with its question
        monkeypatch.setattr(json_module, "loads", counted)
        assert transform_response(verdict.response or "", 200, body, req) == fresh
        assert loads_of_bodies == []  # not parsed again
        assert transform_response(verdict.response or "", 200, bytes(bytearray(body)), req) == fresh
        assert loads_of_bodies == []  # equal bytes (another object, the same answer again): not parsed
        assert transform_response(verdict.response or "", 200, body + b"\n", req) == other
        assert loads_of_bodies == [len(body) + 1]  # control: other bytes: parsed
        loads_of_bodies.clear()
        monkeypatch.setattr(json_module, "loads", real_loads)
    # A body the decision could not parse (NaN) is never taken from the memory.
    nan = b'{"Id": NaN}'
    assert isinstance(parsed(EngineAnswer(200, b"OK", [], nan)), Exception)
    from gatekeeper.proxy.engine import LAST_PARSED

    assert LAST_PARSED.value_of(nan) is None


def test_inspect_errors_and_garbage() -> None:
    verdict = decide("GET", "/v1.47/images/postgres:15/json")
    req = request("GET", "/images/postgres:15/json")
    assert transform_response(verdict.response or "", 404, b'{"message":"no such image"}', req) \
        == b'{"message":"no such image"}'
    withheld = json.loads(transform_response(verdict.response or "", 200, b"not json", req))
    assert "withheld" in withheld["message"]


# ---------------------------------------------------------------- forwarded bodies


def forwarded(verdict: ApiVerdict) -> dict:
    assert verdict.allowed, verdict.reason
    assert verdict.body is not None
    return json.loads(verdict.body)


def test_create_body_forwarded_as_checked() -> None:
    """Owner label, resolved bind source, IDs for container: and links, caps for absent limits,
    log caps, unknown zero fields dropped."""
    body = {"Image": "alpine", "Labels": {"app": "x"}, "HostConfig": {
        "Binds": ["/home/ai-worker/up/ai-worker/src:/src"], "NetworkMode": "container:web",
        "Links": ["db"], "SomeNewField": None, "Memory": 0}}
    out = forwarded(decide("POST", "/v1.47/containers/create?name=app", json.dumps(body)))
    host = out["HostConfig"]
    assert out["Labels"] == {"app": "x", "gatekeeper.owner": "default", "gatekeeper.created": "default"}
    assert host["Binds"] == ["/home/ai-worker/src:/src"]
    assert host["NetworkMode"] == f"container:{cid('a')}"
    assert host["Links"] == [f"{cid('b')}:db"]
    assert "SomeNewField" not in host
    assert (host["Memory"], host["NanoCpus"], host["PidsLimit"]) == (1 << 30, 10**9, 256)
    assert host["LogConfig"] == {"Type": "", "Config": {"max-size": "10m", "max-file": "3"}}


def test_create_without_labels_gets_the_owner_label() -> None:
    out = forwarded(decide("POST", "/v1.47/containers/create", '{"Image":"alpine"}'))
    assert out["Labels"] == {"gatekeeper.owner": "default", "gatekeeper.created": "default"}
    assert out["HostConfig"]["LogConfig"]["Config"] == {"max-size": "10m", "max-file": "3"}


@pytest.mark.parametrize(("given", "sent"), [
    (None, ["NET_RAW"]),
    (["MKNOD"], ["MKNOD", "NET_RAW"]),
    ("chown", ["chown", "NET_RAW"]),  # docker's strslice: a string is one capability
    (["cap_net_raw"], ["cap_net_raw"]),
    (["ALL"], ["ALL"]),
])
def test_net_raw_is_dropped_from_every_create(given: object, sent: list[str]) -> None:
    """CAP_NET_RAW sends any frame: ARP replies claiming another container's address (red team s4)."""
    body = {"Image": "alpine", "HostConfig": {} if given is None else {"CapDrop": given}}
    out = forwarded(decide("POST", "/v1.47/containers/create", json.dumps(body)))
    assert out["HostConfig"]["CapDrop"] == sent


def test_cap_drop_of_another_type_is_refused() -> None:
    body = {"Image": "alpine", "HostConfig": {"CapDrop": {"NET_RAW": True}}}
    assert not decide("POST", "/v1.47/containers/create", json.dumps(body)).allowed


def test_given_limits_are_kept() -> None:
    body = {"Image": "alpine", "HostConfig": {"Memory": 512 << 20, "NanoCpus": 2 * 10**9, "PidsLimit": 10}}
    host = forwarded(decide("POST", "/containers/create", json.dumps(body)))["HostConfig"]
    assert (host["Memory"], host["NanoCpus"], host["PidsLimit"]) == (512 << 20, 2 * 10**9, 10)


def test_caps_off_without_limits() -> None:
    """Control for the limit-* lines: the same body passes a policy without [limits]."""
    body = '{"Image":"alpine","HostConfig":{"Memory":8589934592,"PidsLimit":-1}}'
    assert decide("POST", "/containers/create", body).rule == "limit-memory"
    policy = make_policy({key: value for key, value in OVERRIDES.items() if key != "limits"})
    assert decide("POST", "/containers/create", body, policy=policy).allowed


def test_bind_checks_need_the_host() -> None:
    """An engine without realpath cannot vet bind sources: refused, never guessed."""
    class NoHost(FakeEngine):
        realpath = None  # type: ignore[assignment]

    body = '{"Image":"alpine","HostConfig":{"Binds":["/home/ai-worker/src:/src"]}}'
    verdict = vet_api_request(request("POST", "/containers/create", body), POLICY, NoHost())
    assert (verdict.allowed, verdict.rule) == (False, "host-path-unreadable")


def test_update_holds_the_caps() -> None:
    policy = make_policy({**OVERRIDES, "commands": {"allowed": ["update"]}})
    ok = decide("POST", "/v1.47/containers/web/update", '{"Memory":1073741824}', policy=policy)
    assert forwarded(ok) == {"Memory": 1 << 30} and ok.target == f"/v1.47/containers/{cid('a')}/update"
    over = decide("POST", "/v1.47/containers/web/update", '{"Memory":8589934592}', policy=policy)
    assert (over.allowed, over.rule) == (False, "limit-memory")
    devices = decide("POST", "/v1.47/containers/web/update", '{"Devices":[{"PathOnHost":"/dev/sda"}]}',
                     policy=policy)
    assert (devices.allowed, devices.rule) == (False, "flag-device")
    realtime = decide("POST", "/v1.47/containers/web/update",
                      '{"Ulimits":[{"Name":"rtprio","Soft":9,"Hard":9}]}', policy=policy)
    assert (realtime.allowed, realtime.rule) == (False, "flag-ulimit")
    theirs = decide("POST", "/v1.47/containers/db/update", '{"Memory":1073741824}', policy=policy)
    assert (theirs.allowed, theirs.rule) == (False, "scope-owned")


def test_ipv6_networks_as_the_policy_says() -> None:
    body = '{"Name":"appnet","EnableIPv6":true}'
    assert decide("POST", "/v1.47/networks/create", body).rule == "network-ipv6"
    opened = make_policy({**OVERRIDES, "network": {"ipv6": True}})
    assert decide("POST", "/v1.47/networks/create", body, policy=opened).allowed


def test_network_connect_forwards_ids() -> None:
    verdict = decide("POST", "/v1.47/networks/mynet/connect", '{"Container":"web"}')
    assert verdict.target == f"/v1.47/networks/{cid('5')}/connect"
    assert forwarded(verdict)["Container"] == cid("a")


def test_volume_and_network_create_get_the_owner_label() -> None:
    out = forwarded(decide("POST", "/v1.47/volumes/create", '{"Name":"data"}'))
    assert out == {"Name": "data", "Labels": {"gatekeeper.owner": "default"}}
    out = forwarded(decide("POST", "/v1.47/networks/create", '{"Name":"n","Labels":{"a":"b"}}'))
    assert out["Labels"] == {"a": "b", "gatekeeper.owner": "default"}


def test_build_gets_the_owner_label_and_limits() -> None:
    verdict = decide("POST", "/v1.47/build?t=newthing%3A1")
    query = parse_qs(urlsplit(verdict.target).query)
    assert json.loads(query["labels"][0]) == {"gatekeeper.owner": "default"}
    assert query["memory"] == [str(1 << 30)] and query["cpuquota"] == ["100000"]


def test_max_running_counts_at_start() -> None:
    """comp is stopped and web runs: a cap of 2 leaves room, a cap of 1 does not; a running
    container's restart adds none."""
    def limits(cap: int) -> Policy:
        return make_policy({**OVERRIDES, "limits": {**OVERRIDES["limits"], "max_running": cap}})  # type: ignore[dict-item]

    assert decide("POST", "/v1.47/containers/comp/start", policy=limits(2)).allowed
    verdict = decide("POST", "/v1.47/containers/comp/start", policy=limits(1))
    assert (verdict.allowed, verdict.rule) == (False, "limit-running")
    assert "max_running): stop some first" in verdict.reason  # what becomes of it: test_start_refusals
    assert decide("POST", "/v1.47/containers/comp/kill", policy=limits(1)).allowed  # control: not a start


def test_build_cgroup_parent_of_the_policy_passes() -> None:
    """The CLI layer in front injects the policy's build_cgroup_parent; any other is refused."""
    policy = make_policy({**OVERRIDES, "limits": {**OVERRIDES["limits"],  # type: ignore[dict-item]
                                                  "build_cgroup_parent": "/gatekeeper-build"}})
    ok = decide("POST", "/v1.47/build?cgroupparent=%2Fgatekeeper-build", policy=policy)
    assert ok.allowed and parse_qs(urlsplit(ok.target).query)["cgroupparent"] == ["/gatekeeper-build"]
    other = decide("POST", "/v1.47/build?cgroupparent=%2F", policy=policy)
    assert (other.allowed, other.rule) == (False, "flag-cgroup-parent")
    injected = decide("POST", "/v1.47/build", policy=policy)
    assert parse_qs(urlsplit(injected.target).query)["cgroupparent"] == ["/gatekeeper-build"]


def test_endpoint_ids_for_the_audit() -> None:
    assert decide("POST", "/v1.47/containers/web/stop").endpoint == "container.stop"
    assert decide("POST", "/v1.47/containers/web/exec", "{}").endpoint == "refused /containers/{id}/exec"
    assert decide("GET", "/v1.47/whatever").endpoint == "unknown"
    assert decide("GET", "/v1.47/containers/../x").endpoint == "unknown"


def test_disk_budget_at_the_api() -> None:
    """myapp (400 MB, owned) + alpine (400 MB, pulled) + redis:7 (400 MB: /system/df gives no
    LastTagTime, so a stale pull record counts against the budget, never for the agent) + myvol
    and nfsvol (100 MB each) + build cache (50 MB) = 1.45 GB: a 2 GB budget leaves room, a 1 GB
    one does not."""
    def budget(size: str) -> Policy:
        return make_policy({**OVERRIDES, "limits": {**OVERRIDES["limits"], "disk_budget": size}})  # type: ignore[dict-item]

    for method, target, body in (("POST", "/v1.47/images/create?fromImage=nginx&tag=1", ""),
                                 ("POST", "/v1.47/build?t=newthing%3A1", ""),
                                 ("POST", "/v1.47/volumes/create", '{"Name":"more"}')):
        assert decide(method, target, body, policy=budget("2g")).allowed
        over = decide(method, target, body, policy=budget("1g"))
        assert (over.allowed, over.rule) == (False, "disk-budget"), over.reason
        assert "1.45GB" in over.reason
    assert decide("POST", "/v1.47/containers/web/kill", policy=budget("1g")).allowed  # control


def test_published_ports_follow_the_policy() -> None:
    """Control for the flag-publish lines: every interface is fine once [ports] lists it."""
    every = "0.0.0.0"  # noqa: S104 - the point of the test
    binding = {"80/tcp": [{"HostIp": every, "HostPort": "8080"}]}
    body = json.dumps({"Image": "alpine", "HostConfig": {"PortBindings": binding}})
    assert decide("POST", "/containers/create", body).rule == "flag-publish"
    wide = make_policy({**OVERRIDES, "ports": {"host_addresses": [every, "::", "127.0.0.1", "::1"]}})
    assert decide("POST", "/containers/create", body, policy=wide).allowed


def test_image_sources_at_the_api() -> None:
    """[images] allowed: pulls and creates from the listed repositories only; an image named by
    ID counts by its tags. Control: the same requests pass without the allowlist."""
    policy = make_policy({**OVERRIDES, "images": {"allowed": ["docker.io/library/alpine", "ghcr.io/acme/*"]}})
    cases = [
        ("POST", "/v1.47/images/create?fromImage=alpine&tag=3.20", "", True),
        ("POST", "/v1.47/images/create?fromImage=ghcr.io%2Facme%2Fapp&tag=1", "", True),
        ("POST", "/v1.47/images/create?fromImage=evil.example%2Fx&tag=1", "", False),
        ("POST", "/v1.47/containers/create", '{"Image":"alpine:latest"}', True),
        ("POST", "/v1.47/containers/create", '{"Image":"myapp:latest"}', False),
        ("POST", "/v1.47/containers/create", f'{{"Image":"sha256:{cid("3")}"}}', True),
        ("POST", "/v1.47/containers/create", f'{{"Image":"{cid("1")[:12]}"}}', False),
        # an image mount reads the files of an image the list keeps the agent from running
        ("POST", "/v1.47/containers/create", '{"Image":"alpine","HostConfig":{"Mounts":[{"Type":"image",'
         '"Source":"myapp:latest","Target":"/x"}]}}', False),
        ("POST", "/v1.47/containers/create", '{"Image":"alpine","HostConfig":{"Mounts":[{"Type":"image",'
         '"Source":"alpine:3.20","Target":"/x"}]}}', True),
    ]
    for method, target, body, allowed in cases:
        assert decide(method, target, body).allowed, target  # control: no allowlist
        verdict = decide(method, target, body, policy=policy)
        assert (verdict.allowed, verdict.rule) == (allowed, "allowed" if allowed else "image-source"), \
            (target, body, verdict.reason)


def test_compose_classic_build_keeps_its_builder_mark() -> None:
    """`docker compose build` behind the proxy (classic builder) labels the image
    com.docker.compose.image.builder=classic: forwarded as is, beside the owner label."""
    labels = '{"com.docker.compose.image.builder":"classic"}'
    verdict = decide("POST", "/v1.47/build?t=newthing%3A1&labels=" + quote(labels))
    query = parse_qs(urlsplit(verdict.target).query)
    assert json.loads(query["labels"][0]) == {"com.docker.compose.image.builder": "classic",
                                              "gatekeeper.owner": "default"}


def test_plugin_inspect_is_refused_as_not_found() -> None:
    """`docker inspect NAME` asks each kind of object in turn and goes on only past a 404:
    a plugin's inspect is refused with 404 (nothing forwarded), the rest with 403."""
    hidden = decide("GET", "/v1.47/plugins/gk-nothing/json")
    assert (hidden.allowed, hidden.rule, hidden.status) == (False, "api-unvetted", 404)
    assert decide("GET", "/v1.47/plugins/vieux/sshfs:latest/json").status == 404
    assert decide("GET", "/v1.47/plugins").status == 403  # control: the listing, refused as usual
    assert decide("POST", "/v1.47/plugins/x/enable").status == 403
    assert decide("GET", "/v1.47/containers/nothing/exec").status == 403


def test_ping_is_open_to_any_allowed_command() -> None:
    """Every docker command pings first: a profile that allows only `volume prune` still pings;
    one that allows nothing does not."""
    narrow = make_policy({**OVERRIDES, "commands": {"allowed": ["volume prune", "volume ls"]}})
    assert decide("HEAD", "/_ping", policy=narrow).allowed
    assert decide("GET", "/v1.47/_ping", policy=narrow).allowed
    assert decide("GET", "/v1.47/version", policy=narrow).rule == "not-allowed-subcommand"  # control
    nothing = make_policy({**OVERRIDES, "commands": {"allowed": []}})
    assert decide("GET", "/_ping", policy=nothing).rule == "not-allowed-subcommand"


def test_a_new_named_volume_is_made_the_agents_before_the_create() -> None:
    """`docker run -v newvol:/d` with nothing in front of the proxy: the engine would make the
    volume unlabelled; the proxy makes it first (owner label), once the create is allowed."""
    engine = FakeEngine()
    body = '{"Image":"alpine","HostConfig":{"Binds":["newvol:/data"]}}'
    verdict = vet_api_request(request("POST", "/v1.47/containers/create", body), POLICY, engine)
    assert verdict.allowed, verdict.reason
    assert [(v["Name"], v["Labels"]) for v in engine.made] == [("newvol", {"gatekeeper.owner": "default"})]
    assert forwarded(verdict)["HostConfig"]["Binds"] == ["newvol:/data"]
    # a create refused for another reason makes no volume
    engine = FakeEngine()
    body = '{"Image":"alpine","HostConfig":{"Binds":["newvol:/data"],"Privileged":true}}'
    assert not vet_api_request(request("POST", "/v1.47/containers/create", body), POLICY, engine).allowed
    assert engine.made == []


def test_a_new_volume_made_meanwhile_by_someone_else_is_refused() -> None:
    """Between the proxy's look-up and its create the operator makes the volume: the engine's
    answer is that volume, unlabelled, and the create is refused (control: the agent's own)."""
    class Racing(FakeEngine):
        def __init__(self) -> None:
            super().__init__()
            self.their_labels: dict[str, str] = {}

        def create_volume(self, name: str, labels: dict[str, str]) -> tuple[int, object]:
            return 201, {"Name": name, "Driver": "local", "Options": None, "Labels": self.their_labels}

    engine = Racing()
    body = '{"Image":"alpine","HostConfig":{"Binds":["newvol:/data"]}}'
    verdict = vet_api_request(request("POST", "/v1.47/containers/create", body), POLICY, engine)
    assert (verdict.allowed, verdict.rule) == (False, "foreign-volume")
    engine.their_labels = {"gatekeeper.owner": "default"}
    assert vet_api_request(request("POST", "/v1.47/containers/create", body), POLICY, engine).allowed


def test_without_a_way_to_create_volumes_a_new_one_is_refused() -> None:
    class Reading(FakeEngine):
        create_volume = None  # type: ignore[assignment]  # an EngineQueries that only reads

    body = '{"Image":"alpine","HostConfig":{"Binds":["newvol:/data"]}}'
    verdict = vet_api_request(request("POST", "/v1.47/containers/create", body), POLICY, Reading())
    assert (verdict.allowed, verdict.rule) == (False, "foreign-volume")


def test_an_inspect_asks_its_container_at_the_client_s_version_and_names_that_question() -> None:
    """The container's question is the client's own GET (same object, same API version): the
    transport may answer with it (ApiVerdict.answered_by, tests/test_proxy_pings.py)."""
    engine = FakeEngine()
    verdict = vet_api_request(request("GET", "/v1.47/containers/web/json"), POLICY, engine)
    assert verdict.allowed and verdict.response
    assert engine.asked[0] == "/v1.47/containers/web/json" == verdict.answered_by
    # Controls: a query changes the answer (size), another method or no version its question.
    sized = vet_api_request(request("GET", "/v1.47/containers/web/json?size=1"), POLICY, FakeEngine())
    assert sized.allowed and sized.answered_by is None
    bare = FakeEngine()
    unversioned = vet_api_request(request("GET", "/containers/web/json"), POLICY, bare)
    assert bare.asked[0] == "/containers/web/json" == unversioned.answered_by
    image = vet_api_request(request("GET", "/v1.47/images/postgres:15/json"), POLICY, FakeEngine())
    assert image.allowed and image.answered_by is None


def test_a_version_the_engine_does_not_answer_is_asked_again_without_it() -> None:
    class OldEngine(FakeEngine):
        def get_json(self, target: str) -> tuple[int, object]:
            if target.startswith("/v1.99/"):
                self.asked.append(target)
                return 400, {"message": "client version 1.99 is too new"}
            return super().get_json(target)

    engine = OldEngine()
    verdict = vet_api_request(request("GET", "/v1.99/containers/web/json"), POLICY, engine)
    assert verdict.allowed  # decided as before, on the unversioned answer
    assert engine.asked[:2] == ["/v1.99/containers/web/json", "/containers/web/json"]
    # (the transport sends the question's answer only when it was 200: this one is forwarded)
