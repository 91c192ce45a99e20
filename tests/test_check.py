"""`gatekeeper check` with and without an engine: one clear answer.

* No engine reachable: one line naming docker.host, exit 69, nothing decided
  (not a `scope-unresolved` denial per command), for COMMAND and --from alike.
* `--offline`: every named object is assumed to exist and be the agent's, and
  every result says so (text and JSON); grammar and policy denials still deny.
* An engine that answers: ownership comes from it (a foreign container is
  refused as `scope-owned`, the agent's own allowed), and no result carries the
  offline note.
"""

# ruff: noqa: E501

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fake_engine import fake_engine

DOCKER = "/usr/bin/docker"
EX_NOPERM, EX_UNAVAILABLE = 77, 69
OFFLINE_NOTE = "offline: every named object assumed to exist and be the agent's"

pytestmark = pytest.mark.skipif(not Path(DOCKER).exists(), reason="the docker CLI is part of the test set-up")


def policy_for(tmp_path: Path, host: str) -> Path:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[docker]\nbinary = "{DOCKER}"\nworkdir = "{home}"\nconfig_dir = "{tmp_path}"\n'
                      f'host = "{host}"\n[paths]\nallowed_roots = ["{home}"]\n')
    return policy


def check(policy: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-I", "-m", "gatekeeper", "check", "--policy", str(policy), *args],
                          input=stdin, capture_output=True, text=True, timeout=60, check=False)


def test_unreachable_engine_is_one_error_naming_it(tmp_path: Path) -> None:
    host = f"unix://{tmp_path}/no-engine.sock"
    done = check(policy_for(tmp_path, host), "docker stop web")
    assert done.returncode == EX_UNAVAILABLE
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and host in lines[0] and "--offline" in lines[0]
    assert "scope-unresolved" not in done.stderr


def test_unreachable_engine_with_from_is_one_error_too(tmp_path: Path) -> None:
    commands = "".join(json.dumps({"cmd": c}) + "\n" for c in ("docker stop web", "docker ps", "docker rm db"))
    done = check(policy_for(tmp_path, f"unix://{tmp_path}/no.sock"), "--from", "-", stdin=commands)
    assert (done.returncode, done.stdout, len(done.stderr.splitlines())) == (EX_UNAVAILABLE, "", 1)


def test_offline_assumes_the_agents_objects_and_says_so(tmp_path: Path) -> None:
    policy = policy_for(tmp_path, f"unix://{tmp_path}/no-engine.sock")
    done = check(policy, "--offline", "docker stop web")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("allow:") and OFFLINE_NOTE in done.stdout
    done = check(policy, "--offline", "--json", "docker rm -f web db")
    assert json.loads(done.stdout)["decision"] == "allow"
    assert json.loads(done.stdout)["offline"] == OFFLINE_NOTE


def test_offline_still_denies_what_the_policy_denies(tmp_path: Path) -> None:
    policy = policy_for(tmp_path, f"unix://{tmp_path}/no-engine.sock")
    done = check(policy, "--offline", "docker exec web sh")
    assert done.returncode == EX_NOPERM
    assert "blocked-subcommand" in done.stdout and OFFLINE_NOTE in done.stdout
    commands = "".join(json.dumps({"cmd": c}) + "\n" for c in ("docker stop web", "docker run --privileged img"))
    done = check(policy, "--offline", "--from", "-", stdin=commands)
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(r["decision"], r["offline"]) for r in results] == [("allow", OFFLINE_NOTE), ("deny", OFFLINE_NOTE)]
    assert done.returncode == EX_NOPERM


def test_an_engine_that_answers_decides_ownership(tmp_path: Path) -> None:
    objects = {
        "containers/web": {"Id": "a" * 64, "Name": "/web", "Image": "sha256:" + "c" * 64,
                           "Config": {"Labels": {"gatekeeper.owner": "default", "gatekeeper.created": "default"}}},
        "containers/db": {"Id": "b" * 64, "Name": "/db", "Image": "sha256:" + "c" * 64, "Config": {"Labels": {}}},
        "images/sha256:" + "c" * 64: {"Id": "sha256:" + "c" * 64, "RepoTags": ["app:1"], "Config": {"Labels": None}},
    }
    with fake_engine(tmp_path, objects) as engine:
        policy = policy_for(tmp_path, f"unix://{engine.server_address}")
        own = check(policy, "--json", "docker stop web")
        foreign = check(policy, "docker stop db")
    assert own.returncode == 0, own.stderr
    assert json.loads(own.stdout)["argv"] == ["docker", "stop", "a" * 64]
    assert "offline" not in json.loads(own.stdout)
    assert foreign.returncode == EX_NOPERM and "scope-owned" in foreign.stdout
    assert OFFLINE_NOTE not in foreign.stdout


def test_from_an_audit_log_skips_its_exit_lines(tmp_path: Path) -> None:
    """`check --from audit.jsonl`: decision lines are decided again, exit lines are not errors."""
    policy = policy_for(tmp_path, f"unix://{tmp_path}/no-engine.sock")
    lines = [
        {"event": "decision", "session": "s1", "cmd": "docker ps", "decision": "allow"},
        {"event": "exit", "session": "s1", "exit": 0, "duration_ms": 3},
        {"event": "decision", "session": "s2", "cmd": "docker exec web sh", "decision": "deny"},
        {"cmd": "docker ps"},
        {"event": "exit"},
        ["not", "an", "object"],
    ]
    done = check(policy, "--offline", "--from", "-", stdin="".join(json.dumps(line) + "\n" for line in lines))
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(r["line"], r.get("decision", r.get("error"))) for r in results] == [
        (1, "allow"), (3, "deny"), (4, "allow"), (6, "not a JSON object with a string 'cmd'"),
    ]
