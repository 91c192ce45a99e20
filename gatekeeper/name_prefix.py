"""[names] prefix: every name the agent gives to something it creates starts with the policy's prefix.

Docker's namespaces are global and first come, first served: a volume, network, image
tag, container name or compose project the agent names *before* the operator uses that
name is the operator's object from then on, without a word (docker takes an existing
volume or network of the name, runs the agent's image as `postgres:16`, compose adopts
the containers of its project). Ownership checks cannot see it: nothing of the operator's
exists yet when the agent's command is decided. So the agent names only inside its own
part of each namespace, `ai-` by default; `prefix = ""` switches the rule off (and
`gatekeeper policy check` and `doctor` warn).

Pure functions of the prefix and a name, used by both layers (gatekeeper.vetting.names
for the CLI, gatekeeper.proxy for the API). Names the agent does not give (the engine's
generated container names, pulled image names) are not checked here.
"""

from __future__ import annotations

from gatekeeper.errors import Denied

RULE = "name-prefix"
DEFAULT_PREFIX = "ai-"

# What docker calls each kind of name, in the refusal.
CONTAINER, VOLUME, NETWORK, IMAGE, PROJECT = "container", "volume", "network", "image", "compose project"
KINDS = (CONTAINER, VOLUME, NETWORK, IMAGE, PROJECT)

# A prefix must be a valid start of every kind of name (image repositories and compose
# projects: lower case only), so the refusal's suggested spelling is one docker takes.
PREFIX_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_.-")


def is_prefix(value: object) -> bool:
    """`[names] prefix`: "" (off) or lower-case letters, digits, `_ . -`, starting with a letter
    or digit, at most 64; never under `gatekeeper` (the gatekeeper's own record names)."""
    if not isinstance(value, str):
        return False
    if value == "":
        return True
    return (len(value) <= 64 and value[0].isalnum() and set(value) <= PREFIX_CHARACTERS
            and not value.startswith("gatekeeper"))


HEX = frozenset("0123456789abcdef")


def compared(kind: str, name: str) -> str:
    """The name as the namespace holds it: a container name without docker's leading `/`,
    an image reference without the `docker.io/` and `library/` docker adds when parsing it.
    compose recreates a service's container under `<12 hex of the old ID>_<name>` first and
    renames it afterwards: the name after that stand-in is the one compared."""
    if kind == CONTAINER:
        name = name.removeprefix("/")
        stand_in, underscore, rest = name[:12], name[12:13], name[13:]
        return rest if underscore == "_" and set(stand_in) <= HEX and len(stand_in) == 12 else name
    if kind == IMAGE:
        for registry in ("docker.io/", "index.docker.io/"):
            if name.startswith(registry):
                name = name[len(registry):]
                break
        return name.removeprefix("library/")
    return name


def prefixed(prefix: str, kind: str, name: str) -> bool:
    """Whether `name` (of `kind`) lies in the agent's part of the namespace."""
    return compared(kind, name).startswith(prefix)


def suggestion(prefix: str, kind: str, name: str) -> str:
    """The spelling to use instead: the prefix in front of the name as the namespace holds it."""
    return prefix + compared(kind, name)


def refusal(prefix: str, kind: str, name: str, what: str) -> str | None:
    """The one-line refusal for `name`, or None when it is fine (prefix off, or prefixed)."""
    if not prefix or prefixed(prefix, kind, name):
        return None
    return (f"{what}: {kind} name {name!r} does not start with {prefix!r} ([names] prefix): a name "
            "taken before the operator uses it makes the operator's later work land in your object; "
            f"use {suggestion(prefix, kind, name)!r}")


# Kinds the engine also finds by an ID prefix: a name (image: a tag) wins over the prefix.
ID_KINDS = (CONTAINER, NETWORK, IMAGE)
ID_RULE = "name-like-id"
MIN_ID_WORD = 3  # `docker stop db` means a name; 3 hex digits and more are typed as ID prefixes


def looks_like_id(kind: str, name: str) -> bool:
    """Whether `name` is hex digits only, as an ID prefix is (an image: its repository, tag dropped)."""
    word = compared(kind, name)
    if kind == IMAGE and "/" not in word:
        word = word.partition(":")[0].partition("@")[0]
    return kind in ID_KINDS and len(word) >= MIN_ID_WORD and set(word) <= HEX


def check_name(prefix: str, kind: str, name: str, what: str) -> None:
    """Raise Denied (rule name-prefix) unless `name` is one the agent may give; a name docker could
    read as an ID prefix is refused whatever the prefix, also without one (rule name-like-id)."""
    if looks_like_id(kind, name):
        # Stops: the engine resolving a name before an ID prefix: the agent's container named after
        # the operator's short ID (from `docker ps`) takes the operator's `docker exec/cp/stop <ID>`,
        # a tag of the short image ID what the operator's `docker run <ID>` runs.
        raise Denied(f"{what}: {kind} name {name!r} is made of hex digits only: docker resolves it before "
                     f"the ID prefix of another {kind}, so the operator's commands by short ID would reach "
                     f"yours; use a name with another letter, e.g. {('ai-' + compared(kind, name))!r}",
                     rule=ID_RULE)
    message = refusal(prefix, kind, name, what)
    if message is not None:
        # Stops: the operator's later volume/network/tag/project/container of that name being the agent's.
        raise Denied(message, rule=RULE)
