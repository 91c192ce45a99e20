"""Log caps ([limits] log_max_size / log_max_file, gatekeeper.vetting.log_caps): the caps
are injected into run/create where the agent left them out, smaller values pass,
larger or unparseable ones are refused; without the caps nothing changes (the control)."""

# ruff: noqa: E501

from __future__ import annotations

from pathlib import Path

import pytest

from gatekeeper.decision import decide
from gatekeeper.errors import PolicyError
from gatekeeper.policy import load_policy
from gatekeeper.vetting.log_caps import log_size
from tests.fakes import StaticWorld

CAPS = '[limits]\nlog_max_size = "10m"\nlog_max_file = 3\n'
INJECTED = ["--log-opt", "max-size=10m", "--log-opt", "max-file=3"]


def policy_with(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "policy.toml"
    path.write_text(text)
    return load_policy(str(path))


# (command, expected argv after 'docker run'/'create' up to the image, or a denial rule)
CASES = [
    ("docker run -d busybox sh", ["run", "--cap-drop=NET_RAW", *INJECTED, "-d", "busybox", "sh"]),
    ("docker create busybox", ["create", "--cap-drop=NET_RAW", *INJECTED, "busybox"]),
    ("docker run --log-opt max-size=1m busybox", ["run", "--cap-drop=NET_RAW", "--log-opt", "max-file=3", "--log-opt", "max-size=1m", "busybox"]),
    ("docker run --log-opt max-size=10000k --log-opt max-file=2 busybox", ["run", "--cap-drop=NET_RAW", "--log-opt", "max-size=10000k", "--log-opt", "max-file=2", "busybox"]),
    ("docker run --log-opt max-size=10MB busybox", ["run", "--cap-drop=NET_RAW", "--log-opt", "max-file=3", "--log-opt", "max-size=10MB", "busybox"]),
    # trying to cheat: bigger, unlimited, or spellings docker reads differently
    ("docker run --log-opt max-size=11m busybox", "limit-logs"),
    ("docker run --log-opt max-size=1g busybox", "limit-logs"),
    ("docker run --log-opt max-size=-1 busybox", "limit-logs"),
    ("docker run --log-opt max-size=0 busybox", "limit-logs"),
    ("docker run --log-opt max-size=1e9 busybox", "limit-logs"),
    ("docker run --log-opt max-size=9.9m busybox", "limit-logs"),
    ("docker run --log-opt max-file=4 busybox", "limit-logs"),
    ("docker run --log-opt max-file=0 busybox", "limit-logs"),
    ("docker run --log-opt max-file=03 busybox", "limit-logs"),
    ("docker run --log-driver none busybox", "flag-log-driver"),
    ("docker run --log-driver=syslog busybox", "flag-log-driver"),
]  # fmt: skip


@pytest.mark.parametrize(("command", "expected"), CASES, ids=[c for c, _ in CASES])
def test_log_caps(command: str, expected: object, tmp_path: Path) -> None:
    decision = decide(command, policy_with(tmp_path, CAPS), StaticWorld())
    if isinstance(expected, str):
        assert not decision.allowed and decision.rule == expected, decision.reason
        return
    assert decision.allowed, decision.reason
    words = [w for w in decision.argv[1:] if not w.startswith("--label")]  # type: ignore[index]
    owner_free = [w for w in words if not w.startswith(("gatekeeper.owner=", "gatekeeper.created="))]
    assert owner_free[: len(expected)] == expected  # type: ignore[arg-type]


def test_control_without_caps_nothing_is_injected_or_refused(tmp_path: Path) -> None:
    decision = decide("docker run --log-opt max-size=1g busybox", policy_with(tmp_path, ""), StaticWorld())
    assert decision.allowed and "max-file=3" not in decision.argv  # type: ignore[operator]


@pytest.mark.parametrize(("text", "size"), [
    ("10m", 10_000_000), ("10M", 10_000_000), ("10mb", 10_000_000), ("1k", 1000), ("5g", 5 * 10**9), ("100", 100),
    ("0", None), ("", None), ("1.5m", None), ("1e3", None), ("-1", None), ("10mib", None), ("1t", None), ("010m", None),
])  # fmt: skip
def test_log_size_spellings(text: str, size: int | None) -> None:
    assert log_size(text) == size


@pytest.mark.parametrize("bad", ['log_max_size = "1.5m"', 'log_max_size = "lots"', "log_max_file = -1"])
def test_bad_caps_are_a_policy_error(bad: str, tmp_path: Path) -> None:
    with pytest.raises(PolicyError):
        policy_with(tmp_path, f"[limits]\n{bad}\n")


# ---------------------------------------------------------------- compose services

CAPPED = {"max-size": "10m", "max-file": "3"}
# (service as compose renders it, its logging after the caps, or the rule of the refusal)
COMPOSE_SERVICES = [
    ({"image": "x"}, {"options": CAPPED}),
    ({"image": "x", "logging": {"driver": "json-file"}}, {"driver": "json-file", "options": CAPPED}),
    ({"image": "x", "logging": {"driver": "local", "options": None}}, {"driver": "local", "options": CAPPED}),
    ({"image": "x", "logging": {"options": {"max-size": "1m", "compress": "true"}}},
     {"options": {"max-size": "1m", "compress": "true", "max-file": "3"}}),
    ({"image": "x", "logging": {"options": {"max-size": "10000k", "max-file": "2"}}},
     {"options": {"max-size": "10000k", "max-file": "2"}}),
    ({"image": "x", "logging": {"driver": "none"}}, {"driver": "none"}),  # no log kept at all
    # trying to cheat: bigger, unlimited, or spellings docker reads differently
    ({"image": "x", "logging": {"options": {"max-size": "11m"}}}, "limit-logs"),
    ({"image": "x", "logging": {"options": {"max-size": "-1"}}}, "limit-logs"),
    ({"image": "x", "logging": {"options": {"max-size": "0"}}}, "limit-logs"),
    ({"image": "x", "logging": {"options": {"max-size": "1e9"}}}, "limit-logs"),
    ({"image": "x", "logging": {"driver": "json-file", "options": {"max-file": "4"}}}, "limit-logs"),
    ({"image": "x", "logging": {"driver": "local", "options": {"max-file": 0}}}, "limit-logs"),
    ({"image": "x", "logging": "json-file"}, "limit-logs"),
    ({"image": "x", "logging": {"options": ["max-size=1g"]}}, "limit-logs"),
]  # fmt: skip


def compose_ctx(policy: object) -> object:
    from types import SimpleNamespace

    return SimpleNamespace(policy=policy)


@pytest.mark.parametrize(("service", "expected"), COMPOSE_SERVICES, ids=[repr(s) for s, _ in COMPOSE_SERVICES])
def test_compose_service_log_caps(service: dict, expected: object, tmp_path: Path) -> None:
    from gatekeeper.errors import Denied
    from gatekeeper.vetting.log_caps import vet_compose_log_caps

    model = {"services": {"web": service}}
    if isinstance(expected, str):
        with pytest.raises(Denied) as denial:
            vet_compose_log_caps(compose_ctx(policy_with(tmp_path, CAPS)), model)  # type: ignore[arg-type]
        assert denial.value.rule == expected and "compose service 'web'" in denial.value.message
        return
    vet_compose_log_caps(compose_ctx(policy_with(tmp_path, CAPS)), model)  # type: ignore[arg-type]
    assert service["logging"] == expected


def test_control_compose_without_caps_is_unchanged(tmp_path: Path) -> None:
    from gatekeeper.vetting.log_caps import vet_compose_log_caps

    service = {"image": "x", "logging": {"options": {"max-size": "1g"}}}
    model = {"services": {"web": dict(service)}}
    vet_compose_log_caps(compose_ctx(policy_with(tmp_path, "")), model)  # type: ignore[arg-type]
    assert model["services"]["web"] == service
