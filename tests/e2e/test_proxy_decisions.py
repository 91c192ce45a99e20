"""The API decision through `gatekeeper proxy` with the real docker CLI as the client.

Each attack is first run straight against the stack's engine (the defence off: it
works), then through the proxy (refused, with the rule on the CLI's error line, and
nothing happened on the engine). Everyday controls pass through the proxy unchanged.
The proxy runs from the installed venv on a private socket, [proxy.users] maps root
(the test's uid) to the profile "default".

Not three ways (tests/e2e/conftest.py THREE_WAY): the proxy alone is the subject by
construction, on a private socket with root as its caller; the stack's layouts do not apply.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .proxy_daemon import ProxyDaemon, running_proxy
from .stack import AGENT_HOME, DOCKER_CONFIG_DIR, DOCKER_SOCKET, IMAGE, Stack, docker_client

pytestmark = pytest.mark.e2e

PREFIX = "ai-e2e-apivet-cli-"  # the [names] prefix: each request meets its own rule


def run_docker(host: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "DOCKER_HOST": host, "DOCKER_CONFIG": str(DOCKER_CONFIG_DIR),
           "HOME": "/root"}
    return subprocess.run([str(docker_client()), *args], capture_output=True, text=True, env=env,
                          timeout=120, check=False)


def direct(*args: str) -> subprocess.CompletedProcess[str]:
    return run_docker(f"unix://{DOCKER_SOCKET}", *args)


@pytest.fixture(scope="module")
def proxy(stack: Stack) -> Iterator[ProxyDaemon]:
    with running_proxy() as daemon:
        clean(stack)
        stack.docker("run", "-d", "--name", f"{PREFIX}theirs", "-e", "SECRET=hunter2", IMAGE, "sleep", "300")
        yield daemon
        clean(stack)


def clean(stack: Stack) -> None:
    for name in ("theirs", "mine", "priv", "etc"):
        stack.docker("rm", "-f", f"{PREFIX}{name}", check=False)


def refused(result: subprocess.CompletedProcess[str], rule: str) -> None:
    assert result.returncode != 0, result.stdout
    assert "gatekeeper: denied" in result.stderr and f"(rule {rule})" in result.stderr, result.stderr


def exists(stack: Stack, name: str) -> bool:
    return stack.docker("inspect", name, check=False).returncode == 0


def test_everyday_run_passes(proxy: ProxyDaemon, stack: Stack, restored_home: Path) -> None:
    (restored_home / "apivet-cli").mkdir()
    # detached: the attached stream of `run` is the transport's own test (test_proxy_transport)
    made = proxy.docker("run", "-d", "--name", f"{PREFIX}mine", "-v", f"{AGENT_HOME}/apivet-cli:/w", IMAGE,
                        "echo", "hello")
    assert made.returncode == 0, made.stderr
    assert proxy.docker("wait", f"{PREFIX}mine").stdout.strip() == "0"
    shown = stack.docker("inspect", "--format", "{{json .Config.Labels}}", f"{PREFIX}mine").stdout
    labels = json.loads(shown)
    assert labels.get("gatekeeper.owner") == "default"
    assert proxy.docker("logs", f"{PREFIX}mine").stdout == "hello\n"
    assert proxy.docker("rm", f"{PREFIX}mine").returncode == 0
    assert proxy.docker("ps", "-a").returncode == 0


def test_privileged_refused(proxy: ProxyDaemon, stack: Stack) -> None:
    control = direct("create", "--name", f"{PREFIX}priv", "--privileged", IMAGE, "true")
    assert control.returncode == 0, control.stderr
    stack.docker("rm", "-f", f"{PREFIX}priv")
    attack = proxy.docker("create", "--name", f"{PREFIX}priv", "--privileged", IMAGE, "true")
    refused(attack, "flag-privileged")
    assert not exists(stack, f"{PREFIX}priv")


def test_host_bind_refused(proxy: ProxyDaemon, stack: Stack) -> None:
    control = direct("create", "--name", f"{PREFIX}etc", "-v", "/etc:/host-etc", IMAGE, "true")
    assert control.returncode == 0, control.stderr
    stack.docker("rm", "-f", f"{PREFIX}etc")
    attack = proxy.docker("create", "--name", f"{PREFIX}etc", "-v", "/etc:/host-etc", IMAGE, "true")
    refused(attack, "host-path")
    assert not exists(stack, f"{PREFIX}etc")


def test_exec_and_cp_refused(proxy: ProxyDaemon) -> None:
    assert direct("exec", f"{PREFIX}theirs", "true").returncode == 0  # control: the engine would
    refused(proxy.docker("exec", f"{PREFIX}theirs", "cat", "/etc/hostname"), "api-unvetted")
    refused(proxy.docker("cp", f"{PREFIX}theirs:/etc/hostname", "/tmp/apivet-cp"), "api-unvetted")
    assert not Path("/tmp/apivet-cp").exists()


def test_foreign_container_not_stopped_and_redacted(proxy: ProxyDaemon, stack: Stack) -> None:
    assert "SECRET=hunter2" in direct("inspect", f"{PREFIX}theirs").stdout  # control
    shown = proxy.docker("inspect", "--format", "{{json .Config.Env}}", f"{PREFIX}theirs")
    assert shown.returncode == 0, shown.stderr
    assert "SECRET=***" in shown.stdout and "hunter2" not in shown.stdout
    refused(proxy.docker("stop", "-t", "0", f"{PREFIX}theirs"), "scope-owned")
    running = stack.docker("inspect", "--format", "{{.State.Running}}", f"{PREFIX}theirs").stdout.strip()
    assert running == "true"


def test_published_port_on_every_interface_refused(proxy: ProxyDaemon, stack: Stack) -> None:
    """[ports] (loopback only by default): -p 8080:80 listens on every interface of the host."""
    control = direct("create", "--name", f"{PREFIX}etc", "-p", "18080:80", IMAGE, "true")
    assert control.returncode == 0, control.stderr
    stack.docker("rm", "-f", f"{PREFIX}etc")
    refused(proxy.docker("create", "--name", f"{PREFIX}etc", "-p", "18080:80", IMAGE, "true"), "flag-publish")
    assert not exists(stack, f"{PREFIX}etc")
    loopback = proxy.docker("create", "--name", f"{PREFIX}etc", "-p", "127.0.0.1:18080:80", IMAGE, "true")
    assert loopback.returncode == 0, loopback.stderr
