"""Rails on compose, with the real compose plugin rendering (no engine needed):
services get the caps checked and the default limits set in the model compose
is fed; `compose config` prints JSON through the redaction filter, and the
flags whose output the filter cannot clean are refused."""

# One case per line keeps each command beside its expectation; such lines run long.
# ruff: noqa: E501

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gatekeeper.decision import decide
from gatekeeper.policy import load_policy
from gatekeeper.worlds import RealWorld
from tests.test_limits import LIMITS
from tests.test_vetting_compose import compose_binary, docker_binary

SERVICES = """\
services:
  plain:
    image: alpine
    environment:
      DB_PASSWORD: hunter2
  capped:
    image: alpine
    mem_limit: 512m
    cpus: 0.5
    pids_limit: 64
"""


@pytest.fixture
def stage(tmp_path: Path):  # type: ignore[no-untyped-def]
    docker, plugin = docker_binary(), compose_binary()
    if docker is None or plugin is None:
        pytest.skip("docker CLI and compose plugin needed to render projects")
    root = Path(os.path.realpath(tmp_path / "root"))
    root.mkdir()
    config = tmp_path / "docker-config" / "cli-plugins"
    config.mkdir(parents=True)
    (config / "docker-compose").symlink_to(plugin)
    policy = tmp_path / "policy.toml"
    policy.write_text(
        f'[docker]\nbinary = "{docker}"\nworkdir = "{root}"\nconfig_dir = "{config.parent}"\n'
        f'host = "unix:///nonexistent.sock"\n[paths]\nallowed_roots = ["{root}"]\n{LIMITS}'
    )
    return root, load_policy(str(policy))


class EmptyEngine(RealWorld):
    """Compose renders for real; questions to the engine (who owns what, what runs) find nothing
    but the services' images (pulled, no labels: the containers inherit none)."""

    def run_docker(self, policy: object, args: list[str], stdin: bytes | None = None,
                   timeout: float = 60.0) -> tuple[int, bytes, bytes]:
        if args[:2] == ["image", "inspect"]:
            digest = "@sha256:" + "6" * 64  # from a registry (gatekeeper.image_scope)
            return 0, "".join(f"sha256:{'5' * 64}\t[\"{word}\"]\tnull\t[\"{word.partition(':')[0]}{digest}\"]\n"
                              for word in args[5:]).encode(), b""
        if args[1:2] == ["inspect"]:
            return 1, b"", b"Error: No such object"
        if args[:1] != ["compose"]:
            return 0, b"", b""
        return super().run_docker(policy, args, stdin, timeout)


def decide_with(stage, compose: str, command: str):  # type: ignore[no-untyped-def]
    root, policy = stage
    (root / "compose.yaml").write_text(compose)
    return decide(f"docker compose -f {root}/compose.yaml {command}", policy, EmptyEngine())


def test_compose_up_gets_defaults_only_where_absent(stage) -> None:  # type: ignore[no-untyped-def]
    decision = decide_with(stage, SERVICES, "up -d")
    assert decision.allowed, decision.reason
    services = json.loads(decision.stdin)["services"]
    assert (services["plain"]["mem_limit"], services["plain"]["cpus"], services["plain"]["pids_limit"]) == (str(1 << 30), 1.0, 256)
    assert (services["capped"]["mem_limit"], services["capped"]["cpus"], services["capped"]["pids_limit"]) == (str(512 << 20), 0.5, 64)


# (compose file, the rule of the refusal): over the cap and "unlimited" in compose's spellings
OVER_CAP = [
    ("services:\n  a:\n    image: alpine\n    mem_limit: 3g\n", "limit-memory"),
    ("services:\n  a:\n    image: alpine\n    pids_limit: -1\n", "limit-pids"),
    ("services:\n  a:\n    image: alpine\n    cpus: 8\n", "limit-cpus"),
    ("services:\n  a:\n    image: alpine\n    memswap_limit: -1\n", "limit-memory"),
    ("services:\n  a:\n    image: alpine\n    cpu_quota: 1000000\n", "limit-cpus"),
    ("services:\n  a:\n    image: alpine\n    deploy:\n      resources:\n        limits:\n          memory: 10g\n", "limit-memory"),
    ("services:\n  a:\n    image: alpine\n    deploy:\n      resources:\n        limits:\n          pids: -1\n", "limit-pids"),
]


@pytest.mark.parametrize(("compose", "rule"), OVER_CAP, ids=[rule + ":" + c.splitlines()[-1].strip() for c, rule in OVER_CAP])
@pytest.mark.parametrize("command", ["up -d", "create", "run a true"])
def test_compose_over_cap_denied(stage, compose: str, rule: str, command: str) -> None:  # type: ignore[no-untyped-def]
    decision = decide_with(stage, compose, command)
    assert not decision.allowed
    assert decision.rule == rule, decision.reason
    assert "service 'a'" in decision.reason


def test_compose_zero_means_absent_and_gets_the_default(stage) -> None:  # type: ignore[no-untyped-def]
    """compose drops mem_limit: 0 / pids_limit: 0 from the model: the default fills in."""
    decision = decide_with(stage, "services:\n  a:\n    image: alpine\n    mem_limit: 0\n    pids_limit: 0\n", "up -d")
    assert decision.allowed, decision.reason
    service = json.loads(decision.stdin)["services"]["a"]
    assert (service["mem_limit"], service["pids_limit"]) == (str(1 << 30), 256)


def test_compose_down_of_an_over_cap_project_still_allowed(stage) -> None:  # type: ignore[no-untyped-def]
    """Caps apply to what starts containers; tearing down is always possible."""
    decision = decide_with(stage, OVER_CAP[0][0], "down")
    assert decision.allowed, decision.reason


def test_compose_config_prints_json_through_the_filter(stage) -> None:  # type: ignore[no-untyped-def]
    decision = decide_with(stage, SERVICES, "config --format yaml")
    assert decision.allowed, decision.reason
    assert decision.output_filter == "redact-compose-config"
    tail = decision.argv[decision.argv.index("config"):]
    assert tail == ["config", "--format=json"]  # the agent's --format yaml is gone


@pytest.mark.parametrize("flag", ["--services", "--images", "--volumes", "'--hash=*'", "-q"])
def test_compose_config_name_lists_need_no_filter(stage, flag: str) -> None:  # type: ignore[no-untyped-def]
    decision = decide_with(stage, SERVICES, f"config {flag}")
    assert decision.allowed, decision.reason
    assert decision.output_filter is None


@pytest.mark.parametrize("flag", ["--environment", "--variables", "-o out.yaml", "--output=out.json"])
def test_compose_config_unfiltered_output_refused(stage, flag: str) -> None:  # type: ignore[no-untyped-def]
    decision = decide_with(stage, SERVICES, f"config {flag}")
    assert not decision.allowed
    assert decision.rule == "compose-config-unfiltered", decision.reason
