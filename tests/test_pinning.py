"""Pinned reads (gatekeeper.pinning): docker gets the bytes the decision checked.

A container bound above an env or label file could swap it between the
decision and the CLI's read (a symlink to another file, or new content such as
a reserved label). The decision reads the file once without following any
symlink; the ForceCommand hands docker a sealed memfd of those bytes.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from gatekeeper.decision import decide
from gatekeeper.errors import Denied
from gatekeeper.pinning import pinned_argv, read_without_symlinks
from gatekeeper.policy import load_policy
from gatekeeper.worlds import OfflineEngineWorld
from tests.conftest import Deployment, gatekeeper_command, pythonpath_free_env
from tests.fake_engine import IMG, fake_engine


@pytest.fixture
def tree(tmp_path: Path):  # type: ignore[no-untyped-def]
    root = Path(os.path.realpath(tmp_path)) / "home"
    (root / "work" / "app").mkdir(parents=True)
    (root / "work" / "app" / ".env").write_text("A=1\n")
    (root / "work" / "app" / "labels").write_text("team=web\n")
    (root / "work" / "app" / "forged").write_text("gatekeeper.owner=other\n")
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[docker]\nworkdir = "{root}"\n[paths]\nallowed_roots = ["{root}"]\n'
                      f'state_dir = "{tmp_path}/state"\n')
    return root, load_policy(str(policy))


def test_env_and_label_files_are_pinned(tree) -> None:  # type: ignore[no-untyped-def]
    root, policy = tree
    decision = decide("docker run --rm --env-file work/app/.env -l x=y --label-file=work/app/labels img",
                      policy, OfflineEngineWorld())
    assert decision.allowed, decision.reason
    pins = {decision.argv[i]: data for i, _, data in decision.pins}
    assert pins == {f"--env-file={root}/work/app/.env": b"A=1\n",
                    f"--label-file={root}/work/app/labels": b"team=web\n"}


def test_a_label_file_is_checked_on_the_pinned_bytes(tree) -> None:  # type: ignore[no-untyped-def]
    _, policy = tree
    decision = decide("docker run --label-file work/app/forged img", policy, OfflineEngineWorld())
    assert decision.rule == "reserved-label", decision.reason


def test_build_and_compose_reads_are_not_pinned(tree) -> None:  # type: ignore[no-untyped-def]
    _, policy = tree
    decision = decide("docker build --label-file work/app/labels work/app", policy, OfflineEngineWorld())
    assert decision.pins == []


def test_a_component_swapped_for_a_symlink_is_refused(tmp_path: Path) -> None:
    """The path was resolved; a link on it now means it was swapped since."""
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "f").write_text("x")
    (tmp_path / "swapped").symlink_to(tmp_path / "real")
    (tmp_path / "link-file").symlink_to(tmp_path / "real" / "f")
    base = os.path.realpath(tmp_path)
    assert read_without_symlinks(f"{base}/real/f", 100) == b"x"
    for path in (f"{base}/swapped/f", f"{base}/link-file"):
        with pytest.raises(Denied) as caught:
            read_without_symlinks(path, 100)
        assert caught.value.rule == "host-path"
    with pytest.raises(Denied):
        read_without_symlinks(f"{base}/real", 100)  # a directory is not an env file


def test_the_memfd_holds_the_bytes_and_is_sealed() -> None:
    argv, fds = pinned_argv(["docker", "run", "--env-file=/h/.env", "img"], [(2, "--env-file=", b"A=1\n")])
    try:
        assert argv[2] == f"--env-file=/proc/self/fd/{fds[0]}"
        assert Path(f"/proc/self/fd/{fds[0]}").read_bytes() == b"A=1\n"
        with pytest.raises(PermissionError):
            Path(f"/proc/self/fd/{fds[0]}").write_bytes(b"B=2\n")
        assert os.get_inheritable(fds[0])
    finally:
        for fd in fds:
            os.close(fd)


READING_STUB = """#!/bin/sh
for arg in "$@"; do
  case "$arg" in --env-file=*) cat "${{arg#--env-file=}}" > "{out}"; echo "$arg" > "{out}.arg";; esac
done
"""


def test_forcecommand_hands_docker_the_checked_bytes(deployment: Deployment) -> None:
    """The real ForceCommand with a stub docker that reads what it was given: the bytes
    arrive through /proc/self/fd/N, and the audit record keeps the path."""
    env_file = deployment.workdir / "work" / "app.env"
    env_file.write_text("GREETING=pinned\n")
    out = deployment.root / "seen"
    deployment.docker.write_text(READING_STUB.format(out=out))
    with fake_engine(deployment.root, {"images/img": IMG}) as engine:  # type: ignore[dict-item]
        text = deployment.policy.read_text()
        deployment.policy.write_text(text.replace("unix:///run/test.sock", f"unix://{engine.server_address}"))
        result = subprocess.run(
            [*gatekeeper_command(), "--policy", str(deployment.policy)],
            env=pythonpath_free_env(SSH_ORIGINAL_COMMAND="docker run --rm --env-file work/app.env img"),
            capture_output=True, text=True, check=False, cwd=str(deployment.root),
        )
    assert result.returncode == 0, result.stderr
    assert out.read_text() == "GREETING=pinned\n"
    assert Path(f"{out}.arg").read_text().startswith("--env-file=/proc/self/fd/")
    assert f"--env-file={env_file}" in deployment.audit_lines()[0]
