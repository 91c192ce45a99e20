"""Name lookups over the command tree: policy entries and command words to
canonical paths, and canonical paths to their flag grammar."""

from __future__ import annotations

from gatekeeper.grammar.commands import MANAGEMENT, PLUGINS, TOP_LEVEL

TYPE_CHECKING = False  # typing costs an import on the ForceCommand path
if TYPE_CHECKING:
    from gatekeeper.grammar.spec import Flag


def canonical_name(name: str) -> str | None:
    """'ps' or 'container ps' or 'compose up' -> canonical path, else None."""
    words = name.split()
    if len(words) == 1:
        return TOP_LEVEL.get(words[0])
    if len(words) == 2:
        return subcommand(words[0], words[1])
    return None


def subcommand(group: str, name: str) -> str | None:
    if group == "compose":
        from gatekeeper.grammar.commands import COMPOSE_COMMANDS

        return COMPOSE_COMMANDS.get(name)
    return MANAGEMENT.get(group, {}).get(name)


def is_management(name: str) -> bool:
    return name in MANAGEMENT


def is_plugin(name: str) -> bool:
    return name in PLUGINS


def plugin_global_flags(plugin: str) -> dict[str, Flag]:
    if plugin == "compose":
        from gatekeeper.grammar.compose_flags import COMPOSE_GLOBAL

        return COMPOSE_GLOBAL
    from gatekeeper.grammar.build_flags import BUILDX_GLOBAL

    return BUILDX_GLOBAL


def flag_table(canonical: str) -> dict[str, Flag] | None:
    """The flags docker accepts for `canonical`, or None if we have no grammar."""
    if canonical == "image build":
        from gatekeeper.grammar.build_flags import BUILD, BUILDX_GLOBAL

        return {**BUILDX_GLOBAL, **BUILD}  # buildx root flags are persistent
    if canonical.startswith("compose "):
        return compose_table(canonical[len("compose ") :])
    from gatekeeper.grammar.docker_flags import FLAGS

    return FLAGS.get(canonical)


def compose_table(name: str) -> dict[str, Flag] | None:
    """Compose's project flags live on its root only (not inherited), so they
    are accepted before the subcommand and never after it."""
    from gatekeeper.grammar.compose_flags import COMPOSE_FLAGS

    return COMPOSE_FLAGS.get("compose " + name)  # the tables are keyed by canonical path


def is_interspersed(canonical: str) -> bool:
    """False where cobra calls SetInterspersed(false): flags stop at the first positional."""
    if canonical.startswith("compose "):
        from gatekeeper.grammar.compose_flags import COMPOSE_NON_INTERSPERSED

        return canonical not in COMPOSE_NON_INTERSPERSED and canonical[8:] not in COMPOSE_NON_INTERSPERSED
    from gatekeeper.grammar.docker_flags import NON_INTERSPERSED

    return canonical not in NON_INTERSPERSED
