"""[approval]: the third verdict through the ForceCommand (stub docker) and the operator's
commands. Refused with exit 75 and a request id, approved, runs once and only once;
every forged, widened, expired or reused approval is refused, each beside its control."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from gatekeeper.approval import approval_key, request_id
from gatekeeper.cli import main as gatekeeper_main
from tests.conftest import REPO, Deployment, gatekeeper_command

pytestmark = pytest.mark.skipif(os.getuid() != 0, reason="approvals must be root's: run as root")

COMMAND = "docker version"


def setup(deployment: Deployment) -> Path:
    approvals = deployment.root / "approvals"
    deployment.write_policy(f'[approval]\nask = ["version"]\ndir = "{approvals}"\nexpires = "10m"\n')
    return approvals


def agent(deployment: Deployment, command: str = COMMAND) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "SSH_ORIGINAL_COMMAND": command,
           "SSH_CONNECTION": "127.0.0.1 40000 127.0.0.1 22"}
    return subprocess.run([*gatekeeper_command(), "--policy", str(deployment.policy)], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False)


def operator(deployment: Deployment, *args: str) -> int:
    return gatekeeper_main([args[0], "--policy", str(deployment.policy), *args[1:]])


def pending_id(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 75, result.stderr
    assert "approval pending: request " in result.stderr
    return result.stderr.split("approval pending: request ", 1)[1][:16]


def records(deployment: Deployment) -> list[dict[str, object]]:
    return [json.loads(line) for line in deployment.audit_lines()]


def test_refused_approved_runs_once_and_only_once(deployment: Deployment,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    setup(deployment)
    request = pending_id(agent(deployment))
    assert pending_id(agent(deployment)) == request  # the same command, the same request
    assert operator(deployment, "approve", "--list") == 0
    assert request in capsys.readouterr().out
    assert operator(deployment, "approve", request) == 0
    ran = agent(deployment)
    assert ran.returncode == 0, ran.stderr
    assert deployment.argv() == ["version"]
    again = agent(deployment)
    assert pending_id(again) == request  # used up: asks anew
    steps = [(r["event"], r.get("decision") or r.get("action"), r.get("rule")) for r in records(deployment)]
    assert steps == [
        ("decision", "ask", "approval-pending"), ("decision", "ask", "approval-pending"),
        ("approval", "approve", None),
        ("decision", "allow", "approved"), ("exit", None, None),
        ("decision", "ask", "approval-pending"),
    ]


def test_denied_by_the_operator(deployment: Deployment) -> None:
    setup(deployment)
    request = pending_id(agent(deployment))
    assert operator(deployment, "deny", request) == 0
    refused = agent(deployment)
    assert refused.returncode == 77 and "(rule approval-denied)" in refused.stderr


def forge(approvals: Path, argv: list[str], *, expires_in: float = 600, mode: int = 0o644,
          dir_mode: int = 0o755, owner: int = 0, profile: str = "default", sha: str = "") -> None:
    import time

    approvals.mkdir(mode=dir_mode, exist_ok=True)
    approvals.chmod(dir_mode)
    key = approval_key(argv, profile, sha)
    path = approvals / key
    path.write_text(json.dumps({"key": key, "argv": argv, "profile": profile, "nonce": os.urandom(8).hex(),
                                "expires": time.time() + expires_in, "by": "test"}))
    path.chmod(mode)
    os.chown(path, owner, 0)


@pytest.mark.parametrize("cheat", ["group-writable file", "world-writable dir", "not root's", "expired",
                                   "another argv", "another profile"])
def test_forged_or_widened_approvals_are_ignored(deployment: Deployment, cheat: str) -> None:
    approvals = setup(deployment)
    sha = records_sha(deployment)
    argv = ["docker", "version"]
    forge(approvals, argv, sha=sha)  # control: a proper approval runs
    assert agent(deployment).returncode == 0
    bad = {
        "group-writable file": {"mode": 0o664},
        "world-writable dir": {"dir_mode": 0o757},
        "not root's": {"owner": 1},
        "expired": {"expires_in": -1},
        "another argv": {"argv": ["docker", "version", "--format", "x"]},
        "another profile": {"profile": "other"},
    }[cheat]
    forge(approvals, bad.pop("argv", argv), sha=sha, **bad)  # type: ignore[arg-type]
    assert agent(deployment).returncode == 75


def records_sha(deployment: Deployment) -> str:
    from gatekeeper.policy import load_policy

    return load_policy(str(deployment.policy)).sha256


def test_concurrent_sessions_use_one_approval_once(deployment: Deployment) -> None:
    setup(deployment)
    request = pending_id(agent(deployment))
    assert operator(deployment, "approve", request) == 0
    env = {"PATH": "/usr/bin:/bin", "SSH_ORIGINAL_COMMAND": COMMAND,
           "SSH_CONNECTION": "127.0.0.1 1 127.0.0.1 22"}
    argv = [*gatekeeper_command(), "--policy", str(deployment.policy)]
    quiet = subprocess.DEVNULL
    sessions = [subprocess.Popen(argv, env=env, cwd=REPO, stdout=quiet, stderr=quiet) for _ in range(12)]
    codes = sorted(p.wait(timeout=120) for p in sessions)
    assert codes == [0] + [75] * 11


def test_a_changed_policy_needs_a_new_approval(deployment: Deployment,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    approvals = setup(deployment)
    request = pending_id(agent(deployment))
    deployment.write_policy(f'[approval]\nask = ["version"]\ndir = "{approvals}"\nexpires = "20m"\n')
    assert operator(deployment, "approve", request) == 78
    assert "another policy" in capsys.readouterr().err
    assert request_id("0" * 64) == "0" * 16


def test_policy_test_reports_ask(tmp_path: Path) -> None:
    from gatekeeper.operator.policy_test import Runner, case_from

    policy = tmp_path / "p.toml"
    policy.write_text('[approval]\nask = ["rmi", "image-source"]\n'
                      '[images]\nallowed = ["docker.io/library/*"]\n')
    runner = Runner(str(policy))
    for command, verdict in [("docker rmi web:1", "ask"), ("docker pull ghcr.io/x/y", "ask"),
                             ("docker pull nginx", "allow"), ("docker run --privileged alpine", "deny")]:
        assert runner.verdict(case_from({"command": command, "expect": verdict}, "t"))[0] == verdict


def test_ask_cannot_name_confinement_rules(tmp_path: Path) -> None:
    from gatekeeper.errors import PolicyError
    from gatekeeper.policy import load_policy

    policy = tmp_path / "p.toml"
    policy.write_text('[approval]\nask = ["flag-privileged"]\n')
    with pytest.raises(PolicyError):
        load_policy(str(policy))
