"""The proxy's audit records: one JSON line per decision in the same log as the CLI
layer's (gatekeeper.audit: one write per record on an O_APPEND|O_NOFOLLOW descriptor),
marked "layer": "api", with the caller's uid and profile; a copy to syslog."""

from __future__ import annotations

import time

from gatekeeper.audit import RECORD_VERSION, append_record, to_syslog
from gatekeeper.json_codec import record_line
from gatekeeper.policy import Policy

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from gatekeeper.proxy.audit_log import KeptLog
    from gatekeeper.proxy.log_shares import LogShares


class Caller:
    """Who is on the other end of a connection (SO_PEERCRED) and their profile."""

    __slots__ = ("pid", "uid", "gid", "user")

    def __init__(self, pid: int, uid: int, gid: int, user: str | None) -> None:
        self.pid = pid
        self.uid = uid
        self.gid = gid
        self.user = user


def api_record(caller: Caller, profile: str | None, method: str, target: str, *, endpoint: str,
               allowed: bool, rule: str, reason: str, policy: Policy | None) -> dict[str, object]:
    record: dict[str, object] = {
        "v": RECORD_VERSION, "ts": record_time(), "event": "decision", "layer": "api",
        "uid": caller.uid, "user": caller.user, "pid": caller.pid, "profile": profile,
        "endpoint": endpoint, "method": method, "target": target,
        "decision": "allow" if allowed else "deny", "rule": rule, "reason": reason,
    }  # fmt: skip
    if policy is not None:
        record["policy"] = {"path": policy.source, "sha256": policy.sha256}
    return record


def record_time(now: float | None = None) -> str:
    """gatekeeper.audit.timestamp (UTC RFC 3339 with microseconds), its seconds formatted once
    per second: two records per `docker ps`, each formatting the same second again."""
    now = time.time() if now is None else now
    seconds = int(now)
    micros = int((now - seconds) * 1_000_000)
    if seconds != LAST_SECOND.second:
        LAST_SECOND.text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        LAST_SECOND.second = seconds
    return f"{LAST_SECOND.text}.{micros:06d}Z"


class LastSecond:
    """The second record_time formatted last, and its text."""

    __slots__ = ("second", "text")

    def __init__(self) -> None:
        self.second: int | None = None
        self.text = ""


LAST_SECOND = LastSecond()


def write_api_record(policy: Policy, record: dict[str, object], shares: LogShares | None = None,
                     log: KeptLog | None = None) -> None:
    """Append the record (AuditError if it cannot be written whole: the caller refuses).
    The log is opened per record, or its descriptor kept by `log` while its path names the
    same file: a rotation never strands the daemon on an old file.
    `shares`: the record counts against its uid's [audit] max_bytes_per_uid (a summary does not)."""
    charge = None
    uid = record.get("uid")
    if shares is not None and isinstance(uid, int) and "summary" not in record:
        charge = shares.charger(uid, audit_share(policy))
    append = log.append if log is not None else append_record
    line = append(policy.audit_path, record, encoder=ENCODE, ceiling=audit_ceiling(policy),
                  charge=charge)
    if policy.syslog:
        to_syslog(line)


def line_encoder() -> Callable[[object], str]:
    """json_codec.record_line with its C encoder made once, not once per record (the encoder
    keeps no state between calls: no circular-reference markers); record_line itself where
    this interpreter's _json differs."""
    import _json

    from gatekeeper.json_codec import refuse_type

    try:
        encode = _json.make_encoder(None, refuse_type, _json.encode_basestring_ascii, None, ":", ",",
                                    False, False, True)
    except (AttributeError, TypeError):  # an interpreter whose _json differs
        return record_line

    def line(value: object) -> str:
        return "".join(encode(value, 0))

    return line


ENCODE = line_encoder()


def audit_ceiling(policy: Policy) -> int:
    """[audit] max_bytes: the size past which the proxy writes no record (AuditFull), 0 for none."""
    value = policy.settings["audit"].get("max_bytes", 0)
    return value if isinstance(value, int) else 0


def audit_share(policy: Policy) -> int:
    """[audit] max_bytes_per_uid: the bytes one uid's records may take of the live log, 0 for no share."""
    value = policy.settings["audit"].get("max_bytes_per_uid", 0)
    return value if isinstance(value, int) else 0


def syslog_only(record: dict[str, object]) -> None:
    """Without a usable policy there is no audit path: syslog gets the refusal."""
    from gatekeeper.audit import encode

    try:
        to_syslog(encode(record))
    except OSError:
        pass
