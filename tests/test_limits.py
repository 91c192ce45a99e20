"""Resource caps ([limits]): docker's unit spellings parsed exactly, caps checked at,
under and over, defaults injected where docker reads them, compose services
capped in the model compose is fed, and the "trying to cheat" list: every
spelling of "unlimited" is over the cap."""

# One case per line keeps each command beside its expectation; such lines run long.
# ruff: noqa: E501

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatekeeper.decision import decide
from gatekeeper.errors import Denied, PolicyError
from gatekeeper.policy import load_policy
from gatekeeper.vetting.limits import Caps, limit_service, nano_cpus, plain_int, ram_in_bytes
from tests.fakes import StaticWorld

LIMITS = """
[limits]
memory = "2g"
cpus = 2.0
pids_limit = 512
default_memory = "1g"
default_cpus = 1
default_pids_limit = 256
"""
DEFAULTS_INJECTED = ["--memory=1g", "--cpus=1", "--pids-limit=256"]


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("limits") / "policy.toml"
    path.write_text(LIMITS)
    return load_policy(str(path))


# (spelling, bytes as docker/go-units RAMInBytes reads it; None = we refuse it)
MEMORY_SPELLINGS = [
    ("1024", 1024),
    ("512m", 512 << 20),
    ("512M", 512 << 20),
    ("2g", 2 << 30),
    ("2G", 2 << 30),
    ("2gb", 2 << 30),
    ("2GiB", 2 << 30),
    ("1.5g", 3 << 29),
    ("1 g", 1 << 30),
    ("100b", 100),
    ("100B", 100),
    ("1k", 1024),
    ("1t", 1 << 40),
    ("1p", 1 << 50),
    ("0", 0),
    # refused: docker's rules differ or the value is not plain
    ("-1", None),
    ("1e3", None),
    ("0x10", None),
    ("1gib2", None),
    ("1x", None),
    ("1bb", None),
    ("1gbb", None),
    ("1  g", None),
    ("g", None),
    ("", None),
    (".5g", None),
    ("1.g", None),
    ("inf", None),
]


@pytest.mark.parametrize(("text", "expected"), MEMORY_SPELLINGS, ids=[t or "empty" for t, _ in MEMORY_SPELLINGS])
def test_memory_units_parse_like_go_units(text: str, expected: int | None) -> None:
    assert ram_in_bytes(text) == expected


CPU_SPELLINGS = [("1", 10**9), ("1.5", 15 * 10**8), ("0.000000001", 1), ("0", 0),
                 ("0.0000000001", None), ("3/2", None), ("1e1", None), ("-1", None), ("", None)]


@pytest.mark.parametrize(("text", "expected"), CPU_SPELLINGS, ids=[t or "empty" for t, _ in CPU_SPELLINGS])
def test_cpus_parse_like_docker(text: str, expected: int | None) -> None:
    assert nano_cpus(text) == expected


INT_SPELLINGS = [("512", 512), ("-1", -1), ("0", 0), ("010", None), ("0x10", None),
                 ("1_000", None), ("+5", None), ("", None), ("-", None)]


@pytest.mark.parametrize(("text", "expected"), INT_SPELLINGS, ids=[t or "empty" for t, _ in INT_SPELLINGS])
def test_pids_parse_as_plain_decimal_only(text: str, expected: int | None) -> None:
    assert plain_int(text) == expected


@given(st.text(max_size=20))
def test_unit_parsers_never_crash(text: str) -> None:
    ram_in_bytes(text)
    nano_cpus(text)
    plain_int(text)


# (command, expected decision, rule or "*")
CAPS = [
    # at the cap, under it
    ("docker run -m 2g --cpus 2 --pids-limit 512 img", "allow", "*"),
    ("docker run --memory=2048m --cpus=0.5 --pids-limit=1 img", "allow", "*"),
    ("docker run --memory 1.5GiB img", "allow", "*"),
    ("docker run --memory-swap 4g img", "allow", "*"),
    # over it
    ("docker run -m 3g img", "deny", "limit-memory"),
    ("docker run --memory=2049m img", "deny", "limit-memory"),
    ("docker run --cpus 2.5 img", "deny", "limit-cpus"),
    ("docker run --pids-limit 513 img", "deny", "limit-pids"),
    ("docker container create --pids-limit 100000 img", "deny", "limit-pids"),
    ("docker run --memory-swap 5g img", "deny", "limit-memory"),
]


@pytest.mark.parametrize(("command", "expected", "rule"), CAPS, ids=[c for c, _, _ in CAPS])
def test_caps(command: str, expected: str, rule: str, policy) -> None:  # type: ignore[no-untyped-def]
    decision = decide(command, policy, StaticWorld())
    assert decision.as_dict()["decision"] == expected, decision.reason
    if rule != "*":
        assert decision.rule == rule
        assert "policy [limits]" in decision.reason


# Each one a way to say "no limit", or a spelling we would read differently from docker.
TRYING_TO_CHEAT = [
    ("docker run --memory 0 img", "limit-memory", "the memory cap is 2g"),
    ("docker run --memory=-1 img", "limit-memory", "write it as digits"),
    ("docker run -m 3g img", "limit-memory", "the memory cap is 2g"),
    ("docker run -itm3g img", "limit-memory", "the memory cap is 2g"),
    ("docker run -m=3g img", "limit-memory", "the memory cap is 2g"),
    ("docker run -m 1g -m 3g img", "limit-memory", "the memory cap is 2g"),
    ("docker run -m 1e10 img", "limit-memory", "write it as digits"),
    ("docker run -m 100000000000p img", "limit-memory", "the memory cap is 2g"),
    ("docker run --memory-swap -1 img", "limit-memory", "memory plus swap"),
    ("docker run --pids-limit -1 img", "limit-pids", "the PID cap is 512"),
    ("docker run --pids-limit 0 img", "limit-pids", "the PID cap is 512"),
    ("docker run --pids-limit 0x200 img", "limit-pids", "plain decimal"),
    ("docker run --pids-limit 0777 img", "limit-pids", "plain decimal"),
    ("docker run --cpus 0 img", "limit-cpus", "the CPU cap is 2"),
    ("docker run --cpus 3/2 img", "limit-cpus", "write it as a decimal"),
    ("docker run --cpu-quota -1 img", "limit-cpus", "through --cpus only"),
    ("docker run --cpu-period 1000 --cpu-quota 100000000 img", "limit-cpus", "through --cpus only"),
]


@pytest.mark.parametrize(("command", "rule", "says"), TRYING_TO_CHEAT, ids=[c for c, _, _ in TRYING_TO_CHEAT])
def test_trying_to_cheat(command: str, rule: str, says: str, policy) -> None:  # type: ignore[no-untyped-def]
    decision = decide(command, policy, StaticWorld())
    assert not decision.allowed
    assert decision.rule == rule
    assert says in decision.reason


# (command, argv docker runs): defaults right after the subcommand, only for absent flags
INJECTION = [
    ("docker run img", ["docker", "run", "--cap-drop=NET_RAW", *DEFAULTS_INJECTED, "img"]),
    ("docker run -d --name web img sh -c 'sleep 1'", ["docker", "run", "--cap-drop=NET_RAW", *DEFAULTS_INJECTED, "-d", "--name", "web", "img", "sh", "-c", "sleep 1"]),
    ("docker container create -- img", ["docker", "container", "create", "--cap-drop=NET_RAW", *DEFAULTS_INJECTED, "--", "img"]),
    ("docker --log-level error run img", ["docker", "--log-level", "error", "run", "--cap-drop=NET_RAW", *DEFAULTS_INJECTED, "img"]),
    ("docker run -m 512m img", ["docker", "run", "--cap-drop=NET_RAW", "--cpus=1", "--pids-limit=256", "-m", "512m", "img"]),
    ("docker run -itm512m img", ["docker", "run", "--cap-drop=NET_RAW", "--cpus=1", "--pids-limit=256", "-itm512m", "img"]),
    ("docker run --cpus 1.5 --pids-limit 10 -m 1g img", ["docker", "run", "--cap-drop=NET_RAW", "--cpus", "1.5", "--pids-limit", "10", "-m", "1g", "img"]),
    # the container's own command line is not ours: a -m there is the image's argument
    ("docker run img stress -m 10g", ["docker", "run", "--cap-drop=NET_RAW", *DEFAULTS_INJECTED, "img", "stress", "-m", "10g"]),
]


@pytest.mark.parametrize(("command", "argv"), INJECTION, ids=[c for c, _ in INJECTION])
def test_defaults_are_injected_where_absent(command: str, argv: list[str], policy) -> None:  # type: ignore[no-untyped-def]
    decision = decide(command, policy, StaticWorld())
    assert decision.allowed, decision.reason
    assert without_owner_label(decision.argv) == argv
    # a fixpoint: deciding the rewritten command changes nothing more
    again = decide(" ".join(f"'{word}'" for word in argv), policy, StaticWorld())
    assert without_owner_label(again.argv) == argv


def without_owner_label(argv: list[str] | None) -> list[str] | None:
    """The ownership label (gatekeeper.vetting.ownership) is another rail's business."""
    if argv is None:
        return None
    out: list[str] = []
    for word in argv:
        if word.startswith(("gatekeeper.owner=", "gatekeeper.created=")) and out and out[-1] == "--label":
            out.pop()
        elif not word.startswith("--label=gatekeeper.owner="):
            out.append(word)
    return out


def test_embedded_default_has_no_caps() -> None:
    decision = decide("docker run --memory 0 --pids-limit -1 img", load_policy(None), StaticWorld())
    assert without_owner_label(decision.argv) == ["docker", "run", "--cap-drop=NET_RAW", "--memory", "0", "--pids-limit", "-1", "img"]


# ---------------------------------------------------------------- compose model

CAPS_OBJECT = Caps({"memory": "2g", "cpus": 2, "pids_limit": 512, "default_memory": "1g",
                    "default_cpus": 1, "default_pids_limit": 256})

# (service as compose renders it, the service after the caps, or the rule of the refusal)
COMPOSE_SERVICES = [
    ({"image": "x"}, {"image": "x", "mem_limit": str(1 << 30), "cpus": 1.0, "pids_limit": 256}),
    ({"image": "x", "mem_limit": "2147483648", "cpus": 1.5, "pids_limit": 512},
     {"image": "x", "mem_limit": "2147483648", "cpus": 1.5, "pids_limit": 512}),
    ({"image": "x", "deploy": {"resources": {"limits": {"memory": "1073741824", "cpus": 0.5, "pids": 10}}}},
     {"image": "x", "deploy": {"resources": {"limits": {"memory": "1073741824", "cpus": 0.5, "pids": 10}}}}),
    ({"image": "x", "mem_limit": "3221225472"}, "limit-memory"),
    ({"image": "x", "mem_limit": "0"}, "limit-memory"),
    ({"image": "x", "memswap_limit": -1}, "limit-memory"),
    ({"image": "x", "cpus": 0}, "limit-cpus"),
    ({"image": "x", "cpus": 4.0}, "limit-cpus"),
    ({"image": "x", "cpu_quota": 1000000}, "limit-cpus"),
    ({"image": "x", "pids_limit": -1}, "limit-pids"),
    ({"image": "x", "deploy": {"resources": {"limits": {"pids": 0}}}}, "limit-pids"),
    ({"image": "x", "deploy": {"resources": {"limits": {"memory": "4294967296"}}}}, "limit-memory"),
]


@pytest.mark.parametrize(("service", "expected"), COMPOSE_SERVICES, ids=[repr(s) for s, _ in COMPOSE_SERVICES])
def test_compose_service_caps(service: dict, expected: object) -> None:
    if isinstance(expected, str):
        with pytest.raises(Denied) as denial:
            limit_service("web", service, CAPS_OBJECT)
        assert denial.value.rule == expected
        assert "service 'web'" in denial.value.message
    else:
        limit_service("web", service, CAPS_OBJECT)
        assert service == expected


# ---------------------------------------------------------------- max_running


class CountingWorld(StaticWorld):
    """Answers `docker container ls -q --filter label=gatekeeper.owner=...` with `running` IDs."""

    def __init__(self, running: int) -> None:
        super().__init__()
        self.running = running
        self.asked: list[list[str]] = []

    def run_docker(self, policy: object, args: list[str], stdin: bytes | None = None,
                   timeout: float = 60.0) -> tuple[int, bytes, bytes]:
        self.asked.append(args)
        if args[:2] == ["image", "inspect"] or args[:2] == ["volume", "ls"]:
            # the image's labels (check_inherited_labels) and its build record: the offline answer
            return super().run_docker(policy, args, stdin, timeout)  # type: ignore[arg-type]
        return 0, b"".join(b"%064x\n" % i for i in range(self.running)), b""


@pytest.mark.parametrize(("running", "allowed"), [(0, True), (2, True), (3, False), (7, False)])
def test_max_running(running: int, allowed: bool, tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text("[limits]\nmax_running = 3\n")
    world = CountingWorld(running)
    decision = decide("docker run -d img", load_policy(str(path), "ci-bot"), world)
    assert decision.allowed is allowed, decision.reason
    from gatekeeper.vetting.running import RUNNING_FORMAT

    assert ["container", "ls", "--no-trunc", "--filter", "label=gatekeeper.owner=ci-bot",
            "--format", RUNNING_FORMAT] in world.asked
    if not allowed:
        assert decision.rule == "limit-running"
        assert "the cap is 3" in decision.reason


def test_max_running_in_a_world_without_an_engine_counts_nothing(tmp_path: Path) -> None:
    """Replay and `gatekeeper check` cannot know what runs: the count is zero, not a denial."""
    path = tmp_path / "policy.toml"
    path.write_text("[limits]\nmax_running = 1\n")
    assert decide("docker run -d img", load_policy(str(path)), StaticWorld()).allowed


@pytest.mark.parametrize(
    "limits",
    ['memory = "lots"', 'memory = "-1"', 'memory = 2', "cpus = -1", 'cpus = "2"', "pids_limit = -1",
     "pids_limit = 1.5", "max_running = true", 'default_memory = "0x10"', "unknown = 1"],
)
def test_invalid_limits_are_policy_errors(limits: str, tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(f"[limits]\n{limits}\n")
    with pytest.raises(PolicyError):
        load_policy(str(path))


def test_default_over_its_cap_refuses_instead_of_injecting(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('[limits]\nmemory = "2g"\ndefault_memory = "4g"\n')
    decision = decide("docker run img", load_policy(str(path)), StaticWorld())
    assert not decision.allowed
    assert decision.rule == "limit-memory"
    assert "default_memory" in decision.reason
    assert decide("docker run -m 1g img", load_policy(str(path)), StaticWorld()).allowed
