"""Per-key profiles: the shipped example policies load, and each gives the agent
what its header promises (readonly looks and never touches; default caps)."""

from __future__ import annotations

import pytest

from gatekeeper.decision import decide
from gatekeeper.policy import load_policy
from tests.conftest import REPO
from tests.fakes import StaticWorld
from tests.test_limits import CountingWorld

EXAMPLES = REPO / "examples"

# (command, expected decision under examples/readonly.toml)
READONLY = [
    ("docker ps -a", "allow"),
    ("docker images", "allow"),
    ("docker inspect web", "allow"),
    ("docker container inspect web", "allow"),
    ("docker image inspect nginx", "allow"),
    ("docker logs --tail 10 web", "allow"),
    ("docker run --rm alpine true", "deny"),
    ("docker start web", "deny"),
    ("docker stop web", "deny"),
    ("docker rm -f web", "deny"),
    ("docker pull alpine", "deny"),
    ("docker build .", "deny"),
    ("docker compose -f c.yaml up -d", "deny"),
    ("docker system prune -af", "deny"),
    ("docker exec web sh", "deny"),
    ("docker inspect -f '{{.Config.Env}}' web", "allow"),  # formatted from redacted data
    ("docker exec web env", "deny"),
]


@pytest.mark.parametrize(("command", "expected"), READONLY, ids=[c for c, _ in READONLY])
def test_readonly_profile(command: str, expected: str) -> None:
    policy = load_policy(str(EXAMPLES / "readonly.toml"), "ci-bot")
    decision = decide(command, policy, StaticWorld())
    assert decision.as_dict()["decision"] == expected, decision.reason


def test_default_profile_caps_and_injects() -> None:
    policy = load_policy(str(EXAMPLES / "default.toml"), "dev-agent")
    assert decide("docker run -m 4g img", policy, CountingWorld(0)).rule == "limit-memory"
    argv = decide("docker run img", policy, CountingWorld(0)).argv or []
    assert {"--memory=1g", "--cpus=1", "--pids-limit=256"} <= set(argv)
    assert decide("docker run img", policy, CountingWorld(10)).rule == "limit-running"


@pytest.mark.parametrize("name", ["default.toml", "readonly.toml", "policy.toml"])
def test_examples_are_valid(name: str) -> None:
    load_policy(str(EXAMPLES / name))
