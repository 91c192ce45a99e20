"""Trying to cheat the API layer: an agent with a shell as its own account and only the
proxy's socket, attacking the decision (gatekeeper.proxy.vet, fake engine) and the
transport (gatekeeper.proxy.server, fake upstream). Each attack has its control in the
same test: the request with the one dangerous thing taken out is allowed, or the attack
gets through with the defence switched off. Findings not fixed yet are xfail(strict)
with the reason; tests/e2e/test_api_attacks.py proves the important ones on the engine.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from urllib.parse import quote

import pytest

from gatekeeper.proxy import binds
from gatekeeper.proxy.contract import ApiVerdict
from gatekeeper.proxy.vet import vet_api_request
from tests.api_engine import MINE, FakeEngine, cid, container
from tests.proxy_harness import Harness, running
from tests.test_proxy_vet import OVERRIDES, POLICY, make_policy, request

CREATE = "/v1.47/containers/create"


def create(body: dict, engine: FakeEngine | None = None) -> ApiVerdict:
    return vet_api_request(request("POST", CREATE, json.dumps(body)), POLICY, engine or FakeEngine())


# ---------------------------------------------------------------- time: the restart-after-swap class


def engine_with(name: str, source: str) -> FakeEngine:
    engine = FakeEngine()
    engine.containers.append(container(cid("7"), name, MINE, (source,)))
    return engine


def test_start_after_the_bind_source_was_swapped_for_a_symlink(monkeypatch: pytest.MonkeyPatch) -> None:
    """The agent's shell: mv ~/src ~/src.old; ln -s /etc ~/src; docker start box. The engine
    resolves the source again at the start, as root: host /etc read-write in the box.
    (tests/api_engine.py LINKS: /home/ai-worker/link -> /etc.)"""
    start = request("POST", "/v1.47/containers/box/start")
    unswapped = vet_api_request(start, POLICY, engine_with("box", "/home/ai-worker/fresh"))
    assert unswapped.allowed, unswapped.reason
    swapped = engine_with("box", "/home/ai-worker/link")
    monkeypatch.setattr(binds, "check_still_allowed", lambda call, own: None)
    assert vet_api_request(start, POLICY, swapped).allowed  # the defence off: the start goes through
    monkeypatch.undo()
    verdict = vet_api_request(start, POLICY, swapped)
    assert (verdict.allowed, verdict.rule) == (False, "host-path"), verdict.reason
    restart = vet_api_request(request("POST", "/v1.47/containers/box/restart"), POLICY, swapped)
    assert (restart.allowed, restart.rule) == (False, "host-path")


RESTARTING = {"Image": "alpine", "HostConfig": {"Binds": ["/home/ai-worker/src2:/src"],
                                                "RestartPolicy": {"Name": "always"}}}


def test_restart_policy_outlives_the_decision_on_binds() -> None:
    """A restart policy on a container with host binds restarts it (on exit, on a daemon restart)
    without asking the proxy, so the start-time re-check never runs: refused (flag-restart)."""
    no_binds = {"Image": "alpine", "HostConfig": {"RestartPolicy": {"Name": "always"}}}
    assert create(no_binds).allowed  # control: a restart policy alone is harmless
    no_policy = {"Image": "alpine", "HostConfig": {"Binds": ["/home/ai-worker/src2:/src"]}}
    assert create(no_policy).allowed  # control: binds without one restart only through the proxy
    assert (create(RESTARTING).allowed, create(RESTARTING).rule) == (False, "flag-restart")
    mounted = {"Image": "alpine", "HostConfig": {"RestartPolicy": {"Name": "on-failure"}, "Mounts": [
        {"Type": "bind", "Source": "/home/ai-worker/src2", "Target": "/src"}]}}
    assert create(mounted).rule == "flag-restart"
    volume = {"Image": "alpine", "HostConfig": {"Binds": ["myvol:/v"], "RestartPolicy": {"Name": "always"}}}
    assert create(volume).allowed  # control: a named volume is no host path


def test_update_gives_a_bound_container_a_restart_policy() -> None:
    """The same through update, after the create."""
    policy = make_policy({**OVERRIDES, "commands": {"allowed": ["update"]}})
    engine = engine_with("box", "/home/ai-worker/fresh")
    memory = vet_api_request(request("POST", "/v1.47/containers/box/update", '{"Memory":1073741824}'),
                             policy, engine)
    assert memory.allowed  # control: update itself is open under this policy
    verdict = vet_api_request(request("POST", "/v1.47/containers/box/update",
                                      '{"RestartPolicy":{"Name":"always"}}'), policy, engine)
    assert (verdict.allowed, verdict.rule) == (False, "flag-restart")
    unbound = vet_api_request(request("POST", "/v1.47/containers/comp/update",
                                      '{"RestartPolicy":{"Name":"always"}}'), policy, engine)
    assert unbound.allowed, unbound.reason  # control: a container without host binds may get one


# ---------------------------------------------------------------- Go's decoder reads more than one spelling


# moby's ContainerConfigWrapper embeds a deprecated *container.HostConfig at the top level of
# the create body: with no "HostConfig" key the engine takes these fields from the top level,
# and it copies a top-level Memory/MemorySwap/CpuShares/Cpuset into HostConfig when that has none.
TOP_LEVEL = [
    ("Privileged", True, False),
    ("Binds", ["/:/host"], ["/home/ai-worker/src:/src"]),
    ("CapAdd", ["SYS_ADMIN"], None),
    ("PidMode", "host", ""),
    ("Memory", 8 << 30, 1 << 30),
    ("Cpuset", "0-63", ""),
    ("Devices", [{"PathOnHost": "/dev/sda", "PathInContainer": "/dev/sda", "CgroupPermissions": "rwm"}], []),
]


@pytest.mark.parametrize(("field", "bad", "harmless"), TOP_LEVEL, ids=[t[0] for t in TOP_LEVEL])
def test_hostconfig_fields_at_the_top_level_are_refused(field: str, bad: object, harmless: object) -> None:
    if field != "Cpuset":  # control: the same field in HostConfig is vetted there
        inside = create({"Image": "alpine", "HostConfig": {field: harmless}})
        assert inside.allowed, inside.reason
    verdict = create({"Image": "alpine", field: bad})
    assert (verdict.allowed, verdict.rule) == (False, "api-body-field"), verdict.reason
    with_host = create({"Image": "alpine", field: bad, "HostConfig": {}})
    assert not with_host.allowed


@pytest.mark.parametrize("spelling", ["Mas\u212aedPaths", "maskedpaths", "MASKEDPATHS"])
def test_unicode_folded_spelling_never_reaches_the_engine(spelling: str) -> None:
    """Go folds the Kelvin sign to k: 'Mas\\u212aedPaths' is MaskedPaths to the engine, and []
    unmasks /proc. The proxy does not know the spelling: dropped (zero) or refused."""
    control = create({"Image": "alpine", "HostConfig": {"MaskedPaths": []}})
    assert (control.allowed, control.rule) == (False, "flag-security-opt")
    verdict = create({"Image": "alpine", "HostConfig": {spelling: []}})
    assert verdict.allowed and verdict.body is not None
    assert spelling not in json.loads(verdict.body)["HostConfig"]
    refused = create({"Image": "alpine", "HostConfig": {spelling: ["/proc/kcore"]}})
    assert (refused.allowed, refused.rule) == (False, "api-body-field")


@pytest.mark.parametrize("second", ["hostconfig", "HOSTCONFIG", "hostConfig"])
def test_a_second_hostconfig_is_refused(second: str) -> None:
    """Last duplicate wins in Go: a harmless HostConfig first, the real one second."""
    text = '{"Image":"alpine","HostConfig":{"Privileged":false},"' + second + '":{"Privileged":true}}'
    verdict = vet_api_request(request("POST", CREATE, text), POLICY, FakeEngine())
    assert (verdict.allowed, verdict.rule) == (False, "api-body"), verdict.reason
    control = create({"Image": "alpine", "HostConfig": {"Privileged": False}})
    assert control.allowed


def test_network_id_under_a_network_name_is_refused() -> None:
    """For a user-defined network key the engine prefers EndpointSettings.NetworkID over the
    name it checked (daemon getNetworkID): mynet's key with opsnet's ID joins opsnet."""
    def joined(network_id: str) -> ApiVerdict:
        return create({"Image": "alpine", "NetworkingConfig": {"EndpointsConfig": {
            "mynet": {"NetworkID": network_id}}}})

    assert joined(cid("5")).allowed  # control: mynet's own ID
    verdict = joined(cid("6"))
    assert (verdict.allowed, verdict.rule) == (False, "foreign-network")


@pytest.mark.parametrize(("path", "body"), [
    ("/v1.47/volumes/create", {"Name": "v", "driveropts": {"type": "none", "o": "bind", "device": "/"}}),
    ("/v1.47/volumes/create", {"Name": "v", "DRIVEROPTS": {"type": "none", "o": "bind", "device": "/"}}),
    ("/v1.47/networks/create", {"Name": "n", "options": {"com.docker.network.bridge.name": "eth0"}}),
    (CREATE, {"Image": "alpine", "HostConfig": {"Mounts": [{"Type": "volume", "Target": "/d",
              "VolumeOptions": {"driverconfig": {"Name": "local", "Options": {"device": "/"}}}}]}}),
], ids=["volume-driveropts", "volume-DRIVEROPTS", "network-options", "mount-driverconfig"])
def test_driver_options_in_another_case_are_refused(path: str, body: dict) -> None:
    name = "Name" if "Name" in body else "Image"
    control = vet_api_request(request("POST", path, json.dumps({name: body[name]})), POLICY, FakeEngine())
    assert control.allowed, control.reason
    verdict = vet_api_request(request("POST", path, json.dumps(body)), POLICY, FakeEngine())
    assert (verdict.allowed, verdict.rule) == (False, "api-body-field"), verdict.reason


def test_network_create_always_checks_for_a_duplicate_name() -> None:
    """Engines before API 1.44 create a second network of an existing name when told
    CheckDuplicate=false (tests/e2e/test_api_attacks.py shows it on the engine)."""
    for body in ({"Name": "opsnet"}, {"Name": "opsnet", "CheckDuplicate": False}):
        verdict = vet_api_request(request("POST", "/v1.24/networks/create", json.dumps(body)), POLICY,
                                  FakeEngine())
        assert verdict.allowed and verdict.body is not None, verdict.reason
        assert json.loads(verdict.body)["CheckDuplicate"] is True


def test_build_output_name_is_a_tag_too() -> None:
    """BuildKit's image exporter tags what Attrs.name says when no t= is given (moby's
    builder-next): the same tag rules as t=, or a protected tag moves."""
    def build(query: str) -> ApiVerdict:
        return vet_api_request(request("POST", "/v1.47/build?version=2&" + query), POLICY, FakeEngine())

    def outputs(name: str) -> str:
        return "outputs=" + quote(json.dumps([{"Type": "moby", "Attrs": {"name": name}}]))

    # Past the tag checks, a BuildKit build is refused only because its Dockerfile comes over the
    # session (build-add-url): "build-add-url" below means every name passed.
    assert build(outputs("newthing:1")).rule == "build-add-url"  # control: a new tag of the agent's
    assert build("t=postgres%3A15").rule == "protected"  # control: the same tag as t= is refused
    verdict = build(outputs("docker.io/library/postgres:15"))
    assert (verdict.allowed, verdict.rule) == (False, "protected"), verdict.reason
    verdict = build(outputs("newthing:1,myapp:latest,alpine:latest,nginx:latest"))
    assert verdict.rule == "build-add-url", verdict.reason  # each name judged: new, owned, pulled
    verdict = build(outputs("newthing:1, postgres:15"))
    assert (verdict.allowed, verdict.rule) == (False, "protected")


def test_events_are_only_the_callers() -> None:
    """Events name others' objects with all their labels, and the operator's exec command
    lines; inspect redacts both. The owner filter is added to whatever the client asked
    (tests/e2e/test_api_attacks.py shows the leak on the engine)."""
    from urllib.parse import parse_qs, urlsplit

    asked = quote(json.dumps({"type": ["container"], "label": ["com.docker.compose.project=app"]}))
    verdict = vet_api_request(request("GET", f"/v1.47/events?since=1&filters={asked}"), POLICY, FakeEngine())
    assert verdict.allowed, verdict.reason
    query = parse_qs(urlsplit(verdict.target or "").query)
    filters = json.loads(query["filters"][0])
    assert filters["type"] == {"container": True} and query["since"] == ["1"]
    assert filters["label"] == {"com.docker.compose.project=app": True, "gatekeeper.owner=default": True,
                                "gatekeeper.created=default": True}
    bare = vet_api_request(request("GET", "/v1.47/events"), POLICY, FakeEngine())
    assert json.loads(parse_qs(urlsplit(bare.target or "").query)["filters"][0]) == {
        "label": {"gatekeeper.owner=default": True, "gatekeeper.created=default": True}}


OWNER_ONLY = {"gatekeeper.owner=default": True}
AS_CONTAINERS = {**OWNER_ONLY, "gatekeeper.created=default": True}


@pytest.mark.parametrize(("asked", "labels"), [
    # Stops: the operator's container of the agent's image (it inherits the owner label only)
    # sending its events, labels and exec command lines: container events need the created label.
    ({}, AS_CONTAINERS),
    ({"type": ["container"]}, AS_CONTAINERS),
    ({"type": {"container": True, "image": True}}, AS_CONTAINERS),
    ({"type": ["network", "container"]}, AS_CONTAINERS),
    ({"label": ["gatekeeper.owner=default"]}, AS_CONTAINERS),
    ({"type": ["bogus"]}, AS_CONTAINERS),  # a type docker may add later: owned as a container's (both layers)
    # control: events of the agent's images (its builds and tags) need the owner label only
    ({"type": ["image"]}, OWNER_ONLY),
    ({"type": {"network": True, "volume": True}}, OWNER_ONLY),
])
def test_events_that_may_be_a_containers_need_the_created_label(asked: dict[str, object],
                                                                labels: dict[str, bool]) -> None:
    from urllib.parse import parse_qs, urlsplit

    target = "/v1.47/events" + (f"?filters={quote(json.dumps(asked))}" if asked else "")
    verdict = vet_api_request(request("GET", target), POLICY, FakeEngine())
    assert verdict.allowed, verdict.reason
    filters = json.loads(parse_qs(urlsplit(verdict.target or "").query)["filters"][0])
    assert filters["label"] == labels


def test_image_events_are_of_the_recorded_images_only() -> None:
    """An image's events carry its labels, and the operator's image built FROM the agent's
    inherits the owner label: image events come with an image filter of the IDs the build
    records name; a filter of the client's own (ORed with it) or other types (ANDed) refused."""
    from urllib.parse import parse_qs, urlsplit

    from tests.test_image_scope import BUILT, ApiImages

    def decided(asked: dict[str, object]) -> ApiVerdict:
        target = f"/v1.47/events?filters={quote(json.dumps(asked))}"
        return vet_api_request(request("GET", target), POLICY, ApiImages())

    verdict = decided({"type": ["image"]})
    assert verdict.allowed, verdict.reason
    filters = json.loads(parse_qs(urlsplit(verdict.target or "").query)["filters"][0])
    assert set(filters["image"]) and set(filters["image"]) >= BUILT
    for asked in ({"type": ["image"], "image": ["op:1"]}, {"type": ["image", "volume"]}):
        refused = decided(asked)
        assert (refused.allowed, refused.rule) == (False, "scope-owned"), asked
    from gatekeeper.label_rules import NO_IMAGE, image_event_ids

    assert image_event_ids(["image"], [], set()) == [NO_IMAGE]  # no record: a filter naming no image
    assert image_event_ids(["volume", "network"], [], set()) == []  # no image events: no filter
    recorded = sorted(BUILT)
    assert image_event_ids(["image"], recorded, BUILT) == []  # the CLI layer's own filter: as it came
    again = decided({"type": ["image"], "image": recorded})
    assert again.allowed, again.reason


# Images whose Dockerfile said LABEL ...
LABELLED = {
    "posing:1": {"com.docker.compose.project": "ops", "com.docker.compose.service": "db"},
    "router:1": {"traefik.http.routers.x.rule": "Host(`bank.example`)"},
    "forged:1": {"gatekeeper.pulled-by": "default", "gatekeeper.owner": "alice"},
    "plain:1": {"org.opencontainers.image.source": "https://example.com", "gatekeeper.owner": "alice"},
}


class ImageLabels(FakeEngine):
    """The fake engine with the LABELLED images."""

    def one(self, path: str) -> tuple[int, object]:
        for ref, labels in LABELLED.items():
            if path == f"/images/{ref}/json":
                return 200, {"Id": "sha256:" + cid("4"), "RepoTags": [ref], "Config": {"Labels": labels},
                             "RepoDigests": [f"{ref.partition(':')[0]}@sha256:{cid('6')}"]}  # from a registry
        return super().one(path)


@pytest.mark.parametrize(("image", "rule"), [("posing:1", "refused-label"), ("router:1", "refused-label"),
                                             ("forged:1", "reserved-label")])
def test_labels_inherited_from_the_image_follow_the_label_rules(image: str, rule: str) -> None:
    """A container inherits its image's labels: a Dockerfile LABEL must not say what a create
    body may not (the operator's compose project, traefik routes, gatekeeper.*)."""
    def made(name: str, labels: dict[str, str] | None = None) -> ApiVerdict:
        return create({"Image": name, "Labels": labels or {}}, ImageLabels())

    assert made("plain:1").allowed  # control: ordinary image labels, another owner's label overridden
    body_labels = dict(LABELLED[image])
    direct = made("alpine", {k: v for k, v in body_labels.items() if not k.startswith("gatekeeper.owner")})
    assert (direct.allowed, direct.rule) == (False, rule)  # control: the same labels in the body
    verdict = made(image)
    assert (verdict.allowed, verdict.rule) == (False, rule), verdict.reason


# ---------------------------------------------------------------- transport: a request behind another


@pytest.fixture
def proxy(tmp_path: Path):  # type: ignore[no-untyped-def]
    with running(tmp_path) as harness:
        # These cases read what reached the engine, with pings as their allowed probe: every
        # ping forwarded (the proxy's remembered answer, gatekeeper.proxy.pings, off; its own
        # pipelining case with it on is in tests/test_proxy_pings.py).
        harness.proxy.pings.fresh_seconds = 0.0
        yield harness


PING = b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n"
DENIED = b"POST /containers/x/exec HTTP/1.1\r\nHost: docker\r\nContent-Length: 2\r\n\r\n{}"


def engine_saw(proxy: Harness) -> list[str]:
    return [f"{method} {target}" for method, target, _, _ in proxy.engine.received]


def test_pipelined_request_behind_an_allowed_one_is_decided_on_its_own(proxy: Harness) -> None:
    out = proxy.raw(PING + PING + b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")
    assert out.count(b"HTTP/1.1 200") == 3  # control: three allowed ones are all served, in order
    proxy.engine.received.clear()
    out = proxy.raw(PING + DENIED + b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")
    assert b"HTTP/1.1 403" in out
    assert engine_saw(proxy) == ["GET /_ping", "GET /_ping"]


def test_body_that_holds_a_second_request_is_only_a_body(proxy: Harness) -> None:
    """Content-Length covers a smuggled request inside the body: the engine gets one request."""
    inner = b"POST /containers/x/exec HTTP/1.1\r\nHost: docker\r\nContent-Length: 2\r\n\r\n{}"
    head = b"POST /echo HTTP/1.1\r\nHost: docker\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
    out = proxy.raw(head % len(inner) + inner)
    assert b"HTTP/1.1 200" in out and json.loads(out.partition(b"\r\n\r\n")[2])["size"] == len(inner)
    assert engine_saw(proxy) == ["POST /echo"]


def test_upgrade_the_engine_declines_keeps_vetting_what_follows(proxy: Harness) -> None:
    """Upgrade asked on an endpoint that does not switch: the engine answers 200 and the bytes
    behind the request are a next request to decide, not a raw stream to relay."""
    upgrade = b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(proxy.listen)
        sock.sendall(upgrade + DENIED)
        out = b""
        while b"(rule denied)" not in out and (chunk := sock.recv(65536)):
            out += chunk
    assert b"HTTP/1.1 200" in out and b"HTTP/1.1 403" in out
    assert engine_saw(proxy) == ["GET /_ping"]


def test_attach_stream_carries_no_http_to_the_engine(proxy: Harness) -> None:
    """After the engine's 101 the client's bytes are the container's stdin: relayed raw to the
    attach stream (the engine's hijacked connection never parses them as HTTP again)."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(proxy.listen)
        sock.sendall(b"POST /containers/c1/attach HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\n"
                     b"Upgrade: tcp\r\nContent-Length: 0\r\n\r\n" + DENIED)
        sock.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    assert b"101" in out and DENIED.upper() in out  # the fake container echoes stdin upper-cased
    assert engine_saw(proxy) == ["POST /containers/c1/attach"]


# ---------------------------------------------------------------- ownership: labels images pass on


def inherited_engine(image_labels: dict[str, str], labels: dict[str, str]) -> FakeEngine:
    """`prod`: a container of an image labelled `image_labels`, carrying `labels` as they are."""
    from tests import api_engine

    engine = FakeEngine()
    made = container(cid("6"), "prod", {}, image="sha256:" + cid("4"))
    made["Config"]["Labels"] = labels
    engine.containers.append(made)
    engine.images = [*api_engine.IMAGES, api_engine.image(cid("4"), ["agentimg:1"], image_labels)]
    return engine


@pytest.mark.parametrize(("image_labels", "labels"), [
    ({"gatekeeper.owner": "default"}, {"gatekeeper.owner": "default"}),  # built by the agent, run by root
    ({"gatekeeper.owner": "default", "gatekeeper.created": "default"},  # a Dockerfile LABEL / a commit
     {"gatekeeper.owner": "default", "gatekeeper.created": "default"}),
], ids=["built-image", "forged-created"])
def test_owner_label_inherited_from_the_image_is_not_ownership(
        monkeypatch: pytest.MonkeyPatch, image_labels: dict[str, str], labels: dict[str, str]) -> None:
    """The operator's `docker run -e DB_PASSWORD=... agentimg`: the container inherits the image's
    labels. Control: with the image check off (proven_labels the identity) the agent may stop it."""
    from tests import api_engine

    engine = inherited_engine(image_labels, labels)
    monkeypatch.setattr(api_engine, "IMAGES", engine.images)
    stop = request("POST", "/v1.47/containers/prod/stop")
    inspect = request("GET", "/v1.47/containers/prod/json")
    with monkeypatch.context() as off:
        off.setattr("gatekeeper.owner.proven_labels", lambda labels, image_labels: labels)
        assert vet_api_request(stop, POLICY, engine).allowed  # the defence off: the agent's
    verdict = vet_api_request(stop, POLICY, engine)
    assert (verdict.allowed, verdict.rule) == (False, "scope-owned"), verdict.reason
    shown = vet_api_request(inspect, POLICY, engine)
    assert shown.allowed and (shown.response or "").startswith("redact-inspect-always")
    mine = vet_api_request(request("GET", "/v1.47/containers/web/json"), POLICY, engine)
    assert (mine.response or "").startswith("redact-inspect-object")  # the agent's own: as the engine says
