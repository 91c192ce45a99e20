"""[limits] max_running: every container that will run, whoever starts it, counted once.

`max_running = 3` ended with 10 of the agent's containers running: compose
`scale`/`deploy.replicas` counted as one, `compose run -d` and `restart` of a
stopped container not at all, and two sessions could each see room for one
more. So:

* what a command will have running afterwards is counted, not "one": `run`
  one; `start`/`restart` the named containers that are not running now;
  `compose up` the project's replicas (the named services and what they depend
  on, else all), `compose run` one plus its dependencies, `compose
  start`/`restart` every container of the project; a compose project's own
  running containers are not counted twice (they are replaced or kept);
* the count is taken under the in-flight lock (gatekeeper.inflight, the same
  one host-path commands take) and the command registers what it is about to
  start as a claim, ("start", "label:TOKEN\\tN") or ("start", "project:NAME\\tN"),
  until its process ends. Other sessions add a live claim's N minus the
  running containers it already accounts for (the ones carrying its
  `gatekeeper.start=TOKEN` label, or its project's), so a container is never
  counted both as in flight and as running. `docker start` claims the
  containers it starts by count only: while it runs they may be counted twice,
  which errs on the side of the cap.
"""

from __future__ import annotations

import posix  # os's system calls without importing os (gatekeeper.environment)

from gatekeeper.errors import Denied
from gatekeeper.owner import OWNER_LABEL

TYPE_CHECKING = False  # typing costs an import on the ForceCommand path
if TYPE_CHECKING:
    from typing import Any

    from gatekeeper.vetting.context import Context

START = "start"  # claim kind (gatekeeper.inflight)
START_LABEL = "gatekeeper.start"
PROJECT_LABEL = "com.docker.compose.project"
RULE = "limit-running"
RUNNING_FORMAT = '{{.Label "gatekeeper.start"}}\t{{.Label "com.docker.compose.project"}}'


def owner(ctx: Context) -> str:
    return ctx.policy.profile


def check_room(ctx: Context, cap: int, starting: int, claim: str, project: str = "") -> None:
    """Refuse unless running + in flight + `starting` stays within `cap`; then claim `starting`.
    `claim` is "label:TOKEN" or "project:NAME"; `project`'s running containers are left out."""
    if not starting:
        return  # restarting running containers adds none, even over a lowered cap
    claims = ctx.world.claims_in_flight(ctx.policy)  # takes the lock
    running = running_containers(ctx)
    others = [(token, name) for token, name in running if not (project and name == project)]
    in_flight = sum(unaccounted(value, running) for kind, value in claims if kind == START)
    if len(others) + in_flight + starting > cap:
        busy = f" and {in_flight} are being started by other sessions" if in_flight else ""
        raise Denied(f"{len(others)} of your containers are running{busy}; this would start {starting} "
                     f"and the cap is {cap} (policy [limits] max_running): stop some first", rule=RULE)
    ctx.vetted.starts.append(f"{claim}\t{starting}")


def unaccounted(value: str, running: list[tuple[str, str]]) -> int:
    """A live claim's count minus the running containers it already accounts for."""
    what, _, count = value.rpartition("\t")
    kind, _, name = what.partition(":")
    index = 0 if kind == "label" else 1
    seen = sum(1 for container in running if container[index] == name)
    return max(0, int(count or 0) - seen) if count.isdigit() else 0


def running_containers(ctx: Context) -> list[tuple[str, str]]:
    """(start token, compose project) of each of the owner's running containers."""
    args = ["container", "ls", "--no-trunc", "--filter", f"label={OWNER_LABEL}={owner(ctx)}",
            "--format", RUNNING_FORMAT]
    status, out, _ = ctx.world.run_docker(ctx.policy, args, None, 30.0)
    if status != 0:
        raise Denied("cannot count your running containers (docker ps failed)", rule=RULE)
    # A container without either label prints "\t": a line, never blank (it was dropped as one,
    # so a container made before the cap or by create + start was never counted).
    rows = [line.split("\t") for line in out.decode("utf-8", "replace").splitlines() if line]
    return [(row[0], row[1] if len(row) > 1 else "") for row in rows]


def new_token() -> str:
    return posix.urandom(8).hex()


# ---------------------------------------------------------------- docker run / start / restart


def check_run(ctx: Context, cap: int) -> None:
    """docker run: one container, labelled with this claim's token."""
    token = new_token()
    check_room(ctx, cap, 1, f"label:{token}")
    ctx.insert_after_command(["--label", f"{START_LABEL}={token}"])


def check_start(ctx: Context, cap: int) -> None:
    """docker start/restart NAME...: the named containers that are not running now."""
    names = list(ctx.parsed.positionals)
    stopped = stopped_count(ctx, names) if names else 0
    check_room(ctx, cap, stopped, f"label:{new_token()}")


def stopped_count(ctx: Context, names: list[str]) -> int:
    args = ["container", "inspect", "--format", "{{.State.Running}}", "--", *names]
    status, out, _ = ctx.world.run_docker(ctx.policy, args, None, 30.0)
    if status != 0:
        return len(names)  # a name docker cannot find starts nothing, but we cannot tell which: count it
    return sum(1 for line in out.decode("ascii", "replace").splitlines() if line.strip() != "true")


# ---------------------------------------------------------------- compose


def check_compose(ctx: Context, cap: int, model: dict[str, Any]) -> None:
    """compose up/run/start/restart: what the project will have running afterwards."""
    canonical = ctx.located.canonical
    project = str(model.get("name") or "")
    services = dict(model["services"]) if isinstance(model.get("services"), dict) else {}
    if canonical == "compose up":
        apply_scale_flags(ctx, services)
        starting = replicas(services, selected(services, ctx.parsed.positionals))
    elif canonical == "compose run":
        first = ctx.parsed.positionals[:1]
        deps = selected(services, first) - set(first)
        starting = 1 + replicas(services, deps)
    else:  # compose start / restart: every container the project has
        starting = project_containers(ctx, project)
    check_room(ctx, cap, starting, f"project:{project}", project)


def apply_scale_flags(ctx: Context, services: dict[str, Any]) -> None:
    """`up --scale SERVICE=N` overrides the model's scale (on a copy: the model is not changed)."""
    for use in ctx.parsed.uses:
        if use.flag.long == "scale":
            name, _, count = (use.value or "").partition("=")
            if name in services and isinstance(services[name], dict):
                services[name] = {**services[name], "scale": int(count) if count.isdigit() else 1}


def selected(services: dict[str, Any], names: list[str]) -> set[str]:
    """The named services and everything they depend on (all services when none is named)."""
    chosen = set(names) if names else set(services)
    pending = list(chosen)
    while pending:
        service = services.get(pending.pop())
        depends = service.get("depends_on") if isinstance(service, dict) else None
        for dep in depends or ():
            if dep not in chosen:
                chosen.add(dep)
                pending.append(dep)
    return chosen


def replicas(services: dict[str, Any], names: set[str]) -> int:
    """scale, else deploy.replicas, else 1, per service."""
    total = 0
    for name in names:
        service = services.get(name)
        if not isinstance(service, dict):
            continue
        deploy = service.get("deploy")
        if not isinstance(deploy, dict):
            deploy = {}
        count = service.get("scale", deploy.get("replicas", 1))
        total += count if isinstance(count, int) and not isinstance(count, bool) and count >= 0 else 1
    return total


def project_containers(ctx: Context, project: str) -> int:
    args = ["container", "ls", "-a", "-q", "--no-trunc", "--filter", f"label={OWNER_LABEL}={owner(ctx)}",
            "--filter", f"label={PROJECT_LABEL}={project}"]
    status, out, _ = ctx.world.run_docker(ctx.policy, args, None, 30.0)
    if status != 0:
        raise Denied("cannot count the project's containers (docker ps failed)", rule=RULE)
    return len(out.split())
