"""Files compose reads on its own: `include` and `extends` references.

The rendered model no longer says which files compose opened, so before
rendering we read the agent's compose files ourselves and require every file
they pull in (recursively) to pass the host-path rule. Otherwise a benign
compose file under the allowed roots could `extends:` or `include:` a file
anywhere on the host and carry its values into a container.

A byte screen keeps this cheap and sound: a YAML key spelled `include` or
`extends` must contain that word literally, unless it is written with escapes
(a backslash in a double-quoted key). Files with neither word nor backslash
cannot reference another file and are not parsed. The rest is parsed with
PyYAML's safe loader; a file it cannot parse is refused (compose's go-yaml
could read it differently).
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterator

from gatekeeper.errors import Denied

MAX_FILE_BYTES = 1 << 20
MAX_FILES = 32
REMOTE_MARKERS = ("://", "git@")
REFERENCE_WORDS = (b"include", b"extends", b"\\")

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
    if not any(word in data for word in REFERENCE_WORDS):
        return []
    out = []
    for document in parse_documents(path, data):
        for what, reference in references(document):
            out.append(resolve_reference(path, project_dir, what, reference, host_path))
    return [p for p in out if p]


def parse_documents(path: str, data: bytes) -> list[object]:
    import yaml

    try:
        text = data.decode("utf-8")
        return list(yaml.safe_load_all(text))
    except (UnicodeDecodeError, yaml.YAMLError):
        raise Denied(f"compose file {path!r} could not be read as YAML to check its "
                     "include/extends references", rule="compose-file") from None


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
