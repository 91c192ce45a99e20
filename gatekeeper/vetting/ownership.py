"""Ownership and protection rails: which engine objects a command may touch.

This module is the dispatch: which words of which command name which objects,
what a listing, a create or a prune gets. The engine is asked through
gatekeeper.engine_objects (names and IDs to Targets); the label rules are the
pure functions of gatekeeper.label_rules; compose projects are
gatekeeper.vetting.compose_ownership, shared namespaces gatekeeper.vetting.namespaces.

* What the agent creates (run, create, build; compose in gatekeeper.vetting.
  compose_ownership) is labelled `gatekeeper.owner=<profile>`; labels under
  `gatekeeper.` are ours alone, so the agent can neither forge nor override one.
* `[scope]`: per action class "owned" or "all". For "owned", every target is
  resolved with ONE engine query (names, ID prefixes, several targets) and must
  carry the agent's owner label; container targets are then rewritten to the
  full IDs that were checked, so a name re-pointed afterwards changes nothing.
* `[protect]`: names, globs and labels that stop/restart/kill/rm/rmi and prune
  must leave alone, owned or not, checked against the resolved objects.
* Prune runs with a forced `--filter label=gatekeeper.owner=<profile>` (containers:
  and `label=gatekeeper.created=<profile>`; docker ANDs label filters, so the
  agent's own filters can only narrow it); builder
  and system prune cannot be scoped (build cache has no labels) and are refused.

Targets reach the engine as positional arguments after `--`, never as template
text: the query's --format is ours alone.
"""

from __future__ import annotations

from gatekeeper.engine_objects import (
    CONTAINER,
    IMAGE,
    NETWORK,
    QUERY_FORMATS,
    VOLUME,
    Target,
    lookup,
    query,
    resolve,
)
from gatekeeper.errors import Denied
from gatekeeper.label_rules import (
    INHERITED_RULE,
    PROTECT_KEYS,
    check_label,
    check_owned,
    check_unprotected,
    created_labels,
    events_kind,
    label_file_lines,
    owner_filters,
    owner_of,
    protect,
    scope,
)
from gatekeeper.owner import CREATED_LABEL, OWNER_LABEL

TYPE_CHECKING = False  # typing costs an import on the ForceCommand path
if TYPE_CHECKING:
    from gatekeeper.vetting.context import Context

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
    "image history": ("history", IMAGE, FIRST),
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
    "image pull", "system df", "system info", "version",
    "network ls", "volume ls",
})  # fmt: skip

# Listings: under "owned" they get the owner filters ([scope] key, object kind; containers also
# need gatekeeper.created). `events` is no [scope] key, so always owned (as at the API layer):
# every object's events, the operator's exec command lines too (its kind: events_kind).
LISTED = {"container ls": ("ps", CONTAINER), "image ls": ("images", IMAGE), "system events": ("events", "")}
def event_filters(ctx: Context) -> dict[str, list[str]]:
    """The agent's `--filter key=value` of `docker events`, by key (lowercased)."""
    filters: dict[str, list[str]] = {}
    for use in ctx.parsed.uses:
        if use.flag.long == "filter":
            key, eq, value = (use.value or "").partition("=")
            if eq:
                filters.setdefault(key.strip().lower(), []).append(value.strip())
    return filters


def owned_event_filters(ctx: Context) -> list[str]:
    """The filters of owned events: the owner's labels (containers' also the created label),
    image events only of the images the build records name (label_rules.image_event_ids)."""
    filters = event_filters(ctx)
    types = filters.get("type", [])
    kind = events_kind(types)
    words = owner_filters(ctx, kind)
    if kind:
        return words
    from gatekeeper.engine_objects import built_images
    from gatekeeper.label_rules import image_event_ids

    ids = image_event_ids(types, filters.get("image", []), built_images(ctx) if "image" in types else set())
    return [*words, *(word for ident in ids for word in ("--filter", f"image={ident}"))]


# Commands that create objects and take --label; CREATES make containers, also
# labelled gatekeeper.created (gatekeeper.label_rules.created_labels).
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

# Listing of the owned objects of a kind, for prune against [protect] names.
OWNED_LISTINGS = {
    CONTAINER: ["container", "ls", "-a", "--format", "{{.Names}}"],
    IMAGE: ["image", "ls", "-a", "--format", "{{.Repository}}:{{.Tag}}"],
    VOLUME: ["volume", "ls", "--format", "{{.Name}}"],
    NETWORK: ["network", "ls", "--format", "{{.Name}}"],
}


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
        key, kind = LISTED[canonical]
        if scope(ctx, key) == "owned":
            owned = owned_event_filters(ctx) if key == "events" else owner_filters(ctx, kind)
            ctx.insert_after_command(owned)
    elif canonical in LABELLED:
        own = refuse_reserved_labels(ctx)
        vet_labelled_namespaces(ctx)
        if canonical in CREATES:
            check_inherited_labels(ctx, own)
        labels = created_labels(owner_of(ctx), container=canonical in CREATES)
        ctx.insert_after_command([word for item in labels.items() for word in ("--label", "=".join(item))])
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
    if owned and key == "history":
        vet_history(ctx, indices)
        return
    targets = resolve(ctx, kind, [ctx.argv[i] for i in indices])
    for target in targets:
        if owned and not (kind == IMAGE and key == "rmi" and owned_by_pull(ctx, target)):
            check_owned(ctx, target, key, kind)
            if kind == IMAGE and key == "rmi" and not ctx.policy.through_proxy():
                ctx.vetted.afterwards.append(("build-forget", target.ident))  # once gone, its records go
        if destructive:
            check_unprotected(ctx, target, kind)
    if kind == CONTAINER:
        for index, target in zip(indices, targets, strict=True):
            ctx.replace_word(index, target.ident)  # act on exactly what was checked


def vet_history(ctx: Context, indices: list[int]) -> None:
    """`image history` under [scope] history = "owned": the image must be one the agent may use
    (gatekeeper.image_scope), pinned by the ID checked."""
    from gatekeeper.vetting.images import check_image_use, target_facts

    for index in indices:
        target = lookup(ctx, IMAGE, ctx.argv[index])
        if target is None:
            return  # docker itself says there is no such image
        # Stops: the operator's build steps and ARG values (`|1 TOKEN=...`) read from its image's
        # history, and its steps learnt to build them first (gatekeeper.build_cache).
        check_image_use(ctx, ctx.argv[index], target_facts(target), "image history of")
        ctx.replace_word(index, target.ident)


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


# ---------------------------------------------------------------- labels


def refuse_reserved_labels(ctx: Context) -> set[str]:
    """--label, --label-file and --mount volume-label: no gatekeeper.* label, none
    that [labels] refused names. Returns the keys the object's own labels set."""
    keys = set()
    for use in ctx.parsed.uses:
        name = use.flag.long
        if name == "label":
            check_label(ctx, use.value or "", use.spelled)
            keys.add((use.value or "").partition("=")[0])
        elif name == "label-file":
            path = ctx.host_path(use.value or "", use.spelled)
            for line in label_file_lines(ctx.world.read_file(path), f"{use.spelled} {use.value}"):
                check_label(ctx, line, f"{use.spelled} {use.value}")
                keys.add(line.partition("=")[0])
        elif name == "mount":
            check_mount_labels(ctx, use.value or "", use.spelled)
    return keys




def check_inherited_labels(ctx: Context, own: set[str]) -> None:
    """run/create: a container inherits its image's labels (a Dockerfile LABEL, a pulled
    image's), except those its own --label sets; they follow the same rules. The owner
    labels are set by the create itself (injected, so they win)."""
    if not ctx.parsed.positionals:
        return  # docker refuses a run without an image
    reference = ctx.parsed.positionals[0]
    pulls = [use for use in ctx.parsed.uses if use.flag.long == "pull"]
    if pulls and (pulls[-1].value or "").lower() == "always":
        # Stops: the pull bringing a new image whose labels nobody checked before the create.
        raise Denied(f"{pulls[-1].spelled} always is not allowed: the container would inherit the labels "
                     f"of an image nobody checked; run 'docker pull {reference}' first", rule=INHERITED_RULE)
    image = lookup(ctx, IMAGE, reference)
    if image is None:
        # Stops: docker pulling an image with LABEL traefik.* (or compose.*) that the container inherits.
        raise Denied(f"image {reference!r} is not on the engine; run 'docker pull {reference}' first: a "
                     "container inherits its image's labels, which are checked before the create",
                     rule=INHERITED_RULE)
    for key, value in sorted(image.labels.items()):
        if key not in own and key not in (OWNER_LABEL, CREATED_LABEL):
            check_label(ctx, f"{key}={value}", f"image {reference!r}: label")
    from gatekeeper.vetting.images import check_image_use, target_facts

    # Stops: `docker run <the operator's image> env` printing what `image inspect` redacts.
    check_image_use(ctx, reference, target_facts(image), "image")


def check_mount_labels(ctx: Context, value: str, what: str) -> None:
    from gatekeeper.vetting.go_csv import read_fields

    for field in read_fields(value, what):
        key, _, rest = field.partition("=")
        if key.strip().lower() == "volume-label":
            check_label(ctx, rest, f"{what} volume-label")


# ---------------------------------------------------------------- prune


def vet_prune(ctx: Context, kind: str) -> None:
    """Forced owner filter; protected labels excluded; protected names refuse the prune."""
    filters = owner_filters(ctx, kind)
    for label in protect(ctx, "labels"):
        filters += ["--filter", f"label!={label}"]
    patterns = protect(ctx, PROTECT_KEYS[kind])
    if patterns:
        refuse_protected_owned(ctx, kind, patterns)
    labels = protect(ctx, "labels")
    if len(labels) > 1:
        refuse_protected_labels(ctx, kind, labels)
    if kind == IMAGE:
        refuse_unproven_images(ctx)
        if not ctx.policy.through_proxy():  # else the proxy sweeps (gatekeeper.proxy.pulls)
            ctx.vetted.afterwards.append(("records-sweep",))  # records of images gone, pins moved
    ctx.insert_after_command(filters)


def refuse_unproven_images(ctx: Context) -> None:
    """The owner filter also selects images that inherited the label (the operator's build FROM
    the agent's image): if one the prune could remove (dangling; with --all, any) is not named
    by the agent's build records (gatekeeper.build_records), the prune is refused."""
    from gatekeeper.engine_objects import built_images
    from gatekeeper.grammar.pflag import bool_value

    every = any(use.flag.long == "all" and bool_value(use) for use in ctx.parsed.uses)
    args = ["image", "ls", "-q", "--no-trunc", *owner_filters(ctx, IMAGE),
            *([] if every else ["--filter", "dangling=true"])]
    labelled = query(ctx, args, "your images").split()
    if not labelled:
        return
    built = built_images(ctx)
    stranger = next((ident for ident in labelled if ident not in built), None)
    if stranger is not None:
        # Stops: the prune removing the operator's image that inherited the agent's owner label.
        raise Denied(f"'docker {ctx.located.spelled}' could remove image {stranger[7:19]}, which carries "
                     "your owner label but is not one you built (an image built FROM yours inherits the "
                     "label); remove your images by name", rule="scope-owned")


def refuse_protected_labels(ctx: Context, kind: str, labels: list[str]) -> None:
    """The engine ANDs label! filters: a prune keeps only the objects carrying every protected
    label, so with two or more each one is looked for among the owned objects (one engine
    question each, the engine's own label filter) and the prune refused if any carries it."""
    for label in labels:
        args = [*OWNED_LISTINGS[kind][:-2], *owner_filters(ctx, kind), "--filter", f"label={label}",
                *OWNED_LISTINGS[kind][-2:]]
        names = query(ctx, args, f"your {kind}s labelled {label}").split()
        if names:
            # Stops: a prune removing an object with one of several protected labels.
            raise Denied(f"'docker {ctx.located.spelled}' could remove protected {kind} {names[0]!r} "
                         f"([protect] labels {label!r}: the engine keeps only objects carrying every "
                         "protected label); remove the others by name", rule="protected")


def refuse_protected_owned(ctx: Context, kind: str, patterns: list[str]) -> None:
    """A name pattern cannot be a filter: if an owned object matches one, the prune
    could remove it, so it is refused and the agent removes the others by name."""
    from fnmatch import fnmatchcase

    args = [*OWNED_LISTINGS[kind][:-2], *owner_filters(ctx, kind), *OWNED_LISTINGS[kind][-2:]]
    names = query(ctx, args, f"your {kind}s").split()
    for name in names:
        candidates = {name, name.rpartition(":")[0]} if kind == IMAGE else {name}
        hit = next((p for p in patterns if any(fnmatchcase(c, p) for c in candidates)), None)
        if hit is not None:
            raise Denied(f"'docker {ctx.located.spelled}' could remove protected {kind} {name!r} "
                         f"([protect] {PROTECT_KEYS[kind]} {hit!r}); remove the others by name",
                         rule="protected")
