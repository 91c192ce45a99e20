"""Operator commands: run by a person or a script, never on the ForceCommand path.

Every operator command lives in this package, and ``COMMANDS`` is the one table
``gatekeeper.cli`` dispatches through: it hands over whatever is not ForceCommand
options (``--policy FILE``, ``--name PROFILE``), and imports this package only then.
Each module is imported when its command runs; ``views`` (the audit log views) is
the only place rich is imported.

Outside sshd (no SSH_CONNECTION, which sshd always sets) a bare `gatekeeper` or
an unknown word is an operator at a terminal: they get the list of subcommands
(exit 64, EX_USAGE) and nothing is written to the audit log. Under sshd the same
words stay the ForceCommand's configuration error (cli.dispatch does not hand them here).
"""

from __future__ import annotations

import sys
from typing import Final, NamedTuple, TextIO


class Command(NamedTuple):
    target: str  # "module:function" taking argv (without the command's name), returning an exit code
    summary: str  # one line for `gatekeeper --help` (tests/test_cli.py: every command has one)


COMMANDS: Final = {
    "check": Command("gatekeeper.operator.check:main",
                     "decide a command as the agent would be, without running it"),
    "policy": Command("gatekeeper.operator.policy_cmd:main",
                      "show, check or compile a policy file"),
    "audit": Command("gatekeeper.operator.views.audit:audit_main",
                     "read the audit log (filters, --summary, --follow, --json)"),
    "replay": Command("gatekeeper.operator.views.replay:replay_main",
                      "decide every logged command again under another policy"),
    "authorized-key": Command("gatekeeper.operator.authorized_key:main",
                              "print the authorized_keys line for an agent's public key"),
    "sshd-check": Command("gatekeeper.operator.sshd_check:main",
                          "fail unless sshd -T gives the agent exactly the drop-in's settings"),
    "rules": Command("gatekeeper.operator.rules_cmd:main",
                     "list every rule id a denial can name, with its one-line why"),
    "install-entry": Command("gatekeeper.operator.install_entry:main",
                             "write the ForceCommand entry script (isolated python, no runpy)"),
    "doctor": Command("gatekeeper.operator.doctor:main",
                      "check this machine's deployment and say what to fix"),
    "approve": Command("gatekeeper.operator.approve:approve_main",
                       "approve a pending request of the agent ([approval] ask), or --list them"),
    "deny": Command("gatekeeper.operator.approve:deny_main",
                    "deny a pending request of the agent"),
    "completion": Command("gatekeeper.operator.completion:main",
                          "print a bash completion script (gatekeeper completion bash)"),
    "resident": Command("gatekeeper.operator.resident_cmd:main",
                        "serve the ForceCommand to gatekeeper-ssh-resident from pre-started workers"),
    "proxy": Command("gatekeeper.operator.proxy_cmd:main",
                     "serve the engine's API to [proxy.users], allowing only what the policy allows"),
}  # fmt: skip

EX_USAGE: Final = 64
HELP_WORDS: Final = ("--help", "-h", "help")


def handles(args: list[str]) -> bool:
    """An operator command, --help or --version (anything else is a wrong word)."""
    return (bool(args) and (args[0] in COMMANDS or args[0] in HELP_WORDS)) or args == ["--version"]


def main(args: list[str]) -> int:
    """What `handles`, and outside sshd any other word (cli.dispatch sends the rest elsewhere)."""
    if args and args[0] in COMMANDS:
        return run_command(args[0], args[1:])
    if args and args[0] in HELP_WORDS:
        return print_help(sys.stdout, 0)
    if args == ["--version"]:
        return print_version()
    return outside_sshd(args)


def run_command(name: str, args: list[str]) -> int:
    import importlib

    module_name, _, function = COMMANDS[name].target.partition(":")
    module = importlib.import_module(module_name)
    return int(getattr(module, function)(args))


def outside_sshd(args: list[str]) -> int:
    """A person at a terminal typed `gatekeeper` or a wrong word: help, not a denial."""
    if args:
        sys.stderr.write(f"gatekeeper: unknown command {args[0]!r}{suggestion(args[0])}\n\n")
    return print_help(sys.stderr, EX_USAGE)


def suggestion(word: str) -> str:
    import difflib

    close = difflib.get_close_matches(word, [*COMMANDS, "--help", "--version"], n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def print_help(stream: TextIO, code: int) -> int:
    width = max(len(name) for name in COMMANDS)
    lines = [
        "usage: gatekeeper COMMAND [ARGS...]      (operator commands; COMMAND --help for more)",
        "       gatekeeper [--policy FILE] [--name PROFILE]   (the sshd ForceCommand)",
        "",
        "commands:",
        *(f"  {name:<{width}}  {command.summary}" for name, command in COMMANDS.items()),
        "",
        "examples:",
        "  gatekeeper check 'docker run -v /etc:/x busybox'",
        "  gatekeeper audit --denied --since 1h",
        "  gatekeeper authorized-key /tmp/agent.pub --from 192.0.2.10",
        "",
        "Run by sshd (SSH_CONNECTION set), it vets SSH_ORIGINAL_COMMAND against the policy.",
    ]
    stream.write("\n".join(lines) + "\n")
    return code


def print_version() -> int:
    from gatekeeper import __version__

    sys.stdout.write(f"gatekeeper {__version__}\n")
    return 0
