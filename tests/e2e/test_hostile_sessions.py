"""Concurrent sessions per profile through real ssh (issue 18 item 5).

Two held `docker events` streams (each ~50 MB across sshd, python and docker).
The control: with no cap a third session runs. With `[limits] max_sessions = 2`
the third is refused (rule limit-sessions), and allowed again once one stream
has ended. sshd itself cannot do this per account (MaxStartups and
PerSourceMaxStartups are global-only: tests/e2e/test_snippets.py and the
sshd_snippets README).

Not three ways (tests/e2e/conftest.py THREE_WAY): a session is one run of the CLI layer's
ForceCommand, counted by it; layout (b) has none (a shell as the agent starts what processes
it likes), and there the proxy bounds what reaches the engine by connections per uid
([proxy] max_connections_per_user, rule api-connections: tests/test_proxy_guards.py).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest

from .stack import Stack, agent_processes, policy_extended

pytestmark = pytest.mark.e2e

EX_NOPERM = 77


@pytest.fixture
def two_streams(stack: Stack) -> Iterator[list[subprocess.Popen[bytes]]]:
    with policy_extended("\n[limits]\nmax_sessions = 2\n"):
        streams = [subprocess.Popen(stack.ssh_argv("docker events"), stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL) for _ in range(2)]
        deadline = time.monotonic() + 20
        while len([p for p in agent_processes() if "docker events" in p]) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        try:
            yield streams
        finally:
            for stream in streams:
                stream.kill()
                stream.wait(timeout=10)


def test_third_session_refused_at_the_cap(stack: Stack, two_streams: list[subprocess.Popen[bytes]]) -> None:
    third = stack.ssh("docker ps")
    assert third.returncode == EX_NOPERM and b"limit-sessions" in third.stderr, third.stderr
    two_streams[0].kill()
    two_streams[0].wait(timeout=10)
    deadline = time.monotonic() + 15
    while stack.ssh("docker ps").returncode != 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert stack.ssh("docker ps").returncode == 0


def test_third_session_runs_without_the_cap(stack: Stack) -> None:
    streams = [subprocess.Popen(stack.ssh_argv("docker events"), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL) for _ in range(2)]
    try:
        time.sleep(2)
        assert stack.ssh("docker ps").returncode == 0
    finally:
        for stream in streams:
            stream.kill()
            stream.wait(timeout=10)
