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
    # output redacted for objects the agent does not own (gatekeeper.redaction)
    "inspect": inspect_family,
    "container inspect": inspect_family,
    "image inspect": inspect_family,
    "network inspect": inspect_family,
    "volume inspect": inspect_family,
    "compose config": compose_config_family,
}
