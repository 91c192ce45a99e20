"""Inspect and compose config print secrets: their output goes through a redaction
filter (gatekeeper.redaction), so the commands here only choose the filter and
keep the output in a form the filter can read (JSON on stdout).
"""

from __future__ import annotations

from gatekeeper.errors import Denied

TYPE_CHECKING = False  # typing costs an import on the ForceCommand path
if TYPE_CHECKING:
    from gatekeeper.vetting.context import Context

REDACT_INSPECT = "redact-inspect"
# Not a filter of stdout: docker runs against gatekeeper.redacting_engine, which hands
# the CLI every object the agent does not own already redacted; docker formats it.
REDACT_AT_SOURCE = "redact-at-source"
REDACT_COMPOSE_CONFIG = "redact-compose-config"

# compose config flags that print lists of names instead of the project: nothing to redact.
COMPOSE_NAME_LISTS = frozenset({"services", "volumes", "networks", "models", "profiles", "images",
                                "hash", "quiet"})
# compose config flags whose output the filter cannot see or clean.
COMPOSE_UNFILTERED = {
    "environment": "prints the values interpolation used (env files included) in plain text",
    "variables": "prints the variables and their values in plain text",
    "output": "writes the project to a file, past the redaction of stdout",
}


def vet_inspect(ctx: Context) -> None:
    """docker inspect: objects the agent does not own are shown redacted.

    Without a template docker prints JSON and the filter redacts it. A Go template
    (`{{.Config.Env}}`) runs inside docker, before any filter could see the values,
    so then docker is given the objects already redacted (REDACT_AT_SOURCE).
    """
    if any(use.flag.long == "format" for use in ctx.parsed.uses):
        check_redactable_host(ctx)
        ctx.vetted.output_filter = REDACT_AT_SOURCE
        return
    ctx.vetted.output_filter = REDACT_INSPECT


def vet_listing_format(ctx: Context) -> None:
    """ps/images/volume ls/network ls with --format: a template (`{{.Labels}}`, `{{json .}}`,
    `json`) prints the labels of every object listed, the operator's too; docker then lists
    from gatekeeper.redacting_engine, which hands it the objects the agent does not own with
    the values under [redact] keys hidden (the default table shows no labels)."""
    check_redactable_host(ctx)
    ctx.vetted.output_filter = REDACT_AT_SOURCE


def check_redactable_host(ctx: Context) -> None:
    if not str(ctx.policy.host).startswith("unix://"):
        # Stops: a template on an engine we cannot stand in front of would print raw values.
        raise Denied(f"--format is not allowed for 'docker {ctx.located.spelled}' with a "
                     "docker.host that is not unix://; run it without the template", rule="inspect-format")


def vet_compose_config(ctx: Context) -> None:
    """docker compose config: the project printed as JSON (which is also YAML), redacted."""
    names = {use.flag.long for use in ctx.parsed.uses}
    for name, why in COMPOSE_UNFILTERED.items():
        if name in names:
            raise Denied(f"--{name} is not allowed for 'docker compose config': {why}",
                         rule="compose-config-unfiltered")
    if names & COMPOSE_NAME_LISTS:
        return
    for use in ctx.parsed.uses:
        if use.flag.long == "format":
            ctx.remove_use(use)
    ctx.insert_after_command(["--format=json"])
    ctx.vetted.output_filter = REDACT_COMPOSE_CONFIG
