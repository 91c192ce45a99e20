"""Rules beyond single flags, per command family: canonical path -> vetter.

Each vetter takes the vetting Context and raises Denied or records rewrites.
Modules are imported only when their family is being decided.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing itself costs milliseconds on the ForceCommand path
if TYPE_CHECKING:
    from collections.abc import Callable

    from gatekeeper.vetting.context import Context


def run_family(ctx: Context) -> None:
    from gatekeeper.vetting.limits import vet_run_limits
    from gatekeeper.vetting.log_caps import vet_log_caps
    from gatekeeper.vetting.run import vet_run

    vet_run(ctx)
    vet_run_limits(ctx)
    vet_log_caps(ctx)


def build_family(ctx: Context) -> None:
    from gatekeeper.vetting.build import vet_build
    from gatekeeper.vetting.limits import vet_build_limits

    vet_build(ctx)
    vet_build_limits(ctx)


def compose_family(ctx: Context) -> None:
    from gatekeeper.vetting.compose import vet_compose

    vet_compose(ctx)


def start_family(ctx: Context) -> None:
    from gatekeeper.vetting.limits import vet_start_limits
    from gatekeeper.vetting.run import vet_start

    vet_start(ctx)
    vet_start_limits(ctx)


def network_create_family(ctx: Context) -> None:
    from gatekeeper.vetting.addresses import vet_network_create

    vet_network_create(ctx)


def restart_family(ctx: Context) -> None:
    from gatekeeper.vetting.limits import vet_start_limits

    vet_start_limits(ctx)


def inspect_family(ctx: Context) -> None:
    from gatekeeper.vetting.inspect import vet_inspect

    vet_inspect(ctx)


# Fields of the ps, images, volume ls and network ls templates that print no labels.
PLAIN_LISTING_FIELDS = frozenset({
    "ID", "Names", "Image", "Command", "CreatedAt", "RunningFor", "Ports", "State", "Status", "Size",
    "Mounts", "Networks", "LocalVolumes", "Repository", "Tag", "Digest", "CreatedSince", "SharedSize",
    "UniqueSize", "VirtualSize", "Containers", "Name", "Driver", "Scope", "Mountpoint", "Links",
    "IPv6", "Internal",
})  # fmt: skip


# compose ps's own fields (its ContainerSummary) that print no labels, besides the above.
PLAIN_COMPOSE_PS_FIELDS = PLAIN_LISTING_FIELDS | frozenset({
    "Service", "Project", "Health", "ExitCode", "Publishers",
})  # fmt: skip


def listing_family(ctx: Context, plain: frozenset[str] = PLAIN_LISTING_FIELDS) -> None:
    """ps, images, volume ls, network ls: a --format template other than plain fields
    (`{{.Labels}}`, `{{.Label "k"}}`, `{{json .}}`, `{{.}}`, `json`) can print labels
    (nothing loaded for plain ones: `docker ps --format '{{.Names}}'` is the hot path)."""
    for use in ctx.parsed.uses:
        if use.flag.long == "format" and not plain_listing_template(use.value or "", plain):
            from gatekeeper.vetting.inspect import vet_listing_format

            vet_listing_format(ctx)
            return


def image_listing_family(ctx: Context) -> None:
    """image ls: under [scope] images = "owned" its owner filter also selects the operator's
    image built FROM the agent's (the label is inherited), so the list comes from the redacting
    stand-in, which keeps the images a build record names (gatekeeper.build_records)."""
    listing_family(ctx)
    if ctx.policy.scope_of("images") == "owned":
        from gatekeeper.vetting.inspect import vet_listing_format

        # Stops: `docker images` naming the operator's descendant of the agent's image.
        vet_listing_format(ctx)


def compose_ps_family(ctx: Context) -> None:
    """compose ps: a read-only listing of any project's containers (no ownership check), so
    a template printing labels lists from the redacting stand-in as docker ps does (compose,
    a CLI plugin, talks to the DOCKER_HOST it is given)."""
    compose_family(ctx)
    listing_family(ctx, PLAIN_COMPOSE_PS_FIELDS)
    owned_listing(ctx)


def compose_listing_family(ctx: Context) -> None:
    """compose ls, compose images: they list containers straight from the engine."""
    compose_family(ctx)
    owned_listing(ctx)


def owned_listing(ctx: Context) -> None:
    """Under [scope] ps = "owned" (or images = "owned") a list docker or compose reads from the
    engine itself, with no filter of ours on its argv (compose ls/ps/images, system df -v),
    comes from the redacting stand-in, which leaves out what the agent does not own."""
    from gatekeeper.redaction import owned_lists

    if owned_lists(ctx.policy):
        from gatekeeper.vetting.inspect import vet_listing_format

        # Stops: `compose ls -a` naming the operator's projects (their compose files' host
        # paths) and `system df -v` its containers, where `docker ps` shows only the agent's.
        vet_listing_format(ctx)


def disk_usage_family(ctx: Context) -> None:
    """system df: with -v a --format template runs on the whole disk usage, every image,
    container and volume with its labels (`{{json .}}`, `{{range .Containers}}{{.Labels}}`),
    the operator's too: any template lists from the redacting stand-in (the tables show no
    labels)."""
    if any(use.flag.long == "format" for use in ctx.parsed.uses):
        from gatekeeper.vetting.inspect import vet_listing_format

        vet_listing_format(ctx)
    else:
        owned_listing(ctx)


def plain_listing_template(text: str, plain: frozenset[str] = PLAIN_LISTING_FIELDS) -> bool:
    """Literal text and `{{.Field}}` actions of `plain` fields only (a `table` prefix
    is literal text here); anything else, the `json` format included, is not plain."""
    if text.strip() == "json":
        return False
    rest = text
    while "{{" in rest:
        _, _, action = rest.partition("{{")
        field, closed, rest = action.partition("}}")
        field = field.strip()
        if not closed or not field.startswith(".") or field[1:] not in plain:
            return False
    return True


def compose_config_family(ctx: Context) -> None:
    from gatekeeper.vetting.compose import vet_compose
    from gatekeeper.vetting.inspect import vet_compose_config

    vet_compose(ctx)
    vet_compose_config(ctx)


COMPOSE_COMMANDS_VETTED = (
    "up", "down", "ps", "logs", "start", "stop", "restart", "pull", "build",
    "config", "ls", "images", "top", "version", "create", "run", "rm", "kill",
)  # fmt: skip

FAMILY_VETTERS: dict[str, Callable[[Context], None]] = {
    "container run": run_family,
    "container create": run_family,
    "container start": start_family,
    "container restart": restart_family,
    "image build": build_family,
    "network create": network_create_family,
    **{f"compose {name}": compose_family for name in COMPOSE_COMMANDS_VETTED},
    "compose ps": compose_ps_family,
    "compose ls": compose_listing_family,
    "compose images": compose_listing_family,
    # output redacted for objects the agent does not own (gatekeeper.redaction)
    "inspect": inspect_family,
    "container inspect": inspect_family,
    "image inspect": inspect_family,
    "network inspect": inspect_family,
    "volume inspect": inspect_family,
    "compose config": compose_config_family,
    "container ls": listing_family,
    "image ls": image_listing_family,
    "volume ls": listing_family,
    "network ls": listing_family,
    "system df": disk_usage_family,
}
