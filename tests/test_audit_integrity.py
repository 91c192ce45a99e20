"""Audit integrity (issue 18 item 4), each side of each rule.

* Session facts are read before anything slow: sshd removes the file named by
  SSH_USER_AUTH (the only record of which key this is) when the client hangs up,
  which can happen while a compose decision runs. The stub engine removes it
  during the decision here; the record still names the key. The control reads
  the facts after the removal, as gatekeeper did before, and gets no key.
* No container may log under a reserved tag (`--log-opt tag=gatekeeper`, compose
  `logging.options.tag`): where the engine logs to journald or syslog, the tag
  is the identifier the audit viewer reads. Templates are refused too.
* compose `logging.options` follow the run rules: with no driver named, the
  daemon's default driver (syslog, journald, ...) reads them.
* `ssh -s sftp` reaches gatekeeper as the sftp server's path (what sshd 9.2 gives
  a ForceCommand); it is recorded as rule `subsystem-sftp`.
"""

# One case per line keeps each command beside its expectation; such lines run long.
# ruff: noqa: E501

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gatekeeper.decision import decide
from gatekeeper.errors import Denied
from gatekeeper.policy import load_policy
from gatekeeper.session import session_facts
from gatekeeper.vetting.run import vet_model_log_options
from tests.conftest import Deployment
from tests.fakes import StaticWorld
from tests.test_forcecommand import run_gatekeeper

# An ExposeAuthInfo file as sshd writes it (an ed25519 test key).
AUTH_INFO = "publickey ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHb1u9xr3SpPyQaVfE9mVlFdYtdhv4Ryd1yNmbyUJvGg\n"


def test_key_survives_a_hang_up_during_the_decision(deployment: Deployment, tmp_path: Path) -> None:
    auth = tmp_path / "sshauth"
    auth.write_text(AUTH_INFO)
    # the engine stub removes the file while the decision asks it something (as sshd does on hang-up)
    deployment.docker.write_text(f"#!/bin/sh\nrm -f {auth}\nexit 1\n")
    env = {"PATH": "/usr/bin:/bin", "SSH_USER_AUTH": str(auth), "SSH_CONNECTION": "127.0.0.1 5 127.0.0.1 22"}
    expected = session_facts_with(env)["key"]
    assert expected is not None and expected.startswith("SHA256:")
    # '/web': a /name is asked through the docker CLI (the stub), not the API socket (gatekeeper.engine_api)
    run_gatekeeper(deployment, "docker logs /web", env=env)
    assert not auth.exists(), "the decision should have asked the engine (and the stub removed the file)"
    record = json.loads(deployment.audit_lines()[0])
    assert record["key"] == expected
    # control: the facts read after the hang-up, as before this fix, have no key
    assert session_facts_with(env)["key"] is None


def session_facts_with(env: dict[str, str]) -> dict[str, object]:
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        return session_facts()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="module")
def policy():  # type: ignore[no-untyped-def]
    return load_policy(None)


def reserving(tmp_path: Path, tags: list[str]):  # type: ignore[no-untyped-def]
    path = tmp_path / "policy.toml"
    path.write_text("[audit]\nreserved_tags = [" + ", ".join(f'"{t}"' for t in tags) + "]\n")
    return load_policy(str(path))


# (command, rule under the default policy, rule when the policy reserves nothing)
TAG_CASES = {
    "plain tag": ("docker run --log-opt tag=web img", "allowed", "allowed"),
    "gatekeeper": ("docker run --log-opt tag=gatekeeper img", "flag-log-opt", "allowed"),
    "gatekeeper, other case": ("docker run --log-opt tag=GateKeeper img", "flag-log-opt", "allowed"),
    "gatekeeper inside": ("docker run --log-opt tag=my-gatekeeper-x img", "flag-log-opt", "allowed"),
    "template": ("docker run --log-opt 'tag={{.Name}}' img", "flag-log-opt", "flag-log-opt"),
    "syslog-tag style option": ("docker run --log-opt syslog-tag=gatekeeper img", "flag-log-opt", "flag-log-opt"),
    "syslog facility": ("docker run --log-opt syslog-facility=authpriv img", "flag-log-opt", "flag-log-opt"),
}


@pytest.mark.parametrize(("command", "default_rule", "open_rule"), TAG_CASES.values(), ids=TAG_CASES.keys())
def test_run_log_tags(policy, tmp_path: Path, command: str, default_rule: str, open_rule: str) -> None:  # type: ignore[no-untyped-def]
    assert decide(command, policy, StaticWorld()).rule == default_rule
    assert decide(command, reserving(tmp_path, []), StaticWorld()).rule == open_rule


def test_the_policy_can_reserve_more_tags(tmp_path: Path) -> None:
    extra = reserving(tmp_path, ["gatekeeper", "sshd"])
    assert decide("docker run --log-opt tag=sshd img", extra, StaticWorld()).rule == "flag-log-opt"


class Ctx:
    def __init__(self, policy: object) -> None:
        self.policy = policy


def compose_rule(policy: object, options: dict) -> str:
    model = {"services": {"a": {"image": "x", "logging": {"options": options}}}}
    try:
        vet_model_log_options(Ctx(policy), model)  # type: ignore[arg-type]
    except Denied as denial:
        return denial.rule
    return "allowed"


COMPOSE_CASES = {
    "rotation": ({"max-size": "10m", "max-file": "3"}, "allowed", "allowed"),
    "tag": ({"tag": "web"}, "allowed", "allowed"),
    "gatekeeper tag": ({"tag": "gatekeeper"}, "compose-logging", "allowed"),
    "template tag": ({"tag": "{{.Name}}"}, "compose-logging", "compose-logging"),
    "syslog address": ({"syslog-address": "unix:///run/systemd/journal/syslog"}, "compose-logging", "compose-logging"),
}


@pytest.mark.parametrize(("options", "default_rule", "open_rule"), COMPOSE_CASES.values(), ids=COMPOSE_CASES.keys())
def test_compose_log_options(policy, tmp_path: Path, options: dict, default_rule: str, open_rule: str) -> None:  # type: ignore[no-untyped-def]
    assert compose_rule(policy, options) == default_rule
    assert compose_rule(reserving(tmp_path, []), options) == open_rule


SUBSYSTEM_CASES = {
    "debian sftp-server": ("/usr/lib/openssh/sftp-server", "subsystem-sftp"),
    "internal-sftp": ("internal-sftp", "subsystem-sftp"),
    "sftp-server with arguments": ("/usr/lib/openssh/sftp-server -R", "not-docker"),
    "another program": ("/bin/sh", "not-docker"),
    "docker": ("docker ps", "allowed"),
}


@pytest.mark.parametrize(("command", "rule"), SUBSYSTEM_CASES.values(), ids=SUBSYSTEM_CASES.keys())
def test_subsystem_requests_are_named(policy, command: str, rule: str) -> None:  # type: ignore[no-untyped-def]
    assert decide(command, policy, StaticWorld()).rule == rule
