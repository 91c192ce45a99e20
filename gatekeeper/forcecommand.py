"""The ForceCommand boundary: sshd runs us with SSH_ORIGINAL_COMMAND set.

All I/O around the pure decision lives here: read the command, load the
policy, decide, audit, run or refuse. Every failure is a denial with one line
on stderr; the audit record is written before anything runs.
"""

from __future__ import annotations

import posix  # os's system calls without importing os (gatekeeper.environment)
import sys
import time

from gatekeeper.environment import getenv
from gatekeeper.errors import EX_NOPERM, EX_TEMPFAIL, AuditError, GatekeeperError
from gatekeeper.policy import Policy, load_policy

TYPE_CHECKING = False  # typing costs an import on the ForceCommand path
if TYPE_CHECKING:
    from collections.abc import Callable

    from gatekeeper.audit_handoff import Intake
    from gatekeeper.context_snapshot import Snapshots
    from gatekeeper.decision import Decision
    from gatekeeper.inflight import Registration

    Decided = tuple[Decision, Registration | None]  # the decision and its in-flight registration


def run_forcecommand(policy_path: str | None, profile: str | None) -> int:
    from gatekeeper.session import session_facts

    # First, before anything slow: sshd removes the SSH_USER_AUTH file (the only
    # record of which key this is) as soon as the client hangs up.
    facts = session_facts()
    try:
        policy = load_policy(policy_path, profile)
    except GatekeeperError as error:
        return refuse_without_policy(error)
    command = getenv("SSH_ORIGINAL_COMMAND")
    if command is None:
        return show_usage(policy, profile, facts)
    return decide_and_run(command, policy, profile, facts)


def decide_and_run(command: str, policy: Policy, profile: str | None, facts: dict[str, object]) -> int:
    started = time.monotonic()
    intake = open_intake(policy)  # connected while the decision is made (gatekeeper.audit_handoff)
    decision, registration = decide_and_register(command, policy)
    if policy.ask:
        decision, registration = put_to_operator(command, policy, decision, registration)
    if decision.allowed and any(policy.budgets.values()):
        decision = spend_budgets(policy, decision)
        if not decision.allowed and registration is not None:
            registration.release()
            registration = None
    snapshots = None
    if decision.allowed and decision.snapshots:
        decision, snapshots = snapshot_contexts(policy, decision)
    try:
        return record_and_run(command, decision, policy, profile, facts, started, intake)
    finally:
        if registration is not None:
            registration.release()  # the engine holds the container by now (gatekeeper.inflight)
        if snapshots is not None:
            snapshots.remove()  # docker has exited: it read the context (gatekeeper.context_snapshot)


def argv_of(decision: Decision) -> list[str]:
    """What an allowed decision runs (argv is None only on a denial: fail closed)."""
    if decision.argv is None:
        raise GatekeeperError("an allowed decision without an argv", rule="internal-error")
    return decision.argv


def decide_and_register(command: str, policy: Policy) -> Decided:
    """The decision, and the registration of the host paths it puts in flight.

    A command with host paths takes the in-flight lock while it is decided (the
    world asks for it); `settle` registers the decision's claims and drops it."""
    from gatekeeper.decision import Decision, decide
    from gatekeeper.worlds import RealWorld

    world = RealWorld(state_dir=policy.state_dir, stdin_fd=0)  # stdin: read only for a Dockerfile on it
    decision = decide(command, policy, world)
    try:
        registration = world.settle(decision.claims if decision.allowed else None)
    except GatekeeperError as error:
        return Decision(False, None, decision.canonical, error.rule, error.message), None
    return decision, registration


def put_to_operator(command: str, policy: Policy, decision: Decision,
                    registration: Registration | None) -> Decided:
    """[approval] ask: a command (or an askable denial) runs only under an operator's
    unused, unexpired approval of exactly this argv (gatekeeper.approval)."""
    from gatekeeper.approval import RULE_APPROVED, asked_rule, consult, lifted, request_id
    from gatekeeper.decision import Decision

    asked = asked_rule(policy, decision.canonical, decision.rule, decision.allowed)
    if asked is None:
        return decision, registration
    if not decision.allowed:
        decision, registration = decide_and_register(command, lifted(policy, asked))
        if not decision.allowed:
            return decision, registration
    try:
        approval = consult(policy, argv_of(decision), time.time())
    except GatekeeperError as error:
        if registration is not None:
            registration.release()
        return Decision(False, None, decision.canonical, error.rule, error.message), None
    decision.rule = RULE_APPROVED
    decision.reason += f"; approved by {approval.get('by')} (request {request_id(str(approval['key']))})"
    return decision, registration


def spend_budgets(policy: Policy, decision: Decision) -> Decision:
    """[budgets]: the allowed command spends from its profile's budgets, or is refused
    naming the budget and when it refills (gatekeeper.budgets)."""
    from gatekeeper.budgets import charge
    from gatekeeper.decision import Decision

    try:
        charge(policy, decision.canonical, decision.stdin, time.time())
    except GatekeeperError as error:
        return Decision(False, None, decision.canonical, error.rule, error.message)
    return decision


def snapshot_contexts(policy: Policy, decision: Decision) -> tuple[Decision, Snapshots | None]:
    """Each decided build context copied as it is now, opened without following a symlink
    (gatekeeper.context_snapshot); a context that changed since the check is a denial."""
    from gatekeeper.context_snapshot import Snapshots
    from gatekeeper.decision import Decision

    snapshots = Snapshots(policy.state_dir)
    try:
        decision.snapshot_paths = [snapshots.take(directory) for _, directory in decision.snapshots]
    except GatekeeperError as error:
        snapshots.remove()
        return Decision(False, None, decision.canonical, error.rule, error.message), None
    except OSError as error:
        snapshots.remove()
        return Decision(False, None, decision.canonical, "host-path-state",
                        f"cannot copy the build context into {policy.state_dir}/pinned "
                        f"({error.strerror})"), None
    return decision, snapshots


def run_pinned(policy: Policy, decision: Decision, on_long_run: Callable[[], None] | None = None) -> int:
    """docker gets the bytes the decision checked for pinned files (gatekeeper.pinning)."""
    if decision.files and not wrote_pinned_files(policy, decision):
        return EX_NOPERM
    if decision.snapshot_paths:  # what docker reads: the snapshots, the record keeps the paths
        from gatekeeper.context_snapshot import on_snapshots

        try:
            decision.argv, decision.stdin = on_snapshots(argv_of(decision), decision.stdin,
                                                         decision.snapshots, decision.snapshot_paths)
        except GatekeeperError as error:
            say(f"gatekeeper: denied: {error.message} (rule {error.rule}); nothing ran")
            return EX_NOPERM
    if not decision.pins:
        return run_decided(policy, decision, on_long_run)
    from gatekeeper.pinning import pinned_argv

    decision.argv, fds = pinned_argv(argv_of(decision), decision.pins)
    try:
        return run_decided(policy, decision, on_long_run)
    finally:
        for fd in fds:
            posix.close(fd)


def wrote_pinned_files(policy: Policy, decision: Decision) -> bool:
    """The checked copies docker reads (a compose build's Dockerfile), or a denial line."""
    from gatekeeper.pinning import write_pinned_files

    try:
        write_pinned_files(policy.state_dir, decision.files, time.time())
    except GatekeeperError as error:
        say(f"gatekeeper: denied: {error.message} (rule {error.rule}); nothing ran")
        return False
    except OSError as error:
        say(f"gatekeeper: denied: cannot write the checked Dockerfile into {policy.state_dir!r} "
            f"({error.strerror}) (rule host-path-state); nothing ran")
        return False
    return True


def record_and_run(command: str, decision: Decision, policy: Policy, profile: str | None,
                   facts: dict[str, object], started: float, intake: Intake | None = None) -> int:
    record = decision_record(command, decision.as_dict(), policy, profile, facts)
    try:
        log = record_decision(policy, record, more=decision.allowed, intake=intake)
    except AuditError as error:
        say(f"gatekeeper: denied: {error.message} (rule {error.rule}); nothing runs unrecorded")
        return error.exit_code
    if decision.rule == "approval-pending":
        say(f"gatekeeper: {decision.reason}")
        return EX_TEMPFAIL
    if not decision.allowed:
        from gatekeeper.messages import denial_line

        say(denial_line(decision.rule, decision.reason, policy, decision.canonical))
        return EX_NOPERM
    # A command still running after a second gives the intake connection back (a stream
    # must not hold it for hours); the exit line then goes on a fresh one.
    release = None if isinstance(log, int) else log.release
    if decision.prepare or decision.afterwards:
        code = run_with_steps(policy, decision, release)
    else:
        code = run_pinned(policy, decision, release)
    record_exit(log, policy, record, code, started)
    return code


def run_decided(policy: Policy, decision: Decision, on_long_run: Callable[[], None] | None = None) -> int:
    """docker, its stdout straight through, through a redaction filter, or (inspect
    templates) talking to an engine stand-in that redacts at the source."""
    from gatekeeper.execution import run_child

    argv, stdin, name = argv_of(decision), decision.stdin, decision.output_filter
    if name == "redact-at-source":
        from gatekeeper.redacting_engine import redacting_engine
        from gatekeeper.steps import BuiltLater

        with redacting_engine(policy, BuiltLater(policy)) as host:  # images: owned only if recorded
            return run_child(policy, argv, stdin, host=host, on_long_run=on_long_run)
    output_filter = None
    if name is not None:
        from gatekeeper.redaction import output_filter as named_filter
        from gatekeeper.steps import BuiltLater

        output_filter = named_filter(name, policy, BuiltLater(policy))
    return run_child(policy, argv, stdin, output_filter, on_long_run=on_long_run)


def run_with_steps(policy: Policy, decision: Decision, on_long_run: Callable[[], None] | None = None) -> int:
    """The decision's engine steps (gatekeeper.steps) around the command: a prepared
    step that fails means the command does not run."""
    from gatekeeper.steps import StepFailed, run_afterwards, run_prepared, snapshot_before

    try:
        run_prepared(policy, decision.prepare)
        before = snapshot_before(policy, decision.afterwards)
    except StepFailed as error:
        say(f"gatekeeper: denied: {error} (rule step-failed); nothing ran")
        return EX_NOPERM
    import time

    started = time.time()  # a build's image is recorded only if made after this
    code = run_pinned(policy, decision, on_long_run)
    if code == 0:
        for warning in run_afterwards(policy, decision.afterwards, before, started):
            say(f"gatekeeper: warning: {warning}")
    return code


def decision_record(command: str, decision: dict[str, object], policy: Policy,
                    profile: str | None, facts: dict[str, object]) -> dict[str, object]:
    from gatekeeper.audit import RECORD_VERSION, command_fields, timestamp

    record: dict[str, object] = {"v": RECORD_VERSION, "ts": timestamp(), "event": "decision"}
    record.update(facts)  # read when the session started (gatekeeper.session)
    record["profile"] = policy.profile  # DEFAULT_PROFILE without --name
    record.update(command_fields(command))  # cmd, and cmd_b64 when not UTF-8
    record.update(decision)
    if decision["rule"] == "approval-pending":
        record["decision"] = "ask"  # the third verdict: waits for `gatekeeper approve`
    record["policy"] = {"path": policy.source, "sha256": policy.sha256}
    return record


def open_intake(policy: Policy) -> Intake | None:
    """Behind the proxy: its intake, connected already (None: the log is written directly)."""
    if not handed_to_proxy(policy):
        return None
    from gatekeeper.audit_handoff import Intake

    intake = Intake(proxy_socket(policy))
    intake.open_early()
    return intake


def record_decision(policy: Policy, record: dict[str, object], *, more: bool = False,
                    intake: Intake | None = None) -> int | Intake:
    """Write the decision record; where the exit line goes: the log's descriptor, or the
    proxy's intake (`more`: an exit line follows, the connection is kept for it)."""
    from gatekeeper.audit import encode, open_log, to_syslog, write_record

    log: int | Intake
    if handed_to_proxy(policy):
        from gatekeeper.audit_handoff import Intake

        log = intake if intake is not None else Intake(proxy_socket(policy))
        line = encode(record)
        log.hand_over(line, more=more)
    else:
        log = open_log(policy.audit_path)
        line = write_record(log, record)
    if policy.syslog:
        to_syslog(line)
    return log


def handed_to_proxy(policy: Policy) -> bool:
    """[audit] via_proxy: the agent's account cannot open the log; the proxy writes it."""
    return policy.via_proxy


def proxy_socket(policy: Policy) -> str:
    proxy = policy.settings.get("proxy") or {}
    return str(proxy.get("listen", PROXY_SOCKET))


PROXY_SOCKET = "/run/gatekeeper/docker.sock"  # [proxy] listen's default


def record_exit(log: int | Intake, policy: Policy, decision: dict[str, object], code: int,
                started: float) -> None:
    from gatekeeper.audit import RECORD_VERSION, encode, reopen_log, timestamp, to_syslog, write_record

    record = {
        "v": RECORD_VERSION, "ts": timestamp(), "event": "exit",
        "session": decision["session"], "user": decision["user"],
        "canonical": decision["canonical"], "exit": code,
        "duration_ms": round((time.monotonic() - started) * 1000, 1),
    }  # fmt: skip
    if not isinstance(log, int):  # the proxy's intake, on the decision record's connection
        line = encode(record)
        try:
            log.hand_over(line)
        except AuditError as error:
            say(f"gatekeeper: warning: {error.message}")
            return
    else:
        exit_fd = reopen_log(policy.audit_path, log)
        try:
            line = write_record(exit_fd, record)
        except AuditError as error:
            say(f"gatekeeper: warning: {error.message}")
            return
        finally:
            if exit_fd != log:
                posix.close(exit_fd)
    if policy.syslog:
        to_syslog(line)


def show_usage(policy: Policy, profile: str | None, facts: dict[str, object]) -> int:
    """An interactive login: say what is allowed, record the attempt, refuse."""
    record = decision_record("", {"decision": "deny", "argv": None, "canonical": None,
                                  "rule": "no-command", "reason": "no command given"},
                             policy, profile, facts)
    try:
        record_decision(policy, record)
    except AuditError as error:
        say(f"gatekeeper: denied: {error.message} (rule {error.rule})")
        return error.exit_code
    from gatekeeper.messages import usage_text

    sys.stderr.write(usage_text(policy))
    return EX_NOPERM


def refuse_without_policy(error: GatekeeperError) -> int:
    """No usable policy: deny everything, tell syslog since there is no audit path."""
    say(f"gatekeeper: denied: {error.message} (rule {error.rule}); ask the operator to fix the policy")
    try:
        from gatekeeper.audit import to_syslog

        to_syslog(f"policy error: {error.message}")
    except OSError:
        pass
    return error.exit_code


def say(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
