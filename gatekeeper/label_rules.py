"""The label rules of the ownership rails, as pure functions: which labels mark
an object as the agent's, which the agent may not write, what [shared] and
[protect] allow. Each one reads only the policy (from the vetting context); none
asks the engine or the file system (gatekeeper.engine_objects asks, and
gatekeeper.vetting.ownership says which words of a command name which objects).

* What the agent creates is labelled `gatekeeper.owner=<profile>`; a container's
  create also sets `gatekeeper.created=<profile>` (gatekeeper.owner.proven_labels).
  Labels under `gatekeeper.` are ours alone, so the agent can neither forge nor
  override one; [labels] refused names others that software acts on.
* [shared]: objects of the shared namespaces the agent may use without owning them.
* [protect]: names, globs and labels nothing may stop, remove or prune.
"""

from __future__ import annotations

from gatekeeper.engine_objects import CONTAINER, IMAGE, NETWORK, VOLUME
from gatekeeper.errors import Denied
from gatekeeper.owner import CREATED_LABEL, OWNER_LABEL, RESERVED_PREFIX

TYPE_CHECKING = False  # typing costs an import on the ForceCommand path
if TYPE_CHECKING:
    from gatekeeper.engine_objects import Target
    from gatekeeper.vetting.context import Context

PROTECT_KEYS = {CONTAINER: "containers", IMAGE: "images", VOLUME: "volumes", NETWORK: "networks"}
# A container would inherit labels of an image nobody checked (not on the engine, or pulled anew).
INHERITED_RULE = "image-labels-unchecked"
SHARED_RULES = {
    VOLUME: "foreign-volume", NETWORK: "foreign-network", IMAGE: "foreign-tag", CONTAINER: "foreign-link",
}


# ---------------------------------------------------------------- the owner label


def owner_of(ctx: Context) -> str:
    return ctx.policy.profile


def owner_filter(ctx: Context) -> str:
    return f"label={OWNER_LABEL}={owner_of(ctx)}"


def owned_labels(owner: str, kind: str) -> list[str]:
    """The `key=value` label filters that select one profile's objects of `kind` in a listing
    or prune (docker ANDs them; both layers). Containers also need CREATED_LABEL: the
    operator's container of an image the agent built inherits the owner label, never
    gatekeeper.created (an image that carries gatekeeper.created itself still passes a
    filter: only resolving the container with its image can tell)."""
    labels = [f"{OWNER_LABEL}={owner}"]
    return [*labels, f"{CREATED_LABEL}={owner}"] if kind == CONTAINER else labels


# Event types that are never a container's (docker's events.Type values).
NOT_CONTAINER_EVENTS = frozenset({"image", "volume", "network", "daemon", "plugin", "service", "node",
                                  "secret", "config", "builder"})


def events_kind(types: list[str]) -> str:
    """The kind whose owner labels keep `docker events` to the caller's own, for the values of
    its `type` filter (both layers). Events that may be a container's are owned as containers
    are (the created label too): a container's events carry its labels, its image's included,
    so the owner label alone let the operator's container of an image the agent built send its
    events, labels and the operator's exec command lines (exec_create: ...). Only types naming
    other kinds alone (the agent's image builds and tags) keep the owner label alone."""
    if types and all(kind in NOT_CONTAINER_EVENTS for kind in types):
        return ""
    # Stops: the operator's container of the agent's image reporting its exec command lines.
    return CONTAINER


# An image's events carry its labels (the engine copies them into the event's attributes) and an
# image built FROM the agent's inherits its owner label: owned image events are kept to the IDs
# the agent's build records name (docker ANDs filter keys, ORs the values of one key).
NO_IMAGE = "sha256:" + "0" * 64  # names no image: the filter when no build record names one


def image_event_ids(types: list[str], asked: list[str], built: set[str]) -> list[str]:
    """The `image=` filter values to add to owned events of `types` (none of them a
    container's) when the caller asked for the images `asked`: [] when no image events are
    asked for, or when each image asked for is one the records name (such a filter narrows to
    them already: the CLI layer's, seen by the proxy); else the recorded IDs (NO_IMAGE: none).
    An image filter naming another image would be ORed with ours, other types with image
    events ANDed with it: both refused.
    Stops: `docker events --filter type=image` sending the events of the operator's image
    built FROM the agent's, with its labels."""
    if "image" not in types:
        return []
    if set(types) != {"image"} or not set(asked) <= built | {NO_IMAGE}:
        raise Denied("owned image events come only on their own and of the images your build records "
                     "name: use `--filter type=image` alone, without an image filter (an image built "
                     "FROM yours inherits your owner label)", rule="scope-owned")
    return [] if asked else sorted(built) or [NO_IMAGE]


def owner_filters(ctx: Context, kind: str) -> list[str]:
    """owned_labels as docker CLI flags."""
    return [word for label in owned_labels(owner_of(ctx), kind) for word in ("--filter", f"label={label}")]


def created_labels(owner: str, *, container: bool) -> dict[str, str]:
    """The labels gatekeeper puts on what the agent creates: the owner label, and on a
    container also CREATED_LABEL (set by its create, never inherited from an image)."""
    return {OWNER_LABEL: owner, CREATED_LABEL: owner} if container else {OWNER_LABEL: owner}


def check_owned(ctx: Context, target: Target, key: str, kind: str) -> None:
    owner = target.labels.get(OWNER_LABEL)
    if owner == owner_of(ctx):
        return
    whose = f"is owned by {owner!r}" if owner else "was not created through gatekeeper"
    if kind == IMAGE and not owner:
        whose = "was neither built nor pulled by you through gatekeeper"
    rule = f'[scope] {key} = "owned"'
    if key == "compose":
        rule = "compose acts on every object of the project and"
    # Stops: the agent acting on the operator's (or another agent's) objects.
    raise Denied(
        f"{kind} {target.shown()} {whose}; {rule} allows only "
        f"{kind}s labelled {OWNER_LABEL}={owner_of(ctx)}",
        rule="scope-owned",
    )


# ---------------------------------------------------------------- [scope], [shared], [protect]


def scope(ctx: Context, key: str) -> str:
    return ctx.policy.scope_of(key)  # a class the policy does not know is owned-only


def protect(ctx: Context, key: str) -> list[str]:
    return list(ctx.policy.protect.get(key, ()))


def shared(ctx: Context, key: str) -> list[str]:
    return list(ctx.policy.shared.get(key, ()))


def shared_by(ctx: Context, key: str, names: list[str]) -> str:
    """The [shared] pattern that names one of `names`, or ""."""
    from fnmatch import fnmatchcase

    for pattern in shared(ctx, key):
        if any(fnmatchcase(name, pattern) for name in names):
            return pattern
    return ""


def check_shared_or_owned(ctx: Context, kind: str, name: str, labels: dict[str, str], key: str,
                          use: str = "use", names: list[str] | None = None) -> None:
    """An existing object of the shared namespaces the agent is about to use: its
    own, or one [shared] `key` names; anything else belongs to someone else."""
    owner = labels.get(OWNER_LABEL)
    if owner == owner_of(ctx) or shared_by(ctx, key, names or [name]):
        return
    whose = f"is owned by {owner!r}" if owner else "is not yours (no gatekeeper owner label)"
    # Stops: the agent mounting, joining, linking or re-pointing what the operator uses.
    raise Denied(f"{kind} {name!r} {whose}; you may {use} only your own {kind}s "
                 f"(labelled {OWNER_LABEL}={owner_of(ctx)}) or ones listed in [shared] {key}",
                 rule=SHARED_RULES[kind])


def check_unprotected(ctx: Context, target: Target, kind: str) -> None:
    reason = protected_by(ctx, kind, target.names, target.labels)
    if reason:
        # Stops: removing or stopping what the operator marked as vital.
        raise Denied(f"{kind} {target.shown()} is protected ({reason}) and may not be "
                     f"stopped, removed, killed or restarted", rule="protected")


def protected_by(ctx: Context, kind: str, names: list[str], labels: dict[str, str]) -> str:
    """The [protect] entry that matches, or ""."""
    patterns = protect(ctx, PROTECT_KEYS[kind])
    if patterns:
        from fnmatch import fnmatchcase  # imports re (~3 ms): only when there is a pattern

        candidates = set(names)
        if kind == IMAGE:
            candidates |= {name.rpartition(":")[0] for name in names if ":" in name}
        for pattern in patterns:
            if any(fnmatchcase(name, pattern) for name in candidates):
                return f"[protect] {PROTECT_KEYS[kind]} {pattern!r}"
    for label in protect(ctx, "labels"):
        key, eq, value = label.partition("=")
        if key in labels and (not eq or labels[key] == value):
            return f"[protect] labels {label!r}"
    return ""


# ---------------------------------------------------------------- labels the agent writes


def label_file_lines(data: bytes, what: str) -> list[str]:
    """The label lines docker reads from a file: left-trimmed, no comments, no blanks.
    A byte-order mark (docker drops one on the first line) or any byte that is not
    printable UTF-8 is refused, so what we check is what docker reads."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = "\ufeff"  # refused below, with the same message
    if "\ufeff" in text or any((ch < " " and ch not in "\t\r\n") or ch == "\x7f" for ch in text):
        # Stops: a BOM-prefixed 'gatekeeper.owner=' line that docker reads as the plain key.
        raise Denied(f"{what}: a byte-order mark, control character or invalid UTF-8 in a label file "
                     "is not allowed; write plain key=value lines", rule="reserved-label")
    lines = [line.lstrip() for line in text.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def check_label(ctx: Context, label: str, what: str) -> None:
    check_label_key(label, what)
    key = label.partition("=")[0]
    if any(not " " < ch <= "~" for ch in key):
        # Stops: a key that only looks like a harmless one (invisible or look-alike characters).
        raise Denied(f"{what} {key!r}: label keys are printable ASCII without spaces", rule="refused-label")
    pattern = refused_label(ctx, key)
    if pattern:
        # Stops: posing as a compose service, or steering software that acts on labels (proxies, updaters).
        raise Denied(f"{what} {key!r}: labels matching {pattern!r} are refused ([labels] refused): "
                     "other software acts on them", rule="refused-label")


def refused_label(ctx: Context, key: str) -> str:
    from fnmatch import fnmatchcase

    return next((p for p in ctx.policy.refused_labels if fnmatchcase(key.lower(), p.lower())), "")


def check_label_key(label: str, what: str) -> None:
    if label.lower().startswith(RESERVED_PREFIX):
        # Stops: forging or overriding the owner label (or any label we may add later).
        raise Denied(f"{what} {label.partition('=')[0]!r}: labels under {RESERVED_PREFIX!r} are set by "
                     "gatekeeper only", rule="reserved-label")

