"""Find the command in docker's argv the way docker/cli 28.x does.

docker parses its global options with interspersing off (the first word that
is not a flag is the command), then cobra walks the command tree. Names that
are not built-in commands go to CLI plugins: we only know compose and buildx,
everything else is unknown and denied.
"""

from __future__ import annotations

from gatekeeper.errors import Denied
from gatekeeper.grammar import names
from gatekeeper.grammar.commands import TOP_LEVEL
from gatekeeper.grammar.pflag import Parsed, walk


class Located:
    """Where the command is: global flags, canonical path, where its args start."""

    __slots__ = ("global_flags", "plugin_flags", "canonical", "spelled", "args_start")

    def __init__(self, global_flags: Parsed, plugin_flags: Parsed | None,
                 canonical: str, spelled: str, args_start: int) -> None:
        self.global_flags = global_flags
        self.plugin_flags = plugin_flags
        self.canonical = canonical
        self.spelled = spelled  # the command words as written: "container exec"
        self.args_start = args_start  # index in argv of the command's own args


def locate_command(argv: list[str]) -> Located:
    """argv[0] is 'docker'. Raise Denied for anything docker would not run as a known command."""
    from gatekeeper.grammar.docker_flags import GLOBAL

    global_flags = walk(argv[1:], GLOBAL, interspersed=False, what="docker", offset=1)
    at = 1 + global_flags.rest_start
    if at >= len(argv):
        raise Denied("no docker command given", rule="no-command")
    name = argv[at]
    if name in TOP_LEVEL:
        return Located(global_flags, None, TOP_LEVEL[name], name, at + 1)
    if names.is_plugin(name):
        return locate_plugin_command(argv, at, global_flags)
    if names.is_management(name):
        return locate_subcommand(argv, at, global_flags, None, at + 1)
    raise Denied(
        f"unknown docker command {name!r} (docker would run it as a CLI plugin)",
        rule="unknown-command",
    )


def locate_plugin_command(argv: list[str], at: int, global_flags: Parsed) -> Located:
    """compose/buildx: the plugin's own root flags come before its subcommand."""
    name = argv[at]
    plugin_flags = walk(argv[at + 1 :], names.plugin_global_flags(name),
                        interspersed=False, what=f"docker {name}", offset=at + 1)
    return locate_subcommand(argv, at, global_flags, plugin_flags, at + 1 + plugin_flags.rest_start)


def locate_subcommand(argv: list[str], at: int, global_flags: Parsed,
                      plugin_flags: Parsed | None, sub_at: int) -> Located:
    group = argv[at]
    if sub_at >= len(argv):
        raise Denied(f"'docker {group}' needs a subcommand", rule="no-command")
    sub = argv[sub_at]
    if sub.startswith("-"):
        raise Denied(f"flags between 'docker {group}' and its subcommand are not allowed",
                     rule="unknown-flag")
    canonical = names.subcommand(group, sub)
    if canonical is None:
        raise Denied(f"unknown command 'docker {group} {sub}'", rule="unknown-command")
    return Located(global_flags, plugin_flags, canonical, f"{group} {sub}", sub_at + 1)


def walk_command_flags(argv: list[str], located: Located) -> Parsed:
    """The command's own flags and positionals, or Denied for unknown flags."""
    table = names.flag_table(located.canonical)
    if table is None:
        raise Denied(f"no flag grammar for 'docker {located.canonical}'", rule="no-grammar")
    return walk(
        argv[located.args_start :], table,
        interspersed=names.is_interspersed(located.canonical),
        what=f"docker {located.spelled}", offset=located.args_start,
    )
