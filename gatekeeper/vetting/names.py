"""[names] prefix at the CLI layer: the names a command gives to what it creates.

The rule itself is gatekeeper.name_prefix (pure, shared with the proxy); this module
says which words of which command give a name. New named volumes of run/create are
checked where they are prepared (gatekeeper.vetting.volumes); a compose project's
names are read from the vetted model compose is fed (its `name`, which compose took
from -p, the file's `name:` or the directory; the non-external volumes and networks,
named `<project>_<key>` unless the file names them; `container_name`; the image names
and build tags of services that build).
"""

from __future__ import annotations

from gatekeeper.name_prefix import CONTAINER, IMAGE, NETWORK, PROJECT, VOLUME, check_name

TYPE_CHECKING = False  # typing costs an import on the ForceCommand path
if TYPE_CHECKING:
    from typing import Any

    from gatekeeper.vetting.context import Context

# (canonical command, flag) -> the kind of name the flag's value gives.
NAMING_FLAGS: dict[tuple[str, str], str] = {
    ("container run", "name"): CONTAINER,
    ("container create", "name"): CONTAINER,
    ("compose run", "name"): CONTAINER,
    ("image build", "tag"): IMAGE,
}

# canonical command -> the kind of name its first positional gives.
NAMING_POSITIONALS: dict[str, str] = {"network create": NETWORK}

# compose commands that create the project's objects (containers, volumes, networks, images).
COMPOSE_CREATING = frozenset({"compose up", "compose create", "compose run", "compose build"})

# Every command this module checks (gatekeeper.vetting.vet calls it for these only).
NAMING = frozenset({command for command, _ in NAMING_FLAGS} | set(NAMING_POSITIONALS) | COMPOSE_CREATING)


def vet_given_names(ctx: Context) -> None:
    """Every name the command gives starts with the policy's [names] prefix (with or without one,
    none reads as an ID prefix: gatekeeper.name_prefix.check_name)."""
    prefix = ctx.policy.name_prefix
    canonical = ctx.located.canonical
    for use in ctx.parsed.uses:
        kind = NAMING_FLAGS.get((canonical, use.flag.long))
        if kind is not None:
            check_name(prefix, kind, use.value or "", use.spelled)
        elif canonical == "image build" and use.flag.long == "output":
            from gatekeeper.vetting.namespaces import image_output_names

            for name in image_output_names(use):
                check_name(prefix, IMAGE, name, f"{use.spelled} name=")
    kind = NAMING_POSITIONALS.get(canonical)
    if kind is not None and ctx.parsed.positionals:
        check_name(prefix, kind, ctx.parsed.positionals[0], f"{ctx.located.spelled}")
    model = ctx.vetted.compose_model
    if canonical in COMPOSE_CREATING and model is not None:
        check_compose_names(prefix, model)


def check_compose_names(prefix: str, model: dict[str, Any]) -> None:
    check_name(prefix, PROJECT, str(model.get("name") or ""), "compose")
    for section, kind in (("volumes", VOLUME), ("networks", NETWORK)):
        for key, item in (model.get(section) or {}).items():
            if isinstance(item, dict) and not item.get("external"):
                check_name(prefix, kind, str(item.get("name") or key), f"compose top-level {kind} {key!r}")
    for name, service in (model.get("services") or {}).items():
        if not isinstance(service, dict):
            continue
        where = f"compose service {name!r}"
        if service.get("container_name"):
            check_name(prefix, CONTAINER, str(service["container_name"]), f"{where} container_name")
        build = service.get("build")
        if build is None:
            continue  # the image named is pulled, not given
        if service.get("image"):
            check_name(prefix, IMAGE, str(service["image"]), f"{where} image (built)")
        for tag in (build.get("tags") or []) if isinstance(build, dict) else []:
            check_name(prefix, IMAGE, str(tag), f"{where} build tag")
