"""Entry point: ForceCommand mode unless the first argument names an operator command.

The ForceCommand path parses its two options by hand and imports nothing it
does not need (no argparse, no rich). Operator commands are imported lazily.
Any exception that escapes is a denial: one line on stderr, never a traceback.
"""

from __future__ import annotations

import sys

from gatekeeper.errors import EX_CONFIG, EX_SOFTWARE, GatekeeperError

# Operator commands: name -> "module:function" taking argv and returning an exit code.
OPERATOR_COMMANDS = {
    "check": "gatekeeper.operator.check:main",
    "policy": "gatekeeper.operator.policy_cmd:main",
    "audit": "gatekeeper.views.cli:audit_main",
    "replay": "gatekeeper.views.cli:replay_main",
    "authorized-key": "gatekeeper.authorized_key:main",
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        if args and args[0] in OPERATOR_COMMANDS:
            return run_operator_command(args[0], args[1:])
        return forcecommand_main(args)
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
