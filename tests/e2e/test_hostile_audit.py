"""Audit integrity through real ssh (issue 18 item 4).

* Hang-up during a compose decision: the client is killed while gatekeeper
  renders the project. sshd removes the ExposeAuthInfo file (SSH_USER_AUTH)
  when the connection closes (the control: the file is gone afterwards, so a
  late read finds no key); the decision record still names the key, because
  gatekeeper reads it first.
* `--log-opt tag=gatekeeper`: the engine accepts it from root (the control);
  through gatekeeper it is refused, in the run and the compose spelling.
* `ssh -s sftp`: what sshd 9.2 gives the ForceCommand is the sftp server's path
  (SSH_ORIGINAL_COMMAND=/usr/lib/openssh/sftp-server); the record keeps that
  command and names the rule `subsystem-sftp`.

Layouts: the log tag runs three ways (tests/e2e/stack.py MODES; in layout (b) the proxy
refuses the create of both spellings, rule flag-log-opt, with its "api" record, and no
container is made). The other two are about the CLI layer's own decision record and run in
the default layout only: layout (b)'s ForceCommand records nothing.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from .stack import (
    AGENT,
    AGENT_HOME,
    APP_DIR,
    IMAGE,
    MODES,
    PROXY_ALONE,
    Stack,
    audit_offset,
    audit_records_since,
    write_file,
)
from .test_attack_chains import assert_refused

pytestmark = pytest.mark.e2e

EX_NOPERM = 77
TAGGED = "gk-e2e-tagged"


def auth_files() -> set[Path]:
    return set(Path("/tmp").glob("sshauth.*"))


def decisions_since(offset: int, timeout: float) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = [r for r in audit_records_since(offset) if r.get("event") == "decision"]
        if records:
            return records
        time.sleep(0.1)
    return []


def test_hang_up_during_a_compose_decision_keeps_the_key(stack: Stack) -> None:
    before = auth_files()
    offset = audit_offset()
    client = subprocess.Popen(stack.ssh_argv(f"docker compose -f {APP_DIR}/compose.yaml config"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not (auth_files() - before) and time.monotonic() < deadline:
        time.sleep(0.02)  # the session has begun once sshd wrote its auth info file
    assert auth_files() - before, "sshd wrote no ExposeAuthInfo file"
    time.sleep(0.2)
    client.kill()  # hang up while the project is being rendered
    client.wait(timeout=10)
    records = decisions_since(offset, 30)
    assert len(records) == 1, records
    # control: sshd removed the auth info file on hang-up; a late read finds no key
    deadline = time.monotonic() + 10
    while auth_files() - before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not auth_files() - before
    assert records[0]["key"] == stack.fingerprint()


@pytest.mark.parametrize("stack", MODES, indirect=True, scope="module")
def test_reserved_log_tag_refused_through_gatekeeper(stack: Stack, restored_home: Path) -> None:
    stack.docker("rm", "-f", TAGGED, check=False)
    try:
        control = stack.docker("run", "--rm", "--name", TAGGED, "--log-opt", "tag=gatekeeper", IMAGE, "true",
                               check=False)
        assert control.returncode == 0, control.stderr
    finally:
        stack.docker("rm", "-f", TAGGED, check=False)
    before = containers(stack)
    since = audit_offset()
    result = stack.ssh(f"docker run --rm --log-opt tag=gatekeeper {IMAGE} true")
    assert_refused(stack, result, since, rule="flag-log-opt")
    project = AGENT_HOME / "work" / "ai-tagged" / "compose.yaml"  # its project: the [names] prefix
    text = f"services:\n  t:\n    image: {IMAGE}\n    logging:\n      options:\n        tag: gatekeeper\n"
    write_file(project, text, mode=0o644, owner=AGENT, group=AGENT)
    since = audit_offset()
    result = stack.ssh(f"docker compose -f {project} up -d", timeout=120)
    # (b): the proxy refuses the service's create by the run spelling's rule
    rule = "flag-log-opt" if stack.mode == PROXY_ALONE else "compose-logging"
    assert_refused(stack, result, since, rule=rule)
    assert containers(stack) == before
    stack.docker("network", "rm", "ai-tagged_default", check=False)  # (b): compose made it first


def containers(stack: Stack) -> list[str]:
    return sorted(stack.docker("ps", "-aq", "--no-trunc").stdout.split())


def test_sftp_subsystem_is_recorded_as_requested(stack: Stack) -> None:
    offset = audit_offset()
    port = str(stack.forcecommand_port)
    argv = ["sftp", *stack.client_options(), "-P", port, "-b", "-", f"{AGENT}@127.0.0.1"]
    subprocess.run(argv, input=b"ls /\n", capture_output=True, timeout=60, check=False)
    records = decisions_since(offset, 10)
    assert [(r["cmd"], r["rule"]) for r in records] == [("/usr/lib/openssh/sftp-server", "subsystem-sftp")]
    assert records[0]["key"] == stack.fingerprint()
