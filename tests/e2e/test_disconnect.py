"""Dropping the SSH connection mid-command leaves nothing running as the agent.

An orphaned `docker logs -f` (or `docker run` still attached) keeps a docker
client and a gatekeeper process alive with the agent's rights and no audit
exit record; many of them exhaust the host. Within 5 s of the client
vanishing, no process of the agent account may remain.

Not three ways (tests/e2e/conftest.py THREE_WAY): what must not outlive the connection is
the CLI layer's ForceCommand and the docker client it supervises; layout (b) assumes a shell
as the agent, which may leave processes of its own as it likes.
"""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from .stack import Stack, agent_processes, read_lines

pytestmark = pytest.mark.e2e


def wait_until_no_agent_processes(timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    while (left := agent_processes()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


@pytest.mark.parametrize(
    "signum", [signal.SIGKILL, signal.SIGTERM], ids=["client-killed", "client-terminated"]
)
def test_dropped_logs_follow_leaves_no_process(stack: Stack, ticker: str, signum: signal.Signals) -> None:
    assert wait_until_no_agent_processes(10) == [], "agent processes left over from an earlier test"
    client = subprocess.Popen(stack.ssh_argv(f"docker logs -f {ticker}"), stdout=subprocess.PIPE)
    assert client.stdout is not None
    assert read_lines(client.stdout, count=2, timeout=15), "logs -f did not start streaming"
    assert agent_processes(), "the session should be running as the agent"
    client.send_signal(signum)
    client.communicate(timeout=10)
    assert wait_until_no_agent_processes(5) == []
