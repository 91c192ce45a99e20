"""A container that writes logs forever stays under the policy's log cap (real ssh, real engine).

Attack: the agent runs `yes`-like output in a container; under the default
json-file driver its log grows until the host's disk is full, and no command
was refused. Control: without [limits] log caps the same container's log passes
the cap's total within seconds; with them, the engine rotates it and the files
on disk stay within max-size x max-file.
"""

from __future__ import annotations

import glob
import os
import time

import pytest

from .stack import IMAGE, Stack, policy_extended

pytestmark = pytest.mark.e2e

NAME = "gk-e2e-logcap"
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
