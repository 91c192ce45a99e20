"""Ownership and protection rails: which engine objects a command may touch.

* What the agent creates (run, create, build; compose in gatekeeper.vetting.
  compose_ownership) is labelled `gatekeeper.owner=<profile>`; labels under
  `gatekeeper.` are ours alone, so the agent can neither forge nor override one.
* `[scope]`: per action class "owned" or "all". For "owned", every target is
  resolved with ONE engine query (names, ID prefixes, several targets) and must
  carry the agent's owner label; container targets are then rewritten to the
  full IDs that were checked, so a name re-pointed afterwards changes nothing.
* `[protect]`: names, globs and labels that stop/restart/kill/rm/rmi and prune
  must leave alone, owned or not, checked against the resolved objects.
* Prune runs with a forced `--filter label=gatekeeper.owner=<profile>` (docker
  ANDs label filters, so the agent's own filters can only narrow it); builder
  and system prune cannot be scoped (build cache has no labels) and are refused.

Targets reach the engine as positional arguments after `--`, never as template
text: the query's --format is ours alone.
"""

from __future__ import annotations

from gatekeeper.errors import Denied
from gatekeeper.owner import CREATED_LABEL, RESERVED_PREFIX
from gatekeeper.owner import OWNER_LABEL as OWNER_LABEL  # re-exported: proxy/ and older imports
from gatekeeper.printable import first_error as first_error  # re-exported: older imports

TYPE_CHECKING = False  # typing costs an import on the ForceCommand path
if TYPE_CHECKING:
    from gatekeeper.vetting.context import Context

QUERY_TIMEOUT = 30.0

CONTAINER, IMAGE, VOLUME, NETWORK = "container", "image", "volume", "network"
EVERY, FIRST = "every", "first"  # which positionals are targets

# canonical path -> ([scope] key, object kind, which positionals name targets).
# `top` and `port` take the container first and ps options / a port after it;
# `logs` takes exactly one container.
TARGETED: dict[str, tuple[str, str, str]] = {
    "container start": ("start", CONTAINER, EVERY),
    "container stop": ("stop", CONTAINER, EVERY),
    "container restart": ("restart", CONTAINER, EVERY),
    "container kill": ("kill", CONTAINER, EVERY),
    "container rm": ("rm", CONTAINER, EVERY),
    "container logs": ("logs", CONTAINER, FIRST),
    "container top": ("top", CONTAINER, FIRST),
    "container port": ("port", CONTAINER, FIRST),
    "container stats": ("stats", CONTAINER, EVERY),
    "container wait": ("wait", CONTAINER, EVERY),
    "container inspect": ("inspect", CONTAINER, EVERY),
    "image rm": ("rmi", IMAGE, EVERY),
    "image inspect": ("inspect", IMAGE, EVERY),
    "image history": ("images", IMAGE, FIRST),
    "inspect": ("inspect", "", EVERY),  # the kind comes from --type
    "network inspect": ("inspect", NETWORK, EVERY),
    "volume inspect": ("inspect", VOLUME, EVERY),
}

# Actions [protect] guards: they stop or delete what they name.
DESTRUCTIVE = frozenset({"container stop", "container restart", "container kill", "container rm", "image rm"})

# Commands with a grammar that name no existing object (or only list, without
# secrets): nothing to resolve. A grammar table added for a new command must be
# classified here or above (tests/test_ownership.py checks the whole grammar).
NO_TARGETS = frozenset({
    "image pull", "system df", "system info", "system events", "version",
    "network ls", "volume ls",
})  # fmt: skip

# Listings: under "owned" they get the owner filter.
LISTED = {"container ls": "ps", "image ls": "images"}

# Commands that create objects and take --label.
# also labelled CREATED_LABEL (gatekeeper.owner.proven_labels)
CREATES = frozenset({"container run", "container create"})
LABELLED = frozenset({"container run", "container create", "image build", "network create"})

# Prune commands docker can scope by label, and the object kind each removes.
PRUNED = {
    "container prune": CONTAINER, "image prune": IMAGE, "volume prune": VOLUME, "network prune": NETWORK,
}

# Prune commands no label filter can scope: refused, with the reason.
UNSCOPED_PRUNES = {
    "builder prune": "build cache carries no labels, so it would remove the operator's build cache too",
    "system prune": "it also prunes the build cache, which carries no labels and cannot be scoped to yours; "
    "use 'docker container prune', 'image prune', 'volume prune' and 'network prune' instead",
}

# What one object of each kind is asked for: ID, names (JSON), labels (JSON).
QUERY_FORMATS = {
    CONTAINER: "{{.Id}}\t{{json .Name}}\t{{with .Config}}{{json .Labels}}{{end}}",
    IMAGE: "{{.Id}}\t{{json .RepoTags}}\t{{with .Config}}{{json .Labels}}{{end}}",
    VOLUME: "{{.Name}}\t{{json .Name}}\t{{json .Labels}}",
    NETWORK: "{{.Id}}\t{{json .Name}}\t{{json .Labels}}",
}
# Listing of the owned objects of a kind, for prune against [protect] names.
OWNED_LISTINGS = {
    CONTAINER: ["container", "ls", "-a", "--format", "{{.Names}}"],
    IMAGE: ["image", "ls", "-a", "--format", "{{.Repository}}:{{.Tag}}"],
    VOLUME: ["volume", "ls", "--format", "{{.Name}}"],
    NETWORK: ["network", "ls", "--format", "{{.Name}}"],
}
PROTECT_KEYS = {CONTAINER: "containers", IMAGE: "images", VOLUME: "volumes", NETWORK: "networks"}


class Target:
    """One resolved object: its ID, the names it goes by, its labels."""

    __slots__ = ("word", "ident", "names", "labels")

    def __init__(self, word: str, ident: str, names: list[str], labels: dict[str, str]) -> None:
        self.word = word  # as the agent wrote it
        self.ident = ident
        self.names = names
        self.labels = labels

    def shown(self) -> str:
        name = self.names[0] if self.names else self.ident[7:19]
        return repr(self.word) if self.word == name else f"{self.word!r} ({name})"


def owner_of(ctx: Context) -> str:
    return ctx.policy.profile


def owner_filter(ctx: Context) -> str:
    return f"label={OWNER_LABEL}={owner_of(ctx)}"


def vet_ownership(ctx: Context) -> None:
    """The ownership rails for one command (called after the family vetters)."""
    canonical = ctx.located.canonical
    if canonical == "container top":
        check_top_arguments(ctx)
    if canonical == "image pull":
        from gatekeeper.vetting.namespaces import vet_pull

        vet_pull(ctx)
    elif canonical in TARGETED:
        vet_targets(ctx, *TARGETED[canonical])
    elif canonical in LISTED:
        if scope(ctx, LISTED[canonical]) == "owned":
            ctx.insert_after_command(["--filter", owner_filter(ctx)])
    elif canonical in LABELLED:
        refuse_reserved_labels(ctx)
        vet_labelled_namespaces(ctx)
        created = ["--label", f"{CREATED_LABEL}={owner_of(ctx)}"] if canonical in CREATES else []
        ctx.insert_after_command(["--label", f"{OWNER_LABEL}={owner_of(ctx)}", *created])
    elif canonical in PRUNED:
        vet_prune(ctx, PRUNED[canonical])
    elif canonical.startswith("compose "):
        from gatekeeper.vetting.compose_ownership import vet_compose_ownership

        vet_compose_ownership(ctx)
    elif canonical in UNSCOPED_PRUNES:
        # Stops: a prune that reaches objects no label can mark as the agent's.
        raise Denied(f"'docker {ctx.located.spelled}' is not allowed: {UNSCOPED_PRUNES[canonical]}",
                     rule="prune-unscoped")


def vet_labelled_namespaces(ctx: Context) -> None:
    """What run/create join and link, and the tags a build moves (gatekeeper.vetting.namespaces)."""
    from gatekeeper.vetting import namespaces

    if ctx.located.canonical == "image build":
        namespaces.vet_build_tags(ctx)
    elif ctx.located.canonical in ("container run", "container create"):
        namespaces.vet_run_namespaces(ctx)


# `docker top NAME [ps OPTIONS]`: dockerd runs the host's ps(1) as root with the
# agent's words. Only these plain listings are passed on.
TOP_PS_ARGUMENTS = frozenset({"aux", "auxww", "-ef", "-efww", "-eF", "-eLf", "-e", "-f", "-A", "-l", "-el"})


def check_top_arguments(ctx: Context) -> None:
    extra = ctx.parsed.positionals[1:]
    if not extra or (len(extra) == 1 and extra[0] in TOP_PS_ARGUMENTS):
        return
    # Stops: the agent's words reaching the host's ps(1), run as root by the daemon.
    raise Denied(f"'docker top' with ps arguments {' '.join(extra)!r} is not allowed: dockerd hands them to "
                 f"the host's ps as root; use none or one of {', '.join(sorted(TOP_PS_ARGUMENTS))}",
                 rule="top-arguments")


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


def json_labels(text: str) -> dict[str, str]:
    """An engine's `{{json .Labels}}` answer as a dict (null -> {})."""
    from gatekeeper.json_codec import loads

    try:
        value = loads(text.strip() or "null")
    except ValueError:
        raise Denied(f"unexpected labels from the engine: {text[:120]!r}", rule="scope-unresolved") from None
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


SHARED_RULES = {
    VOLUME: "foreign-volume", NETWORK: "foreign-network", IMAGE: "foreign-tag", CONTAINER: "foreign-link",
}


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


# ---------------------------------------------------------------- targets


def vet_targets(ctx: Context, key: str, kind: str, which: str) -> None:
    owned = scope(ctx, key) == "owned"
    destructive = ctx.located.canonical in DESTRUCTIVE
    kind = kind or inspect_type(ctx, owned)
    guarded = destructive and (protect(ctx, PROTECT_KEYS[kind]) or protect(ctx, "labels"))
    if not (owned or guarded):
        return
    indices = target_indices(ctx, which)
    if not indices:
        if ctx.located.canonical == "container stats" and owned:
            # Stops: `stats` without names streams every container on the engine.
            raise Denied(f"name your containers: under [scope] {key} = \"owned\" "
                         "'docker stats' without names is not allowed", rule="scope-owned")
        return  # docker itself refuses a missing argument
    targets = resolve(ctx, kind, [ctx.argv[i] for i in indices])
    for target in targets:
        if owned and not (kind == IMAGE and key == "rmi" and owned_by_pull(ctx, target)):
            check_owned(ctx, target, key, kind)
        if destructive:
            check_unprotected(ctx, target, kind)
    if kind == CONTAINER:
        for index, target in zip(indices, targets, strict=True):
            ctx.replace_word(index, target.ident)  # act on exactly what was checked


def owned_by_pull(ctx: Context, target: Target) -> bool:
    """An image without our label that this profile pulled (gatekeeper.steps records it)."""
    if target.labels.get(OWNER_LABEL) == owner_of(ctx):
        return False  # owned the usual way: check_owned passes
    from gatekeeper.vetting.namespaces import vet_rmi_pulled

    return vet_rmi_pulled(ctx, target)


def inspect_type(ctx: Context, owned: bool) -> str:
    """`docker inspect` resolves any kind of object; --type says which."""
    kinds = [use.value for use in ctx.parsed.uses if use.flag.long == "type"]
    kind = kinds[-1] if kinds else ""
    if kind in QUERY_FORMATS:
        return kind
    if owned:
        # Stops: an untyped inspect resolving a name to another kind than the one checked.
        raise Denied("under [scope] inspect = \"owned\" say --type container, image, volume or network",
                     rule="scope-owned")
    return CONTAINER  # not checked: scope all, and inspect destroys nothing


def target_indices(ctx: Context, which: str) -> list[int]:
    """argv indices of the target positionals, as the parser recorded them."""
    where = ctx.parsed.positional_at
    return where[:1] if which == FIRST else list(where)


def resolve(ctx: Context, kind: str, words: list[str]) -> list[Target]:
    """One engine query for all targets; any target it cannot resolve is a denial."""
    from gatekeeper.json_codec import loads

    args = [kind, "inspect", "--format", QUERY_FORMATS[kind], "--", *words]
    out = query(ctx, args, f"{kind} {', '.join(map(repr, words))}")
    lines = out.splitlines()
    if len(lines) != len(words):
        raise Denied(f"cannot resolve {kind} {', '.join(map(repr, words))}", rule="scope-unresolved")
    targets = []
    for word, line in zip(words, lines, strict=True):
        ident, names, labels = [*line.split("\t", 2), "", ""][:3]
        try:
            names_value, labels_value = loads(names or "null"), loads(labels or "null")
        except ValueError:
            raise Denied(f"cannot resolve {kind} {word!r}", rule="scope-unresolved") from None
        found = labels_value if isinstance(labels_value, dict) else {}  # null: none (fails the owner check)
        targets.append(Target(word, ident, plain_names(names_value), dict(found)))
    return targets


NOT_FOUND = ("no such", "not found")


def lookup(ctx: Context, kind: str, word: str) -> Target | None:
    """The object `word` names now, resolved as the engine resolves it (name, ID
    or ID prefix), or None if there is none; an engine that does not answer is a denial."""
    args = [kind, "inspect", "--format", QUERY_FORMATS[kind], "--", word]
    try:
        status, _out, err = ctx.world.run_docker(ctx.policy, args, None, QUERY_TIMEOUT)
    except Exception:  # noqa: BLE001 - a timeout or a missing binary: unresolved
        status, err = -1, b"the engine did not answer"
    if status != 0:
        if only_not_found(err):
            return None
        raise Denied(f"cannot resolve {kind} {word!r}: {first_error(err)}", rule="scope-unresolved")
    return resolve(ctx, kind, [word])[0]


def plain_names(value: object) -> list[str]:
    """A container's '/name' or an image's ['repo:tag', ...] as plain names."""
    names = value if isinstance(value, list) else [value] if isinstance(value, str) else []
    return [str(name).lstrip("/") for name in names]


def query(ctx: Context, args: list[str], what: str) -> str:
    from gatekeeper.bounded import timed_out

    try:
        status, out, err = ctx.world.run_docker(ctx.policy, args, None, QUERY_TIMEOUT)
    except Exception as error:
        if not timed_out(error):
            raise
        raise Denied(f"cannot resolve {what}: the engine did not answer", rule="scope-unresolved") from None
    if status != 0:
        raise Denied(f"cannot resolve {what}: {first_error(err)}", rule="scope-unresolved")
    return out.decode("utf-8", "replace")


def only_not_found(err: bytes) -> bool:
    """docker's stderr says only that the named objects do not exist ("No such container",
    "not found"); anything else (the engine does not answer, permission denied) is no answer."""
    lines = [line.lower() for line in err.decode("utf-8", "replace").splitlines() if line.strip()]
    return bool(lines) and all(any(marker in line for marker in NOT_FOUND) for line in lines)


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


# ---------------------------------------------------------------- labels


def refuse_reserved_labels(ctx: Context) -> None:
    """--label, --label-file and --mount volume-label: no gatekeeper.* label, none
    that [labels] refused names."""
    for use in ctx.parsed.uses:
        name = use.flag.long
        if name == "label":
            check_label(ctx, use.value or "", use.spelled)
        elif name == "label-file":
            path = ctx.host_path(use.value or "", use.spelled)
            for line in label_file_lines(ctx.world.read_file(path), f"{use.spelled} {use.value}"):
                check_label(ctx, line, f"{use.spelled} {use.value}")
        elif name == "mount":
            check_mount_labels(ctx, use.value or "", use.spelled)


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


def check_mount_labels(ctx: Context, value: str, what: str) -> None:
    from gatekeeper.vetting.go_csv import read_fields

    for field in read_fields(value, what):
        key, _, rest = field.partition("=")
        if key.strip().lower() == "volume-label":
            check_label(ctx, rest, f"{what} volume-label")


# ---------------------------------------------------------------- prune


def vet_prune(ctx: Context, kind: str) -> None:
    """Forced owner filter; protected labels excluded; protected names refuse the prune."""
    filters = ["--filter", owner_filter(ctx)]
    for label in protect(ctx, "labels"):
        filters += ["--filter", f"label!={label}"]
    patterns = protect(ctx, PROTECT_KEYS[kind])
    if patterns:
        refuse_protected_owned(ctx, kind, patterns)
    ctx.insert_after_command(filters)


def refuse_protected_owned(ctx: Context, kind: str, patterns: list[str]) -> None:
    """A name pattern cannot be a filter: if an owned object matches one, the prune
    could remove it, so it is refused and the agent removes the others by name."""
    from fnmatch import fnmatchcase

    args = [*OWNED_LISTINGS[kind][:-2], "--filter", owner_filter(ctx), *OWNED_LISTINGS[kind][-2:]]
    names = query(ctx, args, f"your {kind}s").split()
    for name in names:
        candidates = {name, name.rpartition(":")[0]} if kind == IMAGE else {name}
        hit = next((p for p in patterns if any(fnmatchcase(c, p) for c in candidates)), None)
        if hit is not None:
            raise Denied(f"'docker {ctx.located.spelled}' could remove protected {kind} {name!r} "
                         f"([protect] {PROTECT_KEYS[kind]} {hit!r}); remove the others by name",
                         rule="protected")
