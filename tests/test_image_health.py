"""An image's own HEALTHCHECK follows the [limits] healthcheck floors, at both layers.

Found while making tests/e2e/test_hostile_caps.py run three ways (issue 12 item 3): the
floors judged the --health-* flags (and compose's healthcheck keys, and a create body's
Healthcheck) but the engine takes every field a create leaves at 0 from the image, so a
Dockerfile `HEALTHCHECK --interval=1ms CMD true` (or a pulled image's) ran with a plain
`docker run -d IMAGE`: the engine's checks back to back, outside the container's limits,
the attack the floors stop. The control: without floors every case is allowed and the
image is not even asked about; with them the CLI layer (run/create) and the API layer
(POST /containers/create) refuse it (rule limit-health) and allow an own value at or over
the floor, --no-healthcheck, an image whose checks are off and one over the floor.
"""

from __future__ import annotations

import json
from urllib.parse import unquote, urlsplit

import pytest

from gatekeeper.decision import decide
from gatekeeper.errors import Denied
from gatekeeper.policy import DEFAULTS, Policy, merge
from gatekeeper.proxy.vet import vet_api_request
from gatekeeper.vetting.limits import HEALTH_FORMAT, check_image_health
from tests.api_engine import FakeEngine
from tests.fakes import StaticWorld
from tests.test_proxy_vet import request

MS = 1_000_000
# image name -> its Config.Healthcheck as the engine answers it
IMAGES: dict[str, object] = {
    "fast": {"Test": ["CMD", "true"], "Interval": MS},
    "slow": {"Test": ["CMD", "true"], "Interval": 30_000 * MS},
    "off": {"Test": ["NONE"], "Interval": MS},
    "quick-timeout": {"Test": ["CMD", "true"], "Timeout": 1},
    "plain": None,
}
LIMITS = {"min_health_interval": "5s", "min_health_timeout": "1s"}


def policy(limits: dict[str, object]) -> Policy:
    return Policy(merge(DEFAULTS, {"limits": limits}, "test"), "test", "")


OPEN, FLOORED = policy({}), policy(LIMITS)


class ImageWorld(StaticWorld):
    """StaticWorld whose images carry the healthchecks of IMAGES; others are not on the engine."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[str] = []

    def run_docker(self, policy: Policy, args: list[str], stdin: bytes | None = None,
                   timeout: float = 60.0) -> tuple[int, bytes, bytes]:
        if args[:4] == ["image", "inspect", "--format", HEALTH_FORMAT]:
            self.asked.append(args[5])
            if args[5] not in IMAGES:
                return 1, b"", f"Error: No such image: {args[5]}\n".encode()
            return 0, json.dumps(IMAGES[args[5]]).encode() + b"\n", b""
        return super().run_docker(policy, args, stdin, timeout)


# command -> rule with the floors (without them: always allowed)
CLI_CASES = {
    "docker run -d fast": "limit-health",
    "docker create fast": "limit-health",
    "docker container run -d fast sleep 60": "limit-health",
    "docker run -d --health-interval 5s fast": "allowed",
    "docker run -d --health-interval 0 fast": "limit-health",  # 0: the image's value
    "docker run -d --health-cmd true fast": "limit-health",  # the interval is still the image's
    "docker run -d --no-healthcheck fast": "allowed",
    "docker run -d --no-healthcheck=false fast": "limit-health",
    "docker run -d slow": "allowed",
    "docker run -d off": "allowed",
    "docker run -d quick-timeout": "limit-health",
    "docker run -d --health-timeout 2s quick-timeout": "allowed",
    "docker run -d plain": "allowed",
    "docker run -d absent": "limit-health",  # its HEALTHCHECK unseen: pull it first
}


@pytest.mark.parametrize(("command", "rule"), CLI_CASES.items(), ids=CLI_CASES.keys())
def test_cli_layer(command: str, rule: str) -> None:
    control = ImageWorld()
    assert decide(command, OPEN, control).rule == "allowed"
    assert control.asked == []  # without floors nothing more is asked of the engine
    assert decide(command, FLOORED, ImageWorld()).rule == rule


def test_the_refusal_says_what_to_do() -> None:
    reason = decide("docker run -d fast", FLOORED, ImageWorld()).reason
    assert "HEALTHCHECK Interval '1ms'" in reason and "floor is 5s" in reason, reason
    assert "--health-interval" in reason and "--no-healthcheck" in reason, reason


class HealthEngine(FakeEngine):
    """The fake engine of tests/api_engine.py with the images of IMAGES."""

    def get_json(self, target: str) -> tuple[int, object]:
        path = unquote(urlsplit(target).path)
        for name, health in IMAGES.items():
            if path == f"/images/{name}/json":
                self.asked.append(target)
                config = {"Labels": {}, "Env": [], "Healthcheck": health}
                return 200, {"Id": "sha256:" + "7" * 64, "RepoTags": [f"{name}:latest"], "Config": config,
                             "RepoDigests": [f"{name}@sha256:{'6' * 64}"]}  # from a registry
        return super().get_json(target)


# (image, the body's own Healthcheck) -> allowed with the floors (without them: always allowed)
API_CASES = {
    "image 1ms": ("fast", None, False),
    "own interval at the floor": ("fast", {"Interval": 5000 * MS}, True),
    "own interval 0": ("fast", {"Interval": 0}, False),
    "own test only": ("fast", {"Test": ["CMD", "true"]}, False),
    "checks off (--no-healthcheck)": ("fast", {"Test": ["NONE"]}, True),
    "image over the floor": ("slow", None, True),
    "image checks off": ("off", None, True),
    "image timeout 1ns": ("quick-timeout", None, False),
    "own timeout": ("quick-timeout", {"Timeout": 2000 * MS}, True),
    "image without healthcheck": ("plain", None, True),
}


@pytest.mark.parametrize(("image", "own", "allowed"), API_CASES.values(), ids=API_CASES.keys())
def test_api_layer(image: str, own: object, allowed: bool) -> None:
    body = json.dumps({"Image": image, **({"Healthcheck": own} if own is not None else {})})
    create = request("POST", "/v1.41/containers/create", body)
    assert vet_api_request(create, OPEN, HealthEngine()).allowed
    verdict = vet_api_request(create, FLOORED, HealthEngine())
    assert verdict.allowed == allowed, verdict
    assert allowed or verdict.rule == "limit-health", verdict


@pytest.mark.parametrize("health", [{"Interval": "1ms"}, {"Interval": True}, {"Interval": -1}],
                         ids=["text", "bool", "negative"])
def test_an_answer_the_floors_cannot_judge_is_refused(health: object) -> None:
    with pytest.raises(Denied) as refused:
        check_image_health(health, set(), FLOORED.caps, "image 'x'")
    assert refused.value.rule == "limit-health"


# ---------------------------------------------------------------- compose services (the CLI layer, layout c)


class ComposeCtx:
    """What check_service_image_health reads of a Context: the policy and the engine."""

    def __init__(self, policy: Policy) -> None:
        self.policy, self.world = policy, ImageWorld()
        self.parsed = ComposeCommand()


class ComposeCommand:
    """compose up without flags (no --build)."""

    uses: tuple[object, ...] = ()


# (service, refused): a compose service's containers take every healthcheck field it leaves at
# 0 from its image, as run's do; a service compose builds: tests/test_built_health.py
SERVICES = {
    "image with a 1ms interval": ({"image": "fast"}, True),
    "its own timeout, the image's interval": ({"image": "fast", "healthcheck": {"timeout": "2s"}}, True),
    "own interval at the floor": ({"image": "fast", "healthcheck": {"interval": "5s"}}, False),
    "own interval 0: the image's": ({"image": "fast", "healthcheck": {"interval": "0s"}}, True),
    "healthcheck disabled": ({"image": "fast", "healthcheck": {"disable": True}}, False),
    "test NONE": ({"image": "fast", "healthcheck": {"test": ["NONE"]}}, False),
    "image over the floor": ({"image": "slow"}, False),
    "image whose checks are off": ({"image": "off"}, False),
    "image without a healthcheck": ({"image": "plain"}, False),
    "image with a 1ns timeout": ({"image": "quick-timeout"}, True),
    "built by compose, image: exists": ({"image": "fast", "build": {"dockerfile_inline": "FROM slow"}}, True),
}


@pytest.mark.parametrize(("service", "refused"), SERVICES.values(), ids=SERVICES.keys())
def test_compose_service_images(service: dict[str, object], refused: bool) -> None:
    from gatekeeper.vetting.limits import caps_of, check_service_image_health

    model = {"services": {"web": service}}
    open_ctx = ComposeCtx(OPEN)
    check_service_image_health(open_ctx, caps_of(OPEN), model)  # type: ignore[arg-type]  # control: no floors
    ctx = ComposeCtx(FLOORED)
    if not refused:
        check_service_image_health(ctx, caps_of(FLOORED), model)  # type: ignore[arg-type]
        return
    with pytest.raises(Denied) as denied:
        check_service_image_health(ctx, caps_of(FLOORED), model)  # type: ignore[arg-type]
    assert denied.value.rule == "limit-health"
    assert "service 'web'" in denied.value.message


def test_a_compose_service_image_not_on_the_engine_is_refused() -> None:
    from gatekeeper.vetting.limits import caps_of, check_service_image_health

    model = {"services": {"w": {"image": "ghost"}}}
    with pytest.raises(Denied) as denied:
        check_service_image_health(ComposeCtx(FLOORED), caps_of(FLOORED), model)  # type: ignore[arg-type]
    assert denied.value.rule == "limit-health" and "docker pull ghost" in denied.value.message
