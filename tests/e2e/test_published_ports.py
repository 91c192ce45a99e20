"""Published ports through the real stack (policy [ports], issue 14 item 6).

The attack: `docker create -p PORT:80` (no address) would have the engine listen on
every interface when the container starts. Control: with [ports] allowing every
interface the engine records the binding with no host address (created, never started:
nothing listens beyond loopback on this machine). Defence on (the stack's default
policy): refused with flag-publish, nothing created. A loopback port is allowed and
the engine records 127.0.0.1.

Three ways (tests/e2e/conftest.py THREE_WAY): in layout (b) the proxy refuses the attack
(its 403 as docker prints it and its "api" record, same rule) and nothing is created.
"""

from __future__ import annotations

import json

import pytest

from .stack import IMAGE, Stack, audit_offset, policy_extended
from .test_attack_chains import assert_refused

pytestmark = pytest.mark.e2e

EVERY_INTERFACE = '\n[ports]\nhost_addresses = ["127.0.0.1", "::1", "0.0.0.0", "::"]\n'


def bindings(stack: Stack, name: str) -> dict[str, object]:
    out = stack.docker("container", "inspect", "--format", "{{json .HostConfig.PortBindings}}", name).stdout
    return json.loads(out)


def test_every_interface_is_refused_loopback_is_allowed(stack: Stack) -> None:
    names = ("ai-ports-control", "ai-ports-attack", "ai-ports-loopback")  # the [names] prefix
    try:
        with policy_extended(EVERY_INTERFACE):  # the defence off
            control = stack.ssh(f"docker create --name {names[0]} -p 18080:80 {IMAGE} true")
        assert control.returncode == 0, control.stderr
        assert bindings(stack, names[0]) == {"80/tcp": [{"HostIp": "", "HostPort": "18080"}]}

        since = audit_offset()
        attack = stack.ssh(f"docker create --name {names[1]} -p 18080:80 {IMAGE} true")
        assert_refused(stack, attack, since, rule="flag-publish")
        assert b"every interface" in attack.stderr, attack.stderr
        assert stack.docker("container", "inspect", names[1], check=False).returncode != 0

        allowed = stack.ssh(f"docker create --name {names[2]} -p 127.0.0.1:18081:80 {IMAGE} true")
        assert allowed.returncode == 0, allowed.stderr
        assert bindings(stack, names[2]) == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18081"}]}

        since = audit_offset()
        publish_all = stack.ssh(f"docker run --rm -P {IMAGE} true")
        assert_refused(stack, publish_all, since, rule="flag-publish-all")
    finally:
        stack.docker("rm", "-f", *names, check=False)
