"""Approval, the third verdict (policy [approval]): `ask` instead of allow or deny.

The policy lists in `[approval] ask` command paths (`image rm`, `container prune`) whose
allowed commands need an operator's yes, and rule ids from ASKABLE_RULES whose denials
the operator may lift one command at a time. Such a command is not run: the agent gets
exit 75 and a request id, and the operator runs `gatekeeper approve ID` (or `deny ID`).

An approval is bound to one key: the SHA-256 of the exact argv gatekeeper would run,
the profile and the policy's SHA-256 (a changed policy needs a new approval). It lives in
`[approval] dir` (default /var/lib/gatekeeper/approvals), which must be root's and
writable by nobody else: the agent's account can read it and never write it, so it
cannot forge one. It expires (`[approval] expires`), and it is used once: the session
that runs it first creates `used-<nonce>` in the state directory with O_EXCL, so of two
sessions re-sending the command at once exactly one runs. Pending requests are written
to the state directory (`requests/`): a request grants nothing, it only tells the
operator what was asked. Every step (asked, approved or denied, run) is in the audit log.

Askable rules are the ones whose check can be lifted alone and leave every other
check standing: a pull from a registry not on [images] allowed, stopping or removing
an object [protect] covers. Nothing that confines a container (privileged, host paths,
namespaces) can be asked for; `gatekeeper policy check` fails a policy whose `ask`
lets a must-deny command through.
"""

from __future__ import annotations

import os

from gatekeeper.errors import EX_TEMPFAIL, GatekeeperError

TYPE_CHECKING = False  # typing costs an import on the ForceCommand path
if TYPE_CHECKING:
    from gatekeeper.decision import Decision
    from gatekeeper.policy import Policy
    from gatekeeper.world import World

# rule id -> (policy section, key, value that lifts that one check)
ASKABLE_RULES: dict[str, tuple[str, str | None, list[str] | None]] = {
    "image-source": ("images", "allowed", []),
    "protected": ("protect", None, None),
}
REQUESTS = "requests"
USED_PREFIX = "used-"
RULE_PENDING = "approval-pending"
RULE_DENIED = "approval-denied"
RULE_APPROVED = "approved"
MAX_RECORD = 1 << 16


class ApprovalPending(GatekeeperError):
    """The command waits for an operator's approval: try again after it."""

    exit_code = EX_TEMPFAIL
    rule = RULE_PENDING


def ask_list(policy: Policy) -> list[str]:
    return list(policy.ask)


def approval_key(argv: list[str], profile: str, policy_sha256: str) -> str:
    import hashlib
    import json

    material = json.dumps([argv, profile, policy_sha256], separators=(",", ":"))
    return hashlib.sha256(material.encode("utf-8", "surrogateescape")).hexdigest()


def request_id(key: str) -> str:
    return key[:16]


def asked_rule(policy: Policy, canonical: str | None, rule: str, allowed: bool) -> str | None:
    """What puts this decision to the operator: the command path or the rule; else None."""
    from gatekeeper.grammar.names import canonical_name

    asked = ask_list(policy)
    if allowed and canonical in {canonical_name(entry) for entry in asked}:
        return canonical
    if not allowed and rule in ASKABLE_RULES and rule in asked:
        return rule
    return None


def lifted(policy: Policy, rule: str) -> Policy:
    """The same policy with the one check behind `rule` lifted (for a denial that may be asked)."""
    from gatekeeper.policy import Policy as Lifted

    section, key, value = ASKABLE_RULES[rule]
    settings = {name: dict(values) for name, values in policy.settings.items()}
    if key is None:
        settings[section] = {name: [] for name in settings[section]}
    else:
        settings[section][key] = value
    out = Lifted(settings, policy.source, policy.sha256)
    out.profile = policy.profile
    return out


def offline_verdict(command: str, policy: Policy, world: World) -> tuple[str, Decision]:
    """("allow" | "deny" | "ask", the decision that would run or the refusal), no state touched:
    for `gatekeeper policy test` and `policy check`."""
    from gatekeeper.decision import decide

    decision = decide(command, policy, world)
    asked = asked_rule(policy, decision.canonical, decision.rule, decision.allowed)
    if asked is None:
        return ("allow" if decision.allowed else "deny"), decision
    if not decision.allowed:
        relaxed = decide(command, lifted(policy, asked), world)
        return ("ask", relaxed) if relaxed.allowed else ("deny", decision)
    return "ask", decision


# --- the ForceCommand's side ---------------------------------------------------------


def consult(policy: Policy, argv: list[str], now: float) -> dict[str, object]:
    """For a command that needs approval: the approval record to run it under (used up
    now), or raise ApprovalPending (a request recorded) / GatekeeperError (denied)."""
    key = approval_key(argv, policy.profile, policy.sha256)
    record = read_approval(policy, key)
    if record is not None and float(record.get("expires", 0)) > now and record.get("key") == key:  # type: ignore[arg-type]  # JSON; a bad one raises: denied
        if record.get("denied"):
            raise GatekeeperError(f"the operator denied request {request_id(key)}; do not send it again",
                                  rule=RULE_DENIED)
        if use_once(policy, str(record.get("nonce", ""))):
            return record
    write_request(policy, key, argv, now)
    raise ApprovalPending(f"approval pending: request {request_id(key)}; re-send the same command after the "
                          f"operator approves it ('gatekeeper approve {request_id(key)}')")


def approvals_dir(policy: Policy) -> str:
    return policy.approvals_dir


def read_approval(policy: Policy, key: str) -> dict[str, object] | None:
    """The approval for `key` if the operator wrote one: a regular file in a directory that
    is root's and writable by nobody else, itself root's and writable by nobody else."""
    import json
    import stat

    directory = approvals_dir(policy)
    try:
        info = os.stat(directory)
        fd = os.open(os.path.join(directory, key), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        mine = os.fstat(fd)
        for held in (info, mine):
            if held.st_uid != 0 or held.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                return None
        if not stat.S_ISREG(mine.st_mode) or not stat.S_ISDIR(info.st_mode):
            return None
        record = json.loads(os.read(fd, MAX_RECORD))
    except ValueError:
        return None
    finally:
        os.close(fd)
    return record if isinstance(record, dict) else None


def use_once(policy: Policy, nonce: str) -> bool:
    """Mark the approval `nonce` used; False if a session already did."""
    from gatekeeper.inflight import Registry

    if not nonce.isalnum():
        return False
    directory = Registry(policy.state_dir).open_state_dir()
    try:
        fd = os.open(USED_PREFIX + nonce, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=directory)
    except FileExistsError:
        return False
    finally:
        os.close(directory)
    os.close(fd)
    return True


def write_request(policy: Policy, key: str, argv: list[str], now: float) -> None:
    """The pending request for the operator's `gatekeeper approve --list` (grants nothing)."""
    import json

    from gatekeeper.inflight import Registry

    record = {"key": key, "id": request_id(key), "argv": argv, "profile": policy.profile,
              "policy_sha256": policy.sha256, "asked": now}
    directory = Registry(policy.state_dir).open_state_dir()
    try:
        try:
            os.mkdir(REQUESTS, 0o700, dir_fd=directory)
        except FileExistsError:
            pass
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        requests = os.open(REQUESTS, flags, dir_fd=directory)
    finally:
        os.close(directory)
    try:
        fd = os.open(request_id(key), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=requests)
        try:
            os.write(fd, json.dumps(record).encode("utf-8", "surrogateescape"))
        finally:
            os.close(fd)
    finally:
        os.close(requests)
