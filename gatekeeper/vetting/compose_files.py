"""Files compose reads on its own: `include` and `extends` references.

The rendered model no longer says which files compose opened, so before
rendering we read the agent's compose files ourselves and require every file
they pull in (recursively) to pass the host-path rule. Otherwise a benign
compose file under the allowed roots could `extends:` or `include:` a file
anywhere on the host and carry its values into a container.

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


def check_referenced_files(files: list[str], project_dir: str, read: Callable[[str], bytes],
                           host_path: HostPath) -> None:
    """Walk include/extends from each compose file; every referenced file passes the path rule."""
    seen: set[str] = set()
    pending = list(files)
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        if len(seen) > MAX_FILES:
            raise Denied(f"compose project references more than {MAX_FILES} files", rule="compose-file")
        pending.extend(referenced_files(path, project_dir, read(path), host_path))


def referenced_files(path: str, project_dir: str, data: bytes, host_path: HostPath) -> list[str]:
    if len(data) > MAX_FILE_BYTES:
        raise Denied(f"compose file {path!r} is larger than 1 MiB", rule="compose-file")
    require_utf8(path, data)
    if b"*" in data:  # an alias: bounded before compose expands it
        check_alias_expansion(path, data)
    if not any(word in data for word in REFERENCE_WORDS):
        return []
    out = []
    for document in parse_documents(path, data):
        for what, reference in references(document):
            out.append(resolve_reference(path, project_dir, what, reference, host_path))
    return [p for p in out if p]


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


def references(document: object) -> Iterator[tuple[str, object]]:
    """(what, reference) for every include entry and service extends file."""
    if not isinstance(document, dict):
        return
    yield from include_references(document.get("include"))
    services = document.get("services")
    if isinstance(services, dict):
        for name, service in services.items():
            if isinstance(service, dict) and isinstance(service.get("extends"), dict):
                yield f"service {name!r} extends.file", service["extends"].get("file")


def include_references(include: object) -> Iterator[tuple[str, object]]:
    if include is None:
        return
    if not isinstance(include, list):
        raise Denied("compose 'include' must be a list", rule="compose-file")
    for entry in include:
        if isinstance(entry, dict):
            paths = entry.get("path")
            for path in paths if isinstance(paths, list) else [paths]:
                yield "include path", path
            env_files = entry.get("env_file")
            for env_file in env_files if isinstance(env_files, list) else [env_files]:
                yield "include env_file", env_file
            yield "include project_directory", entry.get("project_directory")
        else:
            yield "include", entry


def resolve_reference(path: str, project_dir: str, what: str, reference: object,
                      host_path: HostPath) -> str:
    """Check a reference against the path rule, relative to the file and to the project."""
    if reference is None:
        return ""
    if not isinstance(reference, str) or not reference:
        raise Denied(f"compose file {path!r}: {what} must be a path", rule="compose-file")
    if any(marker in reference for marker in REMOTE_MARKERS):
        raise Denied(f"compose file {path!r}: {what} {reference!r} is remote", rule="compose-file")
    if "$" in reference or reference.startswith("~"):
        raise Denied(f"compose file {path!r}: {what} {reference!r} uses interpolation or ~",
                     rule="compose-file")
    label = f"compose file {path!r}: {what}"
    host_path(posixpath.join(project_dir, reference), label)
    resolved = host_path(posixpath.join(posixpath.dirname(path), reference), label)
    return resolved if what in ("include", "include path") or what.endswith("extends.file") else ""
