"""Image references as docker reads them, and the patterns of [images] allowed and shared.

References are normalised as docker's reference.ParseNormalizedNamed does (`nginx` is
docker.io/library/nginx, `index.docker.io` is docker.io), tag and digest dropped, then
matched against patterns component by component: `*` and `?` never cross a '/', and a
last component `**` matches one or more. Pure; imports nothing of gatekeeper's.
"""

from __future__ import annotations

DOCKER_HUB = "docker.io"
HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})


def repository(reference: str) -> str:
    """DOMAIN/PATH of an image reference, tag and digest dropped; ValueError if malformed."""
    name = reference.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name = name[: len(name) - len(last)] + last.split(":", 1)[0]
    if not name or name != name.strip() or any(c in name for c in " \t$\"'\\"):
        raise ValueError(f"{reference!r} is not an image reference")
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        domain, path = first, rest
    else:
        domain, path = DOCKER_HUB, name
    if domain in HUB_ALIASES:
        domain = DOCKER_HUB
        if "/" not in path:
            path = "library/" + path
    if not path or path != path.lower() or any(part == "" for part in path.split("/")):
        raise ValueError(f"{reference!r} is not an image reference (repository names are lower case)")
    return f"{domain}/{path}"


def matches(name: str, pattern: str) -> bool:
    """Component-wise glob; a last '**' matches one or more components."""
    from fnmatch import fnmatchcase

    parts, wanted = name.split("/"), pattern.split("/")
    if wanted[-1] == "**":
        head = wanted[:-1]
        return len(parts) > len(head) and all(fnmatchcase(p, w) for p, w in zip(parts, head, strict=False))
    return len(parts) == len(wanted) and all(fnmatchcase(p, w) for p, w in zip(parts, wanted, strict=True))
