"""Pulls from a registry on this host itself (rule image-host-registry): the engine pulls on
the host's network, where loopback-only services listen, and prints their answers to the
caller. Refused at both layers unless [images] host_registries names the registry; other
registries (names, LAN addresses) are [images] allowed's business, as before."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from gatekeeper.decision import decide
from gatekeeper.image_refs import host_local_domain
from gatekeeper.policy import DEFAULTS, Policy, merge
from gatekeeper.proxy.vet import vet_api_request
from tests.api_engine import FakeEngine
from tests.fakes import StaticWorld
from tests.test_proxy_vet import request

THIS_HOST = [
    ("127.0.0.1:5000/x", "127.0.0.1:5000"),
    ("127.0.0.1/x:1", "127.0.0.1"),
    ("127.9.9.9:80/a/b", "127.9.9.9:80"),
    ("localhost:5000/x", "localhost:5000"),
    ("localhost/x", "localhost"),
    ("LOCALHOST:5000/x", "LOCALHOST:5000"),
    ("registry.localhost:5000/x", "registry.localhost:5000"),
    ("[::1]:5000/x", "[::1]:5000"),
    ("[::ffff:127.0.0.1]:5000/x", "[::ffff:127.0.0.1]:5000"),
    ("0.0.0.0:5000/x", "0.0.0.0:5000"),
    ("169.254.169.254/latest", "169.254.169.254"),  # the cloud metadata service
    ("[fe80::1]/x", "[fe80::1]"),
    ("127.1:5000/x", "127.1:5000"),  # numbers a resolver reads as IPv4
    ("2130706433:5000/x", "2130706433:5000"),
    ("0x7f.1:5000/x", "0x7f.1:5000"),
    ("127.0.0.1:5000/x@sha256:" + "a" * 64, "127.0.0.1:5000"),
]
ELSEWHERE = ["nginx", "nginx:1.27", "library/nginx", "docker.io/library/nginx", "ghcr.io/a/b",
             "10.0.0.5:5000/x", "192.168.1.2/x", "registry.example.com:5000/x", "face.b00c:5000/x",
             "localhostx/y", "0x7f000001/x", "127.0.0.1"]  # the last two: docker.io paths


@pytest.mark.parametrize(("reference", "domain"), THIS_HOST)
def test_references_naming_this_host(reference: str, domain: str) -> None:
    assert host_local_domain(reference) == domain


@pytest.mark.parametrize("reference", ELSEWHERE)
def test_references_naming_elsewhere(reference: str) -> None:
    assert host_local_domain(reference) == ""


def policy(host_registries: list[str]) -> Policy:
    return Policy(merge(DEFAULTS, {"images": {"host_registries": host_registries}}, "test"), "test", "")


CLOSED, OPEN = policy([]), policy(["127.0.0.1:5000", "localhost:*"])

# (command, allowed under OPEN): every one refused under CLOSED (the default)
COMMANDS = [
    ("docker pull 127.0.0.1:5000/app:1", True),
    ("docker image pull localhost:5001/app:1", True),
    ("docker run --rm 127.0.0.1:5000/app:1 true", True),
    ("docker create 127.0.0.1:5000/app:1", True),
    ("docker pull 127.0.0.1:5001/app:1", False),  # not the listed port
    ("docker pull 127.1:5000/app:1", False),  # another spelling of it: not listed
    ("docker pull 169.254.169.254/latest:1", False),
]


@pytest.mark.parametrize(("command", "listed"), COMMANDS)
def test_the_cli_layer(command: str, listed: bool) -> None:
    refused = decide(command, CLOSED, StaticWorld())
    assert (refused.allowed, refused.rule) == (False, "image-host-registry"), refused.reason
    assert "[images] host_registries" in refused.reason
    opened = decide(command, OPEN, StaticWorld())
    assert opened.allowed == listed, opened.reason


def test_other_registries_are_not_this_rules_business() -> None:
    for command in ("docker pull nginx:1", "docker pull 10.0.0.5:5000/app:1", "docker run --rm busybox true"):
        assert decide(command, CLOSED, StaticWorld()).allowed


def api(method: str, target: str, chosen: Policy):  # type: ignore[no-untyped-def]
    return vet_api_request(request(method, target), chosen, FakeEngine())


# (target, allowed under OPEN): every one refused under CLOSED
TARGETS = [
    (f"/v1.47/images/create?fromImage={quote('127.0.0.1:5000/app', safe='')}&tag=1", True),
    (f"/v1.47/images/create?fromImage={quote('localhost:5000/app:1', safe='')}", True),
    (f"/v1.47/images/create?fromImage={quote('[::1]:5000/app', safe='')}&tag=1", False),
    (f"/images/search?term={quote('127.0.0.1:5000/app', safe='')}", True),
]


@pytest.mark.parametrize(("target", "listed"), TARGETS)
def test_the_api_layer(target: str, listed: bool) -> None:
    method = "GET" if "search" in target else "POST"
    refused = api(method, target, CLOSED)
    if "search" in target:  # search is not in the default commands: allowed for this test
        refused = api(method, target, with_search(CLOSED))
    assert (refused.allowed, refused.rule) == (False, "image-host-registry"), refused.reason
    opened = api(method, target, with_search(OPEN))
    assert opened.allowed == listed, opened.reason


def with_search(chosen: Policy) -> Policy:
    settings = merge(DEFAULTS, {"images": {"host_registries": list(chosen.images_host_registries)},
                                "commands": {"allowed": [*DEFAULTS["commands"]["allowed"], "search"]}},
                     "test")
    return Policy(settings, "test", "")


def test_search_elsewhere_stays_allowed() -> None:
    assert api("GET", "/images/search?term=nginx", with_search(CLOSED)).allowed


# A registry name that resolves to this host (a public wildcard name such as 127.0.0.1.nip.io,
# an /etc/hosts entry): the engine resolves it alike. tests/fakes.py HOSTS is the resolver here.
RESOLVED_HERE = [
    ("registry.loopback.test:5000/app:1", "registry.loopback.test:5000"),
    ("rebound.test/app:1", "rebound.test"),  # one answer of several is enough
    ("metadata.test/latest:1", "metadata.test"),
    ("mapped.test:5000/app:1", "mapped.test:5000"),
]


@pytest.mark.parametrize(("reference", "domain"), RESOLVED_HERE)
def test_names_resolving_to_this_host_are_refused_at_both_layers(reference: str, domain: str) -> None:
    refused = decide(f"docker pull {reference}", CLOSED, StaticWorld())
    assert (refused.allowed, refused.rule) == (False, "image-host-registry"), refused.reason
    assert domain in refused.reason
    assert decide(f"docker pull {reference}", policy([domain]), StaticWorld()).allowed  # listed: pulled
    target = f"/v1.47/images/create?fromImage={quote(reference, safe='')}"
    api_refused = api("POST", target, CLOSED)
    assert (api_refused.allowed, api_refused.rule) == (False, "image-host-registry"), api_refused.reason


@pytest.mark.parametrize("reference", ["ghcr.io/a/b:1", "nowhere.test/a:1", "nginx:1"])
def test_names_resolving_elsewhere_or_nowhere_pass(reference: str) -> None:
    """ghcr.io: a remote address; nowhere.test: no answer (the engine cannot pull it either)."""
    assert decide(f"docker pull {reference}", CLOSED, StaticWorld()).allowed
    assert api("POST", f"/v1.47/images/create?fromImage={quote(reference, safe='')}", CLOSED).allowed


def test_the_real_resolver_reads_this_hosts_names() -> None:
    from gatekeeper.worlds import host_addresses

    assert "127.0.0.1" in host_addresses("localhost") or "::1" in host_addresses("localhost")
    assert host_addresses("no-such-name.invalid") == []
