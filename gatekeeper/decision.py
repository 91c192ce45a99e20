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

import os

from gatekeeper.errors import Denied
from gatekeeper.grammar.command_line import Located, locate_command, walk_command_flags
from gatekeeper.grammar.spec import OK
from gatekeeper.words import split_command

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
                 "prepare", "afterwards", "pins")

    def __init__(self, allowed: bool, argv: list[str] | None, canonical: str | None,
                 rule: str, reason: str, stdin: bytes | None = None,
                 output_filter: str | None = None, claims: list[tuple[str, str]] | None = None,
                 prepare: list | None = None, afterwards: list | None = None,
                 pins: list[tuple[int, str, bytes]] | None = None) -> None:
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


class RealWorld:
    """The file system and docker engine as they are.

    `run_docker` is how a decision asks the engine something (render a compose
    project, find a container's owner): the pinned binary, the policy's clean
    environment, cwd = workdir, under time, memory and output limits
    (gatekeeper.bounded). It returns (status, stdout, stderr).
    Inspect queries of known templates are answered from the engine's API socket
    instead (time and size bounded too), printed as the CLI would (gatekeeper.engine_api).

    `claims_in_flight` answers what other live gatekeeper sessions are about to
    bind or write (gatekeeper.inflight). Only the ForceCommand passes a registry:
    it takes the lock that serialises host-path commands, held until the
    decision's own claims are registered (`settle`). Without one (gatekeeper
    check), no other session is assumed in flight.
    """

    def __init__(self, registry: object | None = None) -> None:
        self.registry = registry

    def claims_in_flight(self, policy: object) -> list[tuple[str, str]]:
        if self.registry is None:
            return []
        return self.registry.locked_claims()  # type: ignore[attr-defined]

    def settle(self, claims: list[tuple[str, str]] | None) -> object | None:
        """After the decision: register `claims` (None = denied) and drop the lock.
        Returns the registration to release when the command has ended."""
        if self.registry is None:
            return None
        return self.registry.settle(claims)  # type: ignore[attr-defined]

    def realpath(self, path: str) -> str:
        resolved = os.path.realpath(path)
        check_resolution(resolved)
        return resolved

    def read_pinned(self, path: str, limit: int = 1 << 20) -> bytes:
        """The bytes of a resolved host file the CLI would read, opened without following
        any symlink on the way (a link there now is a swap since the path was resolved)."""
        from gatekeeper.pinning import read_without_symlinks

        return read_without_symlinks(path, limit)

    def read_file(self, path: str, limit: int = 1 << 20) -> bytes:
        """At most `limit`+1 bytes of a file the decision must look into (compose files)."""
        try:
            with open(path, "rb") as handle:
                return handle.read(limit + 1)
        except FileNotFoundError:
            return b""  # nothing to look into; the tool that needs it reports the error
        except OSError as error:
            raise Denied(f"cannot read {path!r}: {error.strerror}", rule="host-path") from None

    def run_docker(self, policy: object, args: list[str], stdin: bytes | None = None,
                   timeout: float = 60.0) -> tuple[int, bytes, bytes]:
        if stdin is None:
            # inspect queries of known templates: one HTTP request, no second process
            from gatekeeper.engine_api import answer_from_api

            answer = answer_from_api(policy.host, args, timeout)  # type: ignore[attr-defined]
            if answer is not None:
                return answer
        return self.run_docker_cli(policy, args, stdin, timeout)

    def run_docker_cli(self, policy: object, args: list[str], stdin: bytes | None = None,
                       timeout: float = 60.0) -> tuple[int, bytes, bytes]:
        """The pinned docker CLI (the reference the API answers are tested against)."""
        from gatekeeper.bounded import run_bounded
        from gatekeeper.execution import child_environment

        # memory, time and output bounded: past a limit, Denied (rule decision-limit)
        return run_bounded([policy.binary, *args], stdin, child_environment(policy),  # type: ignore[attr-defined]
                           policy.workdir, timeout)  # type: ignore[attr-defined]


class OfflineEngineWorld(RealWorld):
    """The real file system and compose renders, but no engine objects: ownership
    queries see exactly the named objects, all the agent's; no other container
    holds a bind source and no session is in flight. For `gatekeeper replay`
    and `check`, where owners are runtime state the question is not about."""

    def run_docker(self, policy: object, args: list[str], stdin: bytes | None = None,
                   timeout: float = 60.0) -> tuple[int, bytes, bytes]:
        if args[:1] == ["compose"]:
            return super().run_docker(policy, args, stdin, timeout)
        from gatekeeper.vetting.ownership import assumed_answer

        return assumed_answer(policy, args)


def check_resolution(resolved: str) -> None:
    """Prove docker (as root) resolves `resolved` to itself, and that it is a plain file or directory.

    os.path.realpath takes a component it cannot lstat (EACCES inside a root-owned
    0700 directory a container made) for a plain name; the daemon, as root, would
    follow a symlink planted there (`locked/escape -> /`). A device node, FIFO or
    socket is refused too: a 0666 block device planted by a container would turn
    --env-file or --secret into a raw read of the host disk.
    """
    import stat

    prefix, mode = "", stat.S_IFDIR
    for part in resolved.strip("/").split("/"):
        prefix += "/" + part
        try:
            mode = os.lstat(prefix).st_mode
        except FileNotFoundError:
            return  # the rest does not exist yet, so nothing below can be a link
        except OSError as error:
            raise Denied(f"host path {resolved!r}: cannot inspect {prefix!r} ({error.strerror}), "
                         "so a link there could not be followed", rule="host-path-unreadable") from None
        if stat.S_ISLNK(mode):
            raise Denied(f"host path {resolved!r}: {prefix!r} became a symlink", rule="host-path")
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise Denied(f"host path {resolved!r} is a device, FIFO or socket", rule="host-path-special")


class StaticWorld:
    """A world with no symlinks: paths are only normalised. For replay and tests."""

    def __init__(self, links: dict[str, str] | None = None, files: dict[str, bytes] | None = None) -> None:
        self.links = dict(links or {})
        self.files = dict(files or {})

    def read_file(self, path: str, limit: int = 1 << 20) -> bytes:
        return self.files.get(path, b"")[: limit + 1]

    def read_pinned(self, path: str, limit: int = 1 << 20) -> bytes:
        return self.read_file(path, limit)

    def claims_in_flight(self, policy: object) -> list[tuple[str, str]]:
        """No other gatekeeper session is in flight."""
        return []

    def run_docker(self, policy: object, args: list[str], stdin: bytes | None = None,
                   timeout: float = 60.0) -> tuple[int, bytes, bytes]:
        """No engine: ownership queries see exactly the named objects, all the agent's
        (and, for the bind-source invariant, no other container exists)."""
        from gatekeeper.vetting.ownership import assumed_answer

        return assumed_answer(policy, args)

    def realpath(self, path: str) -> str:
        path = os.path.normpath(path)
        for link, target in self.links.items():
            if path == link or path.startswith(link.rstrip("/") + "/"):
                return self.realpath(target + path[len(link):])
        return path


def decide(command: str, policy: object, world: object) -> Decision:
    """Allow or deny `command` (the SSH command string) under `policy`."""
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
        if use.flag[3] != OK:
            why = use.flag[4] or "refused by policy"
            raise Denied(f"global option {use.spelled} is not allowed: {why}", rule=f"flag-{use.name}")


def check_policy(located: Located, policy: object) -> None:
    canonical = located.canonical
    shown = show(located)
    if canonical in policy.blocked:  # type: ignore[attr-defined]
        raise Denied(f"{shown} is blocked by policy", rule="blocked-subcommand")
    if canonical not in policy.allowed:  # type: ignore[attr-defined]
        raise Denied(f"{shown} is not in the allowed commands", rule="not-allowed-subcommand")


def vetted_decision(argv: list[str], located: Located, policy: object, world: object) -> Decision:
    from gatekeeper.vetting import vet
    from gatekeeper.vetting.context import Context

    parsed = walk_command_flags(argv, located)
    vetted = vet(Context(argv, located, parsed, policy, world))
    final = apply_rewrites(argv, vetted.rewrites)
    where = rewritten_positions(argv, vetted.rewrites)
    pins = [(where[index], prefix, data) for index, (prefix, data) in vetted.pins.items()]
    return Decision(True, final, located.canonical, "allowed", f"{show(located)} is allowed",
                    vetted.stdin, vetted.output_filter, vetted.claims(), vetted.prepare, vetted.afterwards,
                    pins)


def apply_rewrites(argv: list[str], rewrites: dict[int, tuple[int, list[str]]]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(argv):
        if i in rewrites:
            count, words = rewrites[i]
            out.extend(words)
            i += count
        else:
            out.append(argv[i])
            i += 1
    return out


def rewritten_positions(argv: list[str], rewrites: dict[int, tuple[int, list[str]]]) -> dict[int, int]:
    """For each rewrite, the index of its last word in the rewritten argv."""
    where: dict[int, int] = {}
    out = i = 0
    while i < len(argv):
        count, words = rewrites.get(i, (1, [argv[i]]))
        if i in rewrites:
            where[i] = out + len(words) - 1
        out += len(words)
        i += count
    return where


def show(located: Located) -> str:
    """'docker exec' or 'docker container ls' (canonical of 'docker ps')."""
    written = f"'docker {located.spelled}'"
    if located.spelled == located.canonical:
        return written
    return f"{written} ('docker {located.canonical}')"
