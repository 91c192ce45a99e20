"""The operator's console on the real stack: doctor, the terminal listing, bytes that are not UTF-8.

* `gatekeeper doctor` passes on the deployed stack (exit 0, `--json` ok); it checks the
  resident pool's socket exactly when sshd forces the resident client.
* `gatekeeper audit` on a pseudo-terminal of 80 columns: a header, then one line per record.
* A command with a byte that is not UTF-8, sent through real ssh: the agent is told the byte,
  and the record keeps the exact bytes in `cmd_b64`.
"""

from __future__ import annotations

import base64
import json
import os
import pty
import subprocess

import pytest

from tests.test_audit_view_short import everything_from

from .stack import AUDIT_LOG, GATEKEEPER, RESIDENT, Stack, audit_offset, audit_records_since, docker_client

pytestmark = pytest.mark.e2e


def test_doctor_passes_on_the_stack(stack: Stack) -> None:
    argv = [str(GATEKEEPER), "doctor", "--sshd-config", str(stack.workdir / "sshd-forcecommand.conf")]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.endswith("doctor: ok\n")
    assert "  ok  sshd settings:" in done.stdout  # sshd -T through gatekeeper sshd-check
    assert f"  ok  docker binary: {docker_client()}" in done.stdout
    assert "  ok  state dir: /home/ai-worker/.gatekeeper" in done.stdout  # made, or makeable by the agent
    assert "  ok  resident unit:" in done.stdout  # install.sh's resident step ran
    # the pool is checked when the drop-in forces its client; the entry script (fallback) needs none
    assert ("  ok  resident pool: /run/gatekeeper-resident/" in done.stdout) == RESIDENT, done.stdout
    report = json.loads(
        subprocess.run([*argv, "--json"], capture_output=True, text=True, timeout=60, check=True).stdout
    )
    assert report["ok"] is True


def on_a_terminal(argv: list[str], columns: int) -> str:
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        import fcntl
        import struct
        import termios

        fcntl.ioctl(1, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
        os.environ["NO_COLOR"] = "1"
        os.execv(argv[0], argv)  # noqa: S606
    return everything_from(pid, fd).decode("utf-8", "replace").replace("\r", "")


def test_terminal_listing_is_one_line_per_record(stack: Stack) -> None:
    stack.ssh("docker ps", options=("-T",))
    stack.ssh("docker exec gk-e2e-ticker sh", options=("-T",))
    # in the deployment the proxy's records of the engine calls sit between the two
    lines = on_a_terminal([str(GATEKEEPER), "audit", "--no-pager", "-n", "6", "--log", str(AUDIT_LOG)], 80)
    rows = lines.splitlines()
    assert len(rows) == 7, rows  # the header and six records
    assert all(len(row) <= 80 for row in rows)
    assert any("docker ps" in row and "exit 0" in row for row in rows[1:-1]), rows
    assert "deny  default  docker exec gk-e2e" in rows[-1] and "blocked-subcommand" in rows[-1]  # cut to fit


def test_a_byte_that_is_not_utf8_is_named_and_kept(stack: Stack) -> None:
    offset = audit_offset()
    seen = stack.ssh("docker ps \udcff", options=("-T",))  # the argv byte 0xFF
    assert b"byte 0xFF" in seen.stderr and b"(rule shell-syntax)" in seen.stderr
    (record,) = [r for r in audit_records_since(offset) if r["event"] == "decision"]
    assert record["cmd"] == "docker ps \\xff"
    assert base64.b64decode(record["cmd_b64"]) == b"docker ps \xff"
