"""docker compose: vet the rendered project, then run exactly what was vetted.

Steps for every subcommand that needs the project (all but ls and version):

1. Project flags (-f, --project-directory/--workdir, --env-file, -p, ...)
   come from compose's root only. Files and directories follow the host-path
   rule; remote files (oci://, git URLs, http) and `-f -` are refused.
2. At least one `-f` is required: without it compose searches the working
   directory *and its parents* (outside the roots) and honours COMPOSE_FILE
   from `.env`, so what it loads would not be what the agent named.
3. `.env` is never read implicitly: we pass `--env-file /dev/null` unless the
   agent names env files (which then follow the host-path rule: a project's
   `work/app/.env` may be named, the root's top-level dot files may not).
   An env file only shapes the render; its
   COMPOSE_* settings cannot add files (we pass -f) or change the name we run.
4. Every file the renders open (compose files, include/extends files and
   their env files, --env-file files, then env_file and label_file) is read
   once without following links and staged in a private directory; both
   renders read only the stage (gatekeeper.vetting.compose_render). A raw
   render (`config --no-interpolate`) lists env_file and label_file paths,
   which the full render inlines and drops: each follows the host-path rule,
   so compose cannot copy a host file outside the roots into a container's
   environment or labels, nor one swapped in after the check.
5. The full render (`config --format json`) is checked key by key
   (gatekeeper.vetting.compose_project); host paths are rewritten resolved.
6. argv becomes `docker compose -f - -p NAME --project-directory DIR
   --env-file /dev/null [other root flags] SUB ...` and the vetted JSON is
   fed on stdin: files changed between check and use do not matter.

include and extends are followed by gatekeeper.vetting.compose_files (its
own YAML reading, refusing what it cannot read as compose would): each file
they name passes the host-path rule, is staged, and what it contributes is
vetted like everything else.
"""

from __future__ import annotations

import posixpath

from gatekeeper.errors import Denied
from gatekeeper.grammar.pflag import FlagUse
from gatekeeper.printable import first_error
from gatekeeper.vetting.context import Context

TYPE_CHECKING = False  # typing costs an import on the ForceCommand path
if TYPE_CHECKING:
    from typing import Any

    from gatekeeper.vetting.compose_render import Stage

# Subcommands that never load the project model.
WITHOUT_PROJECT = frozenset({"compose ls", "compose version"})

# Root flags that change the rendered model, passed to the render too.
MODEL_FLAGS = frozenset({"profile", "compatibility", "all-resources"})

# Compose's remote loaders (switched off in the child environment as well).
REMOTE_PREFIXES = ("oci://", "git@", "git://", "http://", "https://", "ssh://")

NO_ENV_FILE = "/dev/null"  # an empty env file: compose then skips <project dir>/.env
RENDER_TIMEOUT = 30.0


class ProjectSource:
    """Where the project comes from, after the host-path rule."""

    __slots__ = ("files", "directory", "env_files", "name", "model_flags", "kept_flags")

    def __init__(self) -> None:
        self.files: list[str] = []
        self.directory = ""
        self.env_files: list[str] = []
        self.name = ""
        self.model_flags: list[str] = []  # re-spelled, for the render and the run
        self.kept_flags: list[str] = []  # re-spelled, for the run only


def vet_compose(ctx: Context) -> None:
    """Render, vet and pin the project for every compose subcommand that loads one."""
    if ctx.located.canonical in WITHOUT_PROJECT:
        return
    from gatekeeper.vetting.addresses import vet_model_addresses
    from gatekeeper.vetting.binds import COMPOSE_CREATING, model_binds
    from gatekeeper.vetting.build_cache import check_resource_uses, scope_model_cache
    from gatekeeper.vetting.compose_project import vet_project
    from gatekeeper.vetting.images import COMPOSE_BUILDING, vet_model_images
    from gatekeeper.vetting.limits import vet_compose_limits
    from gatekeeper.vetting.log_caps import vet_compose_log_caps
    from gatekeeper.vetting.ports import vet_model_ports
    from gatekeeper.vetting.run import drop_model_capabilities, vet_model_log_options

    source = project_source(ctx)
    model = staged_render(ctx, source)
    vet_project(model, ctx.host_path)
    vet_model_addresses(ctx, model)  # ipam subnets and fixed addresses (policy [network])
    vet_model_ports(ctx, model)  # published host addresses and ports (policy [ports])
    vet_model_images(ctx, model)  # image: and the Dockerfiles it builds (policy [images])
    if ctx.located.canonical in COMPOSE_BUILDING:
        scope_model_cache(ctx, model)  # the agent's own images as the builds' only cache sources
        check_resource_uses(ctx, f"'docker {ctx.located.spelled}'")  # compose build --memory
    vet_model_log_options(ctx, model)  # log option keys and reserved tags, as for run
    if ctx.located.canonical in COMPOSE_CREATING:  # the model's binds become containers' binds
        ctx.vetted.binds.extend(model_binds(model))
    vet_compose_log_caps(ctx, model)  # [limits] log caps in each service's logging.options
    vet_compose_limits(ctx, model)  # caps checked, defaults set in the model compose is fed
    drop_model_capabilities(model)  # NET_RAW, as for run
    ctx.vetted.named_volumes.extend(model_volume_names(model))
    pin_project(ctx, source, model)


def project_source(ctx: Context) -> ProjectSource:
    source = ProjectSource()
    uses = ctx.located.plugin_flags.uses if ctx.located.plugin_flags else []
    for use in uses:
        read_root_flag(ctx, source, use)
    if not source.files:
        raise Denied(
            "name the compose file with -f: without it compose searches parent directories "
            "(outside the allowed roots) and COMPOSE_FILE from .env",
            rule="compose-no-file",
        )
    if not source.directory:
        source.directory = posixpath.dirname(source.files[0])  # compose's default
    return source


def read_root_flag(ctx: Context, source: ProjectSource, use: FlagUse) -> None:
    """Flags saying where the project comes from are read into `source` (we rebuild
    them); the others are kept, re-spelled, for the render and/or the run."""
    reader = SOURCE_READERS.get(use.flag.long)
    if reader is not None:
        reader(ctx, source, use)
    elif use.flag.long in MODEL_FLAGS:
        source.model_flags.extend(respell(use))
    else:
        source.kept_flags.extend(respell(use))


def read_file(ctx: Context, source: ProjectSource, use: FlagUse) -> None:
    source.files.append(compose_file(ctx, use))


def read_directory(ctx: Context, source: ProjectSource, use: FlagUse) -> None:
    source.directory = ctx.host_path(use.value or "", use.spelled)  # last one wins, as in compose


def read_env_file(ctx: Context, source: ProjectSource, use: FlagUse) -> None:
    source.env_files.append(ctx.host_path(use.value or "", use.spelled))


def read_name(ctx: Context, source: ProjectSource, use: FlagUse) -> None:
    source.name = use.value or ""


# Root flags that say where the project comes from (--workdir is the hidden,
# deprecated spelling of --project-directory).
SOURCE_READERS = {
    "file": read_file,
    "project-directory": read_directory,
    "workdir": read_directory,
    "env-file": read_env_file,
    "project-name": read_name,
}


def compose_file(ctx: Context, use: FlagUse) -> str:
    value = use.value or ""
    if value == "-":
        raise Denied(
            f"{use.spelled} -: compose files from stdin are not allowed "
            "(gatekeeper feeds compose the vetted project on stdin)",
            rule="compose-file",
        )
    if value.startswith(REMOTE_PREFIXES) or "://" in value:
        raise Denied(f"{use.spelled} {value!r}: remote compose files are not allowed", rule="compose-file")
    return ctx.host_path(value, use.spelled)


def respell(use: FlagUse) -> list[str]:
    """One root flag as `--long` or `--long=value`, independent of how it was combined."""
    if use.value is None:
        return [f"--{use.flag.long}"]
    return [f"--{use.flag.long}={use.value}"]


def source_args(source: ProjectSource, stage: Stage) -> list[str]:
    """Root flags for the render: explicit files, directory and env files (in the stage), never .env."""
    args = ["compose"]
    for path in source.files:
        args += ["-f", stage.path(path)]
    args += ["--project-directory", stage.path(source.directory)]
    for path in source.env_files:
        args += ["--env-file", stage.path(path)]
    if not source.env_files:
        args += ["--env-file", NO_ENV_FILE]
    if source.name:
        args += ["-p", source.name]
    return args + source.model_flags


def staged_render(ctx: Context, source: ProjectSource) -> dict[str, Any]:
    """The full render, every file it reads staged (gatekeeper.vetting.compose_render)."""
    from gatekeeper.vetting.compose_render import Stage, stage_model_files, stage_project, unstaged

    stage = Stage(ctx.world.new_stage())
    try:
        stage_project(ctx, source, stage)
        root = source_args(source, stage)
        stage_model_files(ctx, stage, render(ctx, root, ["--no-interpolate"], stage.root))
        return unstaged(stage, render(ctx, root, [], stage.root))
    finally:
        if stage.root:
            ctx.world.drop_stage(stage.root)


def render(ctx: Context, root: list[str], extra: list[str], staged: str = "") -> dict[str, Any]:
    """`docker compose ... config --format json`: the project as compose will run it.
    compose's errors name the project's own paths, not the stage (`staged`) they were read from."""
    import subprocess

    argv = [*root, "config", "--format", "json", *extra]
    try:
        status, out, err = ctx.world.run_docker(ctx.policy, argv, None, RENDER_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise Denied("compose took too long to render the project", rule="compose-render") from None
    if status != 0:
        shown = err.replace(staged.encode(), b"") if staged else err
        raise Denied(f"compose could not render the project: {first_error(shown)}", rule="compose-render")
    return parse_model(out)


def parse_model(out: bytes) -> dict[str, Any]:
    import json

    try:
        model = json.loads(out)
    except ValueError:
        raise Denied("compose rendered something that is not JSON", rule="compose-render") from None
    if not isinstance(model, dict):
        raise Denied("compose rendered something that is not a project", rule="compose-render")
    return model


def pin_project(ctx: Context, source: ProjectSource, model: dict[str, Any]) -> None:
    """Run on the vetted JSON: `-f -` with its name and directory, no env file.
    The model stays data for the ownership vetters (they label it); it is
    serialised once, for docker's stdin (gatekeeper.vetting.context.Vetted.stdin)."""
    name = model.get("name")
    if not isinstance(name, str) or not name:
        raise Denied("compose rendered a project without a name", rule="compose-render")
    words = [
        "compose",
        "-f",
        "-",
        "-p",
        name,
        "--project-directory",
        source.directory,
        "--env-file",
        NO_ENV_FILE,
        *source.model_flags,
        *source.kept_flags,
    ]
    first = ctx.located.plugin_flags.offset - 1  # type: ignore[union-attr]  # the word 'compose'
    count = ctx.located.args_start - 1 - first  # 'compose' and its root flags, not the subcommand
    ctx.vetted.plan.replace(first, count, words)  # supersedes the root flags' own rewrites
    ctx.vetted.compose_model = model


def model_volume_names(model: dict[str, Any]) -> list[str]:
    """Engine names of the project's top-level volumes (compose resolved `name`)."""
    volumes = model.get("volumes")
    if not isinstance(volumes, dict):
        return []
    return [v["name"] for v in volumes.values() if isinstance(v, dict) and isinstance(v.get("name"), str)]
