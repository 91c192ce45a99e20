"""Image references as docker reads them, and the patterns of [images] allowed and shared.

References are normalised as docker's reference.ParseNormalizedNamed does (`nginx` is
docker.io/library/nginx, `index.docker.io` is docker.io), tag and digest dropped, then
matched against patterns component by component: `*` and `?` never cross a '/', and a
last component `**` matches one or more. Pure; imports nothing of gatekeeper's.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ipaddress import IPv4Address, IPv6Address

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
    if slash and is_registry(first):
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


def is_registry(first: str) -> bool:
    """The first component of a reference names a registry, as docker's splitDockerDomain reads it."""
    return "." in first or ":" in first or first == "localhost"


def host_local_domain(reference: str) -> str:
    """The registry domain of `reference` when it names this host itself ("" otherwise):
    localhost, loopback, unspecified or link-local addresses (the cloud metadata service),
    IPv4-mapped forms of them, and addresses written as bare numbers, which resolvers read
    as IPv4 ("127.1", "2130706433", "0x7f.1"). The engine pulls in the host's network
    namespace, where a loopback-only service answers it."""
    first = registry_domain(reference)
    host = registry_name(reference)
    if not host:
        return ""  # docker.io/...: the first component is a path, not a registry
    if host == "localhost" or host.endswith(".localhost"):
        return first
    if not all(c in "0123456789abcdefx.:" for c in host):
        return ""  # a name (resolved by the engine; [images] allowed closes that route)
    import ipaddress

    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        # Numbers a resolver reads as IPv4 ("127.1", "2130706433", "0x7f.1"): refused whatever
        # address they spell, as resolvers differ in how they read them.
        return first if all(is_number(part) for part in host.split(".")) else ""
    return first if is_host_local(address) else ""


def is_host_local(address: IPv4Address | IPv6Address) -> bool:
    """An address of this host itself: loopback, unspecified or link-local (the cloud metadata
    service), IPv4-mapped forms too."""
    mapped = getattr(address, "ipv4_mapped", None) or address
    return mapped.is_loopback or mapped.is_unspecified or mapped.is_link_local


def registry_domain(reference: str) -> str:
    """The first component of `reference` as written when it names a registry (`host[:port]`),
    "" when it names none (docker.io's images: the first component is a path)."""
    first, slash, _ = reference.split("@", 1)[0].partition("/")
    return first if slash and is_registry(first) else ""


def registry_name(reference: str) -> str:
    """The registry host of `reference`, lower case, without port or brackets ("" when the
    reference names none)."""
    host = registry_domain(reference).lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.partition(":")[0] if host.count(":") == 1 else host


def resolves_here(reference: str, addresses: list[str]) -> str:
    """The registry domain of `reference` when one of the `addresses` its name resolves to is
    this host itself ("" otherwise; an address that does not parse counts as this host's)."""
    import ipaddress

    for text in addresses:
        try:
            address = ipaddress.ip_address(text.partition("%")[0])  # an IPv6 zone index dropped
        except ValueError:
            return registry_domain(reference)
        if is_host_local(address):
            return registry_domain(reference)
    return ""


def is_number(part: str) -> bool:
    digits = part[2:] if part.startswith("0x") else part
    allowed = "0123456789abcdef" if part.startswith("0x") else "0123456789"
    return bool(digits) and all(c in allowed for c in digits)


def matches(name: str, pattern: str) -> bool:
    """Component-wise glob; a last '**' matches one or more components."""
    from fnmatch import fnmatchcase

    parts, wanted = name.split("/"), pattern.split("/")
    if wanted[-1] == "**":
        head = wanted[:-1]
        return len(parts) > len(head) and all(fnmatchcase(p, w) for p, w in zip(parts, head, strict=False))
    return len(parts) == len(wanted) and all(fnmatchcase(p, w) for p, w in zip(parts, wanted, strict=True))
