"""A compose service built in the same command: its Dockerfile's HEALTHCHECK against the floors.

The attack (layout c, the CLI layer alone): `compose up` of a service whose own Dockerfile says
HEALTHCHECK --interval=1ms (or starts FROM an image that does, or one whose ONBUILD step does).
The image does not exist when the command is decided, so the check of the service's image was
skipped: the engine ran its checks back to back, outside the container's limits. Now the
HEALTHCHECK is read where the builder takes it from (gatekeeper.vetting.built_health).

Each case is decided twice: without floors (the control: allowed, the engine never asked) and
with them (the expected outcome, rule limit-health, the service named).
"""

# One case per line keeps each Dockerfile beside its expectation; such lines run long.
# ruff: noqa: E501

from __future__ import annotations

import json

import pytest

from gatekeeper.errors import Denied
from gatekeeper.grammar.spec import v
from gatekeeper.policy import Policy
from gatekeeper.vetting import built_health, limits
from gatekeeper.vetting.images import TRIGGERS_FORMAT
from gatekeeper.vetting.limits import HEALTH_FORMAT, caps_of, check_service_image_health
from tests.test_image_health import FLOORED, IMAGES, MS, OPEN, ImageWorld

# image -> its ONBUILD steps (Config.OnBuild); every image of IMAGES has none unless here
TRIGGERS = {"trigger-fast": ["HEALTHCHECK --interval=1ms CMD true"], "trigger-other": ["RUN true"]}


class BuildWorld(ImageWorld):
    """ImageWorld that also answers the base images' ONBUILD question (TRIGGERS_FORMAT)."""

    def run_docker(self, policy: Policy, args: list[str], stdin: bytes | None = None,
                   timeout: float = 60.0) -> tuple[int, bytes, bytes]:
        if args[:4] == ["image", "inspect", "--format", HEALTH_FORMAT] and args[5] in TRIGGERS:
            self.asked.append(args[5])
            return 0, b"null\n", b""
        if args[:4] == ["image", "inspect", "--format", HEALTH_FORMAT] and args[5] in IMAGES_BY_PROJECT:
            self.asked.append(args[5])
            return 0, json.dumps(IMAGES_BY_PROJECT[args[5]]).encode() + b"\n", b""
        if args[:4] == ["image", "inspect", "--format", TRIGGERS_FORMAT]:
            self.asked.append(f"triggers {args[5]}")
            if args[5] not in {**IMAGES, **TRIGGERS}:
                return 1, b"", f"Error: No such image: {args[5]}\n".encode()
            steps = json.dumps(TRIGGERS.get(args[5]))
            return 0, f"linux/amd64\t{steps}\tsha256:{'a' * 64}\t[\"{args[5]}\"]\t[]\tnull\n".encode(), b""
        return super().run_docker(policy, args, stdin, timeout)


class Parsed:
    def __init__(self, flags: list[str]) -> None:
        self.uses = [Use(flag) for flag in flags]


class Use:
    def __init__(self, flag: str) -> None:
        self.flag, self.value, self.spelled = v(flag), None, f"--{flag}"


class Ctx:
    def __init__(self, policy: Policy, flags: list[str] = ()) -> None:  # type: ignore[assignment]
        self.policy, self.world, self.parsed = policy, BuildWorld(), Parsed(list(flags))


def service(dockerfile: str, **more: object) -> dict[str, object]:
    build: dict[str, object] = {"context": ".", "dockerfile_inline": dockerfile}
    build.update({k: v for k, v in more.items() if k in ("target", "args")})
    return {"build": build, **{k: value for k, value in more.items() if k not in ("target", "args")}}


# (service, refused with the floors min_health_interval 5s, min_health_timeout 1s)
CASES = {
    "own HEALTHCHECK 1ms": (service("FROM plain\nHEALTHCHECK --interval=1ms CMD true\n"), True),
    "own HEALTHCHECK at the floor": (service("FROM plain\nHEALTHCHECK --interval=5s CMD true\n"), False),
    "own timeout under the floor": (service("FROM plain\nHEALTHCHECK --interval=30s --timeout=500ms CMD true\n"), True),
    "a duration the builder refuses (1ns)": (service("FROM plain\nHEALTHCHECK --timeout=1ns CMD true\n"), True),
    "lower-case instruction": (service("FROM plain\nhealthcheck --interval=1ms CMD true\n"), True),
    "continued line": (service("FROM plain\nHEALTHCHECK \\\n  --interval=1ms \\\n  CMD true\n"), True),
    "a flag the builder does not know": (service("FROM plain\nHEALTHCHECK --Interval=1ms CMD true\n"), True),
    "the last HEALTHCHECK wins": (service("FROM plain\nHEALTHCHECK --interval=1ms CMD true\nHEALTHCHECK --interval=9s CMD true\n"), False),
    "the last HEALTHCHECK wins (1ms)": (service("FROM plain\nHEALTHCHECK --interval=9s CMD true\nHEALTHCHECK --interval=1ms CMD true\n"), True),
    "base image's 1ms, none of its own": (service("FROM fast\nRUN true\n"), True),
    "base image's 1ms replaced whole": (service("FROM fast\nHEALTHCHECK --interval=10s CMD true\n"), False),
    "base image's 1ms turned off": (service("FROM fast\nHEALTHCHECK NONE\n"), False),
    "base image over the floor": (service("FROM slow\n"), False),
    "base image without one": (service("FROM plain\n"), False),
    "scratch": (service("FROM scratch\nCOPY x /x\n"), False),
    "an earlier stage's 1ms, final stage from slow": (service("FROM plain AS b\nHEALTHCHECK --interval=1ms CMD true\nFROM slow\n"), False),
    "final stage FROM an earlier stage with 1ms": (service("FROM plain AS b\nHEALTHCHECK --interval=1ms CMD true\nFROM B\nRUN true\n"), True),
    "stage chain down to the 1ms image": (service("FROM fast AS a\nFROM a AS b\nFROM b\n"), True),
    "build.target: the 1ms stage": (service("FROM plain AS quick\nHEALTHCHECK --interval=1ms CMD true\nFROM slow\n", target="quick"), True),
    "build.target: the slow stage": (service("FROM fast AS quick\nFROM slow AS calm\nFROM fast\n", target="calm"), False),
    "an earlier stage's ONBUILD HEALTHCHECK": (service("FROM plain AS a\nONBUILD HEALTHCHECK --interval=1ms CMD true\nFROM a\n"), True),
    "ONBUILD HEALTHCHECK replaced by the stage's own": (service("FROM plain AS a\nONBUILD HEALTHCHECK --interval=1ms CMD true\nFROM a\nHEALTHCHECK --interval=9s CMD true\n"), False),
    "ONBUILD HEALTHCHECK of the final stage: its children's": (service("FROM plain\nONBUILD HEALTHCHECK --interval=1ms CMD true\n"), False),
    "base image's ONBUILD HEALTHCHECK": (service("FROM trigger-fast\n"), True),
    "base image's ONBUILD HEALTHCHECK replaced": (service("FROM trigger-fast\nHEALTHCHECK --interval=9s CMD true\n"), False),
    "base image's other ONBUILD steps": (service("FROM trigger-other\n"), False),
    "global ARG names the base": (service("ARG B=fast\nFROM $B\n"), True),
    "global ARG given by the build": (service("ARG B=fast\nFROM ${B}\n", args={"B": "slow"}), False),
    "service's own interval over the Dockerfile's": (service("FROM plain\nHEALTHCHECK --interval=1ms CMD true\n", healthcheck={"interval": "5s"}), False),
    "service's own timeout, the Dockerfile's interval": (service("FROM plain\nHEALTHCHECK --interval=1ms CMD true\n", healthcheck={"timeout": "2s"}), True),
    "service turns the checks off": (service("FROM plain\nHEALTHCHECK --interval=1ms CMD true\n", healthcheck={"disable": True}), False),
    "image: exists with 1ms (up without --build runs it)": (service("FROM slow\n", image="fast"), True),
    "image: not built yet": (service("FROM slow\n", image="ghost"), False),
    "compose's name for it, <project>-<service>, exists with 1ms": (service("FROM slow\n"), True),
    "pull_policy build: the existing image is not run": (service("FROM slow\n", image="fast", pull_policy="build"), False),
}
PROJECTS = {"compose's name for it, <project>-<service>, exists with 1ms": "fast-project"}
IMAGES_BY_PROJECT = {"fast-project-web": {"Test": ["CMD", "true"], "Interval": MS}}


@pytest.mark.parametrize(("case", "svc", "refused"), [(k, *c) for k, c in CASES.items()], ids=CASES.keys())
def test_built_service_health(case: str, svc: dict[str, object], refused: bool) -> None:
    model = {"name": PROJECTS.get(case, "proj"), "services": {"web": svc}}
    open_ctx = Ctx(OPEN)
    check_service_image_health(open_ctx, caps_of(OPEN), model)  # type: ignore[arg-type]  # control: no floors
    assert not open_ctx.world.asked
    ctx = Ctx(FLOORED)
    if not refused:
        check_service_image_health(ctx, caps_of(FLOORED), model)  # type: ignore[arg-type]
        return
    with pytest.raises(Denied) as denied:
        check_service_image_health(ctx, caps_of(FLOORED), model)  # type: ignore[arg-type]
    assert denied.value.rule == "limit-health"
    assert "service 'web'" in denied.value.message


def test_without_the_check_the_built_service_passed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The defence off (before: a built service was skipped): its 1ms HEALTHCHECK went through."""
    model = {"services": {"web": service("FROM plain\nHEALTHCHECK --interval=1ms CMD true\n")}}
    monkeypatch.setattr(limits, "built_image_health", lambda ctx, name, build: None)
    check_service_image_health(Ctx(FLOORED), caps_of(FLOORED), model)  # type: ignore[arg-type]
    monkeypatch.undo()
    with pytest.raises(Denied):
        check_service_image_health(Ctx(FLOORED), caps_of(FLOORED), model)  # type: ignore[arg-type]


def test_the_refusal_says_what_to_do() -> None:
    model = {"services": {"web": service("FROM plain\nHEALTHCHECK --interval=1ms CMD true\n")}}
    with pytest.raises(Denied) as denied:
        check_service_image_health(Ctx(FLOORED), caps_of(FLOORED), model)  # type: ignore[arg-type]
    assert "built image HEALTHCHECK Interval" in denied.value.message
    assert "or --no-healthcheck" in denied.value.message


HEALTHCHECKS = {
    "--interval=1ms CMD true": {"Test": ["CMD-SHELL", "true"], "Interval": MS, "Timeout": 0,
                                "StartPeriod": 0, "StartInterval": 0, "Retries": 0},
    "--retries=3 --start-period=1m30s CMD [\"x\"]": {"Test": ["CMD", "x"], "Interval": 0, "Timeout": 0,
                                                     "StartPeriod": 90_000 * MS, "StartInterval": 0, "Retries": 3},
    "none": {"Test": ["NONE"]},
}


@pytest.mark.parametrize(("line", "health"), HEALTHCHECKS.items(), ids=HEALTHCHECKS.keys())
def test_healthcheck_as_the_builder_stores_it(line: str, health: dict[str, object]) -> None:
    assert built_health.healthcheck(line.split(), "Dockerfile") == health


@pytest.mark.parametrize("line", ["--interval 1ms CMD true", "--interval=1ms --interval=9s CMD true",
                                  "--retries=-1 CMD true", "--interval=-1s CMD true", "CMD", "",
                                  "--interval=1ms", "RUN true", "--retries=0x10 CMD true"])
def test_healthchecks_the_builder_refuses_are_refused(line: str) -> None:
    with pytest.raises(Denied) as denied:
        built_health.healthcheck(line.split(), "Dockerfile")
    assert denied.value.rule == "limit-health"


def test_up_build_runs_no_existing_image() -> None:
    """`compose up --build` builds whatever the engine has: the existing image is not judged
    (control: without --build it is, and its 1ms is refused)."""
    model = {"name": "proj", "services": {"web": service("FROM slow\n", image="fast")}}
    with pytest.raises(Denied):
        check_service_image_health(Ctx(FLOORED), caps_of(FLOORED), model)  # type: ignore[arg-type]
    check_service_image_health(Ctx(FLOORED, ["build"]), caps_of(FLOORED), model)  # type: ignore[arg-type]
