"""Resource caps, policy [limits]: memory, CPUs and PIDs of what the agent starts.

For `docker run`/`create` each capped flag must parse
exactly as docker parses it and stay at or under the cap; "unlimited" spellings
(0, -1) are over any cap. A capped flag the agent left out gets the policy's
default injected. For compose the same rules apply to every service of the
vetted model, which is what compose then runs (gatekeeper.vetting.compose).

We accept a strict subset of docker's spellings (plain decimal digits), so that
whatever we accept means the same number to us and to docker; anything else is
refused with a hint instead of guessed at (docker's int parser takes 0x10 and
010 as hex and octal, its size parser takes 1e3).

A cap or default of "" or 0 means "no cap" / "no default".
"""

from __future__ import annotations

from gatekeeper.errors import Denied
from gatekeeper.policy import HEALTH_FLOORS, Caps

# re-exported for gatekeeper.proxy and older imports; new code imports gatekeeper.units
from gatekeeper.units import NANO as NANO
from gatekeeper.units import format_cpus as format_cpus
from gatekeeper.units import go_duration as go_duration
from gatekeeper.units import nano_cpus as nano_cpus
from gatekeeper.units import plain_int as plain_int
from gatekeeper.units import ram_in_bytes as ram_in_bytes
from gatekeeper.units import show_bytes as show_bytes
from gatekeeper.units import show_duration as show_duration

TYPE_CHECKING = False  # typing costs an import on the ForceCommand path
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from gatekeeper.policy import Policy
    from gatekeeper.vetting.context import Context

# The flags that would get round a CPU cap: docker refuses them together with
# --cpus anyway, and a quota/period pair is just another spelling of --cpus.
CPU_QUOTA_FLAGS = frozenset({"cpu-quota", "cpu-period"})


# ---------------------------------------------------------------- the checks


def check_memory(value: str, caps: Caps, what: str) -> None:
    """-m/--memory: 0 is "no limit" to docker, so it is over any cap."""
    if not caps.memory:
        return
    size = ram_in_bytes(value)
    if size is None:
        hint = f"write it as digits and a unit, e.g. {show_bytes(caps.memory)}"
        raise over_cap(what, value, hint, "memory")
    if size == 0 or size > caps.memory:
        raise over_cap(what, value, f"the memory cap is {show_bytes(caps.memory)}", "memory")


def check_memory_swap(value: str, caps: Caps, what: str) -> None:
    """--memory-swap -1 is unlimited swap; otherwise memory+swap stays within twice the
    memory cap (docker's own default when only --memory is set)."""
    if not caps.memory:
        return
    size = None if value == "-1" else ram_in_bytes(value)
    if size is None or size > 2 * caps.memory:
        raise over_cap(what, value, f"memory plus swap is capped at {show_bytes(2 * caps.memory)}", "memory")


def check_cpus(value: str, caps: Caps, what: str) -> None:
    """--cpus 0 means no CPU limit."""
    if not caps.cpus:
        return
    nano = nano_cpus(value)
    if nano is None:
        raise over_cap(what, value, f"write it as a decimal, e.g. {format_cpus(caps.cpus / NANO)}", "cpus")
    if nano == 0 or nano > caps.cpus:
        raise over_cap(what, value, f"the CPU cap is {format_cpus(caps.cpus / NANO)}", "cpus")


def check_cpu_quota(value: str, caps: Caps, what: str) -> None:
    """A quota/period pair is --cpus by another name (quota -1: unlimited)."""
    if caps.cpus:
        raise over_cap(what, value, "CPU time is capped through --cpus only", "cpus")


def check_pids(value: str, caps: Caps, what: str) -> None:
    """--pids-limit 0 and -1 both mean unlimited (a fork bomb takes the host)."""
    if not caps.pids:
        return
    pids = plain_int(value)
    if pids is None:
        raise over_cap(what, value, f"write it in plain decimal, e.g. {caps.pids}", "pids")
    if pids <= 0 or pids > caps.pids:
        raise over_cap(what, value, f"the PID cap is {caps.pids}", "pids")


# Restart policies whose containers a daemon restart leaves as the agent left them (dockerd
# 20.10, tests/e2e/test_restart_policy.py): "unless-stopped" starts again only what was running
# (at most the cap) and what exited by itself; "always" starts the stopped ones too, and
# "on-failure" every one that exited non-zero, which `docker stop`/`kill` leave (137, 143).
COUNTED_RESTARTS = frozenset({"", "no", "unless-stopped"})


def check_restart(value: str, caps: Caps, what: str) -> None:
    """--restart (and compose restart:, an API RestartPolicy) while max_running is set."""
    if not caps.max_running or value.partition(":")[0] in COUNTED_RESTARTS:
        return
    # Stops: run -d --restart always up to the cap, stop them, run as many again: the next daemon
    # restart starts every one (the engine's restart, never counted), twice the cap running.
    raise Denied(f"{what} {value!r} is not allowed while [limits] max_running is set: a daemon restart "
                 "starts every 'always' and 'on-failure' container, the ones you stopped too, past the "
                 "cap; use unless-stopped (what you stop stays stopped)", rule="limit-restart")


def over_cap(what: str, value: object, why: str, cap: str) -> Denied:
    return Denied(f"{what} {value!r} is not allowed: {why} (policy [limits])", rule=f"limit-{cap}")


# ---------------------------------------------------------------- healthcheck floors (gatekeeper.caps)

def caps_of(policy: Policy) -> Caps:
    return policy.caps


def check_health(flag: str, value: str, caps: Caps, what: str) -> None:
    """At or over the floor; 0 means "the image's or the engine's default" to docker."""
    floor = caps.health.get(flag)
    if not floor:
        return
    retries = flag == "health-retries"
    amount = plain_int(value) if retries else go_duration(value)
    shown = str(floor) if retries else show_duration(floor)
    if amount is None or amount < 0:
        hint = "a plain count" if retries else "a duration such as 30s"
        raise Denied(f"{what} {value!r} is not allowed: write {hint} (policy [limits])", rule="limit-health")
    if 0 < amount < floor:
        raise Denied(f"{what} {value!r} is not allowed: the floor is {shown} "
                     "(health checks run in the engine, outside the container's limits; policy [limits])",
                     rule="limit-health")


# The engine's Healthcheck fields (an image's config, a create body) -> the run flag setting each.
HEALTH_FIELDS = {"Interval": "health-interval", "Timeout": "health-timeout",
                 "StartPeriod": "health-start-period", "StartInterval": "health-start-interval",
                 "Retries": "health-retries"}
HEALTH_FORMAT = "{{json .Config.Healthcheck}}"
PIN_TIMEOUT = 30.0  # seconds for the engine's answer about an image


def check_image_health(health: object, given: set[str], caps: Caps, what: str) -> None:
    """The healthcheck a container inherits from its image (a Dockerfile HEALTHCHECK, a pulled
    image's): the engine takes every field the create leaves at 0 from the image, so those
    follow the floors too. `given`: the run flags the create sets to a non-zero value itself."""
    if not caps.health or not isinstance(health, dict):
        return
    test = health.get("Test")
    if isinstance(test, list) and test[:1] == ["NONE"]:
        return  # the image turns its checks off
    for key, flag in HEALTH_FIELDS.items():
        amount = health.get(key)
        if flag in given or amount in (None, 0):
            continue
        if not isinstance(amount, int) or isinstance(amount, bool) or amount < 0:
            raise Denied(f"{what} HEALTHCHECK {key} {amount!r} is not a count the floors can judge",
                         rule="limit-health")
        value = str(amount) if flag == "health-retries" else show_duration(amount)
        try:
            check_health(flag, value, caps, f"{what} HEALTHCHECK {key}")
        except Denied as refused:
            # Stops: a Dockerfile HEALTHCHECK --interval=1ms run without a --health-* flag: the
            # engine's checks back to back, outside the container's limits, floors untouched.
            raise Denied(f"{refused.message}; give --{flag} at or over the floor, or --no-healthcheck",
                         rule=refused.rule) from None


def check_run_image_health(ctx: Context, caps: Caps) -> None:
    """docker run/create: the image's own HEALTHCHECK, asked of the engine (only with floors)."""
    from gatekeeper.grammar.pflag import bool_value

    if not ctx.parsed.positionals:
        return  # docker refuses a run without an image
    given = set()
    for use in ctx.parsed.uses:
        name = use.flag.long
        if name == "no-healthcheck" and bool_value(use):
            return
        parse = plain_int if name == "health-retries" else go_duration
        if name in HEALTH_FLOORS and parse(use.value or ""):
            given.add(name)
    reference = ctx.parsed.positionals[0]
    check_image_health(image_health(ctx, reference), given, caps, f"image {reference!r}")


MUST_EXIST = object()  # image_health's `missing`: an image the engine does not have is refused


def image_health(ctx: Context, reference: str, missing: object = MUST_EXIST) -> object:
    """The image's Config.Healthcheck as the engine answers (None: the image has none).
    `missing`: what an image the engine says it does not have answers (default: refused)."""
    args = ["image", "inspect", "--format", HEALTH_FORMAT, "--", reference]
    try:
        status, out, err = ctx.world.run_docker(ctx.policy, args, None, PIN_TIMEOUT)
    except Exception:  # noqa: BLE001 - a timeout or a missing binary: nothing to judge by
        status, out, err = -1, b"", b""
    if status != 0 and missing is not MUST_EXIST and b"No such image" in (err or b""):
        return missing
    if status != 0:
        raise Denied(f"image {reference!r}: its HEALTHCHECK cannot be checked against the floors (not on "
                     f"the engine?); run 'docker pull {reference}' first", rule="limit-health")
    from gatekeeper.json_codec import loads

    try:
        health = loads((out or b"null").decode("utf-8"))
    except ValueError:
        raise Denied(f"image {reference!r}: the engine's answer about its HEALTHCHECK is not JSON",
                     rule="limit-health") from None
    return health


def check_service_image_health(ctx: Context, caps: Caps, model: dict[str, object]) -> None:
    """compose up/create/run: each service's image's own HEALTHCHECK, as for run (the fields
    the service's healthcheck leaves at 0 come from the image); for a service compose builds,
    check_built_service_health."""
    services = model.get("services") if caps.health else None
    for name, service in (services if isinstance(services, dict) else {}).items():
        image = service.get("image") if isinstance(service, dict) else None
        if (not isinstance(image, str) or not image) and "build" not in service:
            continue
        health = service.get("healthcheck")
        health = health if isinstance(health, dict) else {}
        test = health.get("test")
        if health.get("disable") is True or (isinstance(test, list) and test[:1] == ["NONE"]):
            continue  # the service turns the checks off
        given = {flag for flag, (_, key) in HEALTH_FLOORS.items() if service_sets(flag, health.get(key))}
        if "build" in service:
            check_built_service_health(ctx, caps, name, service, given, str(model.get("name") or ""))
        else:
            what = f"service {name!r} image {image!r}"
            check_image_health(image_health(ctx, str(image)), given, caps, what)


def check_built_service_health(ctx: Context, caps: Caps, name: str, service: dict[str, Any],
                               given: set[str], project: str) -> None:
    """The HEALTHCHECK the service's Dockerfile gives the image compose builds (it does not
    exist when this is decided: gatekeeper.vetting.built_health); and unless this command
    rebuilds it, that of the image compose would run as it is if the engine has it: its
    `image:`, else compose's name for it, <project>-<service>."""
    build, image = service["build"], service.get("image")
    if not isinstance(build, dict):
        raise Denied(f"service {name!r}: its build cannot be read for its HEALTHCHECK", rule="limit-health")
    # Stops: a service built FROM busybox with HEALTHCHECK --interval=1ms in its own Dockerfile:
    # no image to ask when this is decided, the engine's checks back to back (layout c).
    check_image_health(built_image_health(ctx, name, build), given, caps, f"service {name!r} built image")
    if rebuilds(ctx, service):
        return
    # Stops: `docker build -t <project>-<service>` of a 1ms HEALTHCHECK, then `compose up` of a
    # clean Dockerfile: compose finds the image and runs it without building.
    existing = image if isinstance(image, str) and image else f"{project}-{name}"
    check_image_health(image_health(ctx, existing, missing=None), given, caps,
                       f"service {name!r} image {existing!r}")


def rebuilds(ctx: Context, service: dict[str, Any]) -> bool:
    """compose builds the service's image whether or not the engine has one: `--build`, or
    `pull_policy: build`."""
    from gatekeeper.grammar.pflag import bool_value

    if service.get("pull_policy") == "build":
        return True
    return any(use.flag.long == "build" and bool_value(use) for use in ctx.parsed.uses)


def built_image_health(ctx: Context, name: str, build: dict[str, Any]) -> object:
    """The Healthcheck the image of compose service `name` gets when compose builds it: the
    Dockerfile's (gatekeeper.vetting.built_health), else its base image's ONBUILD HEALTHCHECK,
    else the base image's own."""
    from gatekeeper.vetting.built_health import base_triggers, dockerfile_health, last_triggered
    from gatekeeper.vetting.images import service_dockerfile

    text, where, arguments = service_dockerfile(ctx, name, build)
    health, base = dockerfile_health(text, arguments, where, str(build.get("target") or ""))
    if health is not None or not base:
        return health
    triggered = last_triggered(base_triggers(ctx, base, where, PIN_TIMEOUT), base, where)
    return triggered if triggered is not None else image_health(ctx, base)


def service_sets(flag: str, value: object) -> bool:
    """A healthcheck key of the model the engine gets as a non-zero value (0 = the image's)."""
    if value is None:
        return False
    parse = plain_int if flag == "health-retries" else go_duration
    return bool(parse(model_value(value)))


def health_check(flag: str) -> Callable[[str, Caps, str], None]:
    return lambda value, caps, what: check_health(flag, value, caps, what)


# run/create flag name -> its check (`docker update` has no grammar table: always denied)
FLAG_CAPS = {
    "memory": check_memory,
    "memory-swap": check_memory_swap,
    "cpus": check_cpus,
    "cpu-quota": check_cpu_quota,
    "cpu-period": check_cpu_quota,
    "pids-limit": check_pids,
    "restart": check_restart,
    **{flag: health_check(flag) for flag in HEALTH_FLOORS},
}


def vet_run_limits(ctx: Context) -> None:
    """docker run/create: every capped flag within its cap, defaults for the absent ones,
    and room for one more running container."""
    caps = caps_of(ctx.policy)
    if not caps.any():
        return
    given = check_flags(ctx, caps)
    if caps.health:
        check_run_image_health(ctx, caps)
    inject_defaults(ctx, caps, given)
    if ctx.located.canonical == "container run" and caps.max_running:
        from gatekeeper.vetting.running import check_run

        check_run(ctx, caps.max_running)


def check_flags(ctx: Context, caps: Caps) -> set[str]:
    given = set()
    for use in ctx.parsed.uses:
        check = FLAG_CAPS.get(use.flag.long)
        if check is not None:
            check(use.value or "", caps, use.spelled)
            given.add(use.flag.long)
    return given


def inject_defaults(ctx: Context, caps: Caps, given: set[str]) -> None:
    """Right after the subcommand word: before any `--` and the image, and a later
    flag of the agent's could only be one we did not inject (we skip given ones)."""
    words = [f"--{flag}={value}" for flag, value in checked_defaults(caps, given)]
    if words:
        ctx.insert_after_command(words)


def checked_defaults(caps: Caps, given: set[str]) -> list[tuple[str, str]]:
    """The defaults for the flags not `given`, each held to its own cap: a policy whose
    default is over its cap (default_memory = "4g", memory = "2g") refuses instead."""
    defaults = [(flag, value) for flag, value in caps.defaults() if flag not in given]
    for flag, value in defaults:
        FLAG_CAPS[flag](value, caps, f"the policy's default_{flag.replace('-', '_')}")
    return defaults


def vet_start_limits(ctx: Context) -> None:
    """docker start/restart NAME...: the named containers that are stopped now will run
    (gatekeeper.vetting.running)."""
    caps = caps_of(ctx.policy)
    if caps.max_running:
        from gatekeeper.vetting.running import check_start

        check_start(ctx, caps.max_running)


# ---------------------------------------------------------------- compose

# model key -> (check, the run flag it stands for). Sizes in the rendered model
# are byte counts (as strings), cpus a number, pids an integer.
SERVICE_CAPS = {
    "mem_limit": (check_memory, "memory"),
    "memswap_limit": (check_memory_swap, "memory-swap"),
    "cpus": (check_cpus, "cpus"),
    "cpu_quota": (check_cpu_quota, "cpu-quota"),
    "cpu_period": (check_cpu_quota, "cpu-period"),
    "pids_limit": (check_pids, "pids-limit"),
}
DEPLOY_CAPS = {"memory": "mem_limit", "cpus": "cpus", "pids": "pids_limit"}
COMPOSE_STARTS = frozenset({"compose up", "compose create", "compose run"})
COMPOSE_RUNNING = frozenset({"compose up", "compose run", "compose start", "compose restart"})


def vet_compose_limits(ctx: Context, model: dict[str, object]) -> None:
    """Every service of the vetted model within the caps; defaults set where absent.
    Changes `model` in place: it is what compose is fed. Then the running count."""
    caps = caps_of(ctx.policy)
    if ctx.located.canonical in COMPOSE_STARTS and caps.any():
        services = model.get("services")
        for name, service in (services if isinstance(services, dict) else {}).items():
            if isinstance(service, dict):
                limit_service(name, service, caps)
        check_service_image_health(ctx, caps, model)  # (nothing to check without health floors)
    if ctx.located.canonical in COMPOSE_RUNNING and caps.max_running:
        from gatekeeper.vetting.running import check_compose

        check_compose(ctx, caps.max_running, model)


def limit_service(name: str, service: dict[str, object], caps: Caps) -> None:
    for what, policy in service_restarts(service):
        check_restart(policy, caps, f"service {name!r} {what}")
    health = service.get("healthcheck")
    for flag, (_, key) in HEALTH_FLOORS.items():
        if isinstance(health, dict) and health.get(key) is not None:
            check_health(flag, model_value(health[key]), caps, f"service {name!r} healthcheck.{key}")
    given = set()
    for key, (check, flag) in SERVICE_CAPS.items():
        if key in service:
            check(model_value(service[key]), caps, f"service {name!r} {key}")
            given.add(flag)
    for key, value in deploy_limits(service).items():
        if key in DEPLOY_CAPS:
            check, flag = SERVICE_CAPS[DEPLOY_CAPS[key]]
            check(model_value(value), caps, f"service {name!r} deploy.resources.limits.{key}")
            given.add(flag)
    for flag, value in checked_defaults(caps, given):
        service[MODEL_KEYS[flag]] = model_default(flag, value)


MODEL_KEYS = {"memory": "mem_limit", "cpus": "cpus", "pids-limit": "pids_limit"}
# deploy.restart_policy.condition as compose hands it to the engine (anything else: as given)
DEPLOY_CONDITIONS = {"none": "no", "any": "always"}


def service_restarts(service: dict[str, object]) -> list[tuple[str, str]]:
    """The restart policies a service asks for: `restart`, and deploy.restart_policy.condition
    (which compose prefers when both are there)."""
    found = []
    if service.get("restart") is not None:
        found.append(("restart", model_value(service["restart"])))
    deploy = service.get("deploy")
    policy = deploy.get("restart_policy") if isinstance(deploy, dict) else None
    if isinstance(policy, dict) and policy.get("condition") is not None:
        condition = model_value(policy["condition"])
        found.append(("deploy.restart_policy.condition", DEPLOY_CONDITIONS.get(condition, condition)))
    return found



def deploy_limits(service: dict[str, object]) -> dict[str, object]:
    deploy = service.get("deploy")
    resources = deploy.get("resources") if isinstance(deploy, dict) else None
    limits = resources.get("limits") if isinstance(resources, dict) else None
    return limits if isinstance(limits, dict) else {}


def model_value(value: object) -> str:
    """The rendered model's number or string as the CLI flag would have spelled it.
    A float such as 1.5 prints as '1.5'; an int as digits; anything else as itself."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def model_default(flag: str, value: str) -> object:
    if flag == "memory":
        return str(ram_in_bytes(value))
    if flag == "cpus":
        return float(value)
    return int(value)


# ---------------------------------------------------------------- build

# CPU time for the classic builder: it has no --cpus, only a quota per period.
BUILD_CPU_PERIOD = 100_000


def vet_build_limits(ctx: Context) -> None:
    """docker build: RUN steps ran with no memory, CPU or PID limit at all. The classic
    builder honours --memory, --memory-swap, --cpu-period/--cpu-quota and
    --cgroup-parent; BuildKit ignores the first four and honours --cgroup-parent.
    The agent's values are held to the caps; absent ones get the defaults and the
    policy's build_cgroup_parent (a cgroup the operator made with pids/memory limits)."""
    caps = caps_of(ctx.policy)
    if not caps.any() and not caps.build_cgroup_parent:
        return
    given = check_flags(ctx, caps)
    words = []
    if caps.default_memory and "memory" not in given:
        check_memory(caps.default_memory, caps, "the policy's default_memory")
        words.append(f"--memory={caps.default_memory}")
    if caps.default_cpus and not given & CPU_QUOTA_FLAGS:
        check_cpus(format_cpus(caps.default_cpus), caps, "the policy's default_cpus")
        quota = round(caps.default_cpus * BUILD_CPU_PERIOD)
        words += [f"--cpu-period={BUILD_CPU_PERIOD}", f"--cpu-quota={quota}"]
    if caps.build_cgroup_parent:
        words.append(f"--cgroup-parent={caps.build_cgroup_parent}")  # the agent's own: refused by the grammar
    if words:
        ctx.insert_after_command(words)
