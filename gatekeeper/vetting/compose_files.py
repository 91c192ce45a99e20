"""Files compose reads on its own while rendering: `include` and `extends` references.

The rendered model no longer says which files compose opened, so before
rendering we read the agent's compose files ourselves, follow every file they
pull in (recursively) and require each to pass the host-path rule. Otherwise a
benign compose file under the allowed roots could `extends:` or `include:` a
file anywhere on the host and carry its values into a container.

Each file is read once, without following symlinks (gatekeeper.pinning), and
those bytes are what compose renders (gatekeeper.vetting.compose_render stages
them): a container swapping a referenced file, or a directory above it, for a
link after the check changes nothing. So the walk returns, for every file,
the path compose opens (as compose computes it: joined lexically, never
resolved) and the bytes read from its resolved path. The bases are compose's:
an include's paths, env_file and project_directory are relative to the
including project's working directory (the project directory for the files
named with -f), an extends file to the directory of the file naming it; an
included project works in its project_directory, or the directory of its first
file, and compose reads that directory's `.env` when the include names no
env_file. An absolute reference, or one climbing above `/`, is refused:
compose would open it by its own name, past the staged copy.

A byte screen keeps this cheap and sound. The file must be UTF-8 (go-yaml
also reads UTF-16 with a BOM, where no ASCII word appears): anything else is
refused. In UTF-8, a YAML key that means `include` or `extends` contains that
word literally, unless it is written with an escape (a backslash in a
double-quoted key) or a tag (`!!binary aW5jbHVkZQ==`). Files with none of
these bytes cannot reference another file and are not parsed. The rest is
parsed with PyYAML's safe loader, and every mapping key must be a plain
string; a file it cannot parse is refused (compose's go-yaml could read it
differently).
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterator

from gatekeeper.errors import Denied

TYPE_CHECKING = False  # typing costs an import on the ForceCommand path
if TYPE_CHECKING:
    from typing import Any

MAX_FILE_BYTES = 1 << 20
# What a file may grow to once YAML aliases are expanded (scalar bytes plus one per
# node): compose expands every alias while loading, so an 11 KB file of aliases
# to aliases becomes 100 MB in compose (and in its rendered JSON) before we see it.
MAX_EXPANDED = 4 << 20
MAX_FILES = 32
REMOTE_MARKERS = ("://", "git@")
REFERENCE_WORDS = (b"include", b"extends", b"\\", b"!")

HostPath = Callable[[str, str], str]
# The bytes of a resolved host file, read without following links; None when it does not exist.
Read = Callable[[str], "bytes | None"]

# What compose does with a referenced path: load it, read variables, or work in it (a project
# directory compose must find, or it silently works elsewhere; staged as "path/").
COMPOSE, ENV, DIRECTORY = "compose", "env", "directory"
# (what, path compose opens, the working directory of the project it belongs to, kind)
Reference = tuple[str, str, str, str]


def render_files(files: list[str], project_dir: str, read: Read, host_path: HostPath) -> dict[str, bytes]:
    """Every file compose opens while rendering `files` (resolved -f paths) in `project_dir`:
    the path compose opens -> the bytes read once from its resolved path. A file that does not
    exist is left out (compose then fails, or skips an include's optional .env, as it would)."""
    out: dict[str, bytes] = {}
    seen: set[tuple[str, str]] = set()
    pending: list[Reference] = [("compose file", path, project_dir, COMPOSE) for path in files]
    pending.append(("compose project directory", project_dir, project_dir, DIRECTORY))
    while pending:
        what, path, workdir, kind = pending.pop()
        if (path, workdir) in seen:
            continue
        seen.add((path, workdir))
        if len(seen) > MAX_FILES:
            raise Denied(f"compose project references more than {MAX_FILES} files", rule="compose-file")
        if kind == DIRECTORY:  # nothing is read there: what compose finds in it was checked
            out[path + "/"] = b""
            continue
        data = out.get(path)
        if data is None:
            data = read(host_path(path, what))
            if data is None:
                continue
            if len(data) > MAX_FILE_BYTES:
                raise Denied(f"{what} {path!r} is larger than 1 MiB", rule="compose-file")
            out[path] = data
        if kind == COMPOSE:
            pending.extend(checked_references(path, workdir, data, host_path))
    return out


def checked_references(path: str, workdir: str, data: bytes, host_path: HostPath) -> list[Reference]:
    try:
        return referenced_files(path, workdir, data)
    except AbsoluteReference as absolute:
        host_path(absolute.reference, absolute.what)  # outside the roots: the path rule's denial
        raise


def referenced_files(path: str, workdir: str, data: bytes) -> list[Reference]:
    """The files one compose file makes compose open (not yet checked against the path rule)."""
    if len(data) > MAX_FILE_BYTES:
        raise Denied(f"compose file {path!r} is larger than 1 MiB", rule="compose-file")
    require_utf8(path, data)
    if b"*" in data:  # an alias: bounded before compose expands it
        check_alias_expansion(path, data)
    if not any(word in data for word in REFERENCE_WORDS):
        return []
    return [ref for document in parse_documents(path, data) for ref in references(path, workdir, document)]


def require_utf8(path: str, data: bytes) -> None:
    """UTF-16/32 (with a BOM) would hide every word from the screen; NUL never belongs in YAML."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raise Denied(f"compose file {path!r} is not UTF-8", rule="compose-file") from None
    if b"\x00" in data:
        raise Denied(f"compose file {path!r} contains NUL bytes", rule="compose-file")


def check_alias_expansion(path: str, data: bytes) -> None:
    """Walk the YAML event stream (nothing is built) and add up what every node
    expands to, an alias counting as its anchor's full size; refuse past MAX_EXPANDED."""
    import yaml

    try:
        total = expanded_size(yaml.parse(data.decode("utf-8"), Loader=yaml.SafeLoader))
    except (yaml.YAMLError, RecursionError):
        raise Denied(f"compose file {path!r} could not be read as YAML to bound its aliases",
                     rule="compose-file") from None
    except OverflowError:
        total = MAX_EXPANDED + 1
    if total > MAX_EXPANDED:
        raise Denied(f"compose file {path!r} expands to more than {MAX_EXPANDED >> 20} MiB through YAML "
                     "aliases (an alias bomb makes compose exhaust memory); write the values out",
                     rule="compose-yaml-aliases")


def expanded_size(events: Iterator[object]) -> int:
    """Scalar bytes plus one per node, aliases expanded, stopping as soon as it is over the bound."""
    import yaml

    anchors: dict[str, int] = {}
    stack: list[list[Any]] = [[None, 0]]  # [anchor, size so far] per open collection
    for event in events:
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            stack.append([event.anchor, 1])
            continue
        if isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            anchor, size = stack.pop()
        elif isinstance(event, yaml.ScalarEvent):
            anchor, size = event.anchor, 1 + len(event.value)
        elif isinstance(event, yaml.AliasEvent):
            if event.anchor not in anchors:  # undefined, or an alias inside its own anchor
                raise yaml.YAMLError(f"unknown alias {event.anchor!r}")
            anchor, size = None, anchors[event.anchor]
        else:
            continue
        if anchor is not None:
            anchors[anchor] = size
        stack[-1][1] += size
        if stack[-1][1] > MAX_EXPANDED:
            raise OverflowError
    return sum(size for _, size in stack)


def parse_documents(path: str, data: bytes) -> list[object]:
    import yaml

    try:
        documents = list(yaml.safe_load_all(data.decode("utf-8")))
    except (UnicodeDecodeError, yaml.YAMLError, RecursionError):
        raise Denied(f"compose file {path!r} could not be read as YAML to check its "
                     "include/extends references", rule="compose-file") from None
    for document in documents:
        require_string_keys(path, document, 0)
    return documents


def require_string_keys(path: str, node: object, depth: int) -> None:
    """A key that is not a plain string (`!!binary`, a number, a list) could be what
    go-yaml calls `include`; compose files never need one."""
    if depth > 64:
        raise Denied(f"compose file {path!r} is nested too deeply", rule="compose-file")
    children: list[object] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if not isinstance(key, str):
                raise Denied(f"compose file {path!r}: key {key!r} is not a plain string "
                             "(YAML tags and binary keys are not accepted)", rule="compose-file")
            children.append(value)
    elif isinstance(node, list):
        children = node
    for child in children:
        require_string_keys(path, child, depth + 1)


def references(path: str, workdir: str, document: object) -> Iterator[Reference]:
    """Every include entry's files and every service's extends file, with compose's bases."""
    if not isinstance(document, dict):
        return
    include = document.get("include")
    if include is not None and not isinstance(include, list):
        raise Denied("compose 'include' must be a list", rule="compose-file")
    for entry in include or []:
        yield from include_references(path, workdir, entry if isinstance(entry, dict) else {"path": entry})
    services = document.get("services")
    if isinstance(services, dict):
        for name, service in services.items():
            if isinstance(service, dict) and isinstance(service.get("extends"), dict):
                what = f"compose file {path!r}: service {name!r} extends.file"
                reference = service["extends"].get("file")
                if reference is not None:
                    child = joined(what, posixpath.dirname(path), reference)
                    yield what, child, posixpath.dirname(child), COMPOSE


def include_references(path: str, workdir: str, entry: dict[str, Any]) -> Iterator[Reference]:
    """An included project: its files, then its env files (or its directory's .env)."""
    where = f"compose file {path!r}: include"
    paths = listed(entry.get("path"))
    if not paths:
        raise Denied(f"{where} needs a path", rule="compose-file")
    children = [joined(f"{where} path", workdir, reference) for reference in paths]
    directory = entry.get("project_directory")
    project = (joined(f"{where} project_directory", workdir, directory) if directory is not None
               else posixpath.dirname(children[0]))
    yield f"{where} project_directory", project, project, DIRECTORY
    for child in children:
        yield f"{where} path", child, project, COMPOSE
    env_files = listed(entry.get("env_file"))
    for env_file in env_files:
        yield f"{where} env_file", joined(f"{where} env_file", workdir, env_file), project, ENV
    if not env_files:  # compose reads the included project's own .env, if there is one
        yield f"{where} .env", posixpath.join(project, ".env"), project, ENV


def listed(value: object) -> list[object]:
    return value if isinstance(value, list) else [] if value is None else [value]


def joined(what: str, base: str, reference: object) -> str:
    """`reference` relative to `base` as compose joins it (lexically). Absolute references
    are refused: compose would open them by their own name, not the checked copy."""
    if not isinstance(reference, str) or not reference:
        raise Denied(f"{what} must be a path", rule="compose-file")
    if any(marker in reference for marker in REMOTE_MARKERS):
        raise Denied(f"{what} {reference!r} is remote", rule="compose-file")
    if "$" in reference or reference.startswith("~"):
        raise Denied(f"{what} {reference!r} uses interpolation or ~", rule="compose-file")
    if reference.startswith("/"):
        raise AbsoluteReference(what, reference)
    parts = base.strip("/").split("/") if base.strip("/") else []
    for part in reference.split("/"):
        if part == "..":
            if not parts:  # compose's staged copy would climb out of the staging directory
                raise Denied(f"{what} {reference!r} climbs above /", rule="compose-file")
            parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return "/" + "/".join(parts)


class AbsoluteReference(Denied):
    """Raised with the path so the caller can apply the host-path rule first (its denial
    names a path outside the roots), then refuse the absolute spelling itself."""

    def __init__(self, what: str, reference: str) -> None:
        super().__init__(f"{what} {reference!r} is an absolute path: compose would read it again "
                         "after the check; write it relative to the compose file", rule="compose-render-file")
        self.what = what
        self.reference = reference
