"""The decision's own resources through real ssh (issue 18 item 3).

The alias bomb of the issue (an 11 KB compose file: 100 references to 100
references to a 10 KB string) made compose use 864 MB and gatekeeper 300 MB
while rendering it for the decision. The control is gatekeeper's own expansion
counter with its bound lifted (run here, not by making compose build 100 MB):
the file expands to ~100 MB. Through ssh the same file is refused within
seconds, before compose sees it, and the refusal is in the audit log.

Not three ways (tests/e2e/conftest.py THREE_WAY): the attack is on the CLI layer's own
decision (it renders the compose file before anything runs), so it runs where that layer
decides, the default layout. In layout (b) there is no decision to exhaust: compose renders
the file as the agent's own process (a shell as the agent may run any such process; the
account's limits are the operating system's), and the proxy sees only the API requests that
come out of it, each with its body capped ([proxy] max_body).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from gatekeeper.vetting import compose_files

from .stack import AGENT, AGENT_HOME, Stack, audit_offset, audit_records_since, write_file

pytestmark = pytest.mark.e2e

EX_NOPERM = 77
BOMB_DIR = AGENT_HOME / "work" / "bomb"


def bomb_text() -> str:
    lines = ["x-a: &a " + '"' + "x" * 10240 + '"', "x-b: &b [" + ", ".join(["*a"] * 100) + "]",
             "x-c: &c [" + ", ".join(["*b"] * 100) + "]", "services:", "  app:",
             "    image: gk-busybox:latest", "    x-big: *c"]
    return "\n".join(lines) + "\n"


@pytest.fixture
def bomb(stack: Stack) -> Iterator[Path]:
    path = BOMB_DIR / "compose.yaml"
    write_file(path, bomb_text(), mode=0o644, owner=AGENT, group=AGENT)
    yield path
    path.unlink(missing_ok=True)
    BOMB_DIR.rmdir()


def test_alias_bomb_refused_and_recorded(stack: Stack, bomb: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # control: the expansion, counted without the bound
    monkeypatch.setattr(compose_files, "MAX_EXPANDED", 1 << 62)
    data = bomb.read_bytes()
    assert len(data) < 12 << 10
    assert compose_files.expanded_size(yaml.parse(data.decode(), Loader=yaml.SafeLoader)) > 200_000_000
    # through gatekeeper
    offset = audit_offset()
    started = time.monotonic()
    result = stack.ssh(f"docker compose -f {bomb} up -d", timeout=60)
    elapsed = time.monotonic() - started
    assert result.returncode == EX_NOPERM, result.stderr
    assert b"compose-yaml-aliases" in result.stderr, result.stderr
    assert elapsed < 10, elapsed
    records = [r for r in audit_records_since(offset) if r.get("event") == "decision"]
    assert [r["rule"] for r in records] == ["compose-yaml-aliases"]
