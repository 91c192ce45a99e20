"""The audit log's hash chain on the real stack (issue 14 item 7): the proxy writes every
record, so what the agent's commands leave chains; `gatekeeper audit verify` finds no
problem past the anchor line in the live log's recent records (the control), and the same
slice with one record removed fails at exactly that line."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from .stack import AUDIT_LOG, GATEKEEPER, Stack, audit_offset

pytestmark = pytest.mark.e2e


def problems(lines: list[bytes], tmp_path: Path) -> list[str]:
    log = tmp_path / "slice.jsonl"
    log.write_bytes(b"\n".join(lines) + b"\n")
    done = subprocess.run([str(GATEKEEPER), "audit", "verify", "--log", str(log)],
                          capture_output=True, text=True, timeout=60, check=False)
    found = [line.split(": ", 1)[1] for line in done.stdout.splitlines() if ": line " in line]
    assert (done.returncode == 0) == (not found), done.stdout
    return found


def test_recent_records_chain_and_a_removal_is_found(stack: Stack, tmp_path: Path) -> None:
    offset = audit_offset()
    for command in ("docker ps", "docker exec web sh", "docker version"):
        stack.ssh(command)
    data = AUDIT_LOG.read_bytes()
    before, recent = data[:offset].splitlines(), data[offset:].splitlines()
    assert len(recent) >= 5 and all(b'"prev":"' in line for line in recent)
    anchor = before[-1:]  # the line the first recent record chains to
    control = problems([*anchor, *recent], tmp_path)
    assert [p for p in control if not p.startswith("line 1:")] == []
    cut = [*anchor, *recent[:2], *recent[3:]]  # the third recent record removed
    assert any(p.startswith(f"line {len(anchor) + 3}: prev does not match") for p in problems(cut, tmp_path))
