"""The project's error type. Each subclass carries its exit code; the entry
point turns any of them into one line on stderr (never a traceback)."""

from __future__ import annotations

EX_SOFTWARE = 70
EX_TEMPFAIL = 75
EX_NOPERM = 77
EX_CONFIG = 78


class GatekeeperError(Exception):
    """Base class: a refusal with a rule id and a client-visible message."""

    exit_code = EX_SOFTWARE
    rule = "internal-error"

    def __init__(self, message: str, rule: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if rule is not None:
            self.rule = rule


class Denied(GatekeeperError):
    """The command is refused by policy or grammar."""

    exit_code = EX_NOPERM
    rule = "denied"


class PolicyError(GatekeeperError):
    """The policy file is missing, unreadable or invalid: deny everything."""

    exit_code = EX_CONFIG
    rule = "policy-invalid"


class AuditError(GatekeeperError):
    """The audit record cannot be written: nothing runs unrecorded."""

    exit_code = EX_TEMPFAIL
    rule = "audit-unwritable"


class AuditFull(AuditError):
    """The live audit log has reached [audit] max_bytes: nothing more runs until it is rotated."""

    rule = "audit-full"


class AuditShareFull(AuditFull):
    """One uid's records fill its share of the live log ([audit] max_bytes_per_uid): that uid's
    requests are refused until the log is rotated; other uids go on (gatekeeper.proxy.log_shares)."""

    rule = "audit-share-full"
