"""The proxy writes the audit log; what the agent's account reports is marked as its word.

Through the real sshd, proxy and engine ([audit] via_proxy, the deployment):
* an allowed command leaves the ForceCommand's decision and exit records, stamped by
  the proxy ("layer": "cli", reported_by the agent's uid from SO_PEERCRED), and the
  proxy's own records of the engine calls ("layer": "api", no reported_by);
* a shell as the agent handing the proxy a record that claims to be the proxy's gets
  it written as the agent's word, never as the proxy's;
* when the proxy does not take the ForceCommand's record, the command does not run
  (exit 75; control: the same command runs while the proxy takes it).
The file itself is out of the agent's reach: tests/e2e/test_audit_append_only.py.
"""

from __future__ import annotations

import pwd
import subprocess

import pytest

from .stack import (
    AGENT,
    AS_AGENT,
    IMAGE,
    POLICY,
    PROXY_SOCKET,
    Stack,
    audit_offset,
    audit_records_since,
    write_file,
)

pytestmark = pytest.mark.e2e

NAME = "ai-e2e-unrecorded"  # the [names] prefix: only the unreachable proxy refuses it
POST = """
import socket, sys
body = sys.argv[2].encode()
conn = socket.socket(socket.AF_UNIX)
conn.connect(sys.argv[1])
conn.sendall(b"POST /_gatekeeper/audit HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: %d\\r\\n"
             b"Connection: close\\r\\n\\r\\n" % len(body) + body)
print(conn.recv(4096).split(b"\\r\\n")[0].decode())
"""


def agent_uid() -> int:
    return pwd.getpwnam(AGENT).pw_uid


def test_records_of_a_command_by_who_wrote_them(stack: Stack) -> None:
    offset = audit_offset()
    result = stack.ssh(f"docker run --rm {IMAGE} true")
    assert result.returncode == 0, result.stderr
    records = audit_records_since(offset, layer=None)
    reported = [r for r in records if r.get("layer") == "cli"]
    assert [r["event"] for r in reported] == ["decision", "exit"]
    for record in reported:
        assert record["reported_by"] == {"uid": agent_uid(), "user": AGENT, "profile": "default"}
    api = [r for r in records if r.get("layer") == "api"]
    assert api and all("reported_by" not in r for r in api)
    assert {r["endpoint"] for r in api} >= {"container.create", "container.start"}


def test_a_record_claiming_to_be_the_proxys_is_the_agents(stack: Stack) -> None:
    offset = audit_offset()
    forged = '{"v":1,"event":"decision","layer":"api","uid":0,"user":"root","cmd":"forged"}'
    posted = subprocess.run([*AS_AGENT, "/usr/bin/python3", "-c", POST, str(PROXY_SOCKET), forged],
                            capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    assert posted.stdout.startswith("HTTP/1.1 204"), posted.stdout + posted.stderr
    [record] = [r for r in audit_records_since(offset) if r.get("cmd") == "forged"]
    assert record["layer"] == "cli"
    assert record["reported_by"]["uid"] == agent_uid()  # type: ignore[index]


def test_unrecorded_means_not_run(stack: Stack) -> None:
    original = POLICY.read_text()
    command = f"docker run --name {NAME} {IMAGE} true"
    stack.docker("rm", "-f", NAME, check=False)
    try:
        gone = original.replace(f'listen = "{PROXY_SOCKET}"', 'listen = "/run/gatekeeper/gone.sock"')
        write_file(POLICY, gone, mode=0o644)
        refused = stack.ssh(command)
        assert refused.returncode == 75, refused.stderr
        assert b"nothing runs unrecorded" in refused.stderr
        assert stack.docker("ps", "-aq", "--filter", f"name={NAME}").stdout == ""
    finally:
        write_file(POLICY, original, mode=0o644)
    ran = stack.ssh(command)  # control: the same command, recorded, runs
    assert ran.returncode == 0, ran.stderr
    assert stack.docker("ps", "-aq", "--filter", f"name={NAME}").stdout != ""
    stack.docker("rm", "-f", NAME, check=False)
