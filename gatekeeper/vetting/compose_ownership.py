"""Ownership rails for docker compose, on the vetted model compose is fed.

Runs after gatekeeper.vetting.compose has pinned the project (Vetted.compose_model
is the vetted model compose will be fed, its `name` the project compose acts on):

* Every service (and its build), top-level volume and network that compose may
  create gets the label gatekeeper.owner=<profile>; labels under `gatekeeper.`
  written by the agent (in the files, label_file or `run -l`) are refused.
* compose finds a project's containers by the label com.docker.compose.project,
  so a compose file naming the operator's project could stop, recreate or
  remove its containers: every existing container of the project must be owned
  (logs/top follow their [scope] key), and for the commands that stop or
  remove, none may be protected.
* `down` removes the project's networks, with -v its named volumes: each one
  that exists must be owned and unprotected. `down --rmi` is refused under
  [scope] rmi = "owned": compose would remove the services' images, pulled ones too.
"""

from __future__ import annotations

from gatekeeper.engine_objects import CONTAINER, NETWORK, VOLUME, query, resolve
from gatekeeper.errors import Denied
from gatekeeper.label_rules import (
    INHERITED_RULE,
    check_label,
    check_owned,
    check_unprotected,
    created_labels,
    owner_of,
    scope,
)
from gatekeeper.owner import CREATED_LABEL, OWNER_LABEL

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from gatekeeper.vetting.context import Context

PROJECT_LABEL = "com.docker.compose.project"
# Subcommands that create containers from the services' images: their labels are inherited.
CREATING = frozenset({"compose up", "compose create", "compose run"})
PULLING_POLICIES = ("always", "daily", "weekly", "every_")  # pull_policy values that pull again
# What `docker compose build` with the classic builder (behind the proxy) marks its images with;
# nothing acts on it (gatekeeper.proxy.images accepts exactly this pair on builds).
COMPOSE_BUILDER = ("com.docker.compose.image.builder", "classic")
# Labels compose writes on every container it creates (its api/labels.go), whatever the image says;
# an image compose built carries the first three from its service.
COMPOSE_CONTAINER_LABELS = frozenset({
    PROJECT_LABEL, "com.docker.compose.service", "com.docker.compose.version", "com.docker.compose.oneoff",
    "com.docker.compose.container-number", "com.docker.compose.config-hash",
})  # fmt: skip
# Subcommands that only read the model or list: no project check.
READ_ONLY = frozenset({"compose ps", "compose images", "compose config", "compose ls", "compose version"})
# Subcommands whose project check follows a [scope] key; all others are owned-only.
SCOPED = {"compose logs": "logs", "compose top": "top"}
# Subcommands that stop, recreate or remove containers: [protect] applies.
REMOVING = frozenset({
    "compose down", "compose stop", "compose kill", "compose restart", "compose rm",
    "compose up", "compose create", "compose run",
})  # fmt: skip


def vet_compose_ownership(ctx: Context) -> None:
    model = ctx.vetted.compose_model
    if ctx.located.canonical in READ_ONLY or model is None:
        return
    refuse_reserved(ctx, model)
    from gatekeeper.vetting.namespaces import vet_compose_namespaces

    vet_compose_namespaces(ctx, model)
    if ctx.located.canonical in CREATING:
        check_service_image_labels(ctx, model)
    key = SCOPED.get(ctx.located.canonical)
    if key is None or scope(ctx, key) == "owned":
        check_project(ctx, str(model.get("name")), key or "compose")
    if ctx.located.canonical == "compose down":
        vet_down(ctx, model)
    label_model(model, owner_of(ctx))  # in place: the model is what compose is fed


def check_service_image_labels(ctx: Context, model: dict[str, Any]) -> None:
    """A service's containers inherit its image's labels (a Dockerfile LABEL, a pulled image's)
    except those the service and compose itself set: they follow the rules of the service's own labels,
    as run/create's image labels do (gatekeeper.vetting.ownership.check_inherited_labels). An
    image compose would pull first is refused: its labels cannot be checked before the create.
    An image compose builds (absent, or --build) is checked at the build (its Dockerfile's LABEL keys)."""
    from gatekeeper.engine_objects import IMAGE, lookup

    forced = any(use.flag.long == "pull" and (use.value or "").lower() == "always" for use in ctx.parsed.uses)
    from gatekeeper.grammar.pflag import bool_value

    building = any(use.flag.long == "build" and bool_value(use) for use in ctx.parsed.uses)
    for name, service in (model.get("services") or {}).items():
        image = service.get("image") if isinstance(service, dict) else None
        if not isinstance(image, str) or not image:
            if isinstance(service, dict):
                check_base_image_labels(ctx, name, service)  # compose builds it under its own name
                if "build" in service and not building and service.get("pull_policy") != "build":
                    check_existing_build(ctx, name, service, f"{model.get('name')}-{name}")
            continue
        built = "build" in service
        found = None if built and building else lookup(ctx, IMAGE, image)
        if built and found is None:
            check_base_image_labels(ctx, name, service)  # compose builds it: its Dockerfile was checked
            continue
        where = f"compose service {name!r} image {image!r}"
        pulling = str(service.get("pull_policy") or "").startswith(PULLING_POLICIES)
        if not built and (forced or pulling):
            # Stops: the pull bringing a new image whose labels nobody checked before the create.
            raise Denied(f"{where}: compose pulls it again before the create, so its labels cannot be "
                         "checked; run 'docker compose pull' first, without pull_policy always or --pull "
                         "always", rule=INHERITED_RULE)
        if found is None:
            # Stops: compose pulling an image with LABEL traefik.* (or compose.*) its containers inherit.
            raise Denied(f"{where} is not on the engine; run 'docker compose pull' first: a container "
                         "inherits its image's labels, which are checked before the create",
                         rule=INHERITED_RULE)
        check_inherited(ctx, service, found.labels, where)
        from gatekeeper.vetting.images import check_image_use, target_facts

        # Stops: a service running the operator's local image (its files, its ENV).
        check_image_use(ctx, image, target_facts(found), f"compose service {name!r}: image")


def check_existing_build(ctx: Context, name: str, service: dict[str, Any], image: str) -> None:
    """A service compose builds under its own name for it, <project>-<service>: if the engine
    has that image, compose runs it as it is (no --build). Its labels and its use are judged as
    an image: of the service's would be."""
    from gatekeeper.engine_objects import IMAGE, lookup
    from gatekeeper.vetting.images import check_image_use, target_facts

    found = lookup(ctx, IMAGE, image)
    if found is None:
        return  # compose builds it: its Dockerfile and base images were checked
    # Stops: `docker build -t <project>-<service>` FROM an image labelled traefik.*, then compose
    # up of a clean Dockerfile: compose finds the image and runs it without building.
    where = f"compose service {name!r} image {image!r} (compose's name for what it builds)"
    check_inherited(ctx, service, found.labels, where)
    check_image_use(ctx, image, target_facts(found), f"compose service {name!r}: image")


def check_inherited(ctx: Context, service: dict[str, Any], labels: dict[str, str], where: str) -> None:
    """Image labels a service's containers inherit (those the service and compose do not set)."""
    own = service_label_keys(service) | COMPOSE_CONTAINER_LABELS
    for key, value in sorted(labels.items()):
        if (key, value) == COMPOSE_BUILDER:
            continue  # compose's classic-builder mark on what it built (the proxy's one exception)
        if key not in own and key not in (OWNER_LABEL, CREATED_LABEL):
            check_label(ctx, f"{key}={value}", f"{where}: label")


def check_base_image_labels(ctx: Context, name: str, service: dict[str, Any]) -> None:
    """A service compose builds: its image carries the labels of the images its Dockerfile
    starts FROM (docker copies them), and its containers inherit them; they follow the rules
    of the service's own labels, as a run of the built image would (the proxy checks the built
    image at the create). A base image the engine does not have is the ONBUILD check's refusal
    (gatekeeper.vetting.images.check_base_images)."""
    from gatekeeper.engine_objects import IMAGE, lookup
    from gatekeeper.vetting.images import base_images, service_dockerfile

    build = service.get("build")
    if not isinstance(build, dict):
        return
    text, where, values = service_dockerfile(ctx, name, build)
    for image, _platform in base_images(text, values, where):
        found = lookup(ctx, IMAGE, image)
        if found is not None:
            # Stops: FROM an image with LABEL traefik.* (or com.docker.compose.project=<the
            # operator's>) built and run by one compose up: the Dockerfile's own LABELs are clean.
            check_inherited(ctx, service, found.labels, f"compose service {name!r} FROM {image!r}")


def service_label_keys(service: dict[str, Any]) -> set[str]:
    labels = service.get("labels") or {}
    if isinstance(labels, list):
        return {str(entry).partition("=")[0] for entry in labels}
    return {str(key) for key in labels} if isinstance(labels, dict) else set()


def labelled_objects(model: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(where, object) for every part of the model that carries labels."""
    out = []
    for name, service in (model.get("services") or {}).items():
        out.append((f"service {name!r}", service))
        if isinstance(service.get("build"), dict):
            out.append((f"service {name!r} build", service["build"]))
    for section in ("volumes", "networks"):
        for name, item in (model.get(section) or {}).items():
            if isinstance(item, dict) and not item.get("external"):
                out.append((f"top-level {section[:-1]} {name!r}", item))
    return out


def refuse_reserved(ctx: Context, model: dict[str, Any]) -> None:
    for where, item in labelled_objects(model):
        labels = item.get("labels") or {}
        for label in labels if isinstance(labels, (dict, list)) else []:
            check_label(ctx, str(label), f"compose {where} label")
    for use in ctx.parsed.uses:
        if use.flag.long in ("label", "labels"):
            check_label(ctx, use.value or "", use.spelled)


def label_model(model: dict[str, Any], owner: str) -> None:
    for where, item in labelled_objects(model):
        labels = item.get("labels") or {}
        if isinstance(labels, list):
            labels = dict(str(entry).partition("=")[::2] for entry in labels)
        container = where.startswith("service ") and not where.endswith(" build")
        labels.update(created_labels(owner, container=container))  # containers: gatekeeper.created too
        item["labels"] = labels


def check_project(ctx: Context, name: str, key: str) -> None:
    """Every existing container of the project is the agent's (and, for commands
    that stop or remove, unprotected)."""
    args = ["container", "ls", "-a", "-q", "--no-trunc", "--filter", f"label={PROJECT_LABEL}={name}"]
    ids = query(ctx, args, f"the containers of compose project {name!r}").split()
    if not ids:
        return
    removing = ctx.located.canonical in REMOVING
    for target in resolve(ctx, CONTAINER, ids):
        target.word = target.names[0] if target.names else target.ident
        check_owned(ctx, target, key, CONTAINER)
        if removing:
            check_unprotected(ctx, target, CONTAINER)


def vet_down(ctx: Context, model: dict[str, Any]) -> None:
    flags = {use.flag.long for use in ctx.parsed.uses}
    if "rmi" in flags and scope(ctx, "rmi") == "owned":
        # Stops: `down --rmi all` removing the operator's images the services use.
        raise Denied("'docker compose down --rmi' is not allowed under [scope] rmi = \"owned\": "
                     "it removes the services' images, pulled ones too; use 'docker rmi'", rule="scope-owned")
    check_existing(ctx, model, NETWORK)
    if "volumes" in flags:
        check_existing(ctx, model, VOLUME)


def check_existing(ctx: Context, model: dict[str, Any], kind: str) -> None:
    """The model's non-external networks/volumes that exist must be owned and unprotected."""
    wanted = [str(item.get("name")) for item in (model.get(kind + "s") or {}).values()
              if isinstance(item, dict) and not item.get("external") and item.get("name")]
    if not wanted:
        return
    existing = set(query(ctx, [kind, "ls", "--format", "{{.Name}}"], f"{kind}s").split())
    present = [name for name in wanted if name in existing]
    if not present:
        return
    for target in resolve(ctx, kind, present):
        check_owned(ctx, target, "compose", kind)
        check_unprotected(ctx, target, kind)
