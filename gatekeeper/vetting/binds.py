"""Host paths that stay what was checked: the disjoint-bind invariant.

The path rule checks a bind source once, when the command is decided; the
engine (root) resolves it again at every start (restart policy, `docker
start`/`restart`, compose `restart:`, a daemon restart). A container that can
write a directory above another bind source can swap the child for a symlink
to `/` in between, and the next start mounts host `/etc` read-write. A check
made once cannot pin what root resolves later, so gatekeeper keeps an
invariant over everything the agent owns instead:

1. Bind sources are pairwise non-nested. E is the set of host bind sources
   of every container carrying the owner label (any profile, any state:
   stopped and created ones can be started later), plus the sources that
   live gatekeeper sessions have in flight (gatekeeper.inflight). A new bind
   source may not be a strict ancestor or strict descendant of anything in E
   or of another bind source of the same command. Equal is fine: two
   containers sharing one directory cannot change that directory's own entry.
   So no container ever sees a directory entry on another bind source's path.
2. Client outputs (--cidfile, --iidfile, --metadata-file, build -o dest,
   --cache-to dest, compose config -o), which the CLI writes as the agent at
   the end of the command (a local export may itself contain symlinks), may
   not equal, contain or lie below any bind source, in E or in the command.
3. start/restart (docker and compose) of a container whose sources break
   rule 1 (made before this rule existed) is refused the same way.

Paths are compared normalised, with a trailing separator, never with a bare
startswith: /home/ai-worker/ab is not below /home/ai-worker/a.
"""

from __future__ import annotations

import posixpath

from gatekeeper.errors import Denied
from gatekeeper.owner import OWNER_LABEL
from gatekeeper.paths import require_inert_mount
from gatekeeper.printable import first_error

TYPE_CHECKING = False  # typing costs an import on the ForceCommand path
if TYPE_CHECKING:
    from typing import Any

    from gatekeeper.vetting.context import Context
    from gatekeeper.world import EngineAnswer, PathResolver

PROJECT_LABEL = "com.docker.compose.project"
BIND, OUTPUT = "bind", "output"  # kinds of what a command claims (gatekeeper.inflight)
QUERY_TIMEOUT = 30.0

# One JSON line per container, the whole inspect object: field templates such as
# {{json .HostConfig.Mounts}} fail on engines whose answer omits the field (the CLI
# falls back to the raw map). Read: Id, Name, Config.Labels (the compose project)
# and every place the engine keeps a bind source (HostConfig.Binds, HostConfig.Mounts,
# Mounts).
CONTAINER_FORMAT = "{{json .}}"
OWNED_CONTAINERS = ["container", "ls", "-a", "-q", "--no-trunc", "--filter", f"label={OWNER_LABEL}"]

# Commands that start existing containers (rule 3), and compose commands that
# create containers from the model (their model's binds are new sources).
STARTING = frozenset({"container start", "container restart"})
COMPOSE_STARTING = frozenset({"compose start", "compose restart", "compose up"})
COMPOSE_CREATING = frozenset({"compose up", "compose create", "compose run"})

WHY = ("a container that can write a parent directory can swap the child for a symlink "
       "before the engine mounts it again (at every start, restart or daemon restart)")
INSTEAD = "bind the same directory, or sibling directories"


class Holder:
    """A bind source somebody holds: a container (by name) or a live gatekeeper session."""

    __slots__ = ("who", "path", "project", "container")

    def __init__(self, who: str, path: str, project: str = "", container: str = "") -> None:
        self.who = who  # for messages: "container 'web'"
        self.path = path
        self.project = project
        self.container = container  # engine ID, "" for sessions in flight


def normal(path: str) -> str:
    """Absolute, normalised, no trailing separator ('//x' is '/x' to the kernel)."""
    return "/" + posixpath.normpath("/" + path).lstrip("/")


def inside(path: str, other: str) -> bool:
    """`path` is `other` or below it; both normal()."""
    return path == other or path.startswith(other.rstrip("/") + "/")


def strictly_nested(a: str, b: str) -> bool:
    return a != b and (inside(a, b) or inside(b, a))


def overlapping(a: str, b: str) -> bool:
    return inside(a, b) or inside(b, a)


# ---------------------------------------------------------------- what the command adds


def add_bind(ctx: Context, path: str, what: str) -> None:
    """A host path the engine will mount (and mount again at every start)."""
    ctx.vetted.binds.append((normal(path), what))


def add_output(ctx: Context, path: str, what: str) -> None:
    """A host path the docker CLI writes as the agent when the command ends."""
    ctx.vetted.outputs.append((normal(path), what))


def model_binds(model: dict[str, Any]) -> list[tuple[str, str]]:
    """Bind sources of a vetted compose model: service binds, and secrets/configs
    `file:` (compose bind-mounts those files). Paths are unescaped ($$ -> $)."""
    found = []
    for name, service in (model.get("services") or {}).items():
        for volume in (service.get("volumes") or []) if isinstance(service, dict) else []:
            source = volume.get("source") if isinstance(volume, dict) else None
            if isinstance(source, str) and volume.get("type") == "bind":
                found.append((volume["source"], f"compose service {name!r} bind source"))
    for section in ("secrets", "configs"):
        for name, item in (model.get(section) or {}).items():
            if isinstance(item, dict) and isinstance(item.get("file"), str):
                found.append((item["file"], f"compose {section[:-1]} {name!r} file"))
    return [(normal(path.replace("$$", "$")), what) for path, what in found]


# ---------------------------------------------------------------- the check


def check_host_path_invariant(ctx: Context) -> None:
    """Rules 1-3 for one command; asks the world only when the command carries host paths."""
    binds, outputs = ctx.vetted.binds, ctx.vetted.outputs
    starting = ctx.located.canonical in STARTING or ctx.located.canonical in COMPOSE_STARTING
    if not (binds or outputs or starting):
        return
    check_within_command(binds, outputs)
    # In flight first, then the engine: a session that ends in between has
    # created its container by then, so the engine shows it (gatekeeper.inflight).
    claims = ctx.world.claims_in_flight(ctx.policy)
    session = "a gatekeeper session still in flight"
    held = [Holder(session, normal(path)) for kind, path in claims if kind == BIND]
    pending = [Holder(session, normal(path)) for kind, path in claims if kind == OUTPUT]
    held += engine_binds(ctx, OWNED_CONTAINERS)
    for path, what in binds:
        check_bind(path, what, held, pending)
    for path, what in outputs:
        check_output(path, what, held)
    for path, what in binds:
        require_inert_mount(path, what, ctx.world)
    if ctx.located.canonical in STARTING:
        check_start_targets(ctx, held)
    elif ctx.located.canonical in COMPOSE_STARTING:
        check_compose_containers(ctx, held)


def check_within_command(binds: list[tuple[str, str]], outputs: list[tuple[str, str]]) -> None:
    for i, (path, what) in enumerate(binds):
        for other, other_what in binds[i + 1 :]:
            if strictly_nested(path, other):
                refuse_nested(what, path, f"{other_what} {other!r} of the same command", other,
                              "use sibling directories")
    for path, what in outputs:
        for other, other_what in binds:
            if overlapping(path, other):
                refuse_output(what, path, f"{other_what} {other!r} of the same command")


def check_bind(path: str, what: str, held: list[Holder], pending: list[Holder]) -> None:
    for holder in held:
        if strictly_nested(path, holder.path):
            refuse_nested(what, path, f"{holder.who}, whose bind source is {holder.path!r}", holder.path,
                          f"{INSTEAD}, or remove {holder.who}" if holder.container else
                          f"{INSTEAD}, or wait for it to finish")
    for holder in pending:
        if overlapping(path, holder.path):
            raise Denied(
                f"{what} {path!r} overlaps {holder.path!r}, where {holder.who} is writing its output: "
                "the output may contain symlinks the engine would follow at the next start; "
                "wait for it to finish or bind another directory", rule="host-path-output")


def check_output(path: str, what: str, held: list[Holder]) -> None:
    for holder in held:
        if overlapping(path, holder.path):
            refuse_output(what, path, f"{holder.who}'s bind source {holder.path!r}")


def refuse_nested(what: str, path: str, holder: str, other: str, instead: str) -> None:
    where = "lies below" if inside(path, other) else "contains"
    # Stops: the parent/child symlink swap that mounts host / at the next start.
    raise Denied(f"{what} {path!r} {where} {holder}: {WHY}; {instead}", rule="host-path-nested")


def refuse_output(what: str, path: str, holder: str) -> None:
    # Stops: a container planting symlinks where the CLI writes, or an export planting them on a bind path.
    raise Denied(
        f"{what} {path!r} overlaps {holder}: the docker CLI writes there when the command ends, "
        "a container with that bind can plant symlinks on the way, and an export can plant symlinks "
        "on a bind source's path; write the output to a directory no container binds",
        rule="host-path-output",
    )


# ---------------------------------------------------------------- existing containers (rule 3)


def check_start_targets(ctx: Context, held: list[Holder]) -> None:
    """docker start/restart: the targets' own sources must keep rule 1."""
    words = list(ctx.parsed.positionals)  # every positional of start/restart names a container
    if words:
        targets = engine_binds(ctx, words)
        check_existing(targets, held)
        for target in targets:
            if target.path:  # a remount without nosuid,nodev since the create
                require_inert_mount(target.path, f"{target.who}'s bind source", ctx.world)


def check_compose_containers(ctx: Context, held: list[Holder]) -> None:
    """compose start/restart/up start the project's existing containers as they were made."""
    if ctx.vetted.compose_model is None:
        return
    name = ctx.vetted.compose_model.get("name")
    check_existing([h for h in held if h.container and h.project == name], held)


def check_existing(targets: list[Holder], held: list[Holder]) -> None:
    for target in targets:
        for holder in held:
            if strictly_nested(target.path, holder.path):
                where = "lies below" if inside(target.path, holder.path) else "contains"
                raise Denied(
                    f"{target.who} has bind source {target.path!r}, which {where} {holder.who}'s "
                    f"bind source {holder.path!r}: {WHY}; remove one of them and create it again "
                    f"with {INSTEAD}", rule="host-path-nested")


# ---------------------------------------------------------------- asking the engine


def engine_binds(ctx: Context, words: list[str]) -> list[Holder]:
    """The bind sources of the containers `words` names (or, for OWNED_CONTAINERS,
    of every container with the owner label, any profile, any state)."""
    if words is OWNED_CONTAINERS:
        words = run_query(ctx, OWNED_CONTAINERS, "your containers").split()
    holders: list[Holder] = []
    for line in inspect(ctx, words).splitlines() if words else []:
        holders += holders_of(line, ctx.world)
    return holders


def inspect(ctx: Context, words: list[str]) -> str:
    status, out, err = ask_engine(ctx, ["container", "inspect", "--format", CONTAINER_FORMAT, "--", *words])
    text = out.decode("utf-8", "replace")
    if status != 0 and not removed_meanwhile(err, len(text.splitlines()), len(words)):
        raise unresolved(first_error(err))
    return text


def removed_meanwhile(err: bytes, printed: int, asked: int) -> bool:
    """A container removed between the listing and the inspect: docker prints the
    others and says 'No such container' for each missing one."""
    lines = [line for line in err.decode("utf-8", "replace").splitlines() if line.strip()]
    missing = all("No such container" in line for line in lines)
    return bool(lines) and missing and printed + len(lines) == asked


def run_query(ctx: Context, args: list[str], what: str) -> str:
    status, out, err = ask_engine(ctx, args)
    if status != 0:
        raise unresolved(f"cannot list {what}: {first_error(err)}")
    return out.decode("utf-8", "replace")


def ask_engine(ctx: Context, args: list[str]) -> EngineAnswer:
    """docker ARGS through the world, bounded: an engine that does not answer leaves the check unresolved."""
    from gatekeeper.bounded import timed_out

    try:
        return ctx.world.run_docker(ctx.policy, args, None, QUERY_TIMEOUT)
    except Exception as error:
        if not timed_out(error):
            raise
        raise unresolved("the engine did not answer") from None


def unresolved(why: str) -> Denied:
    return Denied(f"cannot learn the bind sources of your containers ({why}), so a new host path "
                  "cannot be checked against them", rule="host-path-unresolved")


def holders_of(line: str, world: PathResolver) -> list[Holder]:
    """One inspect line -> a Holder per bind source (lexical and resolved forms)."""
    from gatekeeper.json_codec import loads

    try:
        container = loads(line)
    except ValueError:
        container = None
    if not isinstance(container, dict) or not isinstance(container.get("Id"), str):
        raise unresolved(f"unexpected answer {line[:120]!r}")
    ident = container["Id"]
    host = container.get("HostConfig") or {}
    labels = (container.get("Config") or {}).get("Labels") or {}
    binds, mounts, points = host.get("Binds"), host.get("Mounts"), container.get("Mounts")
    project = labels.get(PROJECT_LABEL, "") if isinstance(labels, dict) else ""
    who = f"container {str(container.get('Name') or ident[:12]).lstrip('/')!r}"
    sources = set()
    for spec in binds or []:
        source = str(spec).split(":", 1)[0]
        if source.startswith("/"):
            sources.add(source)
    for mount in [*(mounts or []), *(points or [])]:
        source = str(mount.get("Source", "")) if isinstance(mount, dict) else ""
        if source.startswith("/") and mount.get("Type") == "bind":
            sources.add(source)
    forms = set()
    for source in sources:
        forms.add(normal(source))
        forms.add(resolved_form(source, world))
    return [Holder(who, path, str(project or ""), ident) for path in sorted(forms - {""})]


def resolved_form(source: str, world: PathResolver) -> str:
    """Where the source resolves today (a container made before this rule may have a
    symlink in it); "" when the agent cannot look (the lexical form still counts)."""
    try:
        return normal(world.realpath(source))
    except Denied:
        return ""
