"""ForceCommand mode end to end with a recording stub docker: what the child
sees (argv, cwd, environment, exit status), what the agent sees on a denial,
and what the audit log records."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, Deployment, gatekeeper_command


def run_gatekeeper(deployment: Deployment, command: str | None, *extra_args: str,
                   env: dict[str, str] | None = None, cwd: Path | None = None,
                   stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    environment = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)} if env is None else env
    if command is not None:
        environment["SSH_ORIGINAL_COMMAND"] = command
    # -I ignores PYTHONPATH, so run from the repo root (not the user's cwd) like an installed package
    return subprocess.run(
        [*gatekeeper_command(), "--policy", str(deployment.policy), *extra_args],
        env=environment, cwd=cwd or REPO, input=stdin, capture_output=True, timeout=30, check=False,
    )


def test_allowed_command_runs_with_exact_argv_cwd_and_clean_env(deployment: Deployment) -> None:
    hostile_env = {
        "PATH": "/tmp/evil:/usr/bin:/bin", "DOCKER_HOST": "tcp://evil:2375", "DOCKER_CONTEXT": "evil",
        "DOCKER_CONFIG": "/tmp/evil", "DOCKER_CLI_HOOKS": "x", "COMPOSE_FILE": "/etc/x.yml",
        "BUILDX_CONFIG": "/tmp/x", "PYTHONPATH": "/tmp/evil",
        "LC_ALL": "evil", "SSH_CONNECTION": "127.0.0.1 5555 127.0.0.1 22",
    }
    result = run_gatekeeper(deployment, "docker ps -a --format '{{.Names}}'", env=hostile_env)
    assert result.returncode == 0, result.stderr
    assert deployment.argv() == ["ps", "-a", "--format", "{{.Names}}"]
    assert deployment.record.with_suffix(".cwd").read_text().strip() == str(deployment.workdir)
    env = deployment.child_env()
    env.pop("PWD", None)  # the stub's shell adds these
    env.pop("SHLVL", None)
    env.pop("_", None)
    assert env == {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(deployment.workdir),
        "LANG": "C.UTF-8",
        "DOCKER_HOST": "unix:///run/test.sock",
        "DOCKER_CONFIG": f"{deployment.root}/dockercfg",
        "DOCKER_CLI_HINTS": "false",
        "COMPOSE_EXPERIMENTAL_GIT_REMOTE": "false",
        "COMPOSE_EXPERIMENTAL_OCI_REMOTE": "false",
        "COMPOSE_MENU": "false",
        "BUILDX_CONFIG": f"{deployment.root}/state/buildx",
        "DOCKER_BUILDKIT": "0",  # the classic builder in every layout (gatekeeper.execution)
        "COMPOSE_BAKE": "false",
    }


@pytest.mark.parametrize("status", [0, 1, 3, 125])
def test_child_exit_status_is_ours(deployment: Deployment, status: int) -> None:
    env = {"PATH": "/usr/bin:/bin", "STUB_EXIT": str(status)}
    # STUB_EXIT must not reach the child: the clean environment drops it, so 0 always
    result = run_gatekeeper(deployment, "docker ps", env=env)
    assert result.returncode == 0


def test_child_exit_status_is_returned(deployment: Deployment) -> None:
    deployment.docker.write_text("#!/bin/sh\nexit 3\n")
    result = run_gatekeeper(deployment, "docker ps")
    assert result.returncode == 3
    records = [json.loads(line) for line in deployment.audit_lines()]
    assert [r["event"] for r in records] == ["decision", "exit"]
    assert records[1]["exit"] == 3


def test_denial_is_one_line_with_rule_and_alternatives(deployment: Deployment) -> None:
    result = run_gatekeeper(deployment, "docker exec web sh")
    assert result.returncode == 77
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("gatekeeper: denied: 'docker exec'")
    assert "(rule blocked-subcommand)" in lines[0]
    assert "allowed: " in lines[0] and " ps" in lines[0]
    assert not deployment.record.with_suffix(".argv").exists()


def test_no_command_prints_usage_and_refuses(deployment: Deployment) -> None:
    result = run_gatekeeper(deployment, None)
    assert result.returncode == 77
    assert "usage: ssh" in result.stderr.decode()
    assert json.loads(deployment.audit_lines()[0])["rule"] == "no-command"


def test_audit_records_decision_and_exit(deployment: Deployment) -> None:
    env = {"PATH": "/usr/bin:/bin", "SSH_CONNECTION": "10.1.2.3 5555 10.0.0.1 22"}
    run_gatekeeper(deployment, "docker ps", "--name", "agent-1", env=env)
    run_gatekeeper(deployment, "docker ps; id", env=dict(env))
    decision, exit_line, denied = (json.loads(line) for line in deployment.audit_lines())
    assert decision["event"] == "decision" and decision["decision"] == "allow"
    assert decision["cmd"] == "docker ps" and decision["argv"] == ["docker", "ps"]
    assert decision["canonical"] == "container ls" and decision["profile"] == "agent-1"
    assert decision["client"] == "10.1.2.3 5555 10.0.0.1 22"
    assert decision["policy"]["path"] == str(deployment.policy) and len(decision["policy"]["sha256"]) == 64
    assert decision["ts"].endswith("Z") and len(decision["session"]) == 16
    assert exit_line["event"] == "exit" and exit_line["session"] == decision["session"]
    assert exit_line["exit"] == 0 and exit_line["duration_ms"] >= 0
    assert denied["decision"] == "deny" and denied["rule"] == "shell-syntax"


def test_hostile_command_is_logged_escaped_on_one_line(deployment: Deployment) -> None:
    command = "docker ps\n{\"decision\":\"allow\"}\x1b[2J\u202e"
    run_gatekeeper(deployment, command)
    lines = deployment.audit_lines()
    assert len(lines) == 1
    assert json.loads(lines[0])["cmd"] == command
    assert "\x1b" not in lines[0]


@pytest.mark.parametrize("breakage", ["missing", "directory", "symlink"])
def test_unwritable_audit_log_denies_and_runs_nothing(deployment: Deployment, breakage: str) -> None:
    deployment.audit.unlink()
    if breakage == "directory":
        deployment.audit.mkdir()
    elif breakage == "symlink":
        (deployment.root / "real.jsonl").touch()
        deployment.audit.symlink_to(deployment.root / "real.jsonl")
    result = run_gatekeeper(deployment, "docker ps")
    assert result.returncode == 75
    assert result.stderr.decode().count("\n") == 1
    assert "audit" in result.stderr.decode()
    assert not deployment.record.with_suffix(".argv").exists()


@pytest.mark.parametrize("policy_text", [
    "[docker]\nbinary = 'relative/docker'\n",
    "[docker]\nunknown = 1\n",
    "[nonsense]\n",
    "[commands]\nallowed = ['frobnicate']\n",
    "[audit]\nsyslog = 'yes'\n",
    "not toml at all [[[",
])
def test_invalid_policy_denies_everything_with_exit_78(deployment: Deployment, policy_text: str) -> None:
    deployment.policy.write_text(policy_text)
    result = run_gatekeeper(deployment, "docker ps")
    assert result.returncode == 78
    assert result.stderr.decode().startswith("gatekeeper: denied: ")
    assert "Traceback" not in result.stderr.decode()


def test_missing_policy_denies(deployment: Deployment) -> None:
    deployment.policy.unlink()
    assert run_gatekeeper(deployment, "docker ps").returncode == 78


@pytest.mark.parametrize("args", [["--policy"], ["--frobnicate"], ["--policy", "a", "--policy", "b"]])
def test_bad_forcecommand_arguments_deny(deployment: Deployment, args: list[str]) -> None:
    env = {"SSH_ORIGINAL_COMMAND": "docker ps", "SSH_CONNECTION": "127.0.0.1 5555 127.0.0.1 22"}
    result = subprocess.run([*gatekeeper_command(), *args], cwd=REPO, capture_output=True,
                            env=env, check=False)
    assert result.returncode == 78


def test_isolated_mode_ignores_modules_in_cwd(deployment: Deployment, tmp_path: Path) -> None:
    """A 'gatekeeper' package planted in the agent's cwd or PYTHONPATH is never imported."""
    evil = tmp_path / "evilcwd" / "gatekeeper"
    evil.mkdir(parents=True)
    (evil / "__init__.py").write_text("raise SystemExit('pwned')\n")
    (evil / "__main__.py").write_text("raise SystemExit('pwned')\n")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(evil.parent), "SSH_ORIGINAL_COMMAND": "docker ps"}
    result = subprocess.run([*gatekeeper_command(), "--policy", str(deployment.policy)],
                            cwd=evil.parent, env=env, capture_output=True, check=False)
    assert b"pwned" not in result.stderr  # -I: neither cwd nor PYTHONPATH is on sys.path


def test_forcecommand_path_never_imports_rich(deployment: Deployment) -> None:
    probe = (
        "import sys; import gatekeeper.cli as c; c.main(['--policy', sys.argv[1]]);"
        "print('RICH' if any(m.startswith('rich') for m in sys.modules) else 'NORICH')"
    )
    result = subprocess.run([*gatekeeper_command()[:2], "-c", probe, str(deployment.policy)], cwd=REPO,
                            capture_output=True, env={"SSH_ORIGINAL_COMMAND": "docker ps"}, check=False)
    assert result.stdout.strip().endswith(b"NORICH"), result.stderr
