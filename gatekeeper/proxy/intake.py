"""The audit intake: records the ForceCommand hands to the proxy, written by the proxy.

Where the proxy runs, the audit log is root:root 0600 (append-only): nothing the
agent's account runs can open it, so nothing it runs can truncate it, rewrite it or
fill it with lines of its choosing. The ForceCommand (which runs as the agent) gets
its records in through one door instead: `POST /_gatekeeper/audit` on the proxy's
socket, handled here before any vetting, never forwarded to the engine.

Every record that comes in this way is stamped with who handed it over: `layer` is
set to "cli" and `reported_by` to the caller's uid (SO_PEERCRED, from the kernel,
not from the request), its user name and its [proxy.users] profile, whatever the
record itself said. The proxy's own records ("layer": "api") never carry
`reported_by`; so a line without it was written by the proxy about what it saw, and
anything the agent's account says about itself is marked as the agent's word.
"""

from __future__ import annotations

import json
import pwd

from gatekeeper.audit import append_record, timestamp
from gatekeeper.errors import AuditError, AuditFull
from gatekeeper.proxy.contract import ApiRequest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from gatekeeper.audit import Charge
    from gatekeeper.proxy.audit_log import KeptLog

INTAKE_PATH = "/_gatekeeper/audit"
# The ForceCommand's records are a few KiB (command up to 16 KiB, argv, reason);
# anything larger is not one of them.
MAX_RECORD = 64 * 1024
# What the ForceCommand writes (gatekeeper.forcecommand): a decision, then an exit line.
EVENTS = frozenset({"decision", "exit"})
MAX_DEPTH = 8  # the ForceCommand's records nest three deep (steps, policy)
STAMPS = ("layer", "reported_by", "received")
FULL = 507  # Insufficient Storage: the log is at [audit] max_bytes


class IntakeRefused(Exception):
    """A request on the intake path that is not a record we take: (HTTP status, why)."""

    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status
        self.why = why


def is_intake(request: ApiRequest) -> bool:
    """The transport asks this before vetting: such a request is ours, never the engine's."""
    return request.path == INTAKE_PATH or request.path.startswith(INTAKE_PATH + "/")


def handle_intake(request: ApiRequest, log_path: str, *, wait: bool = True,
                  ceiling: int = 0, charge: Charge | None = None,
                  log: KeptLog | None = None,
                  name_of: Callable[[int], str | None] | None = None) -> tuple[int, bytes]:
    """Write one reported record: (HTTP status, JSON body) for the transport to send.
    With wait=False a log locked by another writer raises gatekeeper.audit.LogBusy
    (nothing written): the transport then writes it from a thread, which waits.
    A log at its ceiling ([audit] max_bytes), or a record past its uid's share of it (`charge`,
    gatekeeper.proxy.log_shares), is FULL (507), nothing written. `log`: the proxy's kept
    descriptor (gatekeeper.proxy.audit_log), else the log is opened for it. `name_of`: uid ->
    account name (the proxy's cached lookup, server.UserNames), else user_name."""
    append = log.append if log is not None else append_record
    try:
        record = stamped_record(request, name_of or user_name)
        append(log_path, record, wait=wait, ceiling=ceiling, charge=charge)
    except IntakeRefused as refused:
        return refused.status, answer(refused.why)
    except AuditFull as error:
        return FULL, answer(f"gatekeeper: audit log: {error.message} (rule {error.rule})")
    except AuditError as error:  # the ForceCommand then refuses to run anything (exit 75)
        return 503, answer(f"gatekeeper: audit log: {error.message}")
    return 204, b""


def stamped_record(request: ApiRequest, name_of: Callable[[int], str | None]) -> dict[str, object]:
    if request.method != "POST" or request.path != INTAKE_PATH:
        raise IntakeRefused(405, f"gatekeeper: only POST {INTAKE_PATH}")
    if not request.profile:  # [proxy.users]: a user not listed gets nothing, not even this
        raise IntakeRefused(403, "gatekeeper: denied: this user has no profile in [proxy.users]")
    record = parse_record(request.body)
    for key in STAMPS:
        record.pop(key, None)
    record["layer"] = "cli"
    record["reported_by"] = {"uid": request.uid, "user": name_of(request.uid), "profile": request.profile}
    record["received"] = timestamp()
    return record


def parse_record(body: bytes) -> dict[str, object]:
    if len(body) > MAX_RECORD:
        raise IntakeRefused(413, f"gatekeeper: an audit record is at most {MAX_RECORD} bytes")
    try:
        record = json.loads(body.decode("utf-8", "surrogateescape"), parse_constant=refuse_constant)
    except (ValueError, RecursionError):
        raise IntakeRefused(400, "gatekeeper: an audit record is one JSON object") from None
    if not isinstance(record, dict):
        raise IntakeRefused(400, "gatekeeper: an audit record is one JSON object")
    if nesting(record) > MAX_DEPTH:
        raise IntakeRefused(400, f"gatekeeper: an audit record nests at most {MAX_DEPTH} deep")
    if record.get("event") not in EVENTS:
        raise IntakeRefused(400, f"gatekeeper: audit event must be one of {sorted(EVENTS)}")
    return record


def nesting(value: object) -> int:
    """How deep lists and objects nest (iteratively: a hostile record must not recurse us)."""
    deepest, pending = 0, [(value, 0)]
    while pending:
        item, depth = pending.pop()
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            pending += [(child, depth + 1) for child in item.values()]
        elif isinstance(item, list):
            pending += [(child, depth + 1) for child in item]
    return deepest


def refuse_constant(name: str) -> object:
    """NaN and Infinity are not JSON; what a record holds must stay readable by every tool."""
    raise ValueError(name)


def user_name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def answer(message: str) -> bytes:
    """The engine's error shape, so a docker client would print it as it prints the engine's."""
    return json.dumps({"message": message}).encode()
