"""The in-flight registry (gatekeeper.inflight): concurrent sessions cannot each
pass the disjoint-bind check and together break it.

A session with host paths locks, reads the live claims, asks the engine,
registers its own claims and unlocks; its claim lives as long as it does. A
claim whose owner is dead is stale (nobody holds its flock) and is removed.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatekeeper.errors import Denied, PolicyError
from gatekeeper.inflight import Registry, encode_claims, parse_claims
from gatekeeper.policy import load_policy
from tests.conftest import Deployment, gatekeeper_command, pythonpath_free_env
from tests.fake_engine import IMG, fake_engine

HOLD = """
import sys, time
from gatekeeper.inflight import Registry
registry = Registry(sys.argv[1])
registry.locked_claims()
registry.settle([("bind", sys.argv[2])])
print("registered", flush=True)
time.sleep(60)
"""


def hold_claim(state: Path, path: str) -> subprocess.Popen[str]:
    """Another live session that has registered a bind source and is still running."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(state), path], stdout=subprocess.PIPE,
                               text=True, cwd=str(Path(__file__).resolve().parent.parent))
    assert process.stdout is not None and process.stdout.readline().strip() == "registered"
    return process


def test_claims_round_trip_any_path() -> None:
    claims = [("bind", "/home/ai-worker/w"), ("output", "/home/ai-worker/new\nline"), ("bind", "/x/\udcff")]
    assert parse_claims(encode_claims(claims)) == claims


def test_a_live_session_is_seen_and_a_dead_one_is_removed(tmp_path: Path) -> None:
    state = tmp_path / "state"
    other = hold_claim(state, "/home/ai-worker/w")
    try:
        registry = Registry(str(state))
        assert registry.locked_claims() == [("bind", "/home/ai-worker/w")]
        registry.settle(None)
    finally:
        other.kill()
        other.wait()
    registry = Registry(str(state))
    assert registry.locked_claims() == []  # the dead session's claim is stale
    registry.settle(None)
    assert [p.name for p in state.iterdir()] == ["lock"]


def test_own_registration_is_released(tmp_path: Path) -> None:
    registry = Registry(str(tmp_path / "state"))
    registry.locked_claims()
    registration = registry.settle([("bind", "/a")])
    assert registration is not None
    reader = Registry(str(tmp_path / "state"))
    assert reader.locked_claims() == [("bind", "/a")]  # live while held, even by this process
    reader.settle(None)
    registration.release()
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == ["lock"]


def test_the_lock_serialises_sessions(tmp_path: Path) -> None:
    """While one session holds the lock (deciding), another waits for it."""
    state = tmp_path / "state"
    first = Registry(str(state))
    first.locked_claims()
    script = ("import sys, time; from gatekeeper.inflight import Registry; t = time.monotonic(); "
              "Registry(sys.argv[1]).locked_claims(); print(time.monotonic() - t)")
    second = subprocess.Popen([sys.executable, "-c", script, str(state)], stdout=subprocess.PIPE, text=True,
                              cwd=str(Path(__file__).resolve().parent.parent))
    time.sleep(0.5)
    first.settle([("bind", "/a")])
    out, _ = second.communicate(timeout=30)
    assert float(out) >= 0.4


@pytest.mark.parametrize("problem", ["symlink", "group-writable", "missing-parent", "a-file"])
def test_an_unusable_state_dir_denies_with_its_own_rule(tmp_path: Path, problem: str) -> None:
    state = tmp_path / "state"
    if problem == "symlink":
        (tmp_path / "elsewhere").mkdir()
        state.symlink_to(tmp_path / "elsewhere")
    elif problem == "group-writable":
        state.mkdir()
        state.chmod(0o770)
    elif problem == "missing-parent":
        state = tmp_path / "no" / "state"
    else:
        state.write_text("")
    with pytest.raises(Denied) as caught:
        Registry(str(state)).locked_claims()
    assert caught.value.rule == "host-path-state"
    assert "install -d -m 0700" in caught.value.message


@pytest.mark.parametrize(
    ("state_dir", "ok"),
    [
        ("/home/ai-worker/.gatekeeper", True),  # a top-level dot entry: no container reaches it
        ("/var/lib/gatekeeper/ai-worker", True),  # outside the roots
        ("/home/ai-worker/work/.gatekeeper", False),  # below a directory a container may bind
        ("/home/ai-worker", False),
        ("/home/ai-worker/state", False),
    ],
)
def test_state_dir_must_be_out_of_reach(tmp_path: Path, state_dir: str, ok: bool) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[paths]\nstate_dir = "{state_dir}"\n')
    if ok:
        assert load_policy(str(policy)).state_dir == state_dir
    else:
        with pytest.raises(PolicyError):
            load_policy(str(policy))


def run_gatekeeper(deployment: Deployment, command: str) -> subprocess.CompletedProcess[str]:
    env = pythonpath_free_env(SSH_ORIGINAL_COMMAND=command)
    return subprocess.run([*gatekeeper_command(), "--policy", str(deployment.policy)], env=env,
                          capture_output=True, text=True, check=False, cwd=str(deployment.root))


@contextlib.contextmanager
def inert_area(path: Path) -> Iterator[None]:
    """The area mounted nosuid,nodev, as the install step area-mount mounts the agent's
    (bind sources elsewhere are refused: tests/test_inert_mounts.py)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a nosuid,nodev area needs root")
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "nosuid,nodev,mode=0755", "gk-test-area", str(path)],
                   check=True)
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_forcecommand_checks_against_a_session_in_flight(deployment: Deployment) -> None:
    """Through the real ForceCommand (stub docker, an engine with no containers): a live
    session's bind of work/w makes work/w/a refused; when that session is gone the same command
    runs, and its own claim is gone after it ended."""
    state = deployment.root / "state"
    with inert_area(deployment.workdir / "work"), \
            fake_engine(deployment.root, {"containers": [], "images/img": IMG}) as engine:  # type: ignore[dict-item]
        text = deployment.policy.read_text()
        deployment.policy.write_text(text.replace("unix:///run/test.sock", f"unix://{engine.server_address}"))
        other = hold_claim(state, str(deployment.workdir / "work" / "w"))
        try:
            denied = run_gatekeeper(deployment, "docker run --rm -v ./work/w/a:/a img")
            assert denied.returncode == 77 and "rule host-path-nested" in denied.stderr, denied.stderr
            assert "in flight" in denied.stderr
        finally:
            other.kill()
            other.wait()
        allowed = run_gatekeeper(deployment, "docker run --rm -v ./work/w/a:/a img")
    assert allowed.returncode == 0, allowed.stderr
    assert sorted(p.name for p in state.iterdir()) == ["lock"]


def test_forcecommand_state_dir_problem_is_a_denial(deployment: Deployment) -> None:
    (deployment.root / "state").symlink_to("/")
    result = run_gatekeeper(deployment, "docker run --rm -v ./work/w:/w img")
    assert result.returncode == 77 and "rule host-path-state" in result.stderr, result.stderr
    assert run_gatekeeper(deployment, "docker ps").returncode == 0  # no host paths: no state needed

