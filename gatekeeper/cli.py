"""Entry point: ForceCommand mode unless the first argument names an operator command.

The ForceCommand path parses its two options by hand and imports nothing it
does not need (no argparse, no rich). Operator commands are imported lazily.
Any exception that escapes is a denial: one line on stderr, never a traceback.

Outside sshd (no SSH_CONNECTION, which sshd always sets) a bare `gatekeeper` or
an unknown word is an operator at a terminal: they get the list of subcommands
(exit 64, EX_USAGE) and nothing is written to the audit log.
"""

from __future__ import annotations

import os
import sys

from gatekeeper.errors import EX_CONFIG, EX_SOFTWARE, GatekeeperError

# Operator commands: name -> "module:function" taking argv and returning an exit code.
OPERATOR_COMMANDS = {
    "check": "gatekeeper.operator.check:main",
    "policy": "gatekeeper.operator.policy_cmd:main",
    "audit": "gatekeeper.views.cli:audit_main",
    "replay": "gatekeeper.views.cli:replay_main",
    "authorized-key": "gatekeeper.authorized_key:main",
    "sshd-check": "gatekeeper.operator.sshd_check:main",
    "rules": "gatekeeper.rules:main",
    "install-entry": "gatekeeper.operator.install_entry:main",
    "doctor": "gatekeeper.operator.doctor:main",
    "approve": "gatekeeper.operator.approve:approve_main",
    "deny": "gatekeeper.operator.approve:deny_main",
    "completion": "gatekeeper.operator.completion:main",
    "proxy": "gatekeeper.operator.proxy_cmd:main",
}

# One line each for `gatekeeper --help` (tests/test_cli.py: every command has one).
OPERATOR_SUMMARIES = {
    "check": "decide a command as the agent would be, without running it",
    "policy": "show, check or compile a policy file",
    "audit": "read the audit log (filters, --summary, --follow, --json)",
    "replay": "decide every logged command again under another policy",
    "authorized-key": "print the authorized_keys line for an agent's public key",
    "sshd-check": "fail unless sshd -T gives the agent exactly the drop-in's settings",
    "rules": "list every rule id a denial can name, with its one-line why",
    "install-entry": "write the ForceCommand entry script (isolated python, no runpy)",
    "doctor": "check this machine's deployment and say what to fix",
    "approve": "approve a pending request of the agent ([approval] ask), or --list them",
    "deny": "deny a pending request of the agent",
    "completion": "print a bash completion script (gatekeeper completion bash)",
    "proxy": "serve the engine's API to [proxy.users], allowing only what the policy allows",
}

EX_USAGE = 64
HELP_WORDS = ("--help", "-h", "help")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        return dispatch(args)
    except GatekeeperError as error:
        sys.stderr.write(f"gatekeeper: denied: {error.message} (rule {error.rule})\n")
        return error.exit_code
    except KeyboardInterrupt:
        return 130
    except BaseException as error:
        if isinstance(error, SystemExit):
            raise
        sys.stderr.write(f"gatekeeper: denied: internal error ({type(error).__name__}); see syslog\n")
        report_internal_error(error)
        return EX_SOFTWARE


def dispatch(args: list[str]) -> int:
    if args and args[0] in OPERATOR_COMMANDS:
        return run_operator_command(args[0], args[1:])
    if args and args[0] in HELP_WORDS:
        return print_help(sys.stdout, 0)
    if args == ["--version"]:
        return print_version()
    if "SSH_CONNECTION" not in os.environ and parse_forcecommand_options(args) in (None, {}):
        return outside_sshd(args)
    return forcecommand_main(args)


def forcecommand_main(args: list[str]) -> int:
    options = parse_forcecommand_options(args)
    if options is None:
        sys.stderr.write(
            "gatekeeper: denied: bad ForceCommand arguments "
            "(expected [--policy FILE] [--name PROFILE]); ask the operator to fix sshd_config\n"
        )
        return EX_CONFIG
    from gatekeeper.forcecommand import run_forcecommand

    return run_forcecommand(options.get("--policy"), options.get("--name"))


def parse_forcecommand_options(args: list[str]) -> dict[str, str] | None:
    """'--policy FILE' and '--name NAME', each at most once, '=' form allowed."""
    options: dict[str, str] = {}
    i = 0
    while i < len(args):
        name, eq, value = args[i].partition("=")
        if name not in ("--policy", "--name") or name in options:
            return None
        if not eq:
            if i + 1 >= len(args):
                return None
            i += 1
            value = args[i]
        options[name] = value
        i += 1
    return options


def outside_sshd(args: list[str]) -> int:
    """A person at a terminal typed `gatekeeper` or a wrong word: help, not a denial."""
    if args:
        sys.stderr.write(f"gatekeeper: unknown command {args[0]!r}{suggestion(args[0])}\n\n")
    return print_help(sys.stderr, EX_USAGE)


def suggestion(word: str) -> str:
    import difflib

    close = difflib.get_close_matches(word, [*OPERATOR_COMMANDS, "--help", "--version"], n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def print_help(stream: object, code: int) -> int:
    width = max(len(name) for name in OPERATOR_SUMMARIES)
    lines = [
        "usage: gatekeeper COMMAND [ARGS...]      (operator commands; COMMAND --help for more)",
        "       gatekeeper [--policy FILE] [--name PROFILE]   (the sshd ForceCommand)",
        "",
        "commands:",
        *(f"  {name:<{width}}  {summary}" for name, summary in OPERATOR_SUMMARIES.items()),
        "",
        "examples:",
        "  gatekeeper check 'docker run -v /etc:/x busybox'",
        "  gatekeeper audit --denied --since 1h",
        "  gatekeeper authorized-key /tmp/agent.pub --from 192.0.2.10",
        "",
        "Run by sshd (SSH_CONNECTION set), it vets SSH_ORIGINAL_COMMAND against the policy.",
    ]
    stream.write("\n".join(lines) + "\n")  # type: ignore[attr-defined]
    return code


def print_version() -> int:
    from gatekeeper import __version__

    sys.stdout.write(f"gatekeeper {__version__}\n")
    return 0


def run_operator_command(name: str, args: list[str]) -> int:
    import importlib

    module_name, _, function = OPERATOR_COMMANDS[name].partition(":")
    module = importlib.import_module(module_name)
    return int(getattr(module, function)(args))


def report_internal_error(error: BaseException) -> None:
    try:
        import traceback

        from gatekeeper.audit import to_syslog

        to_syslog("internal error: " + "".join(traceback.format_exception(error)).replace("\n", " | "))
    except Exception:  # noqa: BLE001, S110 - reporting must never raise
        pass
