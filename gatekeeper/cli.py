"""Entry point: the ForceCommand, unless the arguments are not ForceCommand options.

The ForceCommand path parses its two options by hand and imports nothing it
does not need (no argparse, no rich, nothing of gatekeeper.operator). Anything
else (an operator command, --help, --version, a wrong word) goes to
gatekeeper.operator, the one package of operator commands and their table.
Any exception that escapes is a denial: one line on stderr, never a traceback.
"""

from __future__ import annotations

import posix  # os's system calls without importing os (gatekeeper.environment)
import sys

from gatekeeper.environment import getenv
from gatekeeper.errors import EX_CONFIG, EX_SOFTWARE, GatekeeperError

TYPE_CHECKING = False  # typing costs an import on the ForceCommand path
if TYPE_CHECKING:
    from collections.abc import Callable


def main(argv: list[str] | None = None) -> int:
    return guarded(dispatch, sys.argv[1:] if argv is None else argv)


def guarded(run: Callable[[list[str]], int], args: list[str]) -> int:
    """`run(args)` behind the one boundary: a GatekeeperError or any other exception is a denial."""
    try:
        return run(args)
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


def entry() -> None:
    """The entry script's and `python -m gatekeeper`'s start: main, then exit with its code.

    A ForceCommand session leaves through os._exit once its streams are flushed: by
    then the audit records are written, the registration released and docker reaped,
    and the interpreter's teardown (freeing every module, ~2 ms) would only delay
    sshd's exit status. Operator commands exit the ordinary way."""
    args = sys.argv[1:]
    session = is_forcecommand(args)
    code = main(args)
    if session:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass  # the client is gone (EPIPE) or the stream closed: nothing left to tell
        posix._exit(code)
    sys.exit(code)


def is_forcecommand(args: list[str]) -> bool:
    """ForceCommand options, or none at all under sshd."""
    options = parse_forcecommand_options(args)
    return bool(options) or (options == {} and getenv("SSH_CONNECTION") is not None)


def dispatch(args: list[str]) -> int:
    """ForceCommand options (or none, under sshd) run the ForceCommand; anything else is the operator's."""
    if is_forcecommand(args):
        return forcecommand_main(args)
    from gatekeeper.operator import handles
    from gatekeeper.operator import main as operator_main

    if handles(args) or getenv("SSH_CONNECTION") is None:
        return operator_main(args)
    return forcecommand_main(args)  # sshd ran us with arguments that are not ours: a config error


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


def report_internal_error(error: BaseException) -> None:
    try:
        import traceback

        from gatekeeper.audit import to_syslog

        to_syslog("internal error: " + "".join(traceback.format_exception(error)).replace("\n", " | "))
    except Exception:  # noqa: BLE001, S110 - reporting must never raise
        pass
