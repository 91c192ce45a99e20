"""A container that writes logs forever stays under the policy's log cap (real ssh, real engine).

Attack: the agent runs `yes`-like output in a container (`docker run`, or a
compose service); under the default
json-file driver its log grows until the host's disk is full, and no command
was refused. Control: without [limits] log caps the same container's log passes
the cap's total within seconds; with them, the engine rotates it and the files
on disk stay within max-size x max-file.

Three ways (tests/e2e/conftest.py THREE_WAY): nothing is refused here, the caps are
injected; in layout (b) the proxy puts them into the create body (HostConfig.LogConfig) of
the `docker run` and of the compose service alike, and the files on disk are judged the same.
"""

from __future__ import annotations

import glob
import os
import shutil
import time

import pytest

from .stack import AGENT, AGENT_HOME, IMAGE, Stack, policy_extended, write_file

pytestmark = pytest.mark.e2e

NAME = "ai-e2e-logcap"  # the agent names within the [names] prefix (the default "ai-")
CAP_BYTES, FILES = 100_000, 2
CAPS = f'\n[limits]\nlog_max_size = "100k"\nlog_max_file = {FILES}\n'
CHATTY = "while true; do echo 0123456789012345678901234567890123456789012345678901234567890123456789; done"


def log_bytes(stack: Stack) -> int:
    path = stack.docker("inspect", "--format", "{{.LogPath}}", NAME).stdout.strip()
    return sum(os.path.getsize(p) for p in glob.glob(path + "*"))


def chatty_container(stack: Stack) -> int:
    stack.docker("rm", "-f", NAME, check=False)
    result = stack.ssh(f"docker run -d --name {NAME} {IMAGE} sh -c '{CHATTY}'")
    assert result.returncode == 0, result.stderr
    try:
        time.sleep(4)
        # Stopped first: a running container rotates its files while they are summed.
        stack.docker("kill", NAME, check=False)
        return log_bytes(stack)
    finally:
        stack.docker("rm", "-f", NAME, check=False)


def test_logs_stay_under_the_cap(stack: Stack) -> None:
    uncapped = chatty_container(stack)
    assert uncapped > CAP_BYTES * FILES * 2, uncapped  # control: without caps the log outgrows them
    with policy_extended(CAPS):
        capped = chatty_container(stack)
    # json-file rotates when a write would pass max-size: one line of slack per file
    assert capped <= (CAP_BYTES + 200) * FILES, capped


PROJECT = "ai-e2e-logcap"
PROJECT_DIR = AGENT_HOME / "work" / "logcap"
COMPOSE_FILE = f"""\
name: {PROJECT}
services:
  chatty:
    image: {IMAGE}
    command: ["sh", "-c", "{CHATTY}"]
"""


def compose_log_bytes(stack: Stack) -> int:
    ids = stack.docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={PROJECT}").stdout.split()
    assert len(ids) == 1, ids
    path = stack.docker("inspect", "--format", "{{.LogPath}}", ids[0]).stdout.strip()
    return sum(os.path.getsize(p) for p in glob.glob(path + "*"))


def chatty_service(stack: Stack) -> int:
    compose = f"docker compose -f {PROJECT_DIR}/compose.yaml"
    result = stack.ssh(f"{compose} up -d")
    assert result.returncode == 0, result.stderr
    try:
        time.sleep(4)
        stack.docker("kill", f"{PROJECT}-chatty-1", check=False)
        return compose_log_bytes(stack)
    finally:
        down = stack.ssh(f"{compose} down")
        assert down.returncode == 0, down.stderr


def test_compose_service_logs_stay_under_the_cap(stack: Stack) -> None:
    write_file(PROJECT_DIR / "compose.yaml", COMPOSE_FILE, mode=0o644, owner=AGENT, group=AGENT)
    shutil.chown(PROJECT_DIR, AGENT, AGENT)
    try:
        uncapped = chatty_service(stack)
        assert uncapped > CAP_BYTES * FILES * 2, uncapped  # control: without caps the log outgrows them
        with policy_extended(CAPS):
            capped = chatty_service(stack)
        assert capped <= (CAP_BYTES + 200) * FILES, capped
    finally:
        (PROJECT_DIR / "compose.yaml").unlink(missing_ok=True)
        PROJECT_DIR.rmdir()
