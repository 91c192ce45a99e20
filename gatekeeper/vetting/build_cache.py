"""The CLI layer's half of gatekeeper.build_cache: `docker build` takes the agent's own images
as its only cache sources (`--cache-from`), or no cache at all; compose builds run without
cache on the engine's own socket (compose's classic builder passes no sources); each cache
source the agent names must be an image it may use."""

from __future__ import annotations

from gatekeeper.build_cache import cache_sources
from gatekeeper.owner import OWNER_LABEL

TYPE_CHECKING = False  # typing costs an import on the ForceCommand path
if TYPE_CHECKING:
    from typing import Any

    from gatekeeper.vetting.context import Context



def legacy_entries(value: str, what: str) -> list[str]:
    """One `--cache-from` value as the classic docker CLI sends it (a StringSlice: split on
    commas, read as Go's encoding/csv reads it): the image names the engine looks up."""
    from gatekeeper.vetting.go_csv import read_fields

    return [entry for entry in read_fields(value, what) if entry]


def owned_images(ctx: Context) -> list[str]:
    """The IDs of the agent's images, newest first: labelled with its owner label and named by
    its build records (gatekeeper.build_records; the operator's image built FROM the agent's
    carries the label too, and its layers must not become the agent's cache)."""
    from gatekeeper.engine_objects import built_images, query

    args = ["image", "ls", "-q", "--no-trunc", "--filter", f"label={OWNER_LABEL}={ctx.policy.profile}"]
    labelled = list(dict.fromkeys(query(ctx, args, "your images (the build's cache sources)").split()))
    if not labelled:
        return []
    built = built_images(ctx)
    return [ident for ident in labelled if ident in built]


def named_sources(ctx: Context, entries: list[str], what: str) -> list[str]:
    """The image names among `entries`, each checked as an image the agent may use (a part
    of a BuildKit cache spec, `type=...`, names no image: the classic builder finds none)."""
    from gatekeeper.vetting.images import check_image_word

    names = [entry for entry in entries if "=" not in entry]
    for name in names:
        # Stops: --cache-from <the operator's image>: its layers reused by the agent's build.
        check_image_word(ctx, name, what)
    return names


def scope_build_cache(ctx: Context) -> None:
    """`docker build`: no input left out of the steps' cache keys; the agent's
    --cache-from images checked, its own images added as sources; `--no-cache` when there is
    none (no source list would mean every image)."""
    from gatekeeper.grammar.pflag import bool_value

    check_keyed_flags(ctx)
    named: list[str] = []
    for use in ctx.parsed.uses:
        if use.flag.long in ("no-cache", "help") and bool_value(use):
            return
        if use.flag.long == "cache-from":
            named += named_sources(ctx, legacy_entries(use.value or "", use.spelled), f"{use.spelled} image")
    sources = cache_sources(named, owned_images(ctx))
    added = [source for source in sources if source not in named]
    ctx.insert_after_command([f"--cache-from={source}" for source in added] if sources else ["--no-cache"])


def check_keyed_flags(ctx: Context) -> None:
    """`docker build`: no input the classic builder leaves out of the steps' cache keys
    (gatekeeper.build_cache.KEYLESS), no proxy build argument, the default network only."""
    from gatekeeper.build_cache import KEYLESS_FLAGS, check_arguments, check_network, keyless_refusal

    for use in ctx.parsed.uses:
        entry = KEYLESS_FLAGS.get(use.flag.long)
        if entry is not None:
            # Stops: a step made under the agent's conditions reused by the operator's next build.
            raise keyless_refusal(f"{use.spelled} {(use.value or '')[:80]!r}", entry.effect, entry.instead)
        if use.flag.long == "build-arg":
            check_arguments([(use.value or "").partition("=")[0]], use.spelled)
        if use.flag.long == "network":
            check_network(use.value or "", use.spelled)
    check_resource_uses(ctx, f"'docker {ctx.located.spelled}'")


def check_resource_uses(ctx: Context, where: str) -> None:
    """The build's memory and CPU flags as typed: never under the policy's defaults."""
    from gatekeeper.build_cache import RESOURCE_FLAGS, check_resources

    given = {RESOURCE_FLAGS[use.flag.long]: use.value or "" for use in ctx.parsed.uses
             if use.flag.long in RESOURCE_FLAGS}
    if given:
        caps = ctx.policy.caps
        check_resources(given, caps.default_memory, caps.default_cpus, where)


def check_keyed_model(name: str, build: dict[str, Any]) -> None:
    """A compose service's build: the same inputs as check_keyed_flags, by compose's keys."""
    from gatekeeper.build_cache import KEYLESS_COMPOSE, check_arguments, check_network, keyless_refusal

    where = f"compose service {name!r}: build."
    for key, entry in KEYLESS_COMPOSE.items():
        if build.get(key):
            raise keyless_refusal(where + key, entry.effect, entry.instead)
    args = build.get("args")
    names = list(args) if isinstance(args, dict) else [str(a).partition("=")[0] for a in args or []]
    check_arguments([str(arg) for arg in names], where + "args")
    network = build.get("network")
    if network is not None:
        check_network(str(network), where + "network")


def scope_model_cache(ctx: Context, model: dict[str, Any]) -> None:
    """compose: no build input left out of the steps' cache keys; each cache_from
    image a service names is one the agent may use. compose's
    classic builder sends the engine no cache sources at all (only its no-cache switch), so on
    the engine's own socket every service build gets build.no_cache; behind the proxy, which
    gives each build the agent's own images as its sources, the builds keep their cache."""
    services = (model.get("services") or {}).items()
    builds: list[tuple[str, dict[str, Any]]] = [
        (name, service["build"]) for name, service in services
        if isinstance(service, dict) and isinstance(service.get("build"), dict)
    ]
    for name, build in builds:
        check_keyed_model(name, build)
        given = build.get("cache_from")
        entries = [str(entry) for entry in given] if isinstance(given, list) else []
        named_sources(ctx, entries, f"service {name!r}: build.cache_from image")
        if not ctx.policy.through_proxy():
            # Stops: compose's build taking the operator's matching layer from the whole store.
            build["no_cache"] = True
