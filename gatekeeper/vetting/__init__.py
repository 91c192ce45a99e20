"""Vetting: every flag use and positional of an allowed command, per its check.

`vet` is called by the decision function after the command is allowed by
name. It raises Denied, or returns what it vetted: the plan of argv rewrites
(gatekeeper.rewrite_plan: e.g. a host path replaced by its resolved form) and
the compose model to feed docker.
"""

from __future__ import annotations

from gatekeeper.errors import Denied
from gatekeeper.grammar import spec
from gatekeeper.grammar.pflag import FlagUse, Parsed, bool_value
from gatekeeper.vetting.context import Context, Vetted

TYPE_CHECKING = False  # typing costs an import on the ForceCommand path
if TYPE_CHECKING:
    from collections.abc import Callable

    FlagCheck = Callable[[FlagUse, Parsed, Context], None]


def vet(ctx: Context) -> Vetted:
    """Check every flag use of the plugin and command flag sets, then the family rules.
    (docker's global options were already checked by decision.check_global_options,
    before the policy: every one that is not plain OK is refused there.)"""
    if ctx.policy.caps.max_sessions:
        from gatekeeper.vetting.sessions import check_sessions

        check_sessions(ctx)  # [limits] max_sessions, before anything slow
    for parsed in (ctx.located.plugin_flags, ctx.parsed):
        if parsed is not None:
            vet_flag_uses(parsed, ctx)
    family = family_vetter(ctx.located.canonical)
    if family is not None:
        family(ctx)
    vet_image_sources(ctx)
    if ctx.located.canonical in NAMING:
        from gatekeeper.vetting.names import vet_given_names

        vet_given_names(ctx)  # [names] prefix, names read as IDs (gatekeeper.name_prefix)
    if ctx.vetted.named_volumes:
        from gatekeeper.vetting.volumes import check_existing_volumes

        check_existing_volumes(ctx)
    if (getattr(ctx.policy, "settings", {}).get("limits") or {}).get("disk_budget"):
        from gatekeeper.vetting.disk_budget import vet_disk_budget

        vet_disk_budget(ctx)  # pull, build, new volumes: not while the profile is at its budget
    vet_host_path_invariant(ctx)
    vet_ownership(ctx)
    return ctx.vetted


def vet_image_sources(ctx: Context) -> None:
    """pull, run/create and build images from the policy's [images] allowed (gatekeeper.vetting.images)."""
    if ctx.located.canonical in ("image pull", "container run", "container create", "image build", "search"):
        from gatekeeper.vetting.images import vet_image_sources as vet_images

        vet_images(ctx)
    if ctx.located.canonical == "image build" and ctx.parsed.positionals:
        from gatekeeper.vetting.build_cache import scope_build_cache

        scope_build_cache(ctx)  # the agent's own images as the build's only cache sources


# Commands that give names to what they create (gatekeeper.vetting.names.NAMING;
# tests/test_names.py keeps the two equal): no import for the others.
NAMING = frozenset({
    "container run", "container create", "image build", "network create",
    "compose up", "compose create", "compose run", "compose build",
})  # fmt: skip


# Commands that start existing containers: the engine mounts their binds again, so
# gatekeeper.vetting.binds checks them though the command names no host path
# (binds.STARTING | binds.COMPOSE_STARTING; tests/test_binds.py keeps them equal).
STARTS_CONTAINERS = frozenset({
    "container start", "container restart", "compose start", "compose restart", "compose up",
})  # fmt: skip


def vet_host_path_invariant(ctx: Context) -> None:
    """Bind sources never nested, outputs never on a bind path (gatekeeper.vetting.binds);
    a command that mounts, writes or starts nothing has nothing to check (binds not loaded)."""
    if ctx.vetted.binds or ctx.vetted.outputs or ctx.located.canonical in STARTS_CONTAINERS:
        from gatekeeper.vetting.binds import check_host_path_invariant

        check_host_path_invariant(ctx)


def vet_ownership(ctx: Context) -> None:
    """Owner labels, [scope] and [protect] (gatekeeper.vetting.ownership), last:
    they add to the family vetters' rewrite plan and label the vetted compose model."""
    from gatekeeper.vetting.ownership import vet_ownership as vet_owned

    vet_owned(ctx)


def vet_flag_uses(parsed: Parsed, ctx: Context) -> None:
    for use in parsed.uses:
        check = flag_check(use.flag.check)
        if check is None:
            raise Denied(
                f"{use.spelled} is not allowed yet for 'docker {ctx.located.spelled}' "
                f"(its {use.flag.check!r} check is not implemented)",
                rule="unvetted-flag",
            )
        check(use, parsed, ctx)


def check_ok(use: FlagUse, parsed: Parsed, ctx: Context) -> None:
    """Allowed; value (if any) not inspected."""


def check_deny(use: FlagUse, parsed: Parsed, ctx: Context) -> None:
    why = use.flag.why or "refused by policy"
    raise Denied(f"{use.spelled} is not allowed: {why}", rule=f"flag-{use.name}")


def check_deny_true(use: FlagUse, parsed: Parsed, ctx: Context) -> None:
    """A bool flag refused when its final value is true (last occurrence wins)."""
    last = [u for u in parsed.uses if u.flag is use.flag][-1]
    if last is use and bool_value(use):
        check_deny(use, parsed, ctx)
    bool_value(use)  # an invalid spelling is an error in docker too


def check_not_negative(use: FlagUse, parsed: Parsed, ctx: Context) -> None:
    """A number refused when negative. Go's ParseInt takes a sign, then digits in any base
    ("-0x3e8", "-1_000"): a leading "-" is the sign whatever follows, so no parsing here."""
    if (use.value or "").startswith("-"):
        check_deny(use, parsed, ctx)


# PATH flags the docker CLI writes (as the agent, when the command ends); the rest it reads.
CLIENT_OUTPUT_FLAGS = frozenset({"cidfile", "iidfile", "metadata-file", "output"})


# Files docker's own CLI reads for run/create: read (and checked) once here, handed to
# docker as those bytes (gatekeeper.pinning). Plugins (compose) cannot open our descriptors:
# compose run --env-from-file gets a copy in the state directory instead (pinning.pin_copy).
PINNED_READS = frozenset({"env-file", "label-file"})
PINNED_COMMANDS = frozenset({"container run", "container create"})


def check_path(use: FlagUse, parsed: Parsed, ctx: Context) -> None:
    resolved = ctx.host_path(use.value or "", use.spelled)
    if use.flag.long in PINNED_READS and ctx.located.canonical in PINNED_COMMANDS and parsed is ctx.parsed:
        from gatekeeper.pinning import pin_read

        pin_read(ctx, use, resolved)
        return
    if use.flag.long == "env-from-file" and ctx.located.canonical == "compose run":
        from gatekeeper.pinning import pin_copy

        pin_copy(ctx, use, resolved)
        return
    if use.flag.long in CLIENT_OUTPUT_FLAGS:
        from gatekeeper.vetting.binds import add_output

        add_output(ctx, resolved, use.spelled)
    ctx.replace_value(use, resolved)


def check_path_or_stdin(use: FlagUse, parsed: Parsed, ctx: Context) -> None:
    """build -f: `-` is stdin to the CLI; a host path follows the path rule and is not
    rewritten here: vetting.images reads that Dockerfile once and hands docker its bytes
    (`--file=-`, pin_dockerfile), so the CLI never reads the file again."""
    if use.value != "-":
        ctx.host_path(use.value or "", use.spelled)


# Check name (grammar/spec.py) -> function. The value-language checks (volume,
# mount, security-opt, ...) are flag_checks.SPECIAL_CHECKS, imported only for a
# command that has such a flag: ps, logs, stop and inspect have none.
PLAIN_CHECKS: dict[str, FlagCheck] = {
    spec.OK: check_ok,
    spec.DENY: check_deny,
    spec.DENY_TRUE: check_deny_true,
    spec.NOT_NEGATIVE: check_not_negative,
    spec.PATH: check_path,
    spec.PATH_OR_STDIN: check_path_or_stdin,
    spec.ENV_FILE: check_path,
}


def flag_check(name: str) -> FlagCheck | None:
    """The check a flag's spec names (None: not implemented, refused by the caller)."""
    check = PLAIN_CHECKS.get(name)
    if check is None:
        from gatekeeper.vetting.flag_checks import SPECIAL_CHECKS

        check = SPECIAL_CHECKS.get(name)
    return check


def family_vetter(canonical: str) -> Callable[[Context], None] | None:
    """Rules beyond single flags (positionals, rendered projects), per command family."""
    from gatekeeper.vetting.families import FAMILY_VETTERS

    return FAMILY_VETTERS.get(canonical)
