"""Bind sources only on a nosuid,nodev mount, in both layers.

The attack: root in the agent's own container writes into its bind source
(`chown 0 py; chmod 4755 py`, or `mknod disk b 8 0`), and the agent's account on
the host (a shell, anything run at its login) executes the set-user-ID program or
opens the host's disk through the node. A bind source on a mount with nosuid and
nodev makes both inert, for as long as the mount stands (every later start and
restart included); a source anywhere else is refused (host-path-mount).

Each case runs twice: with the area on a suid mount (refused: the attack's door) and
with it nosuid,nodev (allowed: the control that the command itself is fine).
"""

from __future__ import annotations

import json
import os

import pytest

from gatekeeper.decision import decide
from gatekeeper.policy import load_policy
from gatekeeper.proxy.vet import vet_api_request
from gatekeeper.worlds import mount_is_inert
from tests.api_engine import FakeEngine
from tests.fakes import StaticWorld
from tests.test_proxy_vet import POLICY, request

AREA = "/home/ai-worker"

CLI_BINDS = [
    "docker run -v /home/ai-worker/src:/x img",
    "docker run -v ./src:/x img",
    "docker run --mount type=bind,source=/home/ai-worker/src,target=/x img",
    "docker create --volume /home/ai-worker/data:/data:ro img",
]

API_BINDS = [
    {"Image": "alpine", "HostConfig": {"Binds": ["/home/ai-worker/src:/x"]}},
    {"Image": "alpine", "HostConfig": {"Mounts": [
        {"Type": "bind", "Source": "/home/ai-worker/src", "Target": "/x"}]}},
]


@pytest.mark.parametrize("command", CLI_BINDS)
def test_cli_layer_binds_only_from_an_inert_mount(command: str) -> None:
    policy = load_policy(None)
    allowed = decide(command, policy, StaticWorld())
    assert allowed.allowed, allowed.reason  # control: the same bind on a nosuid,nodev area
    refused = decide(command, policy, StaticWorld(suid_mounts=(AREA,)))
    assert (refused.allowed, refused.rule) == (False, "host-path-mount"), refused.reason
    assert "nosuid,nodev" in refused.reason


@pytest.mark.parametrize("command", ["docker run -v myvol:/x img", "docker run --rm img true"])
def test_named_volumes_and_no_binds_ask_nothing_of_the_mount(command: str) -> None:
    decision = decide(command, load_policy(None), StaticWorld(suid_mounts=("/",)))
    assert decision.allowed, decision.reason


@pytest.mark.parametrize("body", API_BINDS, ids=["Binds", "Mounts"])
def test_api_layer_binds_only_from_an_inert_mount(body: dict) -> None:
    target = "/v1.47/containers/create"
    allowed = vet_api_request(request("POST", target, json.dumps(body)), POLICY, FakeEngine())
    assert allowed.allowed, allowed.reason  # control
    engine = FakeEngine()
    engine.suid_mounts = (AREA,)
    refused = vet_api_request(request("POST", target, json.dumps(body)), POLICY, engine)
    assert (refused.allowed, refused.rule) == (False, "host-path-mount"), refused.reason


def test_the_real_check_reads_the_mount_flags() -> None:
    """/proc is mounted nosuid,nodev on every Linux host; a missing path is judged by
    its nearest existing ancestor (docker creates a missing bind source there)."""
    proc = os.statvfs("/proc").f_flag
    expected = bool(proc & os.ST_NOSUID and proc & os.ST_NODEV)
    assert mount_is_inert("/proc/self") is expected
    assert mount_is_inert("/proc/no/such/path") is expected
    root = os.statvfs("/").f_flag
    assert mount_is_inert("/") is bool(root & os.ST_NOSUID and root & os.ST_NODEV)
