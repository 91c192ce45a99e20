"""The HEALTHCHECK of an image compose builds in the same command ([limits] health floors).

A container takes every healthcheck field its create leaves at 0 from its image. For a
service compose builds, that image does not exist when the command is decided, so its
health check is read where the builder takes it from: the last HEALTHCHECK of the stage
built (build.target, else the last), else the last ONBUILD HEALTHCHECK of the stage it
starts FROM (run as that FROM's first step), else that stage's own, and so on down to an
image: its ONBUILD HEALTHCHECK, else its own HEALTHCHECK (asked of the engine). A
HEALTHCHECK replaces the inherited one whole (fields it does not give are 0 then).

The HEALTHCHECK line is read as the builder's parser does (moby/buildkit
frontend/dockerfile/instructions parseHealthcheck, which the classic builder runs too):
leading `--flag=value` words, NONE or CMD; a line the builder would refuse is refused here.
"""

from __future__ import annotations

from gatekeeper.errors import Denied
from gatekeeper.units import go_duration

TYPE_CHECKING = False  # typing costs an import on the ForceCommand path
if TYPE_CHECKING:
    from typing import Any

    from gatekeeper.vetting.context import Context

RULE = "limit-health"
# HEALTHCHECK flag -> the image config's Healthcheck field it sets (nanoseconds; Retries a count)
FLAG_FIELDS = {"--interval": "Interval", "--timeout": "Timeout", "--start-period": "StartPeriod",
               "--start-interval": "StartInterval", "--retries": "Retries"}
MINIMUM = 1_000_000  # the builder refuses a duration under 1ms (0 is "the default")
MAX_RETRIES = (1 << 31) - 1  # strconv.ParseInt(value, 10, 32)


class Stage:
    """One FROM ... of a Dockerfile: what it starts from and the health checks it sets."""

    __slots__ = ("name", "image", "parent", "health", "triggered")

    def __init__(self, name: str, image: str, parent: int | None) -> None:
        self.name = name  # "" unless FROM ... AS name
        self.image = image  # the image it starts FROM ("scratch": none), when parent is None
        self.parent = parent  # the index of the earlier stage it starts FROM
        self.health: dict[str, Any] | None = None  # its last HEALTHCHECK
        self.triggered: dict[str, Any] | None = None  # its last ONBUILD HEALTHCHECK


def stages_of(text: str, arguments: dict[str, str | None], where: str) -> list[Stage]:
    """The Dockerfile's stages, FROM images expanded as gatekeeper.vetting.images.base_images does."""
    from gatekeeper.vetting.images import expand, global_args, instructions, parser_directives

    escape, _ = parser_directives(text)
    values: dict[str, str | None] = {}
    stages: list[Stage] = []
    for instruction, words in instructions(text, escape):
        if instruction == "ARG" and not stages:
            global_args(words, arguments, values)
        elif instruction == "FROM":
            plain = [w for w in words if not w.startswith("--")]
            image = expand(plain[0] if plain else "", values, where)
            named = [i for i, stage in enumerate(stages) if stage.name and stage.name == image.lower()]
            name = plain[2].lower() if len(plain) >= 3 and plain[1].lower() == "as" else ""
            stages.append(Stage(name, image, named[-1] if named else None))
        elif stages and instruction == "HEALTHCHECK":
            stages[-1].health = healthcheck(words, where)
        elif stages and instruction == "ONBUILD" and words and words[0].upper() == "HEALTHCHECK":
            stages[-1].triggered = healthcheck(words[1:], where)
    return stages


def healthcheck(words: list[str], where: str) -> dict[str, Any]:
    """One HEALTHCHECK's words (after the instruction) as the image config's Healthcheck."""
    flags: dict[str, str] = {}
    at = 0
    while at < len(words) and words[at].startswith("--"):
        name, eq, value = words[at].partition("=")
        if name not in FLAG_FIELDS or not eq or name in flags:
            # (the builder refuses an unknown flag, one without =value, or one given twice)
            raise Denied(f"{where}: HEALTHCHECK {words[at]!r} cannot be read as the builder reads it",
                         rule=RULE)
        flags[name] = value
        at += 1
    kind = words[at].upper() if at < len(words) else ""
    if kind == "NONE":
        return {"Test": ["NONE"]}
    if kind != "CMD" or at + 1 >= len(words):
        raise Denied(f"{where}: HEALTHCHECK {' '.join(words)[:80]!r} is neither NONE nor CMD <command>",
                     rule=RULE)
    health: dict[str, Any] = {"Test": command_test(" ".join(words[at + 1:]))}
    for flag, field in FLAG_FIELDS.items():
        health[field] = flag_amount(flag, flags.get(flag, ""), where)
    return health


def command_test(command: str) -> list[str]:
    """CMD ["a", "b"] (JSON: exec form) or CMD a b (shell form), as the image's Test."""
    import json

    try:
        words = json.loads(command) if command.startswith("[") else None
    except ValueError:
        words = None
    if isinstance(words, list) and words and all(isinstance(word, str) for word in words):
        return ["CMD", *words]
    return ["CMD-SHELL", command]


def flag_amount(flag: str, value: str, where: str) -> int:
    """A flag's value as the builder stores it: a Go duration in ns (0, or at least 1ms), or a count."""
    if not value:
        return 0
    if flag == "--retries":
        digits = value.removeprefix("+")
        amount = int(digits) if digits.isascii() and digits.isdigit() else -1
        if 0 <= amount <= MAX_RETRIES:
            return amount
    else:
        nanos = go_duration(value)
        if nanos is not None and (nanos == 0 or nanos >= MINIMUM):
            return nanos
    raise Denied(f"{where}: HEALTHCHECK {flag}={value!r} cannot be read as the builder reads it", rule=RULE)


def dockerfile_health(text: str, arguments: dict[str, str | None], where: str,
                      target: str = "") -> tuple[dict[str, Any] | None, str]:
    """(the health check the built image gets from the Dockerfile, "") or, when the Dockerfile
    sets none along the way, (None, the image its stages start FROM: its own decides; "" for
    scratch)."""
    stages = stages_of(text, arguments, where)
    if not stages:
        return None, ""  # no FROM: the builder refuses the Dockerfile
    picked = [s for s in stages if target and s.name == target.lower()] if target else stages[-1:]
    if not picked:
        raise Denied(f"{where}: build target {target!r} is no stage of the Dockerfile", rule=RULE)
    stage = picked[-1]
    while stage.health is None:
        if stage.parent is None:
            return None, "" if stage.image.lower() == "scratch" else stage.image
        parent = stages[stage.parent]
        if parent.triggered is not None:
            return parent.triggered, ""
        stage = parent
    return stage.health, ""


def last_triggered(triggers: object, image: str, where: str) -> dict[str, Any] | None:
    """The last ONBUILD HEALTHCHECK among an image's ONBUILD steps (Config.OnBuild), if any."""
    if triggers is None:
        return None
    if not isinstance(triggers, list) or not all(isinstance(line, str) for line in triggers):
        raise Denied(f"{where}: the ONBUILD steps of {image!r} cannot be read", rule=RULE)
    from gatekeeper.vetting.images import instructions

    found = None
    for instruction, words in instructions("\n".join(line.replace("\n", " ") for line in triggers), "\\"):
        if instruction == "HEALTHCHECK":
            found = healthcheck(words, f"{where}: FROM {image!r} ONBUILD")
    return found


def base_triggers(ctx: Context, image: str, where: str, timeout: float) -> object:
    """The base image's ONBUILD steps (the question gatekeeper.vetting.images asks of bases)."""
    from gatekeeper.vetting.images import TRIGGERS_FORMAT, base_answer, refuse_missing

    args = ["image", "inspect", "--format", TRIGGERS_FORMAT, "--", image]
    try:
        status, out, _ = ctx.world.run_docker(ctx.policy, args, None, timeout)
    except Exception:  # noqa: BLE001 - no answer: nothing to judge by, refused below
        status, out = -1, b""
    lines = out.decode("utf-8", errors="replace").splitlines()
    if status != 0 or len(lines) != 1:
        raise refuse_missing(image, where)
    _, triggers, _ = base_answer(lines[0], image, where)
    return triggers
