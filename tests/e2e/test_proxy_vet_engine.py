"""The API decision (gatekeeper.proxy.vet) against the real engine: the JSON shapes it
reads (inspect objects, container lists with their Mounts, volume and network lists)
are the engine's own, and what it forwards is a body the engine accepts and acts on
as checked (owner label set, bind source resolved, caps applied).

Each refusal has its control in the same test: the same request with the one thing
changed is allowed (and, for creates, made by the engine).

Not three ways (tests/e2e/conftest.py THREE_WAY): the proxy alone is the subject by
construction, on a private socket with root as its caller; the stack's layouts do not apply.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from gatekeeper.engine_api import http_get, parse_json
from gatekeeper.policy import DEFAULTS, Policy, merge
from gatekeeper.proxy.contract import ApiRequest, ApiVerdict
from gatekeeper.proxy.vet import transform_response, vet_api_request
from gatekeeper.worlds import RealWorld

from .stack import DOCKER_SOCKET, IMAGE, Stack

pytestmark = pytest.mark.e2e

PREFIX = "gk-e2e-apivet-"
# The suite's images are root's local ones: lent to the agent as the stack's policy does (SUITE_IMAGES).
LENT = {"shared": ["docker.io/library/gk-*", "docker.io/library/ai-*"]}
SETTINGS = {"limits": {"memory": "1g", "default_memory": "512m"}, "images": LENT}
POLICY = Policy(merge(DEFAULTS, SETTINGS, "e2e"), "e2e", "")


class Engine:
    """EngineQueries over the stack's engine socket (what the proxy's transport provides)."""

    def get_json(self, target: str) -> tuple[int, object]:
        status, body = http_get(str(DOCKER_SOCKET), target, time.monotonic() + 10)
        return status, parse_json(body)

    def realpath(self, path: str) -> str:
        return RealWorld().realpath(path)

    def inert_mount(self, path: str) -> bool:
        return RealWorld().inert_mount(path)


class UnixConnection(http.client.HTTPConnection):
    def __init__(self) -> None:
        super().__init__("docker", timeout=30)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(DOCKER_SOCKET))


def request(method: str, target: str, body: object = None) -> ApiRequest:
    parts = urlsplit(target)
    data = b"" if body is None else json.dumps(body).encode()
    query = parse_qs(parts.query, keep_blank_values=True)
    return ApiRequest(method, target, unquote(parts.path), None, query, [], data, os.getuid(), "default")


def decide(method: str, target: str, body: object = None) -> ApiVerdict:
    return vet_api_request(request(method, target, body), POLICY, Engine())


def forward(verdict: ApiVerdict, method: str = "POST") -> tuple[int, dict]:
    """Send what the decision forwards to the real engine."""
    assert verdict.allowed, verdict.reason
    conn = UnixConnection()
    headers = {"Content-Type": "application/json"} if verdict.body is not None else {}
    conn.request(method, verdict.target or "", body=verdict.body, headers=headers)
    answer = conn.getresponse()
    data = answer.read()
    conn.close()
    return answer.status, json.loads(data) if data.strip() else {}


@pytest.fixture
def world(stack: Stack, restored_home: Path) -> Iterator[Path]:
    clean(stack)
    base = restored_home / "apivet"
    (base / "a").mkdir(parents=True)
    (base / "c").mkdir()
    stack.docker("create", "--name", f"{PREFIX}mine", "--label", "gatekeeper.owner=default",
                 "--label", "gatekeeper.created=default",
                 "-v", f"{base}/a:/a", IMAGE, "true")
    stack.docker("create", "--name", f"{PREFIX}theirs", "-e", "SECRET=hunter2", IMAGE, "true")
    stack.docker("volume", "create", "--label", "gatekeeper.owner=default", f"{PREFIX}vol")
    yield base
    clean(stack)


def clean(stack: Stack) -> None:
    for name in ("mine", "theirs", "made", "nested"):
        stack.docker("rm", "-f", f"{PREFIX}{name}", check=False)
    stack.docker("volume", "rm", f"{PREFIX}vol", check=False)


def test_create_forwarded_is_what_the_engine_makes(stack: Stack, world: Path) -> None:
    body = {"Image": IMAGE, "Cmd": ["true"], "Labels": {"app": "x"},
            "HostConfig": {"Binds": [f"{world}/c:/c", f"{PREFIX}vol:/v"], "NetworkMode": "default"}}
    verdict = decide("POST", f"/containers/create?name={PREFIX}made", body)
    status, answer = forward(verdict)
    assert status == 201, answer
    made = stack.docker("inspect", f"{PREFIX}made").stdout
    obj = json.loads(made)[0]
    assert obj["Config"]["Labels"] == {"app": "x", "gatekeeper.owner": "default",
                                       "gatekeeper.created": "default"}
    assert obj["HostConfig"]["Binds"] == [f"{world}/c:/c", f"{PREFIX}vol:/v"]
    assert obj["HostConfig"]["Memory"] == 512 << 20


def test_nested_bind_refused_against_real_mounts(stack: Stack, world: Path) -> None:
    """The engine's container list (Mounts) feeds the disjoint-bind invariant."""
    control = decide("POST", f"/containers/create?name={PREFIX}nested",
                     {"Image": IMAGE, "HostConfig": {"Binds": [f"{world}/c:/c"]}})
    assert control.allowed, control.reason
    verdict = decide("POST", f"/containers/create?name={PREFIX}nested",
                     {"Image": IMAGE, "HostConfig": {"Binds": [f"{world}/a/deeper:/x"]}})
    assert (verdict.allowed, verdict.rule) == (False, "host-path-nested"), verdict.reason
    link = world / "link"
    link.symlink_to("/etc")
    escape = decide("POST", "/containers/create", {"Image": IMAGE, "HostConfig": {"Binds": [f"{link}:/x"]}})
    assert (escape.allowed, escape.rule) == (False, "host-path"), escape.reason


def test_actions_resolved_by_the_engine(stack: Stack, world: Path) -> None:
    ident = stack.docker("inspect", "--format", "{{.Id}}", f"{PREFIX}mine").stdout.strip()
    verdict = decide("POST", f"/containers/{PREFIX}mine/kill")
    assert verdict.allowed and verdict.target == f"/containers/{ident}/kill"
    theirs = decide("POST", f"/containers/{PREFIX}theirs/kill")
    assert (theirs.allowed, theirs.rule) == (False, "scope-owned")


def test_inspect_of_theirs_redacted(stack: Stack, world: Path) -> None:
    for name, secret in (("mine", None), ("theirs", "SECRET=***")):
        verdict = decide("GET", f"/containers/{PREFIX}{name}/json")
        status, body = http_get(str(DOCKER_SOCKET), f"/containers/{PREFIX}{name}/json", time.monotonic() + 10)
        shown = json.loads(transform_response(verdict.response or "", status, body,
                                              request("GET", f"/containers/{PREFIX}{name}/json")))
        env = shown["Config"]["Env"] or []
        assert (secret in env) if secret else not any(e.endswith("=***") for e in env), env
