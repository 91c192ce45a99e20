"""`image history` of images the agent may not use (both layers).

History shows every build step of an image with its ARG values (`|1 TOKEN=... /bin/sh -c ...`)
and ENV values, and is how the agent learns the operator's exact steps to build them first
(gatekeeper.build_cache). Under `[scope] history = "owned"` (the default) the image must be one
the agent may use (gatekeeper.image_scope: its own, its pulls, registry images, [images]
shared); `"all"` is the control (any image, as before session 8).
"""

from __future__ import annotations

import pytest

from gatekeeper.decision import decide
from gatekeeper.proxy.vet import vet_api_request
from tests.test_image_scope import IMAGES, ApiImages, Engine
from tests.test_proxy_vet import OVERRIDES, make_policy, request

RULE = "image-not-shared"


def policy(history: str = "") -> object:
    scope = {"history": history} if history else {}
    return make_policy({**OVERRIDES, "images": {"allowed": [], "shared": ["docker.io/library/lent"]},
                        "scope": scope})


# (image, may the agent read its history by default?)
CASES = [
    ("op:1", False),             # the operator's local build
    ("botpulled:1", False),      # another profile's pull
    ("a" * 12, False),           # op:1 by short ID
    ("mine:1", True),            # its own build
    ("lent:1", True),            # [images] shared
    ("pulled:1", True),          # its pull
    ("fetched:1", True),         # a registry digest
]


@pytest.mark.parametrize(("image", "readable"), CASES, ids=[c for c, _ in CASES])
@pytest.mark.parametrize("spelling", ["docker image history --no-trunc", "docker history"])
def test_cli_layer(spelling: str, image: str, readable: bool) -> None:
    decision = decide(f"{spelling} {image}", policy(), Engine())  # type: ignore[arg-type]
    assert (decision.allowed, decision.rule) == (readable, "allowed" if readable else RULE), decision.reason
    if readable:  # the image checked is the image read
        ident = IMAGES[Engine.find(image)][0]
        assert decision.argv is not None and decision.argv[-1] == ident
    control = decide(f"{spelling} {image}", policy("all"), Engine())  # type: ignore[arg-type]
    assert control.allowed, control.reason  # control: [scope] history = "all"


@pytest.mark.parametrize(("image", "readable"), [c for c in CASES if c[0] != "a" * 12],
                         ids=[c for c, _ in CASES if c != "a" * 12])
def test_api_layer(image: str, readable: bool) -> None:
    verdict = vet_api_request(request("GET", f"/v1.47/images/{image}/history"), policy(), ApiImages())  # type: ignore[arg-type]
    assert (verdict.allowed, verdict.rule) == (readable, "allowed" if readable else RULE), verdict.reason
    control = vet_api_request(request("GET", f"/v1.47/images/{image}/history"), policy("all"), ApiImages())  # type: ignore[arg-type]
    assert control.allowed, control.reason


def test_the_refusal_says_what_to_do() -> None:
    reason = decide("docker history op:1", policy(), Engine()).reason  # type: ignore[arg-type]
    assert "image history of 'op:1' is not yours to use" in reason and "[images] shared" in reason


def test_a_missing_image_is_left_to_docker() -> None:
    assert decide("docker history nosuch:1", policy(), Engine()).allowed  # type: ignore[arg-type]
