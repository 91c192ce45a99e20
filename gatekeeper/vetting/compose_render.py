"""Files compose reads while it renders a project, handed to it as the bytes gatekeeper checked.

Rendering (`docker compose config`, as the agent's account) opens more than the compose
files: `include` and `extends` files, an include's env_file or its directory's `.env`, the
`--env-file` files, and every service's `env_file` and `label_file` (inlined into its
environment and labels). gatekeeper checked those paths (the host-path rule), then compose
opened them again, twice or more. A container of the agent's bound at or above such a file
could swap it, or a directory above it, for a link to a file the account can read outside the
area in between: that file's contents landed in a container's environment or labels (a read
outside the area), or a file changed after it was checked.

The renders now read a stage: a fresh private directory (in gatekeeper's state directory,
which no container reaches: the path rule keeps binds out of the root's top-level dot
entries) holding, at root + path, every file a render opens, as the bytes read once without
following a symlink (gatekeeper.pinning.read_without_symlinks) from the resolved path that
passed the rule. compose gets `-f`, `--project-directory` and `--env-file` inside the stage,
so each relative reference it joins lands on a staged copy: the paths keep their shape, so
relative paths in included and extended files resolve as they would have, against the
staged copies of their own directories. An absolute reference (or one climbing above `/`)
would reach past the stage and is refused (gatekeeper.vetting.compose_files,
stage_model_files); a file missing from the stage is missing for compose too (it fails,
or skips an optional file, as it would have).

1. stage_project: the -f files, their include/extends closure with each include's env
   files (compose_files.render_files) and the `--env-file` files.
2. The raw render (`--no-interpolate`) reads only those; it lists the env_file and
   label_file paths, which stage_model_files checks, reads and stages.
3. The full render reads all of them from the stage and inlines the env and label files.
4. unstaged maps every path compose printed (bind sources, build contexts, ...) back to
   the path it stands for; the stage is removed.

The model the final run is fed on stdin names no file compose reads while loading it:
env_file and label_file are inlined and include/extends merged (compose_project refuses
them if left). Nothing changed between two renders can matter either: both read the same
staged bytes (the probe render that compared them is gone).
"""

from __future__ import annotations

from gatekeeper.errors import Denied

TYPE_CHECKING = False  # typing costs an import on the ForceCommand path
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from gatekeeper.vetting.compose import ProjectSource
    from gatekeeper.vetting.context import Context

MAX_MODEL_FILES = 128  # env and label files one project may stage
MAX_STAGED_BYTES = 16 << 20  # all of one render's files: the stage is written to the state directory's disk


class Stage:
    """One render's private directory: path compose opens -> root + path."""

    __slots__ = ("root", "files")

    def __init__(self, root: str) -> None:
        self.root = root  # "" in a world that stages nothing: the paths are their own
        self.files: dict[str, bytes] = {}

    def path(self, original: str) -> str:
        return self.root + original

    def original(self, path: str) -> str | None:
        """The path a staged path stands for; None for a path outside the stage."""
        if not self.root:
            return path
        return path[len(self.root):] if path.startswith(self.root + "/") else None


def stage_project(ctx: Context, source: ProjectSource, stage: Stage) -> None:
    """Stage the compose files, what they include or extend, and the --env-file files."""
    from gatekeeper.vetting.compose_files import render_files

    read = optional_reader(ctx)
    files = render_files(source.files, source.directory, read, ctx.host_path)
    for path in source.env_files:  # resolved by the path rule (compose.read_env_file)
        data = read(path)
        if data is not None:
            files.setdefault(path, data)
    add_files(ctx, stage, files)


def stage_model_files(ctx: Context, stage: Stage, raw: dict[str, Any]) -> None:
    """The raw render's env_file and label_file paths, checked and staged before the
    full render inlines them. A path compose did not join inside the stage was written
    absolute (or climbed out of it): the full render would open it by its own name."""
    from gatekeeper.vetting.compose_project import file_references

    read = optional_reader(ctx)
    files: dict[str, bytes] = {}
    for where, path in file_references(raw):
        original = stage.original(path)
        if original is None:
            ctx.host_path(path, where)  # outside the roots: the path rule's denial
            raise Denied(f"{where}: {path!r} is an absolute path: compose would read it again after "
                         "the check; write it relative to the compose file", rule="compose-render-file")
        data = read(ctx.host_path(original, where))
        if data is not None:
            files[original] = data
    if len(files) > MAX_MODEL_FILES:
        raise Denied(f"compose project reads more than {MAX_MODEL_FILES} env and label files",
                     rule="compose-file")
    add_files(ctx, stage, files)


def add_files(ctx: Context, stage: Stage, files: dict[str, bytes]) -> None:
    new = {path: data for path, data in files.items() if path not in stage.files}
    total = sum(len(data) for data in (*stage.files.values(), *new.values()))
    if total > MAX_STAGED_BYTES:
        raise Denied(f"compose project's files add up to more than {MAX_STAGED_BYTES >> 20} MiB",
                     rule="compose-file")
    ctx.world.stage_files(stage.root, new)
    stage.files.update(new)


def optional_reader(ctx: Context) -> Callable[[str], bytes | None]:
    """Read a resolved host file once without following links; None when it does not exist."""
    from gatekeeper.pinning import PIN_LIMIT, MissingFile

    def read(resolved: str) -> bytes | None:
        try:
            data = ctx.world.read_pinned(resolved, PIN_LIMIT)
        except MissingFile:
            return None
        if len(data) > PIN_LIMIT:
            raise Denied(f"{resolved!r} is larger than 1 MiB", rule="compose-file")
        return data

    return read


def unstaged(stage: Stage, model: dict[str, Any]) -> dict[str, Any]:
    """The rendered model with every staged path mapped back to the path it stands for.
    The stage's name is random: if it is still in the model, compose put it somewhere
    this does not know (fail closed rather than run a path that vanishes)."""
    if not stage.root:
        return model
    import json

    out: dict[str, Any] = map_strings(model, stage)

    if stage.root in json.dumps(out):
        raise Denied("compose rendered a path into gatekeeper's staging directory",
                     rule="compose-render")
    return out


def map_strings(value: object, stage: Stage) -> Any:
    if isinstance(value, str):
        original = stage.original(value)
        return value if original is None else original
    if isinstance(value, list):
        return [map_strings(item, stage) for item in value]
    if isinstance(value, dict):
        return {key: map_strings(item, stage) for key, item in value.items()}
    return value
