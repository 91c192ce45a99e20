"""Docker's shared namespaces: networks, links and image tags are the agent's own
by default. Volumes are in gatekeeper.vetting.volumes, label rules in gatekeeper.label_rules.

The agent shares one engine with the operator, and names there are global:
* a network joined is a network reached: `--network app_default --network-alias
  db` takes the operator's database name on the operator's network;
* `--link theirs:db` (compose `external_links`) copies the target's environment,
  secrets included, into the new container;
* a tag built or pulled is a tag moved: `docker build -t postgres:15 .` makes the
  operator's next `docker run postgres:15` run the agent's image.
So each of these must name an object the agent owns (owner label; for images
also a pull gatekeeper recorded, gatekeeper.steps), or one the operator listed
under [shared]; docker's default bridge and `none` are everyone's. Aliases are
taken only on the agent's own networks. Tags in [protect] images are never moved.

Every engine query here is one function named for what it asks; names go after
`--`, never into template text.
"""

from __future__ import annotations

from gatekeeper.engine_objects import CONTAINER, IMAGE, NETWORK, lookup, resolve
from gatekeeper.errors import Denied
from gatekeeper.label_rules import check_shared_or_owned, owner_of, protected_by, shared_by
from gatekeeper.owner import OWNER_LABEL

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from gatekeeper.engine_objects import Target
    from gatekeeper.grammar.pflag import FlagUse
    from gatekeeper.vetting.context import Context

EVERYONES_NETWORKS = frozenset({"bridge", "none", "default"})  # docker's own; `default` is bridge
NEW, OWNED, SHARED = "new", "owned", "shared"  # what a tag names at decision time


# ---------------------------------------------------------------- run/create


def vet_run_namespaces(ctx: Context) -> None:
    """run/create: the networks joined (and aliases taken) and the containers linked."""
    networks, aliases = run_networks(ctx)
    check_networks(ctx, networks, aliases, "--network")
    links = [(use.value or "").partition(":")[0] for use in ctx.parsed.uses if use.flag.long == "link"]
    check_links(ctx, [name for name in links if name], "--link")
    pulls = [use for use in ctx.parsed.uses if use.flag.long == "pull"]
    if pulls and pulls[-1].value == "always" and ctx.parsed.positionals:
        check_tag(ctx, ctx.parsed.positionals[0], f"{pulls[-1].spelled} always: image")


def run_networks(ctx: Context) -> tuple[list[str], bool]:
    from gatekeeper.vetting.flag_checks import is_network_long_syntax, network_long_target

    names, aliases = [], False
    for use in ctx.parsed.uses:
        value = use.value or ""
        if use.flag.long in ("network", "net"):
            long = is_network_long_syntax(value)
            names.append(network_long_target(use, value, ctx) if long else value)
            aliases = aliases or (long and "alias=" in value.lower())
        elif use.flag.long in ("network-alias", "net-alias"):
            aliases = True
    return names, aliases


def check_networks(ctx: Context, names: list[str], aliases: bool, what: str) -> None:
    joined = [name for name in dict.fromkeys(names) if name not in EVERYONES_NETWORKS]
    if not joined:
        return
    for target in resolve(ctx, NETWORK, joined):
        check_network(ctx, target.word, target.names, target.labels, aliases, what)


def check_network(ctx: Context, word: str, names: list[str], labels: dict[str, str],
                  aliases: bool, what: str) -> None:
    shown = names[0] if names else word
    check_shared_or_owned(ctx, NETWORK, shown, labels, "networks", "join", names)
    if aliases and labels.get(OWNER_LABEL) != owner_of(ctx):
        # Stops: taking a service's name (db, api) on a network others resolve names on.
        raise Denied(f"{what}: network {shown!r} is shared with you, not yours: an alias there would "
                     "take a name other containers resolve; aliases only on your own networks",
                     rule="foreign-network")


def check_links(ctx: Context, names: list[str], what: str) -> None:
    if not names:
        return
    for target in resolve(ctx, CONTAINER, list(dict.fromkeys(names))):
        shown = target.names[0] if target.names else target.word
        # Stops: docker copying the linked container's environment (its secrets) into ours.
        check_shared_or_owned(ctx, CONTAINER, shown, target.labels, "containers", f"link ({what}) to",
                              target.names)


# ---------------------------------------------------------------- image tags


def familiar(ref: str) -> str:
    """A reference as docker lists it (`{{.Repository}}:{{.Tag}}`): docker.io and
    library/ dropped, ':latest' added when there is neither tag nor digest."""
    for prefix in ("docker.io/", "index.docker.io/"):
        if ref.startswith(prefix):
            ref = ref[len(prefix):]
            break
    ref = ref.removeprefix("library/")
    if "@" not in ref and ":" not in ref.rpartition("/")[2]:
        ref += ":latest"
    return ref


def pulled_by_agent(ctx: Context, image: Target) -> bool:
    """Every tag of the image is one this profile pulled (and it pulled this very image: the
    records pin its LastTagTime, gatekeeper.owner.PULLED_TAG_TIME)."""
    from gatekeeper.engine_objects import pulled_tags

    recorded = pulled_tags(ctx, image.ident, image.tagged)
    return bool(recorded) and set(image.names) <= recorded


def check_tag(ctx: Context, ref: str, what: str) -> str:
    """May `what` point `ref` at another image? NEW, OWNED or SHARED, or Denied."""
    ref = familiar(ref)
    protected = protected_by(ctx, IMAGE, [ref], {})
    found = lookup(ctx, IMAGE, ref)
    if found is not None:
        protected = protected or protected_by(ctx, IMAGE, found.names, found.labels)
    if protected:
        # Stops: the operator's next `docker run` of a vital tag running the agent's image.
        raise Denied(f"{what} {ref!r} would re-point a protected tag ({protected})", rule="protected")
    if found is None:
        return NEW
    ident, labels = found.ident, found.labels
    # A record of the operator's image that came back with the same ID and tag (after the
    # agent's was removed) pins another LastTagTime: not the agent's to re-point.
    if labels.get(OWNER_LABEL) == owner_of(ctx) or pulled_by_agent(ctx, found):
        return OWNED
    if shared_by(ctx, "images", [ref]):
        return SHARED
    whose = f"owned by {labels[OWNER_LABEL]!r}" if OWNER_LABEL in labels else "not yours"
    # Stops: `build -t postgres:15` / `pull` moving the operator's tag to another image.
    raise Denied(f"{what} {ref!r}: that tag names an image {whose} ({ident[7:19]}); building or pulling "
                 "would re-point it; use a tag of your own", rule="foreign-tag")


def vet_build_tags(ctx: Context) -> None:
    tags = []
    for use in ctx.parsed.uses:
        if use.flag.long == "tag":
            check_tag(ctx, use.value or "", use.spelled)
            tags.append(use.value or "")
        elif use.flag.long == "output":
            for name in image_output_names(use):
                check_tag(ctx, name, f"{use.spelled} name=")
                tags.append(name)
    record_build(ctx, tags)


def record_build(ctx: Context, tags: list[str]) -> None:
    """After the build succeeded, the images its tags name are recorded as this profile's
    builds (gatekeeper.build_records); behind the proxy, the proxy records them."""
    tags = [tag for tag in tags if tag]
    if not tags or ctx.policy.through_proxy():
        return
    steps = [step for step in ctx.vetted.afterwards if step[0] == "build-record"]
    if steps:
        ctx.vetted.afterwards.remove(steps[0])
        tags = [*steps[0][1:], *(tag for tag in tags if tag not in steps[0][1:])]
    ctx.vetted.afterwards.append(("build-record", *tags))


def image_output_names(use: FlagUse) -> list[str]:
    from gatekeeper.vetting.go_csv import read_fields

    fields = read_fields(use.value or "", use.spelled)
    attrs = {k.strip().lower(): v for k, _, v in (f.partition("=") for f in fields)}
    if attrs.get("type") not in ("image", "docker"):
        return []
    return [name for f in fields if f.partition("=")[0].strip().lower() == "name"
            for name in f.partition("=")[2].split(",") if name]


def vet_pull(ctx: Context) -> None:
    """pull: the tag may not name someone else's image; a new tag is recorded as pulled."""
    from gatekeeper.grammar.pflag import bool_value

    if any(use.flag.long == "all-tags" and bool_value(use) for use in ctx.parsed.uses):
        raise Denied("'docker pull --all-tags' is not allowed: it re-points every tag of the repository "
                     "at once; pull the tags you need by name", rule="foreign-tag")
    for ref in ctx.parsed.positionals[:1]:
        when = check_tag(ctx, ref, "pull")
        # Behind the proxy the proxy records the pull (gatekeeper.proxy.pulls): ours it refuses.
        if when != SHARED and not ("@" in ref and when == OWNED) and not ctx.policy.through_proxy():
            ctx.vetted.afterwards.append(("pull-record", familiar(ref), when))


def vet_rmi_pulled(ctx: Context, target: Target) -> bool:
    """rmi of an image without the owner label: allowed if this profile pulled it
    (every tag it carries); its records are dropped once it is gone."""
    # Stops: removing the operator's image that came back with the ID and tag of the agent's
    # removed pull (its stale record pins another LastTagTime).
    if not pulled_by_agent(ctx, target):
        return False
    if not ctx.policy.through_proxy():  # else the proxy forgets them (gatekeeper.proxy.pulls)
        ctx.vetted.afterwards.append(("pull-forget", target.ident))
    return True


# ---------------------------------------------------------------- compose


BUILDING = frozenset({"compose up", "compose create", "compose run", "compose build"})
PULLING_POLICIES = ("always", "daily", "weekly", "every_")


def vet_compose_namespaces(ctx: Context, model: dict[str, Any]) -> None:
    canonical = ctx.located.canonical
    services = {name: s for name, s in (model.get("services") or {}).items() if isinstance(s, dict)}
    if canonical in BUILDING or canonical == "compose pull":
        vet_compose_tags(ctx, services, canonical, str(model.get("name") or ""))
    if canonical in ("compose up", "compose create", "compose run"):
        vet_compose_networks(ctx, model, services)
        links = [str(link).partition(":")[0]
                 for service in services.values() for link in service.get("external_links") or []]
        check_links(ctx, [name for name in links if name], "compose external_links")


def vet_compose_tags(ctx: Context, services: dict[str, Any], canonical: str, project: str) -> None:
    forced = any(use.flag.long == "pull" and use.value == "always" for use in ctx.parsed.uses)
    pulled = compose_pulled_services(ctx, services) if canonical == "compose pull" else set()
    for name, service in services.items():
        build = service.get("build")
        if isinstance(build, dict) and canonical in BUILDING:
            for tag in build.get("tags") or []:  # further tags the build puts on its image
                check_tag(ctx, str(tag), f"compose service {name!r} build tag")
                record_build(ctx, [str(tag)])
        image = service.get("image")
        if (not isinstance(image, str) or not image) and "build" in service and canonical in BUILDING:
            # Stops: a service without image: built into compose's name for it, <project>-<service>,
            # re-pointing the operator's image of that name (its next compose up runs the agent's).
            check_tag(ctx, f"{project}-{name}", f"compose service {name!r} builds its image as")
            record_build(ctx, [f"{project}-{name}"])
        elif isinstance(image, str) and "build" in service and canonical in BUILDING:
            record_build(ctx, [image])
        if not isinstance(image, str) or not image:
            continue
        policy = str(service.get("pull_policy") or "")
        builds = "build" in service and canonical in BUILDING
        pulls = canonical == "compose pull" or forced or policy.startswith(PULLING_POLICIES)
        if builds or pulls:
            when = check_tag(ctx, image, f"compose service {name!r} image")
            if canonical == "compose pull" and name in pulled:
                record_compose_pull(ctx, image, when)


def compose_pulled_services(ctx: Context, services: dict[str, Any]) -> set[str]:
    """The services `compose pull [SERVICE...]` pulls (with --include-deps, and their dependencies
    too: then every service is counted)."""
    named = [word for word in ctx.parsed.positionals if word in services]
    if not named or any(use.flag.long == "include-deps" for use in ctx.parsed.uses):
        return set(services)
    return set(named)


def record_compose_pull(ctx: Context, image: str, when: str) -> None:
    """`compose pull` is a pull per service, recorded as `docker pull` is (vet_pull)."""
    if when != SHARED and not ("@" in image and when == OWNED) and not ctx.policy.through_proxy():
        step = ("pull-record", familiar(image), when)
        if step not in ctx.vetted.afterwards:
            ctx.vetted.afterwards.append(step)


def vet_compose_networks(ctx: Context, model: dict[str, Any], services: dict[str, Any]) -> None:
    """The project's networks: existing ones must be the agent's (or shared and
    external); aliases only on the agent's own; network_mode by name likewise."""
    aliased = set().union(*(joined_networks(service) for service in services.values()))
    for key, network in (model.get("networks") or {}).items():
        if not isinstance(network, dict):
            continue
        name = str(network.get("name") or key)
        if name in EVERYONES_NETWORKS:
            continue
        found = network_named(ctx, name)
        if found is None:
            continue  # compose creates it, with the owner label in the model
        # External or not: compose joins an existing network of that name.
        check_network(ctx, name, [found[0]], found[1], key in aliased,
                      f"compose network {key!r} (compose names each service there by its service name)")
    for name, service in services.items():
        mode = str(service.get("network_mode") or "")
        if mode and mode not in EVERYONES_NETWORKS and ":" not in mode and mode != "host":
            check_networks(ctx, [mode], False, f"compose service {name!r} network_mode")


def joined_networks(service: dict[str, Any]) -> set[str]:
    """The project networks a service joins: compose names the container on each of them by
    its service name (and container name), an alias whether or not `aliases:` says so."""
    # Stops: service `db` on a [shared] network answering the operator's lookups of `db`.
    if service.get("network_mode"):
        return set()
    networks = service.get("networks")
    if isinstance(networks, dict):
        return {str(key) for key in networks}
    if isinstance(networks, list):
        return {str(key) for key in networks}
    return {"default"}


def network_named(ctx: Context, name: str) -> tuple[str, dict[str, str]] | None:
    """(name, labels) of the network `name` resolves to now (by name or ID prefix,
    as the engine resolves it), or None if there is none."""
    target = lookup(ctx, NETWORK, name)
    if target is None:
        return None
    return (target.names[0] if target.names else name), target.labels
