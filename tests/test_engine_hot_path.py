"""Owned-scope commands whose engine questions the API socket answers start no
second process and import neither `subprocess` nor `json` (~4 ms together on the
ForceCommand path): the ownership lookup, the bind-source check of `start` and
the running count all go through gatekeeper.engine_api / engine_listing and
gatekeeper.json_codec.

Control: the same commands against an engine address the API path does not
serve (tcp://) ask the docker CLI, and then subprocess is imported."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gatekeeper.policy import compile_policy
from tests.conftest import Deployment
from tests.fake_engine import fake_engine
from tests.test_hot_path import heavy, imported_modules

MINE = {"gatekeeper.owner": "default", "gatekeeper.created": "default"}
IMAGE = {"Id": "sha256:" + "b" * 64, "RepoTags": ["app:1"],
         "Config": {"Labels": {"gatekeeper.owner": "default"}}}  # the agent built it
WEB = {"Id": "a" * 64, "Name": "/web", "Image": IMAGE["Id"], "Config": {"Labels": MINE},
       "State": {"Running": False}, "HostConfig": {"Binds": None, "Mounts": None}, "Mounts": []}
SUMMARY = {"Id": "a" * 64, "Names": ["/web"], "Labels": MINE}
OBJECTS: dict[str, object] = {"containers/web": WEB, "containers": [SUMMARY], f"images/{IMAGE['Id']}": IMAGE}
SCOPES = '[scope]\nlogs = "owned"\nstart = "owned"\nstop = "owned"\n[limits]\nmax_running = 5\n'
COMMANDS = ("docker logs web", "docker stop web", "docker start web")


@pytest.fixture
def engine_deployment(deployment: Deployment, tmp_path: Path) -> Iterator[tuple[Deployment, str]]:
    with fake_engine(tmp_path, OBJECTS) as server:  # type: ignore[arg-type]
        yield deployment, f"unix://{server.server_address}"


def deploy(deployment: Deployment, host: str) -> None:
    deployment.write_policy(SCOPES)
    text = deployment.policy.read_text().replace('host = "unix:///run/test.sock"', f'host = "{host}"')
    deployment.policy.write_text(text)
    compile_policy(str(deployment.policy))


@pytest.mark.parametrize("command", COMMANDS)
def test_owned_commands_answered_over_the_api_import_no_heavy_module(
        engine_deployment: tuple[Deployment, str], command: str) -> None:
    deployment, host = engine_deployment
    deploy(deployment, host)
    status, modules = imported_modules(deployment, command)
    assert status == 0 and "gatekeeper.execution" in modules, (status, command)
    assert "gatekeeper.engine_api" in modules  # the question was asked, over the socket
    assert heavy(modules) == set(), command


@pytest.mark.parametrize("command", ("docker logs web", "docker stop web"))
def test_owned_commands_do_not_import_os(engine_deployment: tuple[Deployment, str], command: str) -> None:
    """Nor os (~0.9 ms: gatekeeper.environment); test_hot_path has the control."""
    deployment, host = engine_deployment
    deploy(deployment, host)
    status, modules = imported_modules(deployment, command)
    assert status == 0 and "gatekeeper.engine_api" in modules, (status, command)
    assert {"os", "posixpath", "_collections_abc"} & modules == set(), command


def test_control_the_cli_path_imports_subprocess(deployment: Deployment) -> None:
    deploy(deployment, "tcp://127.0.0.1:9")
    _, modules = imported_modules(deployment, "docker logs web")
    assert "subprocess" in modules
