"""Published ports (policy [ports]): every attack is refused under the default
(loopback, 1024-65535, no -P) and allowed once the policy says so, in the same test."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatekeeper.decision import decide
from gatekeeper.errors import Denied, PolicyError
from gatekeeper.policy import load_policy
from gatekeeper.vetting.ports import PortRules, check_model_port, covered, split_spec
from tests.fakes import StaticWorld

WIDE = """\
[ports]
host_addresses = ["127.0.0.1", "::1", "0.0.0.0", "::", "192.0.2.10"]
host_ports = ["80", "1024-65535"]
publish_all = true
"""


@pytest.fixture(scope="module")
def default():  # type: ignore[no-untyped-def]
    return load_policy(None)


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("ports") / "wide.toml"
    path.write_text(WIDE)
    return load_policy(str(path))


# (command, rule under the default policy): each is allowed under WIDE (the control)
ATTACKS = [
    ("docker run -d -p 8080:80 nginx", "flag-publish"),
    ("docker run -d -p 80 nginx", "flag-publish"),
    ("docker run -d -p 0.0.0.0:8080:80 nginx", "flag-publish"),
    ("docker run -d -p '[::]:8080:80' nginx", "flag-publish"),
    ("docker run -d -p 192.0.2.10:8080:80 nginx", "flag-publish"),
    ("docker run -d -p 127.0.0.1:80:80 nginx", "flag-publish"),
    ("docker run -d -p published=8080,target=80 nginx", "flag-publish"),
    ("docker create -p 8080:80 nginx", "flag-publish"),
    ("docker run -d -P nginx", "flag-publish-all"),
    ("docker run -d --publish-all=true nginx", "flag-publish-all"),
]


@pytest.mark.parametrize(("command", "rule"), ATTACKS, ids=[c for c, _ in ATTACKS])
def test_refused_by_default_allowed_when_the_policy_says_so(command: str, rule: str, default, wide) -> None:  # type: ignore[no-untyped-def]
    assert decide(command, wide, StaticWorld()).allowed  # control: the defence off
    decision = decide(command, default, StaticWorld())
    assert (decision.allowed, decision.rule) == (False, rule), decision.reason


def test_compose_run_publish(default, wide) -> None:  # type: ignore[no-untyped-def]
    """compose run -p is vetted as a flag, before the project (which this world lacks)."""
    command = "docker compose run -p 8080:80 web"
    assert decide(command, wide, StaticWorld()).rule != "flag-publish"
    assert decide(command, default, StaticWorld()).rule == "flag-publish"


NEVER = [
    "docker run -d -p 127.0.0.1:70000:80 nginx",
    "docker run -d -p 127.0.0.1:0:80 nginx",
    "docker run -d -p 127.0.0.1:9000-8000:80 nginx",
    "docker run -d -p fe80::1%eth0:8080:80 nginx",
    "docker run -d -p '[::1:8080:80' nginx",
    "docker run -d -p 127.0.0.1:8o8o:80 nginx",
    "docker run -d -p published,target=80 nginx",
    "docker run -d -p 127.0.0.1:８０８０:80 nginx",
]


@pytest.mark.parametrize("command", NEVER)
def test_specs_docker_would_read_otherwise_are_refused_everywhere(command: str, wide) -> None:  # type: ignore[no-untyped-def]
    decision = decide(command, wide, StaticWorld())
    assert (decision.allowed, decision.rule) == (False, "flag-publish"), decision.reason


ALLOWED = [
    "docker run -d -p 127.0.0.1:8080:80 nginx",
    "docker run -d -p '[::1]:8080:80' nginx",
    "docker run -d -p ::1:8080:80/udp nginx",
    "docker run -d -p 127.0.0.1::80 nginx",
    "docker run -d -p 127.0.0.1:9000-9010:9000-9010 nginx",
    "docker run -d -P=false nginx",
    "docker run -d --expose 80 nginx",
]


@pytest.mark.parametrize("command", ALLOWED)
def test_loopback_publishing_is_allowed_by_default(command: str, default) -> None:  # type: ignore[no-untyped-def]
    assert decide(command, default, StaticWorld()).allowed


def test_every_interface_needs_both_families(tmp_path: Path) -> None:
    """An empty address binds 0.0.0.0 and ::; allowing only the IPv4 one is not enough."""
    path = tmp_path / "v4.toml"
    path.write_text('[ports]\nhost_addresses = ["0.0.0.0"]\n')
    policy = load_policy(str(path))
    assert decide("docker run -d -p 0.0.0.0:8080:80 nginx", policy, StaticWorld()).allowed
    decision = decide("docker run -d -p 8080:80 nginx", policy, StaticWorld())
    assert not decision.allowed and "every interface" in decision.reason


@pytest.mark.parametrize("ports", ['host_addresses = ["localhost"]', 'host_addresses = ["10.0.0.0/8"]',
                                   'host_ports = ["0-80"]', 'host_ports = ["80-"]', 'host_ports = [8080]',
                                   'publish_all = "yes"', 'host_addresses = ["fe80::1%eth0"]'])
def test_invalid_ports_sections_are_refused(tmp_path: Path, ports: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f"[ports]\n{ports}\n")
    with pytest.raises(PolicyError):
        load_policy(str(path))


RULES = PortRules({"host_addresses": ["127.0.0.1", "::1"], "host_ports": ["1024-65535"],
                   "publish_all": False})

# (rendered compose port, allowed under the default rules)
MODEL_PORTS = [
    ({"target": 80, "published": "8080", "host_ip": "127.0.0.1"}, True),
    ({"target": 80, "published": "8080", "host_ip": "::1"}, True),
    ({"target": 80, "host_ip": "127.0.0.1"}, True),
    ({"target": 80, "published": "8080"}, False),
    ({"target": 80}, False),
    ({"target": 80, "published": "8080", "host_ip": "0.0.0.0"}, False),  # noqa: S104
    ({"target": 80, "published": "80", "host_ip": "127.0.0.1"}, False),
    ({"target": 80, "published": "x", "host_ip": "127.0.0.1"}, False),
    ("8080:80", False),
]


@pytest.mark.parametrize(("port", "allowed"), MODEL_PORTS, ids=[str(p) for p, _ in MODEL_PORTS])
def test_compose_model_ports(port: object, allowed: bool) -> None:
    if allowed:
        check_model_port(RULES, port, "service 'web': ports[0]")
        return
    with pytest.raises(Denied) as refused:
        check_model_port(RULES, port, "service 'web': ports[0]")
    assert refused.value.rule in ("compose-ports", "compose-model")


def test_port_range_coverage() -> None:
    assert covered(1024, 2000, [(1024, 1500), (1501, 3000)])
    assert not covered(1024, 2000, [(1024, 1500), (1600, 3000)])
    assert not covered(80, 80, [(1024, 65535)])


@given(st.text(max_size=40))
def test_split_spec_never_crashes(spec: str) -> None:
    try:
        split_spec(spec)
    except ValueError:
        pass


API_BINDINGS = [
    ({"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]}, False, True),
    ({"80/tcp": [{"HostIp": "::1", "HostPort": ""}]}, False, True),
    (None, False, True),
    ({"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}, False, False),
    ({"80/tcp": [{"HostPort": "8080"}]}, False, False),
    ({"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}, False, False),  # noqa: S104
    ({"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "80"}]}, False, False),
    ({"80/tcp": ["8080"]}, False, False),
    (None, True, False),
]


@pytest.mark.parametrize(("bindings", "publish_all", "allowed"), API_BINDINGS)
def test_api_port_bindings(bindings: object, publish_all: bool, allowed: bool, default, wide) -> None:  # type: ignore[no-untyped-def]
    from gatekeeper.vetting.ports import api_port_refusal

    assert (api_port_refusal(default, bindings, publish_all) is None) is allowed
    if bindings is None or "8080" in str(bindings) or publish_all:  # control: WIDE allows these
        assert api_port_refusal(wide, bindings, publish_all) is None or "must be" in str(
            api_port_refusal(wide, bindings, publish_all))
