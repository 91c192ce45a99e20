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


class BaseImages(FakeEngine):
    """The engine also holds every base image a Dockerfile here names (no ONBUILD steps unless
    `triggers` gives them): what is judged is the [images] list, not whether a base is there."""

    def __init__(self, triggers: dict[str, list[str]] | None = None) -> None:
        super().__init__()
        self.triggers = triggers or {}

    def one(self, path: str) -> tuple[int, object]:
        status, found = super().one(path)
        name = path[len("/images/"):-len("/json")]
        if status == 404 and path.startswith("/images/") and path.endswith("/json") and \
                not name.startswith("newthing"):  # the tag the build makes is new
            return 200, {"Id": "sha256:" + "4" * 64, "RepoTags": [name], "Os": "linux",
                         "RepoDigests": [f"{name.partition(':')[0]}@sha256:{'6' * 64}"],  # from a registry
                         "Architecture": "amd64",
                         "Config": {"Labels": {}, "OnBuild": self.triggers.get(name)}}
        return status, found


def build(policy: object, dockerfile: str, query: str = "", spooled: bool = True,
          engine: FakeEngine | None = None) -> tuple[bool, str]:
    body = context_tar({"Dockerfile": dockerfile, "app": "x"}, compression="gz")
    req = request("POST", "/v1.47/build?t=newthing%3A1" + query)
    if spooled:  # as the transport hands it over: the body in the spool file
        req.context = io.BytesIO(body)
    else:
        req.body = body
    verdict = vet_api_request(req, policy, engine or BaseImages())  # type: ignore[arg-type]
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
    assert vet_api_request(req, UNLISTED, BaseImages()).allowed  # control
    verdict = vet_api_request(req, LISTED, BaseImages())
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


TRIGGER = ["ADD http://127.0.0.1:8080/latest/meta-data /m"]


@pytest.mark.parametrize(("dockerfile", "query", "triggers", "allowed"), [
    ("FROM base\n", "", {}, True),
    ("FROM base\n", "", {"base": TRIGGER}, False),
    ("FROM base\n", "", {"base": ["COPY --from=evil/x / /"]}, True),  # no [images] list here
    ("FROM base\n", "&pull=1", {}, False),  # the builder would pull a newer base, unchecked
    ("ARG B=alpine\nFROM $B\n", "&buildargs=" + quote(json.dumps({"B": "base"})), {"base": TRIGGER}, False),
    ("ARG B=alpine\nFROM $B\n", "", {"base": TRIGGER}, True),
    ("ARG B\nFROM $B\n", "", {}, False),
    ("FROM --platform=linux/arm64 base\n", "", {}, False),  # the builder would pull arm64's image
    ("FROM base\n", "&platform=linux%2Farm64", {}, False),
    ("FROM base\n", "&platform=linux%2Famd64", {}, True),
])
def test_base_images_onbuild_steps(dockerfile: str, query: str, triggers: dict[str, list[str]],
                                   allowed: bool) -> None:
    """A base image's ONBUILD ADD <url> runs in the agent's build as its own ADD would."""
    verdict = build(UNLISTED, dockerfile, query, engine=BaseImages(triggers))
    assert verdict == ((True, "allowed") if allowed else (False, "build-add-url"))


def test_base_images_missing_or_listed() -> None:
    """A base the engine lacks would be pulled by the builder unchecked (FakeEngine alone holds
    alpine, postgres, myapp); the list judges a trigger's COPY --from (control: no list)."""
    assert build(UNLISTED, "FROM alpine\n", engine=FakeEngine()) == (True, "allowed")
    assert build(UNLISTED, "FROM base\n", engine=FakeEngine()) == (False, "build-add-url")
    engine = BaseImages({"docker.io/library/base": ["COPY --from=evil/x / /"]})
    assert build(UNLISTED, "FROM docker.io/library/base\n", engine=engine) == (True, "allowed")
    assert build(LISTED, "FROM docker.io/library/base\n", engine=engine) == (False, "image-source")
