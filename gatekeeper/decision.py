"""The decision: command string + policy (+ an explicit view of the world) in,
Decision out. No environment, clock, files or subprocesses are touched here
except through `world`, which tests replace.

Order of checks (each one fails closed):
1. words      the string splits into plain words (gatekeeper.words);
2. program    the first word is exactly 'docker';
3. command    docker's global options and command tree give a canonical path
              (gatekeeper.grammar.command_line), unknown names are denied;
   globals    only the harmless global options (debug, log level, help);
4. policy     blocked wins, then the path must be in allowed;
5. flags      every flag is known to docker's grammar for that command;
6. vetting    every flag value, host path and family rule (gatekeeper.vetting).
"""

from __future__ import annotations

from gatekeeper.errors import Denied
from gatekeeper.grammar.command_line import Located, locate_command, walk_command_flags
from gatekeeper.grammar.spec import OK
from gatekeeper.words import split_command

TYPE_CHECKING = False  # typing costs an import on the ForceCommand path
if TYPE_CHECKING:
    from typing import Any

    from gatekeeper.policy import Policy
    from gatekeeper.world import World

# For a subsystem request sshd hands the ForceCommand the subsystem's configured
# command as SSH_ORIGINAL_COMMAND (OpenSSH 9.2 session.c do_exec), and nothing says
# it was a subsystem: `ssh -s sftp` arrives as Debian's sftp-server path. Typing
# that path as a command looks the same; both are recorded as this rule.
SFTP_SERVERS = frozenset({
    "internal-sftp", "/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server",
    "/usr/lib/sftp-server", "/usr/libexec/sftp-server", "/usr/lib/ssh/sftp-server",
})  # fmt: skip


class Decision:
    __slots__ = ("allowed", "argv", "canonical", "rule", "reason", "stdin", "output_filter", "claims",
                 "prepare", "afterwards", "pins", "files", "snapshots", "snapshot_paths")

    def __init__(self, allowed: bool, argv: list[str] | None, canonical: str | None,
                 rule: str, reason: str, stdin: bytes | None = None,
                 output_filter: str | None = None, claims: list[tuple[str, str]] | None = None,
                 prepare: list[Any] | None = None, afterwards: list[Any] | None = None,
                 pins: list[tuple[int, str, bytes]] | None = None,
                 files: list[tuple[str, bytes]] | None = None,
                 snapshots: list[tuple[Any, str]] | None = None) -> None:
        self.allowed = allowed
        self.argv = argv  # argv[0] == "docker"; run with the policy's pinned binary
        self.canonical = canonical
        self.rule = rule
        self.reason = reason
        self.stdin = stdin
        # gatekeeper.redaction filter name: stdout is captured and cleaned before it is shown
        self.output_filter = output_filter
        # (kind, path) host paths this command puts in flight: registered (gatekeeper.inflight)
        # until the process ends, so concurrent sessions check against them
        self.claims = claims or []
        # Engine steps execution takes before the command and after it succeeded
        # (gatekeeper.steps): ("volume-create", NAME), ("pull-record", TAG).
        self.prepare: list[tuple[str, ...]] = list(prepare or [])
        self.afterwards: list[tuple[str, ...]] = list(afterwards or [])
        # (argv index, word prefix, bytes): files the CLI reads that were read and checked here;
        # the ForceCommand hands docker these bytes (gatekeeper.pinning), not the path again
        self.pins = pins or []
        # (path in the state dir, bytes): checked files the ForceCommand writes before docker
        # runs, for docker to read instead of the agent's own (a compose build's Dockerfile)
        self.files = files or []
        # (where, decided directory): build contexts docker reads as a snapshot the ForceCommand
        # takes (gatekeeper.context_snapshot); where is (argv index, word prefix) or a compose
        # model key path. snapshot_paths: the snapshots taken, in order (argv keeps the path)
        self.snapshots: list[tuple[Any, str]] = snapshots or []
        self.snapshot_paths: list[str] = []

    def as_dict(self) -> dict[str, object]:
        record: dict[str, object] = {
            "decision": "allow" if self.allowed else "deny",
            "argv": self.argv,
            "canonical": self.canonical,
            "rule": self.rule,
            "reason": self.reason,
        }
        if self.prepare or self.afterwards:
            record["steps"] = [list(step) for step in (*self.prepare, *self.afterwards)]
        return record


def decide(command: str, policy: Policy, world: World) -> Decision:
    """Allow or deny `command` (the SSH command string) under `policy`.
    `world` (gatekeeper.world.World) answers what the command and policy cannot."""
    canonical = None
    try:
        argv = split_command(command)
        if argv[0] in SFTP_SERVERS and len(argv) == 1:
            raise Denied("an sftp subsystem request ('ssh -s sftp', sftp, scp) is not allowed: "
                         "use docker commands only", rule="subsystem-sftp")
        if argv[0] != "docker":
            raise Denied(f"only docker commands are allowed, not {argv[0]!r}", rule="not-docker")
        located = locate_command(argv)
        canonical = located.canonical
        check_global_options(located)
        check_policy(located, policy)
        return vetted_decision(argv, located, policy, world)
    except Denied as denial:
        return Decision(False, None, canonical, denial.rule, denial.message)
    except Exception as error:  # noqa: BLE001 - a bug in a vetter is a denial, and is audited as one
        return Decision(False, None, canonical, "internal-error",
                        f"internal error while vetting ({type(error).__name__}: {str(error)[:200]})")


def check_global_options(located: Located) -> None:
    """docker's own options come first: a redirected client makes the command moot."""
    for use in located.global_flags.uses:
        if use.flag.check != OK:
            why = use.flag.why or "refused by policy"
            raise Denied(f"global option {use.spelled} is not allowed: {why}", rule=f"flag-{use.name}")


def check_policy(located: Located, policy: Policy) -> None:
    canonical = located.canonical
    shown = show(located)
    if canonical in policy.blocked:
        raise Denied(f"{shown} is blocked by policy", rule="blocked-subcommand")
    if canonical not in policy.allowed:
        raise Denied(f"{shown} is not in the allowed commands", rule="not-allowed-subcommand")


def vetted_decision(argv: list[str], located: Located, policy: Policy, world: World) -> Decision:
    from gatekeeper.vetting import vet
    from gatekeeper.vetting.context import Context

    parsed = walk_command_flags(argv, located)
    vetted = vet(Context(argv, located, parsed, policy, world))
    final, pins = vetted.plan.apply(argv)  # the one place what runs departs from what was typed
    snapshots = [*vetted.plan.snapshots(argv), *vetted.model_snapshots]
    return Decision(True, final, located.canonical, "allowed", f"{show(located)} is allowed",
                    vetted.stdin(), vetted.output_filter, vetted.claims(), vetted.prepare, vetted.afterwards,
                    pins, vetted.pinned_files(), snapshots)


def show(located: Located) -> str:
    """'docker exec' or 'docker container ls' (canonical of 'docker ps')."""
    written = f"'docker {located.spelled}'"
    if located.spelled == located.canonical:
        return written
    return f"{written} ('docker {located.canonical}')"
