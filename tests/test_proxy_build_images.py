"""[images] allowed for builds at the API layer: the Dockerfile the proxy reads from the
spooled context (gatekeeper.proxy.images.dockerfile_in_context) gets the CLI layer's check
(gatekeeper.vetting.images.check_dockerfile): FROM, COPY --from, RUN --mount=from, ONBUILD,
`# syntax=`, images named by a build argument; buildargs BUILDKIT_SYNTAX too. Each attack is
allowed without a list (the control), refused with one."""

from __future__ import annotations

import io
import json
from urllib.parse import quote

import pytest

from gatekeeper.proxy.vet import vet_api_request
from tests.api_engine import FakeEngine
from tests.test_build_add_url import context_tar
from tests.test_proxy_vet import OVERRIDES, make_policy, request

LISTED = make_policy({**OVERRIDES, "images": {"allowed": ["docker.io/library/*",
                                                          "registry.example.com/team/**"]}})
UNLISTED = make_policy()

ATTACKS = [
    "FROM ghcr.io/evil/base\n",
    "FROM evil/nginx\n",
    "FROM docker.io.evil.com/library/nginx\n",
    "FROM alpine AS a\nFROM a\nCOPY --from=evil/tools /x /x\n",
    "FROM alpine\nRUN --mount=type=bind,from=evil/tools,target=/t true\n",
    "# syntax=evil/frontend:1\nFROM alpine\n",
    "FROM alpine\nONBUILD COPY --from=evil/x / /\n",
    "FROM \\\n  evil/split\n",
    "ARG BASE=alpine\nFROM $BASE\n",
    "from --platform=linux/amd64 evil/lower\n",
]

ALLOWED = [
    "FROM alpine\nCOPY app /app\n",
    "FROM docker.io/library/busybox:1.36 AS build\nFROM build\nCOPY --from=build /a /a\n",
    "FROM registry.example.com/team/sub/base\nRUN --mount=type=cache,target=/c true\n",
    "FROM alpine AS a\nFROM alpine\nCOPY --from=0 /x /x\nCOPY --from=a /y /y\n",
]


def build(policy: object, dockerfile: str, query: str = "", spooled: bool = True) -> tuple[bool, str]:
    body = context_tar({"Dockerfile": dockerfile, "app": "x"}, compression="gz")
    req = request("POST", "/v1.47/build?t=newthing%3A1" + query)
    if spooled:  # as the transport hands it over: the body in the spool file
        req.context = io.BytesIO(body)
    else:
        req.body = body
    verdict = vet_api_request(req, policy, FakeEngine())  # type: ignore[arg-type]
    return verdict.allowed, verdict.rule


@pytest.mark.parametrize("dockerfile", ATTACKS)
def test_build_images_off_the_list_are_refused(dockerfile: str) -> None:
    assert build(UNLISTED, dockerfile) == (True, "allowed")  # control: no [images] list
    assert build(LISTED, dockerfile) == (False, "image-source")
    assert build(LISTED, dockerfile, spooled=False) == (False, "image-source")


@pytest.mark.parametrize("dockerfile", ALLOWED)
def test_build_images_on_the_list_are_allowed(dockerfile: str) -> None:
    assert build(LISTED, dockerfile) == (True, "allowed")


def test_the_dockerfile_named_by_the_query_is_the_one_checked() -> None:
    body = context_tar({"Dockerfile": "FROM alpine\n", "other.Dockerfile": "FROM evil/x\n"})
    req = request("POST", "/v1.47/build?t=newthing%3A1&dockerfile=other.Dockerfile")
    req.body = body
    assert vet_api_request(req, UNLISTED, FakeEngine()).allowed  # control
    verdict = vet_api_request(req, LISTED, FakeEngine())
    assert (verdict.allowed, verdict.rule) == (False, "image-source")
    assert "other.Dockerfile" in verdict.reason and "evil/x" in verdict.reason


@pytest.mark.parametrize(("arguments", "refused"), [
    ({"BUILDKIT_SYNTAX": "evil/frontend"}, True),
    ({"BUILDKIT_SYNTAX": None}, True),  # its value from the client's environment: not checkable
    ({"BUILDKIT_SYNTAX": "docker.io/library/frontend"}, False),
    ({"OTHER": "evil/frontend"}, False),
])
def test_buildargs_buildkit_syntax(arguments: dict[str, object], refused: bool) -> None:
    query = "&buildargs=" + quote(json.dumps(arguments))
    assert build(UNLISTED, "FROM alpine\n", query) == (True, "allowed")  # control
    expected = (False, "image-source") if refused else (True, "allowed")
    assert build(LISTED, "FROM alpine\n", query) == expected
