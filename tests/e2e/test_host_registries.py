"""Pulls from a registry on the host itself, through real ssh and the real engine.

The engine pulls in the host's network namespace, where the agent's containers cannot reach:
`docker pull 127.0.0.1:PORT/x` makes it GET /v2/ and the manifest of whatever listens on that
loopback port (loopback counts as an insecure registry, so plain HTTP), and docker prints an
answer that is not JSON to the caller: a loopback-only service leaks its answer, and the
errors tell open ports from closed (red team, session 9). Refused unless the operator names
the registry in [images] host_registries (rule image-host-registry), at both layers.

The control, in the same run: with the suite's own `host_registries = ["127.0.0.1:*"]` (its
registry is a loopback service) the agent's pull reaches the service and prints its secret.
The defence: without that key, every spelling of this host (127.0.0.1, localhost, 127.1) is
refused by the layer itself, pull and run alike, and the secret never reaches the agent.
Three ways (tests/e2e/conftest.py THREE_WAY).
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .stack import (
    AGENT,
    AGENT_HOME,
    Stack,
    audit_offset,
    free_port,
    policy_rewritten,
    preserved,
    write_file,
)
from .test_attack_chains import assert_refused

pytestmark = pytest.mark.e2e

SECRET = "GK-LOOPBACK-ONLY-7731"
SUITE_KEY = 'host_registries = ["127.0.0.1:*"]\n'
HOSTS = Path("/etc/hosts")


class Secretive(http.server.BaseHTTPRequestHandler):
    """A loopback-only service that answers every path with its secret (a local admin API)."""

    def do_GET(self) -> None:
        body = SECRET.encode()
        self.send_response(404)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Secretive)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()


def without_host_registries(text: str) -> str:
    assert SUITE_KEY in text
    return text.replace(SUITE_KEY, "")


def test_the_suites_host_registry_key_lets_a_pull_reach_the_loopback(stack: Stack, port: int) -> None:
    pulled = stack.ssh(f"docker pull 127.0.0.1:{port}/secret:1", timeout=60)
    said = (pulled.stdout + pulled.stderr).decode(errors="replace")
    assert pulled.returncode != 0 and SECRET in said, said  # control: the service's answer leaks


@pytest.mark.parametrize("command", [
    "docker pull 127.0.0.1:{port}/secret:1",
    "docker pull localhost:{port}/secret:1",
    "docker pull 127.1:{port}/secret:1",
    "docker run --rm 127.0.0.1:{port}/secret:1",
    "docker image pull '[::1]:{port}/secret:1'",
])
def test_a_pull_from_this_host_is_refused(stack: Stack, port: int, command: str) -> None:
    with policy_rewritten(without_host_registries):
        since = audit_offset()
        refused = stack.ssh(command.format(port=port), timeout=60)
        assert_refused(stack, refused, since, rule="image-host-registry")
        assert SECRET not in (refused.stdout + refused.stderr).decode(errors="replace")


def test_a_compose_image_from_this_host_is_refused(stack: Stack, port: int) -> None:
    project = AGENT_HOME / "work" / "ai-hostreg"
    compose = project / "compose.yaml"
    write_file(compose, f"services:\n  app:\n    image: 127.0.0.1:{port}/secret:1\n",
               mode=0o644, owner=AGENT, group=AGENT)
    pull = f"docker compose -f {compose} pull"
    control = stack.ssh(pull, timeout=60)  # the suite's policy lists 127.0.0.1:*
    assert SECRET in (control.stdout + control.stderr).decode(errors="replace"), control.stderr
    with policy_rewritten(without_host_registries):
        since = audit_offset()
        refused = stack.ssh(pull, timeout=60)
        assert_refused(stack, refused, since, rule="image-host-registry")
        assert SECRET not in (refused.stdout + refused.stderr).decode(errors="replace")


HOSTS_NAME = "gk-e2e-loopback-registry.test"  # an /etc/hosts entry: 127.0.0.1 (as 127.0.0.1.nip.io is)
GO_HOSTS_CACHE = 6  # seconds: Go's resolver (the engine's) reads /etc/hosts again at most every 5 s


@pytest.fixture
def loopback_name() -> Iterator[str]:
    restore = preserved(HOSTS)
    with HOSTS.open("a") as hosts:
        hosts.write(f"\n127.0.0.1 {HOSTS_NAME}\n")
    time.sleep(GO_HOSTS_CACHE)
    try:
        yield HOSTS_NAME
    finally:
        restore()


def test_a_name_resolving_to_this_host_is_refused(stack: Stack, port: int, loopback_name: str) -> None:
    """The engine resolves the registry's name, finds a loopback address (an insecure registry to
    it: plain HTTP) and prints the loopback service's answer to the agent."""
    command = f"docker pull {loopback_name}:{port}/secret:1"
    listed = f'host_registries = ["127.0.0.1:*", "{loopback_name}:*"]\n'
    with policy_rewritten(lambda text: text.replace(SUITE_KEY, listed)):
        reached = stack.ssh(command, timeout=60)  # the control: the name listed, the rule off for it
    said = (reached.stdout + reached.stderr).decode(errors="replace")
    assert reached.returncode != 0 and SECRET in said, said
    with policy_rewritten(without_host_registries):
        since = audit_offset()
        refused = stack.ssh(command, timeout=60)
        assert_refused(stack, refused, since, rule="image-host-registry")
        assert SECRET not in (refused.stdout + refused.stderr).decode(errors="replace")
