"""Policy loading: defaults, partial overrides, and fail-closed validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from gatekeeper.errors import PolicyError
from gatekeeper.policy import load_policy


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    return str(path)


def test_embedded_default() -> None:
    policy = load_policy(None)
    assert policy.binary == "/usr/bin/docker" and policy.workdir == "/home/ai-worker"
    assert "container ls" in policy.allowed and "container exec" not in policy.allowed
    assert "container exec" in policy.blocked and policy.sha256 == ""


def test_partial_file_keeps_other_defaults(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, '[docker]\nbinary = "/opt/docker"\n'))
    assert policy.binary == "/opt/docker" and policy.host == "unix:///var/run/docker.sock"
    assert len(policy.sha256) == 64 and "container ls" in policy.allowed


def test_aliases_normalise_to_canonical_paths(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, '[commands]\nallowed = ["ps", "image ls", "compose up"]\n'))
    assert policy.allowed == {"container ls", "image ls", "compose up"}


def test_blocked_wins_over_allowed(tmp_path: Path) -> None:
    text = '[commands]\nallowed = ["ps", "exec"]\nblocked = ["container exec"]\n'
    policy = load_policy(write(tmp_path, text))
    assert policy.allowed == {"container ls"}


INVALID = [
    ("unknown section", "[nope]\n"),
    ("unknown key", "[docker]\nbinaryy = '/x'\n"),
    ("relative binary", "[docker]\nbinary = 'docker'\n"),
    ("wrong type", "[audit]\nsyslog = 1\n"),
    ("unknown command", "[commands]\nallowed = ['frobnicate']\n"),
    ("plugin name", "[commands]\nallowed = ['scan']\n"),
    ("list of non-strings", "[commands]\nallowed = [1]\n"),
    ("relative root", "[paths]\nallowed_roots = ['home']\n"),
    ("section not a table", "docker = 1\n"),
    ("not TOML", "[docker\n"),
    ("not UTF-8", b"\xff\xfe".decode("latin-1")),
]


@pytest.mark.parametrize(("why", "text"), INVALID, ids=[w for w, _ in INVALID])
def test_invalid_policy_is_an_error(tmp_path: Path, why: str, text: str) -> None:
    path = tmp_path / "policy.toml"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(PolicyError):
        load_policy(str(path))


def test_unreadable_policy_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError):
        load_policy(str(tmp_path / "missing.toml"))


def test_every_command_with_a_grammar_is_decided_by_the_default() -> None:
    """A command docker's tables know is either allowed (with its scoping) or blocked by
    default: nothing everyday is left out by accident (docs/policy.md says why for the rest)."""
    from gatekeeper.grammar.compose_flags import COMPOSE_FLAGS
    from gatekeeper.grammar.docker_flags import FLAGS

    policy = load_policy(None)
    undecided = [name for name in (*FLAGS, *COMPOSE_FLAGS) if name not in policy.allowed | policy.blocked]
    assert undecided == []


EVERYDAY_SCOPED = ["container kill", "compose kill", "compose rm", "volume prune", "network prune"]


@pytest.mark.parametrize("command", EVERYDAY_SCOPED)
def test_everyday_commands_with_scoping_are_allowed(command: str) -> None:
    from gatekeeper.vetting.ownership import PRUNED, TARGETED

    policy = load_policy(None)
    assert command in policy.allowed and command not in policy.blocked
    if not command.startswith("compose "):
        assert command in TARGETED or command in PRUNED  # scoped to the agent's objects


def test_a_profile_view_is_made_once_and_differs_only_by_profile(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('[docker]\nbinary = "/usr/bin/docker"\n[audit]\npath = "/tmp/audit.log"\n')
    policy = load_policy(str(path))
    view = policy.for_profile("alice")
    assert view is policy.for_profile("alice") and view is not policy
    assert view.profile == "alice" and policy.for_profile("bob").profile == "bob"
    assert view.for_profile("bob") is policy.for_profile("bob")
    for name in type(policy).__slots__:
        if name != "profile":
            assert getattr(view, name) is getattr(policy, name), name
